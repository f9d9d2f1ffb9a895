"""The training loop: plain functions, no trainer class.

:func:`train` reads a dataset, prepares cases once, builds network / loss / optimizer, and runs
iterations until the iteration count or the wall-clock budget is used, validating on held-out cases
with full-image sliding-window prediction, writing checkpoints atomically, and recording the model
folder (see :mod:`medseg.model_folder`). Everything a resumed run needs is in ``checkpoint_last.pt``;
batches are a pure function of ``(seed, iteration)``, so ``--resume`` continues exactly.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from medseg.errors import MedsegError
from medseg.losses import IGNORE_INDEX, build_loss
from medseg.model_folder import (BEST_CHECKPOINT, LAST_CHECKPOINT, PLAN_NAME, PRUNING_NAME, WEIGHTS_NAME, ModelConfig,
                                 load_config, save_config, save_weights)
from medseg.training.averaging import WeightAverage
from medseg.training.cases import select_cases
from medseg.training.checkpoint import load_checkpoint, save_checkpoint
from medseg.training.config import TrainingConfig
from medseg.training.data import BatchProducer, LabelMapping, PreparedCase, make_batch, prepare_case
from medseg.training.layout import (DataLayout, automatic_batch_size, automatic_patch_size,  # noqa: F401
                                    default_preprocessing, load_plan, resolve_layout)
from medseg.training.logging import TrainingLog
from medseg.training.memory_format import choose_memory_format, torch_format
from medseg.training.networks import needs_input_size, network_size_divisor, setup_finetuning
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

    existing = (out / "config.json").is_file()
    if resume:
        if not (out / LAST_CHECKPOINT).is_file():
            raise MedsegError(f"nothing to resume: no {LAST_CHECKPOINT}", out)
        model_config = load_config(out)
        saved = TrainingConfig.from_dict(model_config.training)
        if config is not None:  # a resumed run may extend the budget
            saved.iterations, saved.time_limit = config.iterations, config.time_limit
            saved.threads = config.threads
        config = saved
        train_names, val_names = model_config.train_cases, model_config.val_cases
        missing = sorted(set(train_names + val_names) - {c.name for c in dataset.cases})
        if missing:
            raise MedsegError(f"the model was trained on case(s) missing from this dataset: {', '.join(missing[:5])}",
                              dataset.root)
    else:
        if existing and not overwrite:
            raise MedsegError("model folder exists; use --resume to continue or --overwrite to replace it", out)
        config = config or TrainingConfig(time_limit=1200.0)
        train_names, val_names = select_cases(dataset, fold, val_cases, config.seed)
        if not train_names:
            raise MedsegError("no training cases left after holding out the validation cases", dataset.root)
    console = console or _console()
    if check:  # after the cheap argument checks, before any training
        _check(dataset, console)

    if config.threads:
        torch.set_num_threads(int(config.threads))
    torch.manual_seed(config.seed)
    np.random.seed(config.seed % 2**32)

    first = dataset.case(train_names[0]).read_image()
    data_dims = first.spatial_dims
    in_channels = first.num_channels
    plan_dict = load_plan(plan, configuration)
    has_roi = any(c.roi_path is not None for c in dataset.cases)

    label_values = [v for v in dataset.label_values if v != dataset.ignore_label]
    mapping = LabelMapping(label_values, dataset.ignore_label)
    regions = dataset.regions or None
    num_classes = len(regions) if regions else mapping.num_classes

    layout = (DataLayout.from_model_config(model_config) if resume else
              resolve_layout(plan_dict, config, dataset, data_dims, has_roi, preprocessing))
    steps, target_spacing = layout.preprocessing, layout.target_spacing
    spatial_dims, slice_axis = layout.spatial_dims, layout.slice_axis
    crop, resampling = layout.crop_to_nonzero, layout.resampling
    if len(config.patch_size) == 1:
        config.patch_size = config.patch_size * spatial_dims
    if config.patch_size and len(config.patch_size) != spatial_dims:
        raise MedsegError(f"patch size {config.patch_size} does not match a {spatial_dims}D network")

    cache_dir = out / "cache" if config.cache == "mmap" else None
    out.mkdir(parents=True, exist_ok=True)
    prepared: dict[str, PreparedCase] = {}
    for i, name in enumerate(train_names + val_names):
        prepared[name] = prepare_case(dataset.case(name), steps, mapping, target_spacing=target_spacing,
                                      dtype=config.cache_dtype, cache_dir=cache_dir, seed=config.seed + i,
                                      crop_to_nonzero=crop, resampling=resampling)
    train_cases = [prepared[n] for n in train_names]
    val_prepared = [prepared[n] for n in val_names]
    input_channels, in_channels = in_channels, int(train_cases[0].image.shape[0])

    network_options = dict(config.network_options)
    if config.network == "unet" and "deep_supervision" not in network_options:
        network_options["deep_supervision"] = True
    if config.network == "unet" and "features" not in network_options:
        # Rule without a plan: 16 base features. Measured here (2 cores), a 32-feature 2D U-Net costs
        # ~4-5x more per tile than 16 features, and the budget is minutes of CPU, not a GPU.
        network_options["features"] = 16
    # the network is built once the patch size is known: the automatic patch size respects the
    # network's size divisor, and some networks (SegResNet-VAE) are built for their patch size
    divisor = network_size_divisor(config.network, in_channels, num_classes, spatial_dims, network_options)
    if not config.patch_size:
        shapes = [[s for a, s in enumerate(c.image.shape[1:]) if a != slice_axis] for c in train_cases]
        config.patch_size = automatic_patch_size(shapes, spatial_dims, divisor)
    elif any(p % d for p, d in zip(config.patch_size, divisor)) and not resume:
        # Rule: a patch (given, or planned for another network) is rounded up to the network's size
        # divisor, e.g. a plan's 8-slice patch for V-Net, which halves every axis four times.
        fitted = tuple(-(-p // d) * d for p, d in zip(config.patch_size, divisor))
        console.print(f"patch {tuple(config.patch_size)} rounded up to {fitted}: {config.network} needs "
                      f"multiples of {divisor}", highlight=False)
        config.patch_size = fitted
    if not config.batch_size:
        config.batch_size = automatic_batch_size(config.patch_size)
    if needs_input_size(config.network) and not resume:
        network_options["input_size"] = list(config.patch_size)
    config.network_options = network_options
    from medseg.nets import create_network

    model = create_network(config.network, in_channels, num_classes, spatial_dims, **network_options)
    unfreezing = setup_finetuning(model, config, load_weights=not resume)

    mirror_axes = [a for a in range(data_dims) if a != slice_axis]
    if not resume:
        model_config = ModelConfig(
            network=config.network, network_options=network_options, in_channels=in_channels,
            input_channels=input_channels, data_dims=data_dims, slice_axis=slice_axis,
            crop_to_nonzero=crop, resampling=resampling,
            num_classes=num_classes, spatial_dims=spatial_dims, channel_names=list(dataset.channel_names),
            labels={k: int(v) for k, v in dataset.labels.items()}, label_values=label_values,
            patch_size=list(config.patch_size), regions=regions,
            region_class_order=(dataset.raw or {}).get("regions_class_order") if regions else None,
            ignore_label=dataset.ignore_label, preprocessing=list(steps), target_spacing=target_spacing,
            file_ending=dataset.file_ending, uses_roi=has_roi, mirror_axes=mirror_axes, overlap=0.5,
            augmentation=config.augmentation, training=config.to_dict(), dataset=dataset.name,
            train_cases=list(train_names), val_cases=list(val_names),
        )
        for stale in (LAST_CHECKPOINT, BEST_CHECKPOINT, WEIGHTS_NAME, "training_log.csv", PRUNING_NAME):
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
    loss_fn = build_loss(loss_name, **loss_options)

    def make(iteration: int):
        return make_batch(train_cases, iteration, seed=config.seed, patch_size=config.patch_size,
                          batch_size=config.batch_size, foreground_share=config.foreground_share,
                          augment=augment, label_pad_value=IGNORE_INDEX if dataset.ignore_label is not None else 0,
                          slice_axis=slice_axis)

    if config.memory_format == "auto":
        config.memory_format, timings = choose_memory_format(
            model, loss_fn, *make(0), spatial_dims,
            time_limit=config.time_limit, iterations=config.iterations)
        if timings:
            console.print("memory format: " + ", ".join(f"{k} {v:.3f} s/step" for k, v in timings.items())
                          + f" -> {config.memory_format}", highlight=False)
    memory_format = torch_format(config.memory_format, spatial_dims)
    model.to(memory_format=memory_format)
    average = WeightAverage(model, config.weight_average) if config.weight_average else None
    predicting = average.model if average else model  # what is validated, saved and predicted with
    model_config.training = config.to_dict()
    # the augmentation actually used, written out so a run can be repeated
    model_config.augmentation = augment.to_config() if hasattr(augment, "to_config") else (
        {"enabled": False} if augment is None else config.augmentation)
    save_config(out, model_config)
    if plan_dict is not None and not resume:
        from medseg.fileutil import write_text_atomic

        write_text_atomic(out / PLAN_NAME, json.dumps(plan_dict, indent=2) + "\n")

    optimizer = build_optimizer(model, config)  # over all parameters: frozen ones simply get no gradient
    finetuning = bool(config.freeze_encoder or unfreezing)

    start_iteration, elapsed_before, best = 0, 0.0, None
    if resume:
        payload = load_checkpoint(out / LAST_CHECKPOINT, model, optimizer)
        start_iteration, elapsed_before = payload["iteration"], payload["elapsed"]
        best = payload["extra"].get("best_metric")
        if average is not None:
            average.load_state_dict(payload["averaged_model"], payload["extra"]["average_updates"])
        if unfreezing is not None:
            unfreezing(start_iteration)  # the stages already passed
    log = TrainingLog(out, resume=resume, resume_iteration=start_iteration if resume else None)

    def checkpoint(path: Path, iteration: int, elapsed: float) -> None:
        extra = {"best_metric": best, "config": json.dumps(config.to_dict())}
        if average is not None:
            extra["average_updates"] = average.updates
        save_checkpoint(path, model, optimizer, iteration=iteration, elapsed=elapsed, extra=extra,
                        averaged=average.state_dict() if average else None)

    console.print(
        f"training {config.network} ({spatial_dims}D, {in_channels} channel(s), {num_classes} outputs) on "
        f"{len(train_cases)} case(s), validating on {len(val_prepared)}; patch {tuple(config.patch_size)}"
        f"{f' (slices across axis {slice_axis})' if slice_axis is not None else ''}, "
        f"batch {config.batch_size}, preprocessing {[s.get('name') for s in steps]}, "
        f"{torch.get_num_threads()} thread(s)" + (f"; resuming at iteration {start_iteration}" if resume else ""),
        highlight=False)

    iteration = start_iteration
    last_metrics: dict[str, float] = {}
    losses: list[float] = []
    t0 = time.perf_counter()
    elapsed = elapsed_before
    bar = _progress_bar(progress, console)
    task = bar.add_task("training", total=1000) if bar else None
    producer = BatchProducer(make, start=start_iteration, prefetch=config.prefetch)
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
            set_learning_rate(optimizer, lr)
            image, label = producer.next()
            image = image.contiguous(memory_format=memory_format)
            if unfreezing is not None:
                for name in unfreezing(iteration)[:1]:
                    console.print(f"iteration {iteration}: unfreezing (first: {name})", highlight=False)
            loss = train_step(model, loss_fn, optimizer, image, label, config.grad_clip, finetuning)
            if average is not None:
                average.update(model)
            iteration += 1
            losses.append(loss)
            elapsed = elapsed_before + (time.perf_counter() - t0)
            row: dict[str, Any] | None = None
            if iteration % config.log_every == 0:
                row = {"iteration": iteration, "elapsed": round(elapsed, 2), "lr": lr, "loss": float(np.mean(losses))}
                losses = []
                divergence.check(row["loss"], iteration, console)
            if val_prepared and iteration % config.val_every == 0:
                last_metrics = validate(predicting, val_prepared, model_config, config.val_overlap)
                row = {**(row or {"iteration": iteration, "elapsed": round(elapsed, 2), "lr": lr}), **last_metrics}
                if best is None or last_metrics["val_dice"] > best:
                    best = last_metrics["val_dice"]
                    checkpoint(out / BEST_CHECKPOINT, iteration, elapsed)
            if row is not None:
                log.add(row)
            if iteration % config.checkpoint_every == 0:
                checkpoint(out / LAST_CHECKPOINT, iteration, elapsed)
                log.write()
            if bar:
                shown = f"it {iteration} loss {loss:.3f}" + (
                    f" val dice {last_metrics['val_dice']:.3f}" if last_metrics else "")
                bar.update(task, completed=int(1000 * training_progress(
                    iteration, elapsed, config.iterations, config.time_limit)), description=shown)
            if on_iteration is not None:
                on_iteration(iteration, loss)
    except KeyboardInterrupt:
        # keep the finished iterations: the next --resume starts from here
        checkpoint(out / LAST_CHECKPOINT, iteration, elapsed)
        log.write()
        log.plot()
        raise
    finally:
        producer.close()
        if bar:
            bar.stop()

    if losses:
        log.add({"iteration": iteration, "elapsed": round(elapsed, 2), "lr": lr, "loss": float(np.mean(losses))})
    if val_prepared and iteration % config.val_every != 0 and iteration > start_iteration:
        last_metrics = validate(predicting, val_prepared, model_config, config.val_overlap)
        log.rows[-1].update(last_metrics) if log.rows and log.rows[-1].get("iteration") == iteration else \
            log.add({"iteration": iteration, "elapsed": round(elapsed, 2), **last_metrics})
        if best is None or last_metrics["val_dice"] > best:
            best = last_metrics["val_dice"]
            checkpoint(out / BEST_CHECKPOINT, iteration, elapsed)
    checkpoint(out / LAST_CHECKPOINT, iteration, elapsed)
    predicting.to(memory_format=torch.contiguous_format)  # safetensors stores contiguous tensors only
    save_weights(predicting, out / WEIGHTS_NAME)
    if val_prepared and config.prune_selection and hasattr(predicting, "set_prune_level"):
        choice = select_prune_level(predicting, val_prepared, model_config, out, config.val_overlap)
        console.print(f"prune level {choice['level']} chosen (of {len(choice['levels'])}): "
                      + ", ".join(f"L{r['level']} dice {r['val_dice']:.4f} {r['seconds_per_case']:.3f} s"
                                  for r in choice["levels"]), highlight=False)
    log.write()
    log.plot()
    log.close()
    summary = f"finished {iteration} iterations in {elapsed:.0f} s"
    if last_metrics:
        summary += "; " + ", ".join(f"{k} {v:.4f}" for k, v in last_metrics.items())
    console.print(summary, highlight=False)
    return TrainingResult(out, iteration, elapsed, best, last_metrics)


def _anisotropic_axis(spacing: Sequence[float] | None, ratio: float = 3.0) -> int | None:
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

    return Console(stderr=True)


def _progress_bar(enabled: bool, console: Any):
    if not enabled:
        return None
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False)
