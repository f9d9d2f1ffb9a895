"""Training in several processes (DistributedDataParallel over gloo, medseg.training.distributed).

The equivalence: one process with batch 4 and two processes with batch 2 each draw the same 4 patches per
step (make_batch's shard), and DDP averages the two halves' gradients, which for a per-patch mean loss
(cross-entropy + per-patch soft Dice, instance norm) is the gradient of the whole batch. Only the order of
floating-point sums differs, hence the tolerance.
"""

import csv
import functools
import json
import os
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from medseg.datasets import load_dataset, make_vessels2d
from medseg.errors import MedsegError
from medseg.training.config import TrainingConfig
from medseg.training.data import make_batch, prepare_case
from medseg.training.distributed import DistributedRun, failure_line, launch, launcher_environment, rule_threads
from medseg.training.loop import train

#: Relative tolerance between the loss curves (and weights) of 1 × 4 and 2 × 2 patches: float32 sums in
#: another order over 6 AdamW steps (measured: ~1e-7 here).
LOSS_RTOL = 1e-4
WEIGHT_ATOL = 1e-4


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    return make_vessels2d(tmp_path_factory.mktemp("d") / "vessels", cases=3, seed=0, size=48)


def _config(batch_size, **kw):
    base = dict(network_options={"features": 4, "depth": 2, "norm": "instance"}, patch_size=(32, 32),
                batch_size=batch_size, iterations=6, checkpoint_every=3, log_every=1, threads=1, seed=3,
                warmup_iterations=2, augmentation={"enabled": False}, memory_format="contiguous")
    base.update(kw)
    return TrainingConfig(**base)


def _losses(folder):
    with open(folder / "training_log.csv", newline="", encoding="utf-8") as fh:
        return [float(r["loss"]) for r in csv.DictReader(fh)]


_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_WRITE_EVENTS = {"os.remove", "os.mkdir", "os.rmdir", "os.rename", "os.replace", "shutil.rmtree", "os.truncate"}


def _forbid_writes(out, rank):
    """From now on, any write into ``out`` by this process raises PermissionError (a Python audit hook,
    which stays for the life of the process)."""
    folder = os.path.realpath(out) + os.sep

    def hook(event, args):
        if event == "open":
            path, mode, flags = args
            writing = bool((mode and set(str(mode)) & set("wax+")) or (flags or 0) & _WRITE_FLAGS)
        elif event in _WRITE_EVENTS:
            path, writing = (args[1] if event in ("os.rename", "os.replace") else args[0]), True
        else:
            return
        if writing and isinstance(path, (str, bytes, os.PathLike)) and \
                (os.path.realpath(os.fsdecode(path)) + os.sep).startswith(folder):
            raise PermissionError(f"rank {rank} wrote {os.fsdecode(path)} into the model folder ({event})")

    sys.addaudithook(hook)


def _audited_train(dataset_root, out, config, val_cases):
    """A worker that fails on any write into ``out`` by a rank other than 0."""
    if os.environ["RANK"] != "0":
        _forbid_writes(out, os.environ["RANK"])
    return train(dataset_root, out, config, val_cases=val_cases, progress=False, check=False)


def test_the_write_guard_catches_writes(tmp_path):
    """The guard of the one-writer check fails on a write (so that test can fail)."""
    guarded, elsewhere = tmp_path / "guarded", tmp_path / "elsewhere"
    guarded.mkdir()
    (guarded / "existing.txt").write_text("x", encoding="utf-8")
    _forbid_writes(guarded, "1")
    with pytest.raises(PermissionError, match="rank 1 wrote"):
        (guarded / "new.txt").write_text("x", encoding="utf-8")
    # torch.save and safetensors open files in C++, unseen by the hook; medseg writes every file through
    # atomic_path (a temporary file beside it, then a rename), which the hook sees
    from medseg.fileutil import atomic_path

    with pytest.raises(MedsegError, match="cannot write"):  # atomic_path words the PermissionError
        with atomic_path(guarded / "checkpoint.pt") as tmp:
            torch.save({}, tmp)
    (elsewhere).mkdir()
    (elsewhere / "a.txt").write_text("x", encoding="utf-8")
    with pytest.raises(PermissionError):
        os.replace(elsewhere / "a.txt", guarded / "a.txt")
    with pytest.raises(PermissionError):
        (guarded / "existing.txt").unlink()
    assert (guarded / "existing.txt").read_text(encoding="utf-8") == "x"  # reading is allowed


def test_two_processes_train_like_one_with_the_same_global_batch(tiny_dataset, tmp_path):
    """1 process × batch 4 == 2 processes × batch 2 (loss curve and weights); only rank 0 writes; the
    folder predicts as usual."""
    threads = torch.get_num_threads()
    try:  # memory-mapped cache: rank 1's must go elsewhere than the model folder
        one = train(tiny_dataset, tmp_path / "one", _config(4, cache="mmap"), val_cases=["case_002"], progress=False)
    finally:
        torch.set_num_threads(threads)
    two = launch(2, functools.partial(_audited_train, tiny_dataset, tmp_path / "two", _config(2, cache="mmap"),
                                      ["case_002"]))
    assert two.iterations == one.iterations == 6 and two.rank == 0

    curve_one, curve_two = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(curve_one) == len(curve_two) == 6
    np.testing.assert_allclose(curve_two, curve_one, rtol=LOSS_RTOL)
    assert curve_two[-1] < curve_two[0]  # it trained
    w1, w2 = load_file(tmp_path / "one" / "model.safetensors"), load_file(tmp_path / "two" / "model.safetensors")
    assert w1.keys() == w2.keys()
    for key in w1:
        torch.testing.assert_close(w2[key], w1[key], atol=WEIGHT_ATOL, rtol=LOSS_RTOL)

    # one writer: the same files as a single process, nothing per rank
    assert {p.name for p in (tmp_path / "two").iterdir()} == {p.name for p in (tmp_path / "one").iterdir()}
    assert sorted(p.name for p in (tmp_path / "two" / "cache").iterdir()) == \
        sorted(p.name for p in (tmp_path / "one" / "cache").iterdir())
    rules = {r["name"]: r for r in json.loads((tmp_path / "two" / "rules.json").read_text(encoding="utf-8"))}
    assert rules["distributed.global_batch"]["value"] == {"per_process": 2, "processes": 2, "global": 4}
    assert rules["distributed.backend"]["value"] == "gloo"
    assert "distributed.backend" not in json.loads((tmp_path / "one" / "rules.json").read_text(encoding="utf-8"))
    checkpoint = torch.load(tmp_path / "two" / "checkpoint_last.pt", weights_only=True)
    assert checkpoint["iteration"] == 6 and not any(k.startswith("module.") for k in checkpoint["model"])

    from medseg.inference.predictor import Predictor

    image = load_dataset(tiny_dataset).case("case_002").read_image()
    labels_one = Predictor.from_folder(tmp_path / "one").predict(image).array
    labels_two = Predictor.from_folder(tmp_path / "two").predict(image).array
    assert labels_two.shape == labels_one.shape and set(np.unique(labels_two)) <= {0, 1}
    assert np.mean(labels_two == labels_one) > 0.99


def test_ranks_draw_slices_of_one_global_batch(tiny_dataset):
    """Rank r's patches are patches r·N … (r+1)·N − 1 of the single-process global batch."""
    from medseg.preprocessing.grid import LabelMapping

    mapping = LabelMapping([0, 1], None)
    dataset = load_dataset(tiny_dataset)
    cases = [prepare_case(dataset.case(c.name), [{"name": "zscore"}], mapping) for c in dataset.cases]
    batch = functools.partial(make_batch, cases, 7, seed=5, patch_size=(16, 16), foreground_share=0.5)
    whole_image, whole_label = batch(batch_size=6)
    for rank in range(3):
        image, label = batch(batch_size=2, shard=(rank, 3))
        assert torch.equal(image, whole_image[2 * rank:2 * rank + 2])
        assert torch.equal(label, whole_label[2 * rank:2 * rank + 2])


def test_process_placement_rules():
    assert launcher_environment({}) is None
    assert launcher_environment({"RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "h", "MASTER_PORT": "1"}) is None
    place = launcher_environment({"RANK": "1", "WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "h",
                                  "MASTER_PORT": "29500"})
    assert place == {"rank": 1, "world_size": 4, "local_world_size": 2}
    assert rule_threads(None, 2, 2).value == 1 and rule_threads(None, 8, 3).value == 2
    assert rule_threads(None, 1, 4).value == 1
    user = rule_threads(3, 2, 2)
    assert user.value == 3 and user.overridden_by_user
    single = DistributedRun()
    assert single.agree(1.5) == 1.5 and single.mean(2.0) == 2.0 and single.batch_note(4) == ""
    model = torch.nn.Linear(2, 2)
    assert single.wrap(model) is model


def test_failure_line_names_the_rank_and_the_message():
    from types import SimpleNamespace

    def failed(message, exitcode=1):
        failure = SimpleNamespace(message=message, exitcode=exitcode)
        return SimpleNamespace(get_first_failure=lambda: (1, failure))

    assert failure_line(failed({"message": "DatasetError: /d: dataset.json not found", "extraInfo": {}})) == \
        "training process 1 failed: /d: dataset.json not found"
    assert failure_line(failed("RuntimeError: boom\nmore")) == "training process 1 failed: RuntimeError: boom"
    assert failure_line(failed("To enable traceback see: https://x", 3)) == \
        "training process 1 ended with exit code 3 without reporting an error"


def test_bad_process_count(tiny_dataset, tmp_path):
    with pytest.raises(MedsegError, match="--nproc"):
        train(tiny_dataset, tmp_path / "m", _config(2), nproc=0, progress=False)
    with pytest.raises(MedsegError, match="leave out --nproc"):
        train(tiny_dataset, tmp_path / "m", _config(2, unfreeze_schedule=[[0, "decoder"]]), progress=False, nproc=2)


def _fail_on_rank_one(iteration, loss):
    if iteration == 2 and os.environ.get("RANK") == "1":
        raise MedsegError("rank one stopped on purpose")


@pytest.mark.slow
def test_a_failing_rank_ends_the_run_in_one_line(tiny_dataset, tmp_path):
    import time

    start = time.monotonic()
    with pytest.raises(MedsegError) as info:
        train(tiny_dataset, tmp_path / "m", _config(2), val_cases=["case_002"], progress=False, nproc=2,
              on_iteration=_fail_on_rank_one)
    assert str(info.value) == "training process 1 failed: rank one stopped on purpose"
    assert time.monotonic() - start < 300  # rank 0 did not wait for the process-group timeout
    assert not (tmp_path / "m" / "model.safetensors").exists()


@pytest.mark.slow
def test_resume_in_two_processes_continues_exactly(tiny_dataset, tmp_path):
    """2 processes × 6 steps == 2 processes × 3 steps, then --resume to 6 (constant schedule: the budget
    change does not change the learning rate)."""
    config = functools.partial(_config, 2, schedule="constant")
    train(tiny_dataset, tmp_path / "full", config(), val_cases=["case_002"], progress=False, nproc=2)
    train(tiny_dataset, tmp_path / "split", config(iterations=3), val_cases=["case_002"], progress=False, nproc=2)
    result = train(tiny_dataset, tmp_path / "split", config(), resume=True, progress=False, nproc=2)
    assert result.iterations == 6
    full = load_file(tmp_path / "full" / "model.safetensors")
    split = load_file(tmp_path / "split" / "model.safetensors")
    for key in full:
        assert torch.equal(full[key], split[key]), key
    np.testing.assert_array_equal(_losses(tmp_path / "split"), _losses(tmp_path / "full"))


@pytest.mark.slow
@pytest.mark.data
def test_cli_two_processes_on_drive(shared_data, tmp_path, capfd):
    """`medseg train --nproc 2` on real DRIVE images, then `medseg predict` with the folder."""
    from medseg.cli import main
    from medseg.io import read_image

    data = tmp_path / "drive"
    assert main(["convert", "drive", str(shared_data / "DRIVE"), str(data)]) == 0
    model = tmp_path / "model"
    assert main(["train", str(data), "--out", str(model), "--nproc", "2", "--batch-size", "2", "--iterations", "4",
                 "--patch-size", "64", "--features", "8", "--val-cases", "drive_40", "--threads", "1",
                 "--no-progress"]) == 0
    err = capfd.readouterr().err  # the workers write to the inherited file descriptor
    assert "2 patches per process × 2 processes = 4 per step" in err and err.count("model folder:") == 1
    rules = {r["name"]: r["value"] for r in json.loads((model / "rules.json").read_text(encoding="utf-8"))}
    assert rules["distributed.global_batch"]["global"] == 4 and rules["distributed.threads"] == 1
    case = sorted((data / "imagesTs").iterdir())[0]
    assert main(["predict", str(model), "-i", str(case), "-o", str(tmp_path / "pred"), "--roi",
                 str(data / "roisTs" / case.name.replace("_0000", ""))]) == 0
    predicted = read_image(next((tmp_path / "pred").glob("*.png")))
    assert predicted.spatial_shape == read_image(case).spatial_shape
