"""The training loop: plain functions, no trainer class.

:func:`train` reads a dataset, prepares cases once, builds network / loss / optimizer, and runs
iterations until the iteration count or the wall-clock budget is used, validating on held-out cases
with full-image sliding-window prediction, writing checkpoints atomically, and recording the model
folder (see :mod:`medseg.model_folder`). Everything a resumed run needs is in ``checkpoint_last.pt``;
batches are a pure function of ``(seed, iteration)``, so ``--resume`` continues exactly.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from medseg.constants import ANISOTROPY_RATIO
from medseg.errors import MedsegError
from medseg.losses import IGNORE_INDEX, build_loss
from medseg.model_folder import (BEST_CHECKPOINT, CONFIG_NAME, LAST_CHECKPOINT, PLAN_NAME, PRUNING_NAME, RULES_NAME,
                                 WEIGHTS_NAME, ModelConfig, load_config, load_rules, save_config, save_rules,
                                 save_weights)
from medseg.planning.training_rules import PROMPT_VALIDATION_SLICES, describe
from medseg.training.averaging import WeightAverage
from medseg.training.cases import select_cases  # noqa: F401 (documented here)
from medseg.training.checkpoint import load_checkpoint, save_checkpoint
from medseg.training.config import TrainingConfig
from medseg.training.data import (BatchProducer, LabelMapping, PreparedCase, batch_generators, make_batch,
                                  prepare_case)
from medseg.training.layout import load_plan
from medseg.training.logging import TrainingLog
from medseg.training.memory_format import choose_memory_format, torch_format
from medseg.training.networks import network_needs, setup_finetuning
from medseg.training.prompted import prompt_structures
from medseg.training.scope import scoped_run_state
from medseg.training.selection import choose_after_training
from medseg.training.spec import RunSpec, RunStart, complete_run, start_run
from medseg.training.schedule import learning_rate_factor, training_progress
from medseg.training.step import DivergenceCheck, build_optimizer, set_learning_rate, train_step
from medseg.training.validation import select_prune_level, validate


# --- the whole run ---------------------------------------------------------------------------------
@dataclass
class TrainingResult:
    """What :func:`train` returns."""

    folder: Path
    iterations: int
    elapsed: float
    best_metric: float | None
    last_metrics: dict[str, float] = field(default_factory=dict)


def _check(dataset: Any, console: Any) -> None:
    from medseg.datasets import check_dataset

    report = check_dataset(dataset)
    if report.warnings:
        cases = ", ".join(w.case or "-" for w in report.warnings[:5]) + (", …" if len(report.warnings) > 5 else "")
        console.print(f"[yellow]warning:[/] {len(report.warnings)} case(s) to look at ({cases}): "
                      f"{report.warnings[0].problem}; `medseg check` lists them", highlight=False)
    if report.problems:
        lines = [f"{p.case or '-'}: {p.file or ''}: {p.problem}" for p in report.problems[:10]]
        more = f" (and {len(report.problems) - 10} more)" if len(report.problems) > 10 else ""
        raise MedsegError(
            f"the dataset has {len(report.problems)} problem(s){more}; fix them before training "
            "(medseg check shows them all):\n  " + "\n  ".join(lines), dataset.root)


def train(
    dataset: Any,
    out: str | Path,
    config: TrainingConfig | None = None,
    *,
    plan: str | Path | dict | None = None,
    configuration: str | None = None,
    preprocessing: list[dict[str, Any]] | None = None,
    fold: int | str | None = None,
    val_cases: Sequence[str] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    check: bool = True,
    progress: bool = True,
    on_iteration: Callable[[int, float], None] | None = None,
    console: Any = None,
) -> TrainingResult:
    """Train a network on a dataset and write a model folder.

    Parameters
    ----------
    dataset : Dataset or path
        A :class:`medseg.datasets.Dataset` or its folder.
    out : path
        The model folder.
    config : TrainingConfig, optional
        Defaults: U-Net, automatic patch/batch size, 20 minutes. On ``resume`` the folder's own
        configuration is used and only the budget (iterations / time limit) of ``config`` is taken.
    plan : path, Plan or dict, optional
        A plan (plan.json): target spacing, patch and batch size, network, preprocessing, 2D/3D.
    configuration : {"2d", "3d"}, optional
        Use the plan's other configuration (e.g. a 2D network on slices of 3D data).
    preprocessing : list of dict, optional
        Preprocessing steps; default: the plan's, else :func:`default_preprocessing`.
    fold, val_cases
        See :func:`select_cases`.
    resume : bool
        Continue from ``out/checkpoint_last.pt`` exactly where it stopped.
    overwrite : bool
        Replace an existing model folder (otherwise an error).
    check : bool
        Run the dataset check first and stop on problems.
    progress : bool
        Show a rich progress bar.
    on_iteration : callable, optional
        ``on_iteration(iteration, loss)`` after each step (tests use it to simulate interruptions).

    Returns
    -------
    TrainingResult
    """
    from medseg.datasets import load_dataset

    if not hasattr(dataset, "cases"):
        dataset = load_dataset(dataset)
    out = Path(out)
    console = console or _console()
    if resume:
        spec, model_config = _resumed_spec(dataset, out, config)
        start, plan_dict, seed, threads = None, None, spec.config.seed, spec.config.threads
    else:
        if (out / CONFIG_NAME).is_file() and not overwrite:
            raise MedsegError("model folder exists; use --resume to continue or --overwrite to replace it", out)
        options = config or TrainingConfig()
        first = dataset.case(dataset.cases[0].name).read_image() if dataset.cases else None
        if first is None:
            raise MedsegError("the dataset has no cases", dataset.root)
        has_roi = any(c.roi_path is not None for c in dataset.cases)
        plan_dict = load_plan(plan, configuration)
        planned_dims = (plan_dict or {}).get("data_dims")
        if planned_dims is not None and planned_dims != first.spatial_dims:
            raise MedsegError(f"the plan was made for {planned_dims}D images but this dataset's images are "
                              f"{first.spatial_dims}D; plan this dataset with `medseg plan`",
                              plan if isinstance(plan, (str, Path)) else dataset.root)
        start = start_run(dataset, options, plan_dict, first.spatial_dims, has_roi, preprocessing, fold, val_cases)
        start = _set_apart_unlabeled(dataset, start, val_cases)
        spec, model_config, seed, threads = None, None, options.seed, options.threads
    if check:  # after the cheap argument checks, before any training
        _check(dataset, console)
    with scoped_run_state(threads, seed):
        return _run(dataset, out, start, spec, model_config, plan_dict, progress=progress, on_iteration=on_iteration,
                    console=console)


def _set_apart_unlabeled(dataset: Any, start: RunStart, named_val: Sequence[str] | None) -> RunStart:
    """Semi-supervised hook: labelled training cases, unlabelled ones recorded in the configuration
    (:func:`medseg.training.unlabeled.set_apart_unlabeled`)."""
    from medseg.training.unlabeled import set_apart_unlabeled

    train, val, semi = set_apart_unlabeled(dataset, start.config.semi_supervised, start.config.seed, start.train_names,
                                           start.val_names, named_val)
    return replace(start, train_names=tuple(train), val_names=tuple(val),
                   config=replace(start.config, semi_supervised=semi))


def _resumed_spec(dataset: Any, out: Path, config: TrainingConfig | None) -> tuple[RunSpec, ModelConfig]:
    """The run as recorded in the model folder; a resumed run may only change the budget and threads."""
    from medseg.planning.training_rules import Rule
    from medseg.training.layout import DataLayout

    if not (out / LAST_CHECKPOINT).is_file():
        raise MedsegError(f"nothing to resume: no {LAST_CHECKPOINT}", out)
    model_config = load_config(out)
    saved = TrainingConfig.from_dict(model_config.training)
    if config is not None and (config.iterations is not None or config.time_limit is not None):
        saved = replace(saved, iterations=config.iterations, time_limit=config.time_limit)
    if config is not None:
        saved = replace(saved, threads=config.threads)
    missing = sorted(set(model_config.train_cases + model_config.val_cases) - {c.name for c in dataset.cases})
    if missing:
        raise MedsegError(f"the model was trained on case(s) missing from this dataset: {', '.join(missing[:5])}",
                          dataset.root)
    recorded = tuple(Rule(**r) for r in load_rules(out))
    structure = next((r.value for r in recorded if r.name == "structure"), "compact")
    spec = RunSpec(saved, DataLayout.from_model_config(model_config), tuple(model_config.train_cases),
                   tuple(model_config.val_cases), structure,
                   tuple(model_config.tile_size) if model_config.tile_size else None, recorded)
    return spec, model_config


def _run(dataset: Any, out: Path, start: RunStart | None, spec: RunSpec | None, model_config: ModelConfig | None,
         plan_dict: dict | None, *, progress: bool, on_iteration: Callable[[int, float], None] | None,
         console: Any) -> TrainingResult:
    """Prepare the cases, complete the specification, build, loop, validate, choose, record."""
    resume = spec is not None
    names = (spec or start).train_names + (spec or start).val_names
    first = dataset.case(names[0]).read_image()
    data_dims, input_channels = first.spatial_dims, first.num_channels
    label_values = [v for v in dataset.label_values if v != dataset.ignore_label]
    mapping = LabelMapping(label_values, dataset.ignore_label)
    regions = dataset.regions or None
    num_classes = len(regions) if regions else mapping.num_classes
    layout = (spec or start).layout
    options = (spec or start).config

    cache_dir = out / "cache" if options.cache == "mmap" else None
    out.mkdir(parents=True, exist_ok=True)
    prepared: dict[str, PreparedCase] = {}
    for i, name in enumerate(names):
        prepared[name] = prepare_case(dataset.case(name), layout.preprocessing, mapping,
                                      target_spacing=layout.target_spacing, dtype=options.cache_dtype,
                                      cache_dir=cache_dir, seed=options.seed + i,
                                      crop_to_nonzero=layout.crop_to_nonzero, resampling=layout.resampling)
    train_names, val_names = (spec or start).train_names, (spec or start).val_names
    train_cases = [prepared[n] for n in train_names]
    val_prepared = [prepared[n] for n in val_names]
    in_channels = int(train_cases[0].image.shape[0])
    from medseg.training.unlabeled import prepare_unlabeled_cases

    unlabeled_cases = prepare_unlabeled_cases(dataset, options.semi_supervised, train_cases, input_channels, data_dims,
                                              layout, options.cache_dtype)
    # a promptable network (registry: promptable) is trained from boxes, one mask per prompt
    needs = network_needs((spec or start).config.network)
    structures = prompt_structures(label_values, dataset.labels, regions) if needs.promptable else {}
    if spec is None:
        spec = complete_run(start, [c.label[0] for c in train_cases], [c.spacing for c in train_cases],
                            [c.image.shape[1:] for c in train_cases], in_channels, num_classes, data_dims,
                            structures=list(structures))
        console.print("decisions (recorded in rules.json):", highlight=False)
        for rule in spec.rules:
            console.print("  " + describe(rule), highlight=False, soft_wrap=True)
    config = spec.config
    spatial_dims, slice_axis = layout.spatial_dims, layout.slice_axis
    steps, target_spacing = layout.preprocessing, layout.target_spacing
    network_options = dict(config.network_options)
    from medseg.nets import create_network

    if needs.promptable:
        num_classes = 2
    model = create_network(config.network, in_channels, num_classes, spatial_dims, **network_options)
    unfreezing = setup_finetuning(model, config, load_weights=not resume)

    mirror_axes = [a for a in range(data_dims) if a != slice_axis]
    if not resume:
        model_config = ModelConfig(
            network=config.network, network_options=network_options, in_channels=in_channels,
            input_channels=input_channels, data_dims=data_dims, slice_axis=slice_axis,
            crop_to_nonzero=layout.crop_to_nonzero, resampling=layout.resampling,
            num_classes=num_classes, spatial_dims=spatial_dims, channel_names=list(dataset.channel_names),
            labels={k: int(v) for k, v in dataset.labels.items()}, label_values=label_values,
            patch_size=list(config.patch_size), regions=regions,
            region_class_order=(dataset.raw or {}).get("regions_class_order") if regions else None,
            ignore_label=dataset.ignore_label, preprocessing=list(steps), target_spacing=target_spacing,
            file_ending=dataset.file_ending, uses_roi=any(c.roi_path is not None for c in dataset.cases),
            mirror_axes=mirror_axes, overlap=0.5, augmentation=config.augmentation, training=config.to_dict(),
            dataset=dataset.name, train_cases=list(train_names), val_cases=list(val_names),
            tile_size=list(spec.tile_size) if spec.tile_size else None,
        )
        for stale in (LAST_CHECKPOINT, BEST_CHECKPOINT, WEIGHTS_NAME, "training_log.csv", PRUNING_NAME, RULES_NAME):
            (out / stale).unlink(missing_ok=True)
    augment = _augmentation(config.augmentation, spatial_dims,
                            _anisotropic_axis(target_spacing) if spatial_dims == 3 else None,
                            IGNORE_INDEX if dataset.ignore_label is not None else None)
    loss_options = dict(config.loss_options)
    loss_options.setdefault("ignore_index", IGNORE_INDEX)
    loss_name = config.loss
    if regions:
        loss_name = "region" if loss_name == "dice_ce" else loss_name
        loss_options.setdefault("regions", mapping.regions_as_indices(regions))
    loss_options.setdefault("weighting", getattr(model, "deep_supervision_weighting", "halving"))
    loss_fn = build_loss(loss_name, **loss_options) if not needs.promptable else None  # prompts: their own loss

    def make(iteration: int):
        return make_batch(train_cases, iteration, seed=config.seed, patch_size=config.patch_size,
                          batch_size=config.batch_size, foreground_share=config.foreground_share,
                          augment=augment, label_pad_value=IGNORE_INDEX if dataset.ignore_label is not None else 0,
                          slice_axis=slice_axis)

    memory_format_name = config.memory_format
    if memory_format_name == "auto" and not needs.promptable:
        memory_format_name, timings = choose_memory_format(
            model, loss_fn, *make(0), spatial_dims,
            time_limit=config.time_limit, iterations=config.iterations)
        if timings:
            console.print("memory format: " + ", ".join(f"{k} {v:.3f} s/step" for k, v in timings.items())
                          + f" -> {memory_format_name}", highlight=False)
    memory_format = torch_format(memory_format_name, spatial_dims)
    model.to(memory_format=memory_format)
    average = WeightAverage(model, config.weight_average) if config.weight_average else None
    predicting = average.model if average else model  # what is validated, saved and predicted with
    recorded = config.to_dict()
    recorded["memory_format"] = memory_format_name
    # the augmentation actually used, written out so a run can be repeated
    model_config = replace(model_config, training=recorded, augmentation=augment.to_config() if hasattr(
        augment, "to_config") else ({"enabled": False} if augment is None else config.augmentation))
    save_config(out, model_config)
    if not resume:
        save_rules(out, [r.to_dict() for r in spec.rules])
    if plan_dict is not None and not resume:
        from medseg.fileutil import write_text_atomic

        write_text_atomic(out / PLAN_NAME, json.dumps(plan_dict, indent=2) + "\n")

    optimizer = build_optimizer(model, config)  # over all parameters: frozen ones simply get no gradient
    finetuning = bool(config.freeze_encoder or unfreezing)
    prompted = None
    if needs.promptable:
        from medseg.training.prompted import prompt_parts

        prompted = prompt_parts(model, optimizer, config, needs.encoder, train_cases, val_prepared, structures,
                                slice_axis, dataset.file_ending,
                                _recorded_value(spec, "prompt_validation", PROMPT_VALIDATION_SLICES), finetuning)
        make = prompted.make
        console.print(f"prompt training: {prompted.slices} training slice(s) with a structure", highlight=False)
    semi = _semi_supervised(config, model, optimizer, lambda: create_network(
        config.network, in_channels, num_classes, spatial_dims, **network_options).to(memory_format=memory_format))
    if semi is not None:
        predicting = semi.predicting

    start_iteration, elapsed_before, best = 0, 0.0, None
    if resume:
        payload = load_checkpoint(out / LAST_CHECKPOINT, model, optimizer)
        start_iteration, elapsed_before = payload["iteration"], payload["elapsed"]
        best = payload["extra"].get("best_metric")
        if average is not None:
            average.load_state_dict(payload["averaged_model"], payload["extra"]["average_updates"])
        if semi is not None:
            semi.load_state_dict(payload["extra"]["semi_supervised"])
        if unfreezing is not None:
            unfreezing(start_iteration)  # the stages already passed
    log = TrainingLog(out, resume=resume, resume_iteration=start_iteration if resume else None)

    session = Session(out, config, model, predicting, optimizer, loss_fn, average, unfreezing, finetuning,
                      memory_format, val_prepared, model_config, log, console, recorded, best,
                      next_validation=(start_iteration // config.val_every + 1) * config.val_every, semi=semi,
                      make_unlabeled=_unlabeled_batches(semi, config, unlabeled_cases, augment, slice_axis, console),
                      step=prompted.step if prompted else None, validator=prompted.validator if prompted else None)
    console.print(
        f"training {config.network} ({spatial_dims}D, {in_channels} channel(s), {num_classes} outputs) on "
        f"{len(train_cases)} case(s), validating on {len(val_prepared)}; patch {tuple(config.patch_size)}"
        f"{f' (slices across axis {slice_axis})' if slice_axis is not None else ''}, "
        f"batch {config.batch_size}, preprocessing {[s.get('name') for s in steps]}, "
        f"{torch.get_num_threads()} thread(s)" + (f"; resuming at iteration {start_iteration}" if resume else ""),
        highlight=False)
    iteration, elapsed, _ = _loop(session, make, start_iteration, elapsed_before, progress, on_iteration)
    return _finish(session, spec, iteration, elapsed, start_iteration, resume)


@dataclass
class Session:
    """What the loop, validation and checkpointing share during one run."""

    out: Path
    config: TrainingConfig
    model: torch.nn.Module
    predicting: torch.nn.Module     # what is validated, saved and predicted with (the weight average, if any)
    optimizer: torch.optim.Optimizer
    loss_fn: Callable
    average: WeightAverage | None
    unfreezing: Any
    finetuning: bool
    memory_format: torch.memory_format
    val_cases: list[PreparedCase]
    model_config: ModelConfig
    log: TrainingLog
    console: Any
    recorded: dict[str, Any]        # the resolved options, as stored in config.json and the checkpoints
    best: float | None = None
    last_metrics: dict[str, float] = field(default_factory=dict)
    next_validation: int = 0
    validated_at: int | None = None
    semi: Any = None                # SemiSupervised (teacher / partner) of a semi-supervised run
    make_unlabeled: Callable[[int], torch.Tensor] | None = None
    step: Callable[[Any], float] | None = None       # a network's own step (promptable: medseg.training.prompted)
    validator: Callable[[torch.nn.Module], dict[str, float]] | None = None  # and its own validation

    def checkpoint(self, path: Path, iteration: int, elapsed: float) -> None:
        extra = {"best_metric": self.best, "config": json.dumps(self.recorded)}
        if self.average is not None:
            extra["average_updates"] = self.average.updates
        if self.semi is not None:
            extra["semi_supervised"] = self.semi.state_dict()
        save_checkpoint(path, self.model, self.optimizer, iteration=iteration, elapsed=elapsed, extra=extra,
                        averaged=self.average.state_dict() if self.average else None)

    def validate(self, iteration: int, elapsed: float, step_seconds: float | None = None) -> dict[str, float]:
        """Validate, keep the best checkpoint by mean validation Dice, and schedule the next validation."""
        start = time.perf_counter()
        self.last_metrics = (self.validator(self.predicting) if self.validator is not None else
                             validate(self.predicting, self.val_cases, self.model_config, self.config.val_overlap))
        if self.best is None or self.last_metrics["val_dice"] > self.best:
            self.best = self.last_metrics["val_dice"]
            self.checkpoint(self.out / BEST_CHECKPOINT, iteration, elapsed)
        self.validated_at = iteration
        every = self.config.val_every
        share = self.config.val_time_share
        if share and step_seconds:
            # the validation-interval rule: validating takes at most `share` of the time
            seconds = time.perf_counter() - start
            every = max(every, math.ceil(seconds * (1 - share) / (share * step_seconds)))
        self.next_validation = iteration + every
        return self.last_metrics


def _loop(session: Session, make: Callable[[int], Any], start_iteration: int, elapsed_before: float,
          progress: bool, on_iteration: Callable[[int, float], None] | None) -> tuple[int, float, float]:
    """Steps until the budget is used; returns ``(iteration, elapsed, last learning rate)``."""
    config, console, log, out = session.config, session.console, session.log, session.out
    iteration, elapsed, lr = start_iteration, elapsed_before, 0.0
    losses: list[float] = []
    t0 = time.perf_counter()
    bar = _progress_bar(progress, console)
    task = bar.add_task("training", total=1000) if bar else None
    producer = BatchProducer(make, start=start_iteration, prefetch=config.prefetch)
    unlabeled = (BatchProducer(session.make_unlabeled, start=start_iteration, prefetch=config.prefetch)
                 if session.make_unlabeled is not None else None)
    semi_parts: list[dict[str, float]] = []
    divergence = DivergenceCheck()
    try:
        if bar:
            bar.start()
        while True:
            elapsed = elapsed_before + (time.perf_counter() - t0)
            if config.iterations is not None and iteration >= config.iterations:
                break
            if config.time_limit is not None and elapsed >= config.time_limit:
                break
            frac = training_progress(iteration, elapsed, config.iterations, config.time_limit)
            lr = config.learning_rate * learning_rate_factor(frac, iteration, config.schedule,
                                                             config.warmup_iterations)
            set_learning_rate(session.optimizer, lr)
            image, label = producer.next()
            image = image.contiguous(memory_format=session.memory_format)
            if session.unfreezing is not None:
                for name in session.unfreezing(iteration)[:1]:
                    console.print(f"iteration {iteration}: unfreezing (first: {name})", highlight=False)
            if session.semi is not None:  # semi-supervised: the method's step (medseg.training.semi_supervised)
                unlabeled_image = unlabeled.next().contiguous(memory_format=session.memory_format)
                parts = session.semi.step((image, label), unlabeled_image, session.loss_fn, session.optimizer, frac,
                                          config.grad_clip, batch_generators(config.seed + 104729, iteration)[1])
                loss = parts["loss"]
                semi_parts.append(parts)
            elif session.step is not None:
                loss = session.step((image, label))
            else:
                loss = train_step(session.model, session.loss_fn, session.optimizer, image, label, config.grad_clip,
                                  session.finetuning)
            if session.average is not None:
                session.average.update(session.model)
            iteration += 1
            losses.append(loss)
            elapsed = elapsed_before + (time.perf_counter() - t0)
            row: dict[str, Any] | None = None
            if iteration % config.log_every == 0:
                row = {"iteration": iteration, "elapsed": round(elapsed, 2), "lr": lr, "loss": float(np.mean(losses))}
                losses = []
                if semi_parts:
                    row.update({f"ssl_{k}": float(np.mean([p[k] for p in semi_parts])) for k in semi_parts[0]
                                if k != "loss"})
                    semi_parts = []
                divergence.check(row["loss"], iteration, console)
            if session.val_cases and iteration >= session.next_validation:
                step_seconds = (elapsed - elapsed_before) / max(1, iteration - start_iteration)
                metrics = session.validate(iteration, elapsed, step_seconds)
                row = {**(row or {"iteration": iteration, "elapsed": round(elapsed, 2), "lr": lr}), **metrics}
            if row is not None:
                log.add(row)
            if iteration % config.checkpoint_every == 0:
                session.checkpoint(out / LAST_CHECKPOINT, iteration, elapsed)
                log.write()
            if bar:
                shown = f"it {iteration} loss {loss:.3f}" + (
                    f" val dice {session.last_metrics['val_dice']:.3f}" if session.last_metrics else "")
                bar.update(task, completed=int(1000 * training_progress(
                    iteration, elapsed, config.iterations, config.time_limit)), description=shown)
            if on_iteration is not None:
                on_iteration(iteration, loss)
    except KeyboardInterrupt:
        # keep the finished iterations: the next --resume starts from here
        session.checkpoint(out / LAST_CHECKPOINT, iteration, elapsed)
        log.write()
        log.plot()
        raise
    finally:
        producer.close()
        if unlabeled is not None:
            unlabeled.close()
        if bar:
            bar.stop()
    if losses:
        log.add({"iteration": iteration, "elapsed": round(elapsed, 2), "lr": lr, "loss": float(np.mean(losses))})
    return iteration, elapsed, lr


def _finish(session: Session, spec: RunSpec, iteration: int, elapsed: float, start_iteration: int,
            resume: bool) -> TrainingResult:
    """Last validation, weights, pruning level, the after-training rules, logs."""
    config, out, log, console = session.config, session.out, session.log, session.console
    val_cases, predicting = session.val_cases, session.predicting
    if val_cases and session.validated_at != iteration and iteration > start_iteration:
        metrics = session.validate(iteration, elapsed)
        log.rows[-1].update(metrics) if log.rows and log.rows[-1].get("iteration") == iteration else \
            log.add({"iteration": iteration, "elapsed": round(elapsed, 2), **metrics})
    session.checkpoint(out / LAST_CHECKPOINT, iteration, elapsed)
    predicting.to(memory_format=torch.contiguous_format)  # safetensors stores contiguous tensors only
    save_weights(predicting, out / WEIGHTS_NAME)
    model_config = session.model_config
    if val_cases and config.prune_selection and hasattr(predicting, "set_prune_level"):
        choice = select_prune_level(predicting, val_cases, model_config, out, config.val_overlap)
        console.print(f"prune level {choice['level']} chosen (of {len(choice['levels'])}): "
                      + ", ".join(f"L{r['level']} dice {r['val_dice']:.4f} {r['seconds_per_case']:.3f} s"
                                  for r in choice["levels"]), highlight=False)
    if (val_cases or not resume) and session.step is None:  # thresholds and postprocessing: not for prompts
        model_config, chosen = choose_after_training(predicting, val_cases, model_config, config, spec.structure,
                                                     config.val_overlap)
        save_config(out, model_config)
        recorded_rules = [r for r in load_rules(out) if r["name"] not in {c.name for c in chosen}]
        save_rules(out, recorded_rules + [r.to_dict() for r in chosen])
        for rule in chosen:
            console.print("  " + describe(rule), highlight=False, soft_wrap=True)
    log.write()
    log.plot()
    log.close()
    summary = f"finished {iteration} iterations in {elapsed:.0f} s"
    if session.last_metrics:
        summary += "; " + ", ".join(f"{k} {v:.4f}" for k, v in session.last_metrics.items())
    console.print(summary, highlight=False)
    return TrainingResult(out, iteration, elapsed, session.best, session.last_metrics)


def _semi_supervised(config: TrainingConfig, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     build_network: Callable[[], torch.nn.Module]) -> Any:
    """The teacher / partner of a semi-supervised run (None when supervised)."""
    if config.semi_supervised is None or config.semi_supervised["method"] == "none":
        return None
    from medseg.training.semi_supervised import SemiSupervised, SemiSupervisedSettings

    return SemiSupervised(model, SemiSupervisedSettings(**config.semi_supervised), build_network, optimizer)


def _unlabeled_batches(semi: Any, config: TrainingConfig, cases: Sequence[PreparedCase], augment: Callable | None,
                       slice_axis: int | None, console: Any) -> Callable[[int], torch.Tensor] | None:
    """Unlabelled batch ``i`` of a semi-supervised run (its own random stream), and the run's summary line."""
    if semi is None:
        return None
    from medseg.training.unlabeled import make_unlabeled_batch

    mix = config.semi_supervised.get("unlabeled_batch_size") or config.batch_size
    settings = semi.settings
    console.print(f"semi-supervised ({settings.method}): {config.batch_size} labelled + {mix} unlabelled patches per "
                  f"batch from {len(cases)} unlabelled case(s), unlabelled weight {settings.weight} after a "
                  f"{settings.rampup:.0%} ramp-up" + (f" ({settings.reason})" if settings.reason else ""),
                  highlight=False)
    return lambda i: make_unlabeled_batch(cases, i, seed=config.seed, patch_size=config.patch_size, batch_size=mix,
                                          augment=augment, slice_axis=slice_axis)


def _recorded_value(spec: RunSpec, name: str, default: Any) -> Any:
    rule = spec.rule(name)
    return rule.value if rule is not None else default


def _anisotropic_axis(spacing: Sequence[float] | None, ratio: float = ANISOTROPY_RATIO) -> int | None:
    """The thick-slice axis (spacing > ``ratio`` × the finest), for in-plane-only 3D augmentation."""
    if spacing is None or len(spacing) != 3:
        return None
    axis = int(np.argmax(spacing))
    return axis if spacing[axis] > ratio * min(spacing) else None


def _augmentation(config: dict[str, Any] | None, spatial_dims: int, anisotropic_axis: int | None = None,
                  ignore_index: int | None = None) -> Callable | None:
    """The batched augmentation (medseg.augmentation); ``{"enabled": false}`` switches it off."""
    if config is not None and not config.get("enabled", True):
        return None
    from medseg.augmentation import build_augmentation

    options = {k: v for k, v in (config or {}).items() if k != "enabled"}
    options.setdefault("ignore_index", ignore_index)
    return build_augmentation(options, spatial_dims, anisotropic_axis)


def _console():
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True)


def _progress_bar(enabled: bool, console: Any):
    if not enabled:
        return None
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False)
