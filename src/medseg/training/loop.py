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
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import torch

from medseg.errors import MedsegError
from medseg.losses import IGNORE_INDEX, build_loss
from medseg.model_folder import (BEST_CHECKPOINT, LAST_CHECKPOINT, PLAN_NAME, PRUNING_NAME, WEIGHTS_NAME, ModelConfig,
                                 load_config, save_config, save_weights)
from medseg.training.averaging import WeightAverage
from medseg.training.checkpoint import load_checkpoint, save_checkpoint
from medseg.training.config import TrainingConfig
from medseg.training.data import BatchProducer, LabelMapping, PreparedCase, make_batch, prepare_case
from medseg.training.logging import TrainingLog
from medseg.training.memory_format import choose_memory_format, torch_format
from medseg.training.schedule import learning_rate_factor, training_progress

if TYPE_CHECKING:
    from medseg.nets.finetune import StagedUnfreezing

from medseg.io.formats import RASTER_EXTENSIONS as RASTER_ENDINGS  # noqa: E402 - one owner of the raster list


# --- decisions made without a plan ---------------------------------------------------------------
def default_preprocessing(channel_names: Sequence[str], file_ending: str | None, has_roi: bool,
                          spatial_dims: int) -> list[dict[str, Any]]:
    """Automatic preprocessing when there is no plan.

    Rule: a 2D RGB photograph (three channels, raster file) is treated as a fundus image: the green
    channel carries the vessel contrast, CLAHE evens out illumination, then z-score inside the field of
    view. Everything else: per-channel z-score (inside the ROI when there is one).
    """
    zscore = {"name": "zscore", "mask": "roi"} if has_roi else {"name": "zscore"}
    names = [n.lower() for n in channel_names]
    rgb = len(names) == 3 and (names == ["r", "g", "b"] or names == ["red", "green", "blue"]
                               or (file_ending or "").lower() in RASTER_ENDINGS)
    if spatial_dims == 2 and rgb:
        return [{"name": "green_channel"}, {"name": "clahe"}, zscore]
    return [zscore]


def automatic_patch_size(shapes: Sequence[Sequence[int]], spatial_dims: int, divisor: int | Sequence[int] = 16,
                         ) -> tuple[int, ...]:
    """Patch size without a plan: 2D 128² (96² for images < 512 px would starve context less, but 128
    fits two cores well), 3D 64³ — each clipped to the median image size rounded up to the divisor."""
    target = 128 if spatial_dims == 2 else 64
    median = np.median(np.asarray(shapes), axis=0) if len(shapes) else np.full(spatial_dims, target)
    divs = [divisor] * spatial_dims if isinstance(divisor, int) else list(divisor)
    out = []
    for m, dv in zip(median, divs):
        size = min(target, int(m))
        out.append(max(dv, int(math.ceil(size / dv) * dv)))
    return tuple(out)


def automatic_batch_size(patch_size: Sequence[int], voxels_per_batch: int = 4 * 128 * 128) -> int:
    """Batch size from a CPU budget: about ``voxels_per_batch`` voxels per iteration, at least 2."""
    return int(max(2, min(32, voxels_per_batch // int(np.prod(patch_size)))))


def _divisor(network: torch.nn.Module, spatial_dims: int) -> tuple[int, ...]:
    d = getattr(network, "size_divisor", 1)
    return tuple([int(d)] * spatial_dims) if isinstance(d, int) else tuple(int(v) for v in d)


# Networks whose layers depend on the training patch size (SegResNet-VAE's dense VAE layers): the
# trainer passes ``input_size = patch size``.
_INPUT_SIZE_NETWORKS = frozenset({"segresnet_vae"})


def needs_input_size(name: str) -> bool:
    """Whether network ``name`` must be built with ``input_size`` = the training patch size."""
    from medseg.nets import NETWORKS

    try:
        metadata = NETWORKS.entry(name).metadata
    except Exception:  # unknown names fail later, in create_network, with the registry's message
        return False
    return name in _INPUT_SIZE_NETWORKS or bool(metadata.get("needs_input_size"))


def network_size_divisor(name: str, in_channels: int, num_classes: int, spatial_dims: int,
                         options: dict[str, Any]) -> tuple[int, ...]:
    """The size divisor of the network as it will be trained, before its patch size is known.

    A probe network is built; networks built for an input size get the smallest size their
    architecture accepts (its divisor is the same for every valid size).
    """
    from medseg.nets import create_network
    from medseg.nets.meta import build_on_meta

    options = dict(options)
    if needs_input_size(name) and "input_size" not in options:
        options["input_size"] = [_probe_input_size(name, options)] * spatial_dims
    # On the meta device: no memory and no initialisation cost (FCN-8s has 134M parameters); the forked
    # RNG keeps the probe from shifting the seeded initialisation of the real network.
    with torch.random.fork_rng():
        probe = build_on_meta(create_network, name, in_channels, num_classes, spatial_dims, **options)
    return _divisor(probe, spatial_dims)


def _probe_input_size(name: str, options: dict[str, Any]) -> int:
    # SegResNet-VAE: the VAE halves the end-point of len(blocks_down) - 1 down-samplings once more
    blocks = options.get("blocks_down", (1, 2, 2, 4))
    return 2 ** len(blocks)


def setup_finetuning(model: torch.nn.Module, config: TrainingConfig,
                     load_weights: bool = True) -> StagedUnfreezing | None:
    """Encoder weights, frozen encoder or staged unfreezing, as ``config`` asks.

    Returns the :class:`~medseg.nets.finetune.StagedUnfreezing` (call it every iteration) or None.
    """
    from medseg.nets.finetune import StagedUnfreezing, freeze_encoder

    if config.encoder_weights and load_weights:
        from medseg.nets.encoders.weights import load_encoder_weights

        path = Path(config.encoder_weights)
        if not path.is_file():
            raise MedsegError("encoder weights not found", path)
        load_encoder_weights(model, path)
    if config.freeze_encoder:
        freeze_encoder(model)
    if config.unfreeze_schedule:
        return StagedUnfreezing(model, [(int(i), str(t)) for i, t in config.unfreeze_schedule])
    return None


# --- case selection -----------------------------------------------------------------------------
def select_cases(dataset: Any, fold: int | str | None = None, val_cases: Sequence[str] | None = None,
                 seed: int = 0) -> tuple[list[str], list[str]]:
    """Training and validation case names.

    ``val_cases`` wins; else ``fold`` K picks split K of the dataset's own splits file or of grouped
    5-fold splits (:func:`medseg.datasets.splits.load_or_create_splits`: deterministic for a seed, so the
    folds of separate runs fit together); ``fold="all"`` or nothing trains on every case without
    validation.
    """
    names = [c.name for c in dataset.cases]
    if val_cases:
        unknown = sorted(set(val_cases) - set(names))
        if unknown:
            raise MedsegError(f"validation case(s) not in the dataset: {', '.join(unknown)}", dataset.root)
        train = [n for n in names if n not in set(val_cases)]
        return train, list(val_cases)
    if fold is None or str(fold) == "all":
        return names, []
    from medseg.datasets.splits import load_or_create_splits

    splits = load_or_create_splits(dataset, folds=5, seed=seed)
    try:
        k = int(fold)
    except ValueError:
        raise MedsegError(f"--fold must be a number or 'all', not '{fold}'") from None
    if not 0 <= k < len(splits):
        raise MedsegError(f"fold {k} does not exist; the splits have {len(splits)} fold(s)", dataset.splits_path)
    split = splits[k]
    missing = sorted(set(split["train"] + split["val"]) - set(names))
    if missing:
        raise MedsegError(f"splits name case(s) not in the dataset: {', '.join(missing[:5])}", dataset.splits_path)
    return list(split["train"]), list(split["val"])


# --- one step and validation ----------------------------------------------------------------------
def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def build_optimizer(model: torch.nn.Module, config: TrainingConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=config.learning_rate, momentum=config.momentum,
                               nesterov=True, weight_decay=config.weight_decay)
    return torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)


def train_step(model: torch.nn.Module, loss_fn: Callable, optimizer: torch.optim.Optimizer,
               image: torch.Tensor, label: torch.Tensor, grad_clip: float | None,
               frozen_batchnorm_eval: bool = False) -> float:
    """One optimisation step; returns the loss value.

    ``frozen_batchnorm_eval``: keep batch-norm layers whose parameters are frozen in eval mode, so a
    frozen (pretrained) encoder's running statistics stay fixed too.
    """
    model.train()
    if frozen_batchnorm_eval:
        from medseg.nets.finetune import set_frozen_batchnorm_eval

        set_frozen_batchnorm_eval(model)
    optimizer.zero_grad(set_to_none=True)
    output = model(image)
    loss = loss_fn(output, label, image)
    if not torch.isfinite(loss):
        raise MedsegError(f"the loss became {loss.item()}; lower the learning rate (--lr)")
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return float(loss.detach())


def validate(model: torch.nn.Module, cases: Sequence[PreparedCase], model_config: ModelConfig,
             overlap: float = 0.5) -> dict[str, float]:
    """Full-image sliding-window prediction of the validation cases on the training grid.

    Returns ``val_dice`` (mean foreground Dice over classes, averaged over cases, inside the ROI and
    outside ignored voxels), ``val_dice_<label>`` per class and, for binary tasks, ``val_auc`` (ROC AUC
    of the foreground probability inside the ROI, as reported for DRIVE).
    """
    from medseg.inference.sliding_window import sliding_window_inference
    from medseg.inference.slices import slice_network
    from medseg.metrics.overlap import dice as dice_fn

    model.eval()
    network = slice_network(model, model_config.slice_axis)
    activation = model_config.activation
    names = _output_names(model_config)
    per_class: dict[str, list[float]] = {n: [] for n in names}
    aucs: list[float] = []
    binary = model_config.num_classes == 2 and activation == "softmax"
    for case in cases:
        # probabilities only where needed (AUC, regions), compact in 3D; otherwise streamed argmax labels
        want_probs = binary or activation == "sigmoid"
        result = sliding_window_inference(
            np.asarray(case.image, dtype=np.float32), network, model_config.data_patch_size, overlap=overlap,
            activation=activation, return_probabilities=want_probs, return_labels=not want_probs, batch_size=4,
            probabilities_dtype=np.float16 if model_config.data_dims == 3 else np.float32,
        )
        probs = result.probabilities
        target = np.asarray(case.label[0])
        valid = target != IGNORE_INDEX
        if case.roi is not None:
            valid &= case.roi
        if activation == "sigmoid":
            from medseg.losses import region_targets

            regions = LabelMapping(model_config.label_values).regions_as_indices(model_config.regions)
            truth = region_targets(torch.from_numpy(target[None, None].astype(np.int64)), regions)[0].numpy() > 0
            for r, name in enumerate(names):
                per_class[name].append(float(dice_fn(probs[r] > 0.5, truth[r], roi=valid)))
        else:
            pred = np.argmax(probs, 0) if probs is not None else result.labels
            for k, name in enumerate(names, start=1):
                per_class[name].append(float(dice_fn(pred == k, target == k, roi=valid)))
            if binary:
                from medseg.metrics.probability import roc_auc

                auc = roc_auc(probs[1].astype(np.float32), target == 1, roi=valid)
                if not math.isnan(auc):
                    aucs.append(float(auc))
    out = {f"val_dice_{n}": float(np.nanmean(v)) for n, v in per_class.items() if v}
    out["val_dice"] = float(np.nanmean(list(out.values()))) if out else math.nan
    if aucs:
        out["val_auc"] = float(np.mean(aucs))
    return out


def select_prune_level(model: torch.nn.Module, cases: Sequence[PreparedCase], model_config: ModelConfig,
                       folder: str | Path | None = None, overlap: float = 0.5, tolerance: float = 0.005,
                       ) -> dict[str, Any]:
    """Evaluate every pruning level of a prunable network (UNet++ L1..Ld) on validation cases.

    Each level's mean validation Dice, parameter count and seconds per case are measured; the chosen
    level is the smallest whose Dice is within ``tolerance`` of the best level's (UNet++, Zhou et al.
    2019: prune as far as the validation metric allows). Written to ``folder/pruning.json`` when a folder
    is given; the predictor uses the choice unless told otherwise.

    Returns
    -------
    dict
        ``{"level", "tolerance", "metric", "checkpoint", "levels": [{"level", "parameters",
        "seconds_per_case", "val_dice"}, ...]}``.
    """
    from medseg.model_folder import save_pruning

    depth = int(model.depth)
    old_level, was_training = model.prune_level, model.training
    rows = []
    try:
        for level in range(1, depth + 1):
            try:
                model.set_prune_level(level)
            except MedsegError:  # no head at this level (deep supervision off): not selectable
                continue
            start = time.perf_counter()
            with torch.inference_mode():
                metrics = validate(model, cases, model_config, overlap)
            seconds = (time.perf_counter() - start) / max(1, len(cases))
            rows.append({"level": level, "parameters": int(model.parameters_used(level)),
                         "seconds_per_case": round(seconds, 4), "val_dice": float(metrics["val_dice"])})
    finally:
        model.prune_level = old_level
        model.train(was_training)
    if not rows:
        raise MedsegError("no pruning level could be evaluated")
    dices = [r["val_dice"] for r in rows if not math.isnan(r["val_dice"])]
    best = max(dices) if dices else math.nan
    chosen = next((r["level"] for r in rows if not math.isnan(best) and r["val_dice"] >= best - tolerance),
                  rows[-1]["level"])
    result = {"level": int(chosen), "tolerance": tolerance, "metric": "mean validation Dice",
              "checkpoint": "final", "levels": rows}
    if folder is not None:
        save_pruning(folder, result)
    return result


def _output_names(config: ModelConfig) -> list[str]:
    if config.regions:
        return list(config.regions)
    by_value = {v: k for k, v in config.labels.items()}
    return [str(by_value.get(v, v)) for v in config.label_values[1:]]


# --- the whole run ---------------------------------------------------------------------------------
@dataclass
class TrainingResult:
    """What :func:`train` returns."""

    folder: Path
    iterations: int
    elapsed: float
    best_metric: float | None
    last_metrics: dict[str, float] = field(default_factory=dict)


def load_plan(plan: str | Path | dict | None, configuration: str | None = None) -> dict[str, Any] | None:
    """A plan as a dict: from plan.json (validated by :class:`medseg.planning.Plan`), a Plan or a dict.

    ``configuration`` ("2d" / "3d") switches to the plan's alternative configuration.
    """
    if plan is None:
        return None
    if isinstance(plan, dict):
        from medseg.planning import Plan

        plan = Plan.from_dict(plan)
    elif not hasattr(plan, "to_dict"):
        from medseg.planning import Plan

        plan = Plan.load(Path(plan))
    if configuration:
        plan = plan.use_configuration(configuration)
    return plan.to_dict()


def _plan_value(plan: dict | None, *keys: str) -> Any:
    """First present key, looking in the plan and in a nested configuration (plan["configuration"])."""
    if not plan:
        return None
    for source in (plan, plan.get("configuration") or {}):
        for key in keys:
            if isinstance(source, dict) and source.get(key) is not None:
                return source[key]
    return None


@dataclass
class DataLayout:
    """How cases are brought to the network: preprocessing, spacing, cropping, 2D/3D."""

    preprocessing: list[dict[str, Any]]
    target_spacing: list[float] | None
    spatial_dims: int
    slice_axis: int | None
    crop_to_nonzero: bool
    resampling: dict[str, Any] | None

    @classmethod
    def from_model_config(cls, c: ModelConfig) -> "DataLayout":
        return cls(c.preprocessing, c.target_spacing, c.spatial_dims, c.slice_axis, c.crop_to_nonzero, c.resampling)


def resolve_layout(plan: dict[str, Any] | None, config: TrainingConfig, dataset: Any, data_dims: int,
                   has_roi: bool, preprocessing: list[dict[str, Any]] | None = None) -> DataLayout:
    """Decisions from the plan (when there is one) or the automatic defaults; fills the plan's network,
    patch and batch size into ``config`` where the caller left them open."""
    # a plan may put a 2D network on 3D data (slices across `slice_axis`)
    spatial_dims = int(_plan_value(plan, "spatial_dims") or data_dims)
    slice_axis = _plan_value(plan, "slice_axis") if spatial_dims < data_dims else None
    if spatial_dims < data_dims and slice_axis is None:
        raise MedsegError("the plan puts a 2D network on 3D data but names no slice_axis")
    steps = preprocessing if preprocessing is not None else (
        _plan_value(plan, "preprocessing", "normalization_steps")
        or default_preprocessing(dataset.channel_names, dataset.file_ending, has_roi, data_dims))
    target_spacing = _plan_value(plan, "target_spacing", "spacing")
    net_plan = _plan_value(plan, "network")
    if isinstance(net_plan, dict) and net_plan.get("name", config.network) == config.network:
        # the plan's topology, with options given explicitly (e.g. --features) taking precedence
        options = {k: v for k, v in net_plan.items() if k not in ("name", "options")}
        options.update(net_plan.get("options", {}))
        options.update(config.network_options)
        config.network_options = options
    if not config.patch_size and _plan_value(plan, "patch_size"):
        config.patch_size = tuple(int(p) for p in _plan_value(plan, "patch_size"))
    if not config.batch_size and _plan_value(plan, "batch_size"):
        config.batch_size = int(_plan_value(plan, "batch_size"))
    return DataLayout(
        preprocessing=list(steps),
        target_spacing=[float(v) for v in target_spacing] if target_spacing is not None else None,
        spatial_dims=spatial_dims, slice_axis=slice_axis,
        crop_to_nonzero=bool(_plan_value(plan, "crop_to_nonzero") or False),
        resampling=_plan_value(plan, "resampling"),
    )


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


class DivergenceCheck:
    """Warns once when the logged loss grows far above its first value (the run is diverging).

    A finite but exploding loss does not stop training (a user may still want the run), but it is never
    what a user wants to discover only after the budget is spent. Rule: a mean loss more than ``factor``
    times the first logged mean loss.
    """

    def __init__(self, factor: float = 100.0):
        self.factor = factor
        self.first: float | None = None
        self.warned = False

    def check(self, loss: float, iteration: int, console: Any) -> bool:
        if self.first is None:
            self.first = loss
            return False
        if self.warned or not self.first > 0 or loss <= self.factor * self.first:
            return False
        self.warned = True
        console.print(f"warning: at iteration {iteration} the loss is {loss:.3g}, {loss / self.first:.0f}x its first "
                      f"value {self.first:.3g}: training is diverging; lower the learning rate (--lr) or use a "
                      "normalised network (e.g. --net-option norm=instance)", highlight=False)
        return True


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
