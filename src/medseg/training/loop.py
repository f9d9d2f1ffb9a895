"""The training loop: plain functions, no trainer class.

:func:`train` reads a dataset, prepares cases once, builds network / loss / optimizer, and runs
iterations until the iteration count or the wall-clock budget is used, validating on held-out cases
with full-image sliding-window prediction, writing checkpoints atomically, and recording the model
folder (see :mod:`medseg.model_folder`). Everything a resumed run needs is in ``checkpoint_last.pt``;
batches are a pure function of ``(seed, iteration)``, so ``--resume`` continues exactly.
"""

from __future__ import annotations

import functools
import json
import math
import tempfile
import time
from contextlib import nullcontext
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
from medseg.planning.machine import computes_bfloat16
from medseg.planning.training_rules import PROMPT_VALIDATION_SLICES, Rule, describe, rule_network
from medseg.training.averaging import WeightAverage
from medseg.training.cases import select_cases  # noqa: F401 (documented here)
from medseg.training.checkpoint import load_checkpoint, save_checkpoint
from medseg.training.config import TrainingConfig
from medseg.training.data import (BatchProducer, LabelMapping, PreparedCase, batch_generators, make_batch,
                                  prepare_case)
from medseg.training.distributed import (DistributedRun, NullLog, joined, launch, launcher_environment, run_rules,
                                         threads_rule as distributed_threads_rule)
from medseg.training.layout import load_plan
from medseg.training.logging import TrainingLog
from medseg.training.memory_format import choose_memory_format, torch_format
from medseg.training.networks import implied_configuration, network_needs, setup_finetuning
from medseg.training.precision import EMULATED_BFLOAT16, choose_precision, use_precision
from medseg.training.probe import kept_note
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
    rank: int = 0  # in a multi-process run, the process's rank (only rank 0's result describes the model)


def _check(dataset: Any, console: Any, on_case: Callable | None = None) -> None:
    from medseg.datasets import check_dataset

    report = check_dataset(dataset, on_case=on_case)
    if report.warnings:
        # a dataset-wide warning names its file (the dataset folder, dataset.json), not a case
        cases = ", ".join(w.case or (w.file.name if w.file else "dataset") for w in report.warnings[:5]) + (
            ", …" if len(report.warnings) > 5 else "")
        console.print(f"[yellow]warning:[/] {len(report.warnings)} thing(s) to look at ({cases}): "
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
    nproc: int = 1,
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
        Without one the dataset is planned automatically, with ``medseg plan``'s rules
        (:func:`medseg.planning.automatic.plan_dataset`; the fingerprint is measured during the dataset
        check's read of every case), recorded as the rule "plan" and written to ``out/plan.json``.
    configuration : {"2d", "3d"}, optional
        Use the plan's other configuration (e.g. a 2D network on slices of 3D data); without a plan,
        force it in the automatic plan.
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
        ``on_iteration(iteration, loss)`` after each step (tests use it to simulate interruptions); in
        every process of a multi-process run (it must then be picklable).
    nproc : int
        Train in this many processes on this machine (DistributedDataParallel, see
        :mod:`medseg.training.distributed`); ``config.batch_size`` is then per process. A process started
        by ``torchrun`` joins its run whatever ``nproc`` says.

    Returns
    -------
    TrainingResult

    ``medseg train`` then also builds the inference backend into the folder after a run of ten minutes or
    more (the rule ``prepare_backend``, recorded in rules.json); from Python, ``Predictor.from_folder(out)
    .warm_up()`` does it (training does not import inference).
    """
    from medseg.datasets import load_dataset

    if not hasattr(dataset, "cases"):
        dataset = load_dataset(dataset)
    out = Path(out)
    console = console or _console()
    if nproc < 1:
        raise MedsegError(f"--nproc must be at least 1, not {nproc}")
    if nproc > 1 and launcher_environment() is None:
        return _launch(dataset, out, config, nproc, check, console, plan=plan, configuration=configuration,
                       preprocessing=preprocessing, fold=fold, val_cases=val_cases, resume=resume,
                       overwrite=overwrite, progress=progress, on_iteration=on_iteration)
    with joined() as run:
        if not run.is_main:  # rank 0 prints
            console, progress = _console(quiet=True), False
        return _train(dataset, out, config, run, plan=plan, configuration=configuration, preprocessing=preprocessing,
                      fold=fold, val_cases=val_cases, resume=resume, overwrite=overwrite, check=check,
                      progress=progress, on_iteration=on_iteration, console=console)


def _launch(dataset: Any, out: Path, config: TrainingConfig | None, nproc: int, check: bool, console: Any,
            **options: Any) -> TrainingResult:
    """``nproc`` worker processes each running :func:`train` (the checks run once, here, first)."""
    if options["resume"]:
        _resumed_spec(dataset, out, config)
    elif (out / CONFIG_NAME).is_file() and not options["overwrite"]:
        raise MedsegError("model folder exists; use --resume to continue or --overwrite to replace it", out)
    if config is not None:
        _check_distributable(config)
    if check:
        _check(dataset, console)
    console.print(f"starting {nproc} training processes on this machine (torch elastic launcher)", highlight=False)
    return launch(nproc, functools.partial(train, dataset.root, out, config, check=False, **options))


def _train(dataset: Any, out: Path, config: TrainingConfig | None, run: DistributedRun, *, plan: Any,
           configuration: str | None, preprocessing: list[dict[str, Any]] | None, fold: int | str | None,
           val_cases: Sequence[str] | None, resume: bool, overwrite: bool, check: bool, progress: bool,
           on_iteration: Callable[[int, float], None] | None, console: Any) -> TrainingResult:
    if resume:
        spec, model_config = _resumed_spec(dataset, out, config)
        start, plan_dict, seed, threads = None, None, spec.config.seed, spec.config.threads
    else:
        if (out / CONFIG_NAME).is_file() and not overwrite and run.is_main:  # rank 0 may have written it
            raise MedsegError("model folder exists; use --resume to continue or --overwrite to replace it", out)
        options = config or TrainingConfig()
        first = dataset.case(dataset.cases[0].name).read_image() if dataset.cases else None
        if first is None:
            raise MedsegError("the dataset has no cases", dataset.root)
        has_roi = any(c.roi_path is not None for c in dataset.cases)
        # a fine-tuned model keeps its source's preprocessing, a promptable one (always named by --net) frames the
        # files' own slices: nothing to plan for either
        automatic = plan is None and not options.init_from and not (
            options.network is not None and network_needs(options.network).promptable)
        planning_seconds = None
        if automatic:
            plan_dict, planning_seconds = _plan_automatically(dataset, options, configuration, first.spatial_dims,
                                                              check, console)
            check = False  # done, in the same pass as the fingerprint
        else:
            plan_dict = load_plan(plan, configuration, preferred=implied_configuration(
                options.network, tuple(options.patch_size), first.spatial_dims))
        planned_dims = (plan_dict or {}).get("data_dims")
        if planned_dims is not None and planned_dims != first.spatial_dims:
            raise MedsegError(f"the plan was made for {planned_dims}D images but this dataset's images are "
                              f"{first.spatial_dims}D; plan this dataset with `medseg plan`",
                              plan if isinstance(plan, (str, Path)) else dataset.root)
        options, network_rule = _choose_network(dataset, options, (plan_dict or {}).get(
            "configuration", f"{first.spatial_dims}d"))
        if options.init_from:  # fine-tuning a trained model folder (medseg.training.finetune)
            from medseg.training.finetune import load_source, start_finetuning

            source = load_source(options.init_from, dataset, first, out)
            start = start_finetuning(dataset, options, source, plan=plan_dict, preprocessing=preprocessing, fold=fold,
                                     val_cases=val_cases)
        else:
            start = start_run(dataset, options, plan_dict, first.spatial_dims, has_roi, preprocessing, fold, val_cases,
                              automatic_plan=automatic, planning_seconds=planning_seconds, network_rule=network_rule)
        start = _set_apart_unlabeled(dataset, start, val_cases)
        spec, model_config, seed, threads = None, None, options.seed, options.threads
    if check and run.is_main:  # after the cheap argument checks, before any training
        _check(dataset, console)
    threads_rule = distributed_threads_rule(threads) if run.distributed else None
    # the other ranks never write into the model folder: their memory-mapped cache goes to a temporary folder
    private = tempfile.TemporaryDirectory(prefix=f"medseg-rank{run.rank}-") if not run.is_main else nullcontext()
    created = not out.exists()
    with scoped_run_state(threads_rule.value if threads_rule else threads, seed), private as scratch:
        try:
            return _run(dataset, out, start, spec, model_config, plan_dict, progress=progress,
                        on_iteration=on_iteration, console=console, run=run, threads_rule=threads_rule,
                        scratch=Path(scratch) if scratch else None)
        except MedsegError:
            # bad input found while preparing the cases (e.g. an unlabelled image with other channels): no output
            if created and run.is_main and not (out / CONFIG_NAME).exists():
                import shutil

                shutil.rmtree(out, ignore_errors=True)
            raise


def _choose_network(dataset: Any, options: TrainingConfig, configuration: str) -> tuple[TrainingConfig, Rule | None]:
    """The network rule (:func:`~medseg.planning.training_rules.rule_network`) on the configuration the run
    trains, before anything else that depends on the network (the layout); a fine-tuned model keeps its source's
    network. The plan before it is the same for every network the rule chooses: none asks for a configuration."""
    if options.init_from:
        return options, None
    rule = rule_network(options.network, bool(dataset.regions), configuration)
    return replace(options, network=rule.value), rule


def _plan_automatically(dataset: Any, options: TrainingConfig, configuration: str | None, data_dims: int,
                        check: bool, console: Any) -> tuple[dict[str, Any], float]:
    """No plan given: ``medseg plan``'s rules on this dataset, for the run's budget. The fingerprint is
    measured from the voxels the dataset check reads (each case is read once for both)."""
    from medseg.planning.automatic import plan_dataset
    from medseg.planning.fingerprint import FingerprintCollector
    from medseg.planning.training_rules import DEFAULT_TIME_LIMIT

    started = time.perf_counter()
    # a 3D patch or a 3D-only network (V-Net) asks for the 3D configuration, as --configuration 3d would
    configuration = configuration or implied_configuration(options.network, tuple(options.patch_size), data_dims)
    collector = FingerprintCollector(dataset)
    if check:
        _check(dataset, console, on_case=collector.add)
    else:
        for case in dataset.cases:
            collector.add(case)
    plan, _ = plan_dataset(dataset, time_limit=options.time_limit or DEFAULT_TIME_LIMIT, configuration=configuration,
                           fingerprint=collector.fingerprint())
    # printed with the other decisions (the rule `plan` records the planning time): an argument error found
    # after planning stays the only line
    return plan.to_dict(), time.perf_counter() - started


def _set_apart_unlabeled(dataset: Any, start: RunStart, named_val: Sequence[str] | None) -> RunStart:
    """Semi-supervised hook: labelled training cases, unlabelled ones recorded in the configuration
    (:func:`medseg.training.unlabeled.set_apart_unlabeled`)."""
    from medseg.training.unlabeled import set_apart_unlabeled

    train, val, semi, fired = set_apart_unlabeled(dataset, start.config.semi_supervised, start.config.seed,
                                                  start.train_names, start.val_names, named_val,
                                                  spatial_dims=start.layout.spatial_dims)
    return replace(start, train_names=tuple(train), val_names=tuple(val), rules=start.rules + tuple(fired),
                   config=replace(start.config, semi_supervised=semi))


def _resumed_spec(dataset: Any, out: Path, config: TrainingConfig | None) -> tuple[RunSpec, ModelConfig]:
    """The run as recorded in the model folder; a resumed run may only change the budget and threads."""
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
         console: Any, run: DistributedRun = DistributedRun(), threads_rule: Any = None,
         scratch: Path | None = None) -> TrainingResult:
    """Prepare the cases, complete the specification, build, loop, validate, choose, record.

    In a multi-process run (``run``) only rank 0 writes into ``out``; the others keep their memory-mapped
    cache in ``scratch``.
    """
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

    if run.distributed:
        _check_distributable(options)
    cache_dir = (out if run.is_main else scratch) / "cache" if options.cache == "mmap" else None
    train_names, val_names = (spec or start).train_names, (spec or start).val_names
    thresholded = set(val_names) if not regions and num_classes == 2 else set()  # the threshold rule's cases
    prepared = _prepare_cases(dataset, names, layout, mapping, options, cache_dir, thresholded)
    if run.is_main:  # after the cases: a case that cannot be prepared leaves nothing
        out.mkdir(parents=True, exist_ok=True)
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
                            structures=list(structures), regions=bool(regions),
                            targets=_postprocessing_targets(mapping, regions))
        spec = replace(spec, rules=spec.rules + tuple(run_rules(run, spec.config.batch_size, threads_rule)))
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

    if not resume:
        model_config = _new_model_config(dataset, spec, in_channels, input_channels, data_dims, num_classes,
                                         label_values, regions)
        for stale in (LAST_CHECKPOINT, BEST_CHECKPOINT, WEIGHTS_NAME, "training_log.csv", PRUNING_NAME, RULES_NAME):
            if run.is_main:
                (out / stale).unlink(missing_ok=True)
    augment = _augmentation(config.augmentation, spatial_dims,
                            _anisotropic_axis(target_spacing) if spatial_dims == 3 else None,
                            IGNORE_INDEX if dataset.ignore_label is not None else None)
    loss_fn = _loss(config, model, mapping, regions) if not needs.promptable else None  # prompts: their own loss

    def make(iteration: int):
        return make_batch(train_cases, iteration, seed=config.seed, patch_size=config.patch_size,
                          batch_size=config.batch_size, foreground_share=config.foreground_share,
                          augment=augment, label_pad_value=IGNORE_INDEX if dataset.ignore_label is not None else 0,
                          slice_axis=slice_axis, shard=run.shard)

    probe_batch = functools.cache(lambda: make(0))  # both probes time the first batch: made once, when asked for
    memory_format_name = _memory_format(config, model, loss_fn, probe_batch, spatial_dims, run, console,
                                        measure=not needs.promptable)
    memory_format = torch_format(memory_format_name, spatial_dims)
    model.to(memory_format=memory_format)
    precision = _precision(config, model, loss_fn, probe_batch, memory_format, run, console,
                           measure=not needs.promptable)
    use_precision(model, precision)  # before any copy of the model (EMA teacher, weight average) is made
    average = WeightAverage(model, config.weight_average) if config.weight_average else None
    predicting = average.model if average else model  # what is validated, saved and predicted with
    recorded = config.to_dict()
    recorded["memory_format"] = memory_format_name
    recorded["precision"] = precision
    # the augmentation actually used, written out so a run can be repeated
    model_config = replace(model_config, training=recorded, augmentation=augment.to_config() if hasattr(
        augment, "to_config") else ({"enabled": False} if augment is None else config.augmentation))
    if run.is_main:
        _record_start(out, model_config, spec, plan_dict, resume, run_rules(run, config.batch_size, threads_rule))

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
    semi = _semi_supervised(config, model, optimizer, lambda: use_precision(create_network(
        config.network, in_channels, num_classes, spatial_dims, **network_options).to(memory_format=memory_format),
        precision))
    if semi is not None:
        predicting = semi.predicting

    start_iteration, elapsed_before, best = (_restore(out / LAST_CHECKPOINT, model, optimizer, average, semi, unfreezing)
                                             if resume else (0, 0.0, None))
    log = TrainingLog(out, resume=resume, resume_iteration=start_iteration if resume else None) if run.is_main \
        else NullLog()

    session = Session(out, config, model, predicting, optimizer, loss_fn, average, unfreezing, finetuning,
                      memory_format, val_prepared, model_config, log, console, recorded, best,
                      next_validation=(start_iteration // config.val_every + 1) * config.val_every, semi=semi,
                      make_unlabeled=_unlabeled_batches(semi, config, unlabeled_cases, augment, slice_axis, console),
                      run=run, trained=run.wrap(model), step=prompted.step if prompted else None,
                      validator=prompted.validator if prompted else None)
    console.print(
        f"training {config.network} ({spatial_dims}D, {in_channels} channel(s), {num_classes} outputs) on "
        f"{len(train_cases)} case(s), validating on {len(val_prepared)}; patch {tuple(config.patch_size)}"
        f"{f' (slices across axis {slice_axis})' if slice_axis is not None else ''}, "
        f"batch {config.batch_size}{run.batch_note(config.batch_size)}, "
        f"preprocessing {[s.get('name') for s in steps]}, "
        f"{torch.get_num_threads()} thread(s)" + (f"; resuming at iteration {start_iteration}" if resume else ""),
        highlight=False)
    iteration, elapsed, _ = _loop(session, make, start_iteration, elapsed_before, progress, on_iteration)
    return _finish(session, spec, iteration, elapsed, start_iteration, resume, train_cases[:1])


def _prepare_cases(dataset: Any, names: Sequence[str], layout: Any, mapping: LabelMapping, options: TrainingConfig,
                   cache_dir: Path | None, thresholded: set[str]) -> dict[str, PreparedCase]:
    """Every case of the run on the network grid (training and validation alike); ``thresholded`` cases keep
    their label on the input's grid, where the decision threshold is chosen. A field extent for prediction only
    (:func:`medseg.planning.device_rules.rule_field_extent`) leaves them as stored."""
    extent = None if (layout.field_extent or {}).get("prediction_only") else layout.field_extent
    return {name: prepare_case(dataset.case(name), layout.preprocessing, mapping, target_spacing=layout.target_spacing,
                               dtype=options.cache_dtype, cache_dir=cache_dir, seed=options.seed + i,
                               crop_to_nonzero=layout.crop_to_nonzero, resampling=layout.resampling,
                               fov_diameter=layout.fov_diameter, field_extent=extent,
                               keep_input_reference=name in thresholded)
            for i, name in enumerate(names)}


def _new_model_config(dataset: Any, spec: RunSpec, in_channels: int, input_channels: int, data_dims: int,
                      num_classes: int, label_values: Sequence[int], regions: Any) -> ModelConfig:
    """The model folder's config.json of a new run: what a predictor needs to repeat the training's grid."""
    config, layout = spec.config, spec.layout
    return ModelConfig(
        network=config.network, network_options=dict(config.network_options), in_channels=in_channels,
        input_channels=input_channels, data_dims=data_dims, slice_axis=layout.slice_axis,
        crop_to_nonzero=layout.crop_to_nonzero, resampling=layout.resampling,
        num_classes=num_classes, spatial_dims=layout.spatial_dims, channel_names=list(dataset.channel_names),
        labels={k: int(v) for k, v in dataset.labels.items()}, label_values=list(label_values),
        patch_size=list(config.patch_size), regions=regions,
        region_class_order=(dataset.raw or {}).get("regions_class_order") if regions else None,
        ignore_label=dataset.ignore_label, preprocessing=list(layout.preprocessing),
        target_spacing=layout.target_spacing, file_ending=dataset.file_ending,
        uses_roi=any(c.roi_path is not None for c in dataset.cases),
        mirror_axes=[a for a in range(data_dims) if a != layout.slice_axis], overlap=0.5,
        augmentation=config.augmentation, training=config.to_dict(), dataset=dataset.name,
        train_cases=list(spec.train_names), val_cases=list(spec.val_names),
        tile_size=list(spec.tile_size) if spec.tile_size else None, fov_diameter=layout.fov_diameter,
        field_extent=layout.field_extent,
        lineage=spec.rule("init_from").value if spec.rule("init_from") else None,
    )


def _loss(config: TrainingConfig, model: torch.nn.Module, mapping: LabelMapping, regions: Any) -> Callable:
    """The loss the loss rule chose, with the ignore label, the regions and the network's deep-supervision
    weighting."""
    options = dict(config.loss_options)
    options.setdefault("ignore_index", IGNORE_INDEX)
    name = config.loss
    if regions:
        # models recorded before the loss rule named "dice_ce" for region datasets (its sigmoid form)
        name = "region" if name == "dice_ce" else name
        options.setdefault("regions", mapping.regions_as_indices(regions))
    options.setdefault("weighting", getattr(model, "deep_supervision_weighting", "halving"))
    return build_loss(name, **options)


def _memory_format(config: TrainingConfig, model: torch.nn.Module, loss_fn: Callable | None, batch: Callable,
                   spatial_dims: int, run: DistributedRun, console: Any, measure: bool) -> str:
    """The memory format to train in: the user's, else the faster of a few timed steps (rank 0 times them,
    every rank trains in its choice)."""
    name = config.memory_format
    if name == "auto" and run.is_main and measure:
        name = _timed(console, "memory format", *choose_memory_format(
            model, loss_fn, *batch(), spatial_dims, time_limit=config.time_limit, iterations=config.iterations))
    return run.from_main(name)


def _precision(config: TrainingConfig, model: torch.nn.Module, loss_fn: Callable | None, batch: Callable,
               memory_format: torch.memory_format, run: DistributedRun, console: Any, measure: bool) -> str:
    """The precision to train in: the user's, else float32 on a device without bfloat16 units, else the faster of a
    few timed steps in the run's memory format (rank 0 decides, every rank trains in its choice)."""
    name = config.precision
    if name == "auto":
        name = "float32"
        if run.is_main and measure:
            if not computes_bfloat16(next(model.parameters()).device.type):
                console.print(f"precision: {EMULATED_BFLOAT16}", highlight=False)
            else:
                image, label = batch()
                name = _timed(console, "precision", *choose_precision(
                    model, loss_fn, image.contiguous(memory_format=memory_format), label,
                    time_limit=config.time_limit, iterations=config.iterations))
    return run.from_main(name)


def _timed(console: Any, what: str, name: str, seconds: dict[str, float]) -> str:
    """``name``, the probe's choice, after printing the seconds per step it chose by (none: probe skipped)."""
    if seconds:
        console.print(f"{what}: " + ", ".join(f"{k} {v:.3f} s/step" for k, v in seconds.items()) + f" -> {name}"
                      + kept_note(name, seconds), highlight=False)
    return name


def _restore(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, average: WeightAverage | None,
             semi: Any, unfreezing: Any) -> tuple[int, float, float | None]:
    """A resumed run's state from its last checkpoint: ``(iteration, elapsed seconds, best validation Dice)``."""
    payload = load_checkpoint(path, model, optimizer)
    iteration = payload["iteration"]
    if average is not None:
        average.load_state_dict(payload["averaged_model"], payload["extra"]["average_updates"])
    if semi is not None:
        semi.load_state_dict(payload["extra"]["semi_supervised"])
    if unfreezing is not None:
        unfreezing(iteration)  # the stages already passed
    return iteration, payload["elapsed"], payload["extra"].get("best_metric")


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
    run: DistributedRun = DistributedRun()  # this process's place in a multi-process run
    trained: torch.nn.Module | None = None  # what the step calls: the model, or DistributedDataParallel over it
    step: Callable[[Any], float] | None = None       # a network's own step (promptable: medseg.training.prompted)
    validator: Callable[[torch.nn.Module], dict[str, float]] | None = None  # and its own validation

    def checkpoint(self, path: Path, iteration: int, elapsed: float) -> None:
        if not self.run.is_main:  # one writer
            return
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
            # rank 0's clock on every rank: the same learning rate, the same last iteration
            elapsed = session.run.agree(elapsed_before + (time.perf_counter() - t0))
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
                loss = train_step(session.trained or session.model, session.loss_fn, session.optimizer, image, label,
                                  config.grad_clip, session.finetuning)
            if session.average is not None:
                session.average.update(session.model)
            iteration += 1
            losses.append(loss)
            elapsed = elapsed_before + (time.perf_counter() - t0)
            row: dict[str, Any] | None = None
            if iteration % config.log_every == 0:
                row = {"iteration": iteration, "elapsed": round(elapsed, 2), "lr": lr,
                       "loss": session.run.mean(float(np.mean(losses)))}  # the global batch's loss
                losses = []
                if semi_parts:
                    row.update({f"ssl_{k}": float(np.mean([p[k] for p in semi_parts])) for k in semi_parts[0]
                                if k != "loss"})
                    semi_parts = []
                divergence.check(row["loss"], iteration, console)
            if session.val_cases and iteration >= session.next_validation and session.run.is_main:
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
        log.add({"iteration": iteration, "elapsed": round(elapsed, 2), "lr": lr,
                 "loss": session.run.mean(float(np.mean(losses)))})
    return iteration, elapsed, lr


def _finish(session: Session, spec: RunSpec, iteration: int, elapsed: float, start_iteration: int,
            resume: bool, timing_cases: Sequence[PreparedCase] = ()) -> TrainingResult:
    """Last validation, weights, pruning level, the after-training rules (``timing_cases``: training cases that
    time a prediction for them when there are no validation cases), logs (rank 0's work)."""
    config, out, log, console = session.config, session.out, session.log, session.console
    if not session.run.is_main:
        return TrainingResult(out, iteration, elapsed, None, rank=session.run.rank)
    val_cases, predicting = session.val_cases, session.predicting
    if val_cases and session.validated_at != iteration and iteration > start_iteration:
        metrics = session.validate(iteration, elapsed)
        log.rows[-1].update(metrics) if log.rows and log.rows[-1].get("iteration") == iteration else \
            log.add({"iteration": iteration, "elapsed": round(elapsed, 2), **metrics})
    session.checkpoint(out / LAST_CHECKPOINT, iteration, elapsed)
    outcome = None
    if config.init_from and val_cases and session.validator is None and session.last_metrics:
        from medseg.training.finetune import keep_if_better

        outcome = keep_if_better(predicting, val_cases, session.model_config, config,
                                 session.last_metrics["val_dice"])
    predicting.to(memory_format=torch.contiguous_format)  # safetensors stores contiguous tensors only
    save_weights(predicting, out / WEIGHTS_NAME)
    model_config = session.model_config
    if val_cases and config.prune_selection and hasattr(predicting, "set_prune_level"):
        choice = select_prune_level(predicting, val_cases, model_config, out, config.val_overlap)
        console.print(f"prune level {choice['level']} chosen (of {len(choice['levels'])}): "
                      + ", ".join(f"L{r['level']} dice {r['val_dice']:.4f} {r['seconds_per_case']:.3f} s"
                                  for r in choice["levels"]), highlight=False)
    # thresholds and postprocessing: not for a promptable network (its masks come from prompts)
    if (val_cases or not resume or config.init_from) and session.step is None:
        if not val_cases and config.init_from:  # fine-tuning on every case: the source model's choices
            from medseg.training.finetune import inherited_choices

            model_config, chosen = inherited_choices(config, model_config)
        else:
            model_config, chosen = choose_after_training(predicting, val_cases, model_config, config,
                                                         spec.structure, config.val_overlap, spec.one_piece,
                                                         timing_cases)
        chosen = ([outcome] if outcome is not None else []) + chosen
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


def _postprocessing_targets(mapping: LabelMapping, regions: dict[str, list[int]] | None,
                            ) -> dict[int | str, list[int]]:
    """What the postprocessing acts on — each foreground label value, or each region by name — as class indices
    of the prepared labels."""
    if regions:
        return {name: [mapping.values.index(int(v)) for v in values] for name, values in regions.items()}
    return {value: [index] for index, value in enumerate(mapping.values) if index > 0}


def _record_start(out: Path, model_config: ModelConfig, spec: RunSpec, plan_dict: dict | None, resume: bool,
                  distributed_rules: Sequence[Any]) -> None:
    """config.json, rules.json and plan.json at the start of a run (a resumed run updates only the rules of
    how it is distributed, which may differ from the interrupted run's)."""
    save_config(out, model_config)
    if not resume:
        save_rules(out, [r.to_dict() for r in spec.rules])
    else:
        kept = [r for r in load_rules(out) if not r["name"].startswith("distributed.")]
        save_rules(out, kept + [r.to_dict() for r in distributed_rules])
    if plan_dict is not None and not resume:
        from medseg.fileutil import write_text_atomic

        write_text_atomic(out / PLAN_NAME, json.dumps(plan_dict, indent=2) + "\n")


def _check_distributable(config: TrainingConfig) -> None:
    """What a multi-process run cannot do yet, said before any work."""
    if config.semi_supervised is not None and config.semi_supervised.get("method") != "none":
        raise MedsegError("semi-supervised training runs in one process; leave out --nproc")
    if config.unfreeze_schedule:
        raise MedsegError("--unfreeze-schedule changes the trained parameters during the run, which "
                          "DistributedDataParallel does not follow; leave out --nproc")


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


def _console(quiet: bool = False):
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True, quiet=quiet)


def _progress_bar(enabled: bool, console: Any):
    if not enabled:
        return None
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False)
