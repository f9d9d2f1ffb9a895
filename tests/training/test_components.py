"""Small pieces of the trainer: schedule, config parsing, checkpoints and RNG, log, batches, cache, folds."""

import json
import random

import numpy as np
import pytest
import torch

from medseg.errors import MedsegError
from medseg.training.checkpoint import load_checkpoint, rng_states, save_checkpoint, set_rng_states
from medseg.training.config import TrainingConfig, parse_duration, parse_size
from medseg.training.data import BatchProducer, LabelMapping, make_batch, prepare_case
from medseg.training.logging import TrainingLog
from medseg.training.cases import select_cases
from medseg.planning.training_rules import rule_batch_size, rule_patch_size, rule_preprocessing
from medseg.training.schedule import learning_rate_factor, training_progress


def test_schedules():
    assert learning_rate_factor(0.0, 100, "poly") == 1.0
    assert learning_rate_factor(1.0, 100, "poly") == pytest.approx(1e-3)
    assert learning_rate_factor(0.5, 100, "cosine") == pytest.approx(0.5)
    assert learning_rate_factor(0.3, 100, "constant") == 1.0
    assert learning_rate_factor(0.0, 0, "poly", warmup_iterations=10) == pytest.approx(0.1)
    factors = [learning_rate_factor(p, 1000, "poly") for p in np.linspace(0, 1, 11)]
    assert all(a >= b for a, b in zip(factors, factors[1:]))


def test_progress_over_time_budget_only_and_both():
    assert training_progress(10, 30.0, None, 60.0) == 0.5
    assert training_progress(90, 30.0, 100, 60.0) == 0.9
    assert training_progress(500, 90.0, None, 60.0) == 1.0


def test_config_parsing_and_validation():
    assert parse_duration("20m") == 1200 and parse_duration("90s") == 90 and parse_duration("1.5h") == 5400
    assert parse_size("96,96") == (96, 96) and parse_size("64x128x128") == (64, 128, 128)
    assert parse_size("96", 3) == (96, 96, 96)
    with pytest.raises(MedsegError):
        parse_duration("soon")
    with pytest.raises(MedsegError):
        parse_size("a,b")
    assert TrainingConfig().time_limit is None  # no budget given: the budget rule decides when training starts
    with pytest.raises(MedsegError, match="optimizer"):
        TrainingConfig(iterations=1, optimizer="adam9")
    c = TrainingConfig(iterations=3, patch_size=(32, 32))
    assert TrainingConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    with pytest.raises(MedsegError, match="unknown training option"):
        TrainingConfig.from_dict({"iterations": 3, "bogus": 1})


def test_checkpoint_round_trip_restores_model_optimizer_and_rngs(tmp_path):
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(net.parameters())
    net(torch.randn(4, 3)).sum().backward()
    opt.step()
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    save_checkpoint(tmp_path / "c.pt", net, opt, iteration=7, elapsed=1.5, extra={"best_metric": 0.5})
    expected = (random.random(), np.random.rand(), torch.rand(1))
    other = torch.nn.Linear(3, 2)
    other_opt = torch.optim.AdamW(other.parameters())
    payload = load_checkpoint(tmp_path / "c.pt", other, other_opt)
    assert payload["iteration"] == 7 and payload["elapsed"] == 1.5 and payload["extra"]["best_metric"] == 0.5
    assert torch.equal(other.weight, net.weight)
    assert other_opt.state_dict()["state"][0]["step"] == opt.state_dict()["state"][0]["step"]
    assert (random.random(), np.random.rand(), torch.rand(1)) == expected
    with pytest.raises(MedsegError, match="does not fit"):
        load_checkpoint(tmp_path / "c.pt", torch.nn.Linear(5, 2))
    states = rng_states()
    a = torch.rand(2)
    set_rng_states(states)
    assert torch.equal(torch.rand(2), a)


def test_training_log_resume_and_curve(tmp_path):
    log = TrainingLog(tmp_path, tensorboard=False)
    for i in range(1, 6):
        log.add({"iteration": i, "loss": 1.0 / i, **({"val_dice": 0.1 * i} if i % 2 == 0 else {})})
    log.write()
    assert log.plot().is_file()
    resumed = TrainingLog(tmp_path, resume=True, resume_iteration=3, tensorboard=False)
    assert [r["iteration"] for r in resumed.rows] == [1, 2, 3]
    assert resumed.rows[1]["val_dice"] == pytest.approx(0.2)


def test_label_mapping():
    m = LabelMapping([0, 255], ignore_label=128)
    assert m.encode(np.array([0, 255, 128])).tolist() == [0, 1, -1]
    with pytest.raises(MedsegError, match="not declared"):
        m.encode(np.array([0, 7]))
    assert m.decode(np.array([1, 0])).tolist() == [255, 0]
    assert LabelMapping([0, 1, 2, 3]).regions_as_indices({"wt": [1, 2, 3], "et": [3]}) == [[1, 2, 3], [3]]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from medseg.datasets import load_dataset, make_vessels2d

    root = make_vessels2d(tmp_path_factory.mktemp("v") / "v", cases=2, seed=0, size=40)
    ds = load_dataset(root)
    steps = rule_preprocessing(None, None, ds.channel_names, ds.file_ending, True, 2).value
    return ds, steps


def test_batches_depend_only_on_seed_and_iteration(prepared):
    ds, steps = prepared
    cases = [prepare_case(c, steps, LabelMapping([0, 1])) for c in ds.cases]
    kw = dict(seed=5, patch_size=(32, 32), batch_size=3, foreground_share=0.5)
    a = make_batch(cases, 4, **kw)
    b = make_batch(cases, 4, **kw)
    c = make_batch(cases, 5, **kw)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[0], c[0])
    assert a[0].shape == (3, 1, 32, 32) and a[1].dtype == torch.int64
    with BatchProducer(lambda it: make_batch(cases, it, **kw), start=4, prefetch=2) as producer:
        first, second = producer.next(), producer.next()
    assert torch.equal(first[0], a[0]) and torch.equal(second[0], c[0])


def test_producer_hands_errors_to_the_consumer():
    def make(it):
        if it == 1:
            raise ValueError("broken batch")
        return it

    with BatchProducer(make) as producer:
        assert producer.next() == 0
        with pytest.raises(ValueError, match="broken batch"):
            producer.next()


def test_memory_mapped_cache_matches_memory(prepared, tmp_path):
    ds, steps = prepared
    mem = prepare_case(ds.cases[0], steps, LabelMapping([0, 1]))
    mm = prepare_case(ds.cases[0], steps, LabelMapping([0, 1]), cache_dir=tmp_path / "cache")
    assert isinstance(mm.image, np.memmap)
    np.testing.assert_array_equal(np.asarray(mm.image), mem.image)
    np.testing.assert_array_equal(np.asarray(mm.label), mem.label)
    half = prepare_case(ds.cases[0], steps, LabelMapping([0, 1]), dtype="float16")
    assert half.image.dtype == np.float16


def test_automatic_defaults():
    def steps(*args):
        return rule_preprocessing(None, None, *args).value

    def patch(shapes, dims, divisor):
        return tuple(rule_patch_size((), None, shapes, dims, divisor).value)

    assert steps(["R", "G", "B"], ".png", True, 2)[0] == {"name": "green_channel"}
    assert steps(["R", "G", "B"], ".png", True, 2)[-1] == {"name": "zscore", "mask": "roi"}
    assert steps(["CT"], ".nii.gz", False, 3) == [{"name": "zscore"}]
    assert patch([(584, 565)] * 3, 2, (16, 16)) == (128, 128)
    assert patch([(50, 70)], 2, (16, 16)) == (64, 80)
    assert patch([(20, 200, 200)], 3, (1, 16, 16)) == (20, 64, 64)
    assert rule_batch_size(0, None, (128, 128)).value == 4 and rule_batch_size(0, None, (64, 64, 64)).value == 2


def test_case_selection(prepared):
    ds, _ = prepared
    assert select_cases(ds) == (["case_000", "case_001"], [])
    assert select_cases(ds, val_cases=["case_001"]) == (["case_000"], ["case_001"])
    with pytest.raises(MedsegError, match="not in the dataset"):
        select_cases(ds, val_cases=["nope"])
    with pytest.raises(MedsegError):
        select_cases(ds, fold="x")


def test_folds_cover_every_case(tmp_path):
    from medseg.datasets import load_dataset, make_vessels2d

    ds = load_dataset(make_vessels2d(tmp_path / "v", cases=5, seed=0, size=32))
    vals = [select_cases(ds, fold=k)[1] for k in range(5)]
    assert sorted(n for v in vals for n in v) == sorted(c.name for c in ds.cases)
    train, val = select_cases(ds, fold=2)
    assert set(train).isdisjoint(val) and select_cases(ds, fold=2) == (train, val)
    with pytest.raises(MedsegError, match="fold 7"):
        select_cases(ds, fold=7)
