"""Prompting: boxes (parsing, checks, from labels / CSV), slice framing, 3D propagation, the CLI.

A stand-in network (the box itself, drawn in LiteMedSAM's 256-pixel frame, as mask logits) makes the
geometry exact and the tests fast; the released weights are tested in tests/nets/test_litemedsam.py.
"""

import numpy as np
import pytest
import torch

from medseg.errors import MedsegError
from medseg.image import Image
from medseg.inference.boxes import (
    BoxPrompt,
    boxes_from_label_map,
    check_box,
    jitter_box,
    parse_box,
    parse_point,
    read_boxes_csv,
)
from medseg.inference.prompt import Prompter, slice_frame


class BoxEcho(torch.nn.Module):
    """Mask logits +1 inside the prompt box (in the 256 frame), -1 outside; counts encoder calls."""

    def __init__(self):
        super().__init__()
        self.encoded = 0
        self.boxes = []

    def encode_image(self, x):
        self.encoded += 1
        return torch.zeros(1, 256, 64, 64)

    def decode(self, embedding, boxes=None, points=None, masks=None):
        logits = -torch.ones(1, 1, 256, 256)
        if boxes is not None:
            x0, y0, x1, y1 = boxes[0].tolist()
            self.boxes.append((x0, y0, x1, y1))
            logits[..., int(round(y0)):int(round(y1)) + 1, int(round(x0)):int(round(x1)) + 1] = 1.0
        else:
            for (x, y), lab in zip(points[0][0].tolist(), points[1][0].tolist()):
                if lab == 1:
                    logits[..., int(y) - 3:int(y) + 4, int(x) - 3:int(x) + 4] = 1.0
        return logits, torch.tensor([[0.9]])


def test_parse_box_and_point():
    assert parse_box("1,2,3,4") == ((2, 1), (4, 3))
    assert parse_box("1,2,3,4,5,6") == ((3, 2, 1), (6, 5, 4))
    assert parse_point("3,4", 2) == ((4, 3), 1) and parse_point("3,4,5,0", 3) == ((5, 4, 3), 0)
    for bad in ("1,2,3", "a,b,c,d"):
        with pytest.raises(MedsegError):
            parse_box(bad)
    with pytest.raises(MedsegError, match="label"):
        parse_point("3,4,2", 2)


@pytest.mark.parametrize("box, message", [
    (BoxPrompt((5, 5), (3, 9)), "inverted"),
    (BoxPrompt((5, 5), (5, 9)), "empty"),
    (BoxPrompt((0, 0), (10, 40)), "outside"),
    (BoxPrompt((-1, 0), (10, 10)), "outside"),
    (BoxPrompt((0, 1, 1), (2, 5, 5)), "3D box"),
    (BoxPrompt((1, 1), (5, 5), points=(((50, 2), 1),)), "point"),
])
def test_bad_boxes_are_refused_in_one_line(box, message):
    with pytest.raises(MedsegError, match=message) as info:
        check_box(box, (30, 30), "scan.png")
    assert str(info.value).startswith("scan.png:") and "\n" not in str(info.value)


def test_boxes_from_label_map_tight_jittered_components_slices():
    lab = np.zeros((4, 40, 50), np.uint8)
    lab[1:3, 10:20, 5:15] = 1
    lab[2, 25:30, 30:45] = 1  # a second component of label 1
    lab[1, 30:35, 5:8] = 2
    tight = boxes_from_label_map(lab)
    assert [(b.label, b.lower, b.upper) for b in tight] == [(1, (1, 10, 5), (2, 29, 44)), (2, (1, 30, 5), (1, 34, 7))]
    comps = boxes_from_label_map(lab, values=[1], per_component=True)
    assert sorted(b.lower for b in comps) == [(1, 10, 5), (2, 25, 30)]
    slices = boxes_from_label_map(lab, values=[1], per_slice=True)
    assert [b.lower[0] for b in slices] == [1, 2] and all(b.lower[0] == b.upper[0] for b in slices)
    # jitter only grows a box, within the image, by at most jitter · size / 256 pixels per side
    rng = np.random.default_rng(0)
    for _ in range(20):
        lower, upper = jitter_box((10, 5), (19, 14), (40, 50), 20, rng)
        assert 0 <= lower[0] <= 10 and 0 <= lower[1] <= 5 and 19 <= upper[0] <= 39 and 14 <= upper[1] <= 49
        assert 10 - lower[0] <= round(20 * 50 / 256)
    a = boxes_from_label_map(lab, jitter=5, seed=3)
    assert a == boxes_from_label_map(lab, jitter=5, seed=3)


def test_read_boxes_csv(tmp_path):
    path = tmp_path / "boxes.csv"
    path.write_text("case,label,x0,y0,x1,y1,z0,z1\na,1,1,2,10,20,,\nb,2,1,2,10,20,0,3\n", encoding="utf-8")
    boxes = read_boxes_csv(path)
    assert boxes["a"] == [BoxPrompt((2, 1), (20, 10), 1)]
    assert boxes["b"] == [BoxPrompt((0, 2, 1), (3, 20, 10), 2)]
    path.write_text("case,x0,y0,x1,y1\na,1,2,3,4\n", encoding="utf-8")
    with pytest.raises(MedsegError, match="label"):
        read_boxes_csv(path)


def test_slice_frame_resizes_longest_side_and_pads():
    frame, scale = slice_frame(np.arange(100 * 50, dtype=np.float32).reshape(1, 100, 50), 0, 1e9)
    assert frame.shape == (1, 3, 256, 256) and scale == 2.56
    assert float(frame.max()) == pytest.approx(1.0) and torch.all(frame[..., 128:] == 0)


def test_2d_box_mask_lands_on_the_input_grid():
    net = BoxEcho()
    image = Image(np.random.default_rng(0).random((1, 100, 50)).astype(np.float32))
    result = Prompter(net).segment(image, [BoxPrompt((20, 10), (59, 29), label=4)])
    pred = result.label_map.array[0]
    assert pred.shape == (100, 50)
    truth = np.zeros((100, 50), bool)
    truth[20:60, 10:30] = True
    assert 2 * ((pred == 4) & truth).sum() / ((pred == 4).sum() + truth.sum()) > 0.95
    assert result.structures == [{"label": 4, "predicted_iou": pytest.approx(0.9), "slices": 1,
                                  "mean_probability": pytest.approx(1 / (1 + np.exp(-1))),
                                  "voxels": int((pred == 4).sum())}]


def test_3d_box_spans_its_slices_and_carries_the_previous_mask():
    net = BoxEcho()
    image = Image(np.random.default_rng(0).random((1, 9, 64, 64)).astype(np.float32))
    result = Prompter(net).segment(image, [BoxPrompt((2, 10, 10), (6, 40, 30), label=1)])
    pred = result.label_map.array[0]
    assert [z for z in range(9) if pred[z].any()] == [2, 3, 4, 5, 6]
    assert net.encoded == 5 and result.structures[0]["slices"] == 5
    # slices in the order 4 (middle, the user's box), 5, 6, then 3, 2: each prompted with the box of the
    # mask on the slice before it (scaled to the 256 frame: 4x)
    assert net.boxes[0] == (40.0, 40.0, 120.0, 160.0)
    for call, previous in zip(net.boxes[1:], [4, 5, 4, 3]):
        ys, xs = np.nonzero(pred[previous])
        assert call == tuple(4.0 * v for v in (xs.min(), ys.min(), xs.max(), ys.max()))


def test_several_boxes_on_a_slice_share_one_encoder_pass():
    net = BoxEcho()
    image = Image(np.zeros((1, 64, 64), np.float32))
    result = Prompter(net).segment(image, [BoxPrompt((5, 5), (20, 20), 1), BoxPrompt((30, 30), (50, 50), 2)])
    assert net.encoded == 1 and set(np.unique(result.label_map.array)) == {0, 1, 2}


def test_clicks_alone_in_2d_but_not_on_volumes():
    net = BoxEcho()
    result = Prompter(net).segment(Image(np.zeros((1, 64, 64), np.float32)), points=[((32, 20), 1)])
    assert result.label_map.array[0, 32, 20] == 1
    with pytest.raises(MedsegError, match="needs a box"):
        Prompter(net).segment(Image(np.zeros((1, 4, 64, 64), np.float32)), points=[((1, 32, 20), 1)])
    with pytest.raises(MedsegError, match="inside the structure"):
        Prompter(net).segment(Image(np.zeros((1, 64, 64), np.float32)), points=[((32, 20), 0)])
    with pytest.raises(MedsegError, match="nothing to segment"):
        Prompter(net).segment(Image(np.zeros((1, 64, 64), np.float32)))
    with pytest.raises(MedsegError, match="channels"):
        Prompter(net).segment(Image(np.zeros((4, 64, 64), np.float32)), [BoxPrompt((1, 1), (9, 9))])


def test_cli_errors_write_nothing(tmp_path):
    from medseg.cli import main
    from medseg.io import write_image

    src = tmp_path / "scan.png"
    write_image(Image(np.zeros((1, 30, 40), np.uint8)), src)
    out = tmp_path / "out.png"
    assert main(["prompt", str(src), "--box", "5,5,3,9", "-o", str(out), "--weights", str(tmp_path / "none.pth")]) == 1
    assert main(["prompt", str(src), "--box", "1,2,3,4", "-o", str(src)]) == 1
    assert main(["prompt", "--boxes", str(tmp_path / "b.csv"), "-o", str(out)]) == 1
    assert main(["prompt", str(src), "--boxes-from", str(src), "--point", "3,3", "-o", str(out)]) == 1
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["scan.png"]


def test_cli_one_image_and_folder(tmp_path, monkeypatch):
    import medseg.inference.prompt as prompt_module
    from medseg.cli import main
    from medseg.io import read_image, write_image

    monkeypatch.setattr(prompt_module, "Prompter", lambda **kw: Prompter(BoxEcho()))
    image = np.zeros((1, 4, 32, 48), np.float32)
    folder = tmp_path / "images"
    write_image(Image(image), folder / "vol_0000.nii.gz")
    write_image(Image(image[:, 0].astype(np.uint8)), folder / "flat.png")
    (tmp_path / "boxes.csv").write_text("case,label,x0,y0,x1,y1,z0,z1\nvol,3,5,6,20,25,1,2\nflat,1,2,2,9,9,,\n",
                                        encoding="utf-8")
    out = tmp_path / "out"
    assert main(["prompt", "--boxes", str(tmp_path / "boxes.csv"), "-i", str(folder), "-o", str(out)]) == 0
    vol = read_image(out / "vol.nii.gz").array[0]
    assert vol.shape == (4, 32, 48) and [z for z in range(4) if (vol[z] == 3).any()] == [1, 2]
    assert read_image(out / "flat.png").array.shape == (1, 32, 48)
    rows = (out / "confidence.csv").read_text(encoding="utf-8").splitlines()
    assert rows[0] == "case,label,predicted_iou,mean_probability,voxels,slices" and len(rows) == 3
    one = tmp_path / "one.png"
    assert main(["prompt", str(folder / "flat.png"), "--box", "2,2,9,9", "--point", "5,5", "-o", str(one)]) == 0
    assert read_image(one).array[0, 5, 5] == 1


@pytest.mark.slow  # an encoder pass with the released weights through the CLI (~5-15 s on one thread)
def test_cli_folder_with_released_weights(tmp_path):
    from medseg.cli import main
    from medseg.io import read_image, write_image
    from medseg.nets.litemedsam import released_weights_path

    try:
        released_weights_path()
    except MedsegError as exc:
        pytest.skip(f"LiteMedSAM weights not installed: {exc}")
    image = np.full((1, 96, 128), 20, np.uint8)
    image[0, 30:60, 40:90] = 220
    folder = tmp_path / "images"
    write_image(Image(image), folder / "c1_0000.png")
    (tmp_path / "boxes.csv").write_text("case,label,x0,y0,x1,y1\nc1,2,37,27,92,62\n", encoding="utf-8")
    out = tmp_path / "out"
    assert main(["prompt", "--boxes", str(tmp_path / "boxes.csv"), "-i", str(folder), "-o", str(out),
                 "--threads", "1"]) == 0
    pred = read_image(out / "c1.png").array[0]
    truth = image[0] == 220
    assert 2 * ((pred == 2) & truth).sum() / ((pred == 2).sum() + truth.sum()) > 0.9
    rows = (out / "confidence.csv").read_text(encoding="utf-8").splitlines()
    assert rows[0] == "case,label,predicted_iou,mean_probability,voxels,slices" and rows[1].startswith("c1,2,")


def test_boxes_from_a_coarse_models_components():
    from medseg.inference.prompt import boxes_from_model

    class Coarse:
        def predict(self, image):
            lab = np.zeros(image.spatial_shape, np.uint8)
            lab[2:10, 3:12] = 1
            lab[20:30, 20:25] = 1
            lab[40, 40] = 1  # a speck below min_voxels
            return image.with_array(lab[None])

    image = Image(np.zeros((1, 50, 50), np.float32))
    boxes = boxes_from_model(Coarse(), image)
    assert sorted((b.lower, b.upper) for b in boxes) == [((2, 3), (9, 11)), ((20, 20), (29, 24))]
    result = Prompter(BoxEcho()).segment(image, boxes)
    assert result.label_map.array[0, 5, 5] == 1 and len(result.structures) == 2


def test_nested_box_wins_inside_the_larger_one():
    """A box inside another (LV inside the myocardium's box) paints over it even at equal logits; the
    confidence holds the mean mask probability (sigmoid(1) for the stand-in's +1 logits)."""
    image = Image(np.zeros((1, 60, 60), np.float32))
    outer, inner = BoxPrompt((5, 5), (50, 50), label=2), BoxPrompt((20, 20), (35, 35), label=3)
    for boxes in ([outer, inner], [inner, outer]):
        result = Prompter(BoxEcho()).segment(image, boxes)
        lab = result.label_map.array[0]
        assert lab[27, 27] == 3 and lab[8, 8] == 2 and lab[55, 55] == 0
        assert [s["label"] for s in result.structures] == [b.label for b in boxes]  # the caller's order
        assert all(abs(s["mean_probability"] - 1 / (1 + np.exp(-1))) < 1e-6 for s in result.structures)
    # side by side (not nested): the higher logit decides as before, the first box keeps ties
    a, b = BoxPrompt((5, 5), (30, 30), label=1), BoxPrompt((20, 20), (45, 45), label=4)
    lab = Prompter(BoxEcho()).segment(image, [a, b]).label_map.array[0]
    assert lab[25, 25] in (1, 4) and lab[40, 40] == 4 and lab[8, 8] == 1


def test_boxes_cli_from_a_reference_folder(tmp_path, monkeypatch):
    import medseg.inference.prompt as prompt_module
    from medseg.cli import main
    from medseg.io import read_image, write_image

    labels, images = tmp_path / "labels", tmp_path / "images"
    vol = np.zeros((1, 3, 40, 40), np.uint8)
    vol[0, 1, 5:20, 8:30] = 1
    vol[0, 2, 10:15, 10:16] = 2
    write_image(Image(vol), labels / "v1.nii.gz")
    write_image(Image(vol.astype(np.float32)), images / "v1_0000.nii.gz")
    flat = np.zeros((1, 30, 30), np.uint8)
    flat[0, 3:9, 4:12] = 1
    write_image(Image(flat), labels / "f1.png")
    write_image(Image(flat * 200), images / "f1_0000.png")
    out = tmp_path / "boxes.csv"
    assert main(["boxes", labels, "--per-slice", "-o", out]) == 0
    text = out.read_text(encoding="utf-8").splitlines()
    assert text[0] == "case,label,x0,y0,x1,y1,z0,z1"
    assert sorted(text[1:]) == ["f1,1,4,3,11,8,,", "v1,1,8,5,29,19,1,1", "v1,2,10,10,15,14,2,2"]
    # jitter: reproducible per case, each side pushed out by at most 5 · 40/256 pixels (rounded)
    assert main(["boxes", labels, "--per-slice", "--jitter", "5", "--seed", "3", "-o", tmp_path / "j1.csv"]) == 0
    assert main(["boxes", labels, "--per-slice", "--jitter", "5", "--seed", "3", "-o", tmp_path / "j2.csv"]) == 0
    assert (tmp_path / "j1.csv").read_text(encoding="utf-8") == (tmp_path / "j2.csv").read_text(encoding="utf-8")
    # the CSV drives medseg prompt --boxes (stand-in network: the box itself)
    monkeypatch.setattr(prompt_module, "Prompter", lambda **kw: Prompter(BoxEcho()))
    assert main(["prompt", "--boxes", out, "-i", images, "-o", tmp_path / "draft"]) == 0
    draft = read_image(tmp_path / "draft" / "v1.nii.gz").array[0]
    ref = vol[0]
    for z, value in ((1, 1), (2, 2)):
        pred, truth = draft[z] == value, ref[z] == value
        assert 2 * (pred & truth).sum() / (pred.sum() + truth.sum()) > 0.75  # the stand-in rounds box edges
    assert not draft[0].any()
    # bad input: one line, nothing written
    for args in (["boxes", labels, "-o", tmp_path / "b.txt"], ["boxes", "-o", tmp_path / "b.csv"],
                 ["boxes", tmp_path / "nowhere", "-o", tmp_path / "b.csv"],
                 ["boxes", labels, "--coarse-model", labels, "-o", tmp_path / "b.csv"],
                 ["boxes", labels, "--labels", "x", "-o", tmp_path / "b.csv"]):
        assert main([str(a) for a in args]) == 1
    assert not (tmp_path / "b.csv").exists() and not (tmp_path / "b.txt").exists()


def test_boxes_cli_from_a_coarse_model(tmp_path, monkeypatch):
    """`medseg boxes --coarse-model`: one box per connected component of the model's prediction (>= 10 voxels)."""
    import types

    import medseg.inference as inference
    from medseg.cli import main
    from medseg.io import write_image

    class Coarse:
        config = types.SimpleNamespace(input_channels=1)

        def predict(self, image):
            lab = np.zeros(image.spatial_shape, np.uint8)
            lab[2:10, 3:12] = 2
            lab[20:30, 20:25] = 2
            lab[40, 40] = 2  # a speck: ignored
            return image.with_array(lab[None])

    monkeypatch.setattr(inference, "Predictor", types.SimpleNamespace(from_folder=lambda path: Coarse()))
    images = tmp_path / "images"
    write_image(Image(np.zeros((1, 50, 50), np.uint8)), images / "a_0000.png")
    out = tmp_path / "boxes.csv"
    assert main(["boxes", "--coarse-model", tmp_path, "-i", images, "-o", out]) == 0
    rows = out.read_text(encoding="utf-8").splitlines()
    assert sorted(rows[1:]) == ["a,2,20,20,24,29,,", "a,2,3,2,11,9,,"]
    assert main(["boxes", "--coarse-model", tmp_path, "-o", tmp_path / "b.csv"]) == 1  # no -i
