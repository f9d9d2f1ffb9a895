"""Semi-supervised training: what each step changes, copy-paste consistency, case selection, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medseg.datasets import load_dataset, make_organs3d
from medseg.errors import MedsegError
from medseg.image import Image
from medseg.io import write_image
from medseg.losses import build_loss
from medseg.training.config import TrainingConfig
from medseg.training.loop import train
from medseg.training.semi_supervised import (SemiSupervised, SemiSupervisedSettings, bidirectional_copy_paste,
                                             copy_paste_box, mean_teacher_step, select_labeled, sigmoid_rampup)


def _net(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 3, 1))


def _batches(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(2, 1, 12, 12, generator=g)
    label = torch.randint(0, 3, (2, 1, 12, 12), generator=g)
    unlabeled = torch.randn(2, 1, 12, 12, generator=g)
    return (image, label), unlabeled


def _params(net):
    return [p.detach().clone() for p in net.parameters()]


def test_mean_teacher_unlabelled_loss_moves_the_student_not_the_teacher(one_thread):
    student = _net(0)
    optimizer = torch.optim.SGD(student.parameters(), lr=0.1)
    semi = SemiSupervised(student, SemiSupervisedSettings("mean_teacher", ema_decay=0.9, rampup=0.0), lambda: None,
                          optimizer)
    labeled, unlabeled = _batches()
    losses = semi.losses(labeled, unlabeled, build_loss("dice_ce"), progress=1.0, generator=torch.Generator())
    losses["unsupervised"].backward()
    # the consistency term alone reaches the student's weights ...
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    # ... and never the teacher's: it has no gradient at all
    assert all(not p.requires_grad and p.grad is None for p in semi.teacher.parameters())

    teacher_before, student_before = _params(semi.teacher), _params(student)
    semi.step(labeled, unlabeled, build_loss("dice_ce"), optimizer, progress=1.0)
    assert semi.average.updates == 1
    decay = semi.average.current_decay()  # the warm-up decay of the update just made: min(0.9, 2 / 11)
    for t0, s0, t1, s1 in zip(teacher_before, student_before, semi.teacher.parameters(), student.parameters()):
        assert not torch.equal(s0, s1.detach())  # the student moved
        np.testing.assert_allclose(t1.numpy(), (decay * t0 + (1 - decay) * s1.detach()).numpy(), rtol=1e-5, atol=1e-6)


def test_bcp_unlabelled_loss_moves_the_student_not_the_teacher(one_thread):
    student = _net(0)
    optimizer = torch.optim.SGD(student.parameters(), lr=0.1)
    semi = SemiSupervised(student, SemiSupervisedSettings("bcp", ema_decay=0.9, rampup=0.0, pretrain=0.0),
                          lambda: None, optimizer)
    labeled, unlabeled = _batches()
    teacher_before = _params(semi.teacher)
    losses = semi.losses(labeled, unlabeled, build_loss("dice_ce"), progress=1.0, generator=torch.Generator())
    assert float(losses["unsupervised"].detach()) > 0
    losses["unsupervised"].backward()  # the pseudo-labelled voxels of the mixed patches alone
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    assert all(not p.requires_grad and p.grad is None for p in semi.teacher.parameters())
    assert all(torch.equal(a, b) for a, b in zip(teacher_before, semi.teacher.parameters()))
    # a full step: the student moves by its gradient, the teacher only by the EMA update
    student_before = _params(student)
    semi.step(labeled, unlabeled, build_loss("dice_ce"), optimizer, progress=1.0, generator=torch.Generator())
    decay = semi.average.current_decay()
    for t0, s0, t1, s1 in zip(teacher_before, student_before, semi.teacher.parameters(), student.parameters()):
        assert not torch.equal(s0, s1.detach())
        np.testing.assert_allclose(t1.numpy(), (decay * t0 + (1 - decay) * s1.detach()).numpy(), rtol=1e-5, atol=1e-6)


def test_mean_teacher_weight_zero_early_in_ramp_up():
    assert sigmoid_rampup(0.0, 0.4) == pytest.approx(np.exp(-5))
    assert sigmoid_rampup(0.2, 0.4) == pytest.approx(np.exp(-1.25))
    assert sigmoid_rampup(1.0, 0.4) == 1.0
    labeled, unlabeled = _batches()
    settings = SemiSupervisedSettings("mean_teacher")
    out = mean_teacher_step(_net(0), _net(1), build_loss("dice_ce"), labeled, unlabeled, 0.0, settings)
    assert torch.equal(out["loss"], out["supervised"])


def test_cps_updates_both_students(one_thread):
    student = _net(0)
    optimizer = torch.optim.SGD(student.parameters(), lr=0.1)
    semi = SemiSupervised(student, SemiSupervisedSettings("cps", rampup=0.0), lambda: _net(1), optimizer)
    labeled, unlabeled = _batches()
    losses = semi.losses(labeled, unlabeled, build_loss("dice_ce"), progress=1.0)
    losses["unsupervised"].backward()
    for net in (student, semi.partner):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
    before = _params(student), _params(semi.partner)
    semi.step(labeled, unlabeled, build_loss("dice_ce"), optimizer, progress=1.0)
    for old, net in zip(before, (student, semi.partner)):
        assert all(not torch.equal(a, b.detach()) for a, b in zip(old, net.parameters()))


def test_bcp_mixing_keeps_images_and_targets_together():
    n, shape = 3, (9, 12)
    # every sample carries its own identity in image and target, so a mismatch would show
    ids = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1)
    labeled_image = (10 + ids).expand(n, 1, *shape).clone()
    labeled_target = (1 + torch.arange(n)).view(n, 1, 1, 1).expand(n, 1, *shape).clone()
    unlabeled_image = (-10 - ids).expand(n, 1, *shape).clone()
    pseudo = (10 + torch.arange(n)).view(n, 1, 1, 1).expand(n, 1, *shape).clone()
    box = copy_paste_box(shape, 2 / 3, torch.Generator().manual_seed(1))
    assert int(box.sum()) == 6 * 8
    image, target, from_labeled = bidirectional_copy_paste(labeled_image, labeled_target, unlabeled_image, pseudo, box)
    assert image.shape == (2 * n, 1, *shape) and target.shape == (2 * n, 1, *shape)
    # a voxel from a labelled patch k (image 10 + k) carries its label 1 + k; from unlabelled patch k
    # (image -10 - k) the pseudo-label 10 + k
    from_l = image > 0
    assert torch.equal(from_l, from_labeled)
    assert torch.equal(target[from_l], (image[from_l] - 9).long())
    assert torch.equal(target[~from_l], (-image[~from_l]).long())
    # inward images: labelled outside the box; outward: labelled inside
    inside = box.bool().expand(n, 1, *shape)
    assert bool(from_labeled[:n][~inside].all()) and not bool(from_labeled[:n][inside].any())
    assert bool(from_labeled[n:][inside].all()) and not bool(from_labeled[n:][~inside].any())
    # both directions use every labelled and every unlabelled sample
    assert set(image[:n].unique().tolist()) == {10, 11, 12, -10, -11, -12}
    assert set(image[n:].unique().tolist()) == {10, 11, 12, -10, -11, -12}


def test_bcp_step_trains_the_student_and_ignores_unconfident_pseudo_labels(one_thread):
    student = _net(0)
    optimizer = torch.optim.SGD(student.parameters(), lr=0.1)
    semi = SemiSupervised(student, SemiSupervisedSettings("bcp", confidence_threshold=0.999, pretrain=0.2),
                          lambda: None, optimizer)
    labeled, unlabeled = _batches()
    # pre-training: the labelled patches only, and the teacher follows by EMA
    early = semi.losses(labeled, unlabeled, build_loss("dice_ce"), progress=0.1)
    assert semi.weight(0.1) == 0.0 and float(early["unsupervised"]) == 0.0
    assert semi.weight(0.2) == pytest.approx(0.5 * np.exp(-5)) and semi.weight(1.0) == 0.5
    losses = semi.losses(labeled, unlabeled, build_loss("dice_ce"), progress=1.0, generator=torch.Generator())
    # an untrained teacher is never 99.9 % sure: every pseudo-labelled voxel is ignored
    assert float(losses["unsupervised"].detach()) == 0.0
    assert float(losses["supervised"].detach()) > 0


def test_select_labeled_is_deterministic_and_checked():
    cases = [f"c{i}" for i in range(10)]
    first = select_labeled(cases, 3, seed=4)
    assert first == select_labeled(list(reversed(cases)), "3", seed=4) and len(first) == 3
    assert select_labeled(cases, 3, seed=5) != first or select_labeled(cases, 3, seed=6) != first
    assert select_labeled(cases, "c2,c1", seed=0) == ["c2", "c1"]
    with pytest.raises(MedsegError, match="at least one labelled"):
        select_labeled(cases, 0, seed=0)
    with pytest.raises(MedsegError, match="not labelled training cases"):
        select_labeled(cases, "c1,nope", seed=0)


# --- through the training loop -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def organs(tmp_path_factory):
    return make_organs3d(tmp_path_factory.mktemp("d") / "organs", cases=4, seed=0, shape=(6, 24, 24))


def _config(**semi):
    return TrainingConfig(network_options={"features": 4, "depth": 2}, patch_size=(4, 16, 16), batch_size=2,
                          iterations=2, threads=1, seed=0, log_every=1, memory_format="contiguous",
                          augmentation={"enabled": False}, semi_supervised=semi)


def test_train_semi_supervised_records_settings(organs, tmp_path, one_thread):
    result = train(organs, tmp_path / "m", _config(method="mean_teacher", labeled=2), progress=False)
    config = json.loads((result.folder / "config.json").read_text(encoding="utf-8"))
    semi = config["training"]["semi_supervised"]
    # the training cases (after the automatic validation hold-out) split into 2 labelled + the rest
    assert semi["method"] == "mean_teacher" and len(semi["labeled"]) == 2
    assert sorted(semi["labeled"] + semi["unlabeled"] + config["val_cases"]) == [f"case_{i:03d}" for i in range(4)]
    assert sorted(config["train_cases"]) == sorted(semi["labeled"])
    assert {"ema_decay", "rampup", "unlabeled_batch_size", "confidence_threshold", "weight"} <= set(semi)
    log = (result.folder / "training_log.csv").read_text(encoding="utf-8")
    assert "ssl_unsupervised" in log


def _write_folder(folder, images):
    folder.mkdir()
    for i, image in enumerate(images):
        write_image(image, folder / f"extra{i}_0000.nii.gz")
    return folder


def _never(iteration, loss):
    raise AssertionError("training started despite bad input")


@pytest.mark.parametrize("kind, message", [
    ("channels", "2 channel"), ("dims", "2D"), ("both", "both labelled"),
])
def test_bad_unlabelled_input_stops_before_training(organs, tmp_path, kind, message, one_thread):
    rng = np.random.default_rng(0)
    good = Image(rng.random((1, 6, 24, 24), dtype=np.float32), spacing=(3.0, 1.0, 1.0))
    image = {
        "channels": Image(rng.random((2, 6, 24, 24), dtype=np.float32), spacing=(3.0, 1.0, 1.0)),
        "dims": Image(rng.random((1, 24, 24), dtype=np.float32), spacing=(1.0, 1.0)),
        "grid": Image(rng.random((1, 6, 24, 24), dtype=np.float32), spacing=(9.0, 3.0, 3.0)),
        "both": good,
    }[kind]
    folder = _write_folder(tmp_path / "extra", [good, image])
    labeled = 3
    if kind == "both":  # an unlabelled image named like a labelled case
        (folder / "extra1_0000.nii.gz").rename(folder / "case_000_0000.nii.gz")
        labeled = "case_000,case_001"
    with pytest.raises(MedsegError, match=message) as info:
        train(organs, tmp_path / "m", _config(method="bcp", labeled=labeled, unlabeled_folder=str(folder)),
              progress=False, on_iteration=_never)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "m").exists()  # no output: not even an empty model folder


def test_unlabelled_image_on_another_grid_is_refused_when_nothing_is_resampled(tmp_path):
    """Without a target spacing (a plan that keeps each case's grid) an unlabelled image must lie within the
    labelled cases' spacings; with one (every automatic plan) it is resampled like the labelled cases."""
    from medseg.training.unlabeled import check_unlabeled_image

    rng = np.random.default_rng(0)
    other = Image(rng.random((1, 6, 24, 24), dtype=np.float32), spacing=(9.0, 3.0, 3.0))
    labelled = (np.array([3.0, 1.0, 1.0]), np.array([3.0, 1.0, 1.0]))
    with pytest.raises(MedsegError, match="another grid"):
        check_unlabeled_image(other, tmp_path / "x.nii.gz", 1, 3, labelled)
    check_unlabeled_image(other, tmp_path / "x.nii.gz", 1, 3, None)


def test_zero_labelled_cases_is_an_error(organs, tmp_path, one_thread):
    with pytest.raises(MedsegError, match="at least one labelled"):
        train(organs, tmp_path / "m", _config(method="bcp", labeled=0), progress=False, on_iteration=_never)


def test_every_case_labelled_and_selected_leaves_nothing_unlabelled(organs, tmp_path, one_thread):
    with pytest.raises(MedsegError, match="no unlabelled case"):
        train(organs, tmp_path / "m", _config(method="cps", labeled=3), val_cases=["case_003"], progress=False,
              on_iteration=_never)


def test_dataset_cases_without_labels_are_unlabelled(organs, tmp_path, one_thread):
    import shutil

    from medseg.datasets.check import check_dataset

    root = tmp_path / "partial"
    shutil.copytree(organs, root)
    (root / "labelsTr" / "case_003.nii.gz").unlink()
    assert not check_dataset(root).ok  # a missing label is a problem unless the dataset allows it ...
    meta = json.loads((root / "dataset.json").read_text(encoding="utf-8"))
    meta["allow_unlabeled"] = True
    (root / "dataset.json").write_text(json.dumps(meta), encoding="utf-8")
    report = check_dataset(root)
    assert report.ok and report.summary["unlabeled_cases"] == 1
    assert [c.name for c in load_dataset(root).unlabeled_cases] == ["case_003"]
    # supervised training leaves it out; semi-supervised uses it without a label
    result = train(root, tmp_path / "sup", _config(method="none", labeled=3), progress=False)
    assert "case_003" not in json.loads((result.folder / "config.json").read_text(encoding="utf-8"))["train_cases"]
    result = train(root, tmp_path / "semi", _config(method="cps", labeled=3), progress=False)
    semi = json.loads((result.folder / "config.json").read_text(encoding="utf-8"))["training"]["semi_supervised"]
    assert semi["unlabeled"] == ["case_003"]
    with pytest.raises(MedsegError, match="without a label file"):
        train(root, tmp_path / "bad", _config(method="cps", labeled="case_000,case_003"), progress=False)


@pytest.mark.parametrize("method", ["mean_teacher", "cps"])
def test_semi_supervised_resume_matches_uninterrupted_run(organs, tmp_path, method, one_thread):
    from safetensors.torch import load_file

    def config():
        c = _config(method=method, labeled=2)
        c.iterations, c.checkpoint_every = 4, 100
        return c

    train(organs, tmp_path / "full", config(), progress=False)

    def interrupt(iteration, loss):
        if iteration == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(organs, tmp_path / "split", config(), progress=False, on_iteration=interrupt)
    torch.manual_seed(12345)  # resume restores every random state, the teacher and the partner
    train(organs, tmp_path / "split", config(), resume=True, progress=False)
    full, split = (load_file(tmp_path / n / "model.safetensors") for n in ("full", "split"))
    for key in full:
        assert torch.equal(full[key], split[key]), key


def test_unlabelled_cases_never_validate(organs, tmp_path, one_thread):
    import shutil

    root = tmp_path / "partial"
    shutil.copytree(organs, root)
    (root / "labelsTr" / "case_001.nii.gz").unlink()
    meta = json.loads((root / "dataset.json").read_text(encoding="utf-8"))
    meta["allow_unlabeled"] = True
    (root / "dataset.json").write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(MedsegError, match="validation case.* without a label"):
        train(root, tmp_path / "a", _config(method="bcp", labeled=1), val_cases=["case_001"], progress=False,
              on_iteration=_never)
    # a fold that holds the unlabelled case out gives it back to the unlabelled pool
    splits = {"train": ["case_000", "case_002"], "val": ["case_001", "case_003"]}
    (root / "splits.json").write_text(json.dumps(splits), encoding="utf-8")
    config = _config(method="bcp", labeled=1)
    config.iterations = 1
    result = train(root, tmp_path / "b", config, fold=0, progress=False)
    saved = json.loads((result.folder / "config.json").read_text(encoding="utf-8"))
    assert "case_001" not in saved["val_cases"] and "case_001" in saved["training"]["semi_supervised"]["unlabeled"]
