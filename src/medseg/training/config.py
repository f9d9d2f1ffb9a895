"""The training options: one flat dataclass, saved (resolved) into the model folder's config.json.

A field left at None (or ``()`` / 0 for patch and batch size) is decided by a named rule of
:mod:`medseg.planning.training_rules` when the run starts (or, for the decision threshold and the
postprocessing, on the validation cases after training); a value given here overrides the rule, and
the model folder's rules.json records which.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Sequence

from medseg.errors import MedsegError

MEMORY_FORMATS = ("auto", "contiguous", "channels_last")
PRECISIONS = ("auto", "float32", "bfloat16")


@dataclass
class TrainingConfig:
    """Everything the training loop needs besides the data.

    Parameters
    ----------
    network : str or None
        Registered network name; None = the network rule (the U-Net; SegResNet-VAE for region datasets trained in 3D).
    network_options : dict
        Passed to :func:`medseg.nets.create_network` (features, depth, strides, ...).
    patch_size : tuple of int
        Training patch size (array order); ``()`` = automatic.
    batch_size : int
        Patches per iteration; 0 = automatic.
    iterations : int or None
        Stop after this many iterations (None: only the time limit).
    time_limit : float or None
        Wall-clock budget in seconds. With only a time limit the schedule runs over the time budget
        (progress = elapsed / time_limit). Neither: the budget rule (the plan's, else 20 minutes).
    optimizer : {"adamw", "sgd"}
    learning_rate : float or None
        None: the learning-rate rule (AdamW 2e-3, SGD 1e-2).
    weight_decay, momentum : float
    schedule : {"poly", "cosine", "constant"}
    warmup_iterations : int
        Linear learning-rate warm-up.
    grad_clip : float or None
        Gradient norm clipping (nnU-Net: 12).
    loss, loss_options : str or None, dict
        See :func:`medseg.losses.build_loss`; loss None: the loss rule (Dice + cross-entropy, or the loss the
        network's paper trained with).
    foreground_share : float or None
        Probability that a patch is centred on a foreground voxel; None: the rule (thin structures 0.2,
        else 0.5).
    augmentation : dict or None
        Passed to :func:`medseg.augmentation.build_augmentation`; None = the augmentation rule,
        ``{"enabled": False}`` switches it off.
    decision_threshold : float, "argmax" or None
        Binary models: None = chosen on the validation cases after training (the rule), "argmax" = none.
    postprocessing : list of dict or None
        Steps for :func:`medseg.postprocessing.apply_steps`; None = chosen on the validation cases.
    val_every : int or None
        Validate every this many iterations (and at the end) when there are validation cases; None: the
        validation-interval rule (every 200, stretched so that validation takes at most ``val_time_share``
        of the time).
    val_time_share : float or None
        With the rule: the largest share of the run's time validation may take (measured on the first
        validation); None: a fixed interval.
    checkpoint_every : int
        Write checkpoint_last every this many iterations (and on interruption / at the end).
    val_overlap : float
        Sliding-window overlap during validation.
    seed : int
    threads : int or None
        ``torch.set_num_threads``; None = all cores.
    cache : {"memory", "mmap"}
        Preprocessed cases in RAM, or memory-mapped .npy files in the model folder's cache/.
    cache_dtype : {"float32", "float16"}
    log_every : int
        Rows in training_log.csv.
    prefetch : int
        Batches prepared ahead by the background producer.
    encoder_weights : str or None
        Local torchvision-format state dict loaded into the network's ``encoder`` after it is built
        (transfer learning; see :func:`medseg.nets.encoders.weights.load_encoder_weights`). Only read
        at the start of a run: the model folder's weights hold the result.
    freeze_encoder : bool or None
        Keep the encoder fixed (``requires_grad=False``, its batch-norm statistics frozen too); None = not
        frozen, except for promptable networks, where the encoder rule decides.
    unfreeze_schedule : list of [int, str] or None
        Staged unfreezing: ``[[0, "decoder"], [500, "encoder.layer4"], [1000, "all"]]`` (see
        :class:`medseg.nets.finetune.StagedUnfreezing`); everything starts frozen.
    prune_selection : bool
        For networks with pruning levels (UNet++): after training, evaluate every level on the
        validation cases and record the choice in the model folder's pruning.json.
    memory_format : {"auto", "contiguous", "channels_last"}
        Layout of the network's tensors; "auto" times both on the first batch and keeps the faster
        (see :mod:`medseg.training.memory_format`). The choice is written back into the configuration.
    precision : {"auto", "float32", "bfloat16"}
        Precision of the network's training passes; "auto" times both on the first batch and keeps the faster
        (see :mod:`medseg.training.precision`). The choice is written back into the configuration.
    weight_average : float or None
        Decay of an exponential moving average of the weights (e.g. 0.999), which is then what is
        validated, saved and predicted with (see :mod:`medseg.training.averaging`); None = the last weights.
    init_from : str or None
        Fine-tuning: a trained model folder whose network, weights, preprocessing, labels, patch size and
        field-of-view normalisation the run starts from (``--init-from``); the fine-tuning rules of
        :mod:`medseg.planning.device_rules` then decide the defaults. Recorded as the model's lineage.
    fov_diameter : float, "none" or None
        Fundus photographs: the training camera's FOV diameter to record (pixels), "none" for no FOV
        normalisation; None: the field-of-view rule (measured on the training ROIs of colour photographs).
    field_extent : float, "auto", "outliers", "none" or None
        Volumes whose spacing was lost: the in-plane side (voxels of the network grid) every scan is brought
        to, "auto" for the training volumes' median, "outliers" for the median on the scans far from it only,
        "none" for none; None:
        :func:`medseg.planning.device_rules.rule_field_extent`.
    slice_context : int or None
        A 2D network on volumes: the neighbouring slices on each side given as extra channels (0: none);
        None: :func:`medseg.planning.training_rules.rule_slice_context`.
    init_weights : str or None
        ``"released"`` or a state-dict file: the weights a network ships (its registry entry's
        ``released_weights``, e.g. LiteMedSAM's) loaded before training; None = the initial-weights rule.
    semi_supervised : dict or None
        Semi-supervised training: the fields of
        :class:`medseg.training.semi_supervised.SemiSupervisedSettings` (method, labelled and unlabelled
        cases, batch mix, ramp-up, EMA decay, confidence threshold). None = supervised only.
    """

    network: str | None = None
    network_options: dict[str, Any] = field(default_factory=dict)
    patch_size: tuple[int, ...] = ()
    batch_size: int = 0
    iterations: int | None = None
    time_limit: float | None = None
    optimizer: str = "adamw"
    learning_rate: float | None = None
    weight_decay: float = 1e-4
    momentum: float = 0.99
    schedule: str = "poly"
    warmup_iterations: int = 20
    grad_clip: float | None = 12.0
    loss: str | None = None
    loss_options: dict[str, Any] = field(default_factory=dict)
    foreground_share: float | None = None
    augmentation: dict[str, Any] | None = None
    decision_threshold: float | str | None = None
    postprocessing: list[dict[str, Any]] | None = None
    val_every: int | None = None
    val_time_share: float | None = None
    checkpoint_every: int = 100
    val_overlap: float = 0.5
    seed: int = 0
    threads: int | None = None
    cache: str = "memory"
    cache_dtype: str = "float32"
    log_every: int = 10
    prefetch: int = 4
    encoder_weights: str | None = None
    freeze_encoder: bool | None = None
    unfreeze_schedule: list[list[Any]] | None = None
    prune_selection: bool = True
    memory_format: str = "auto"
    precision: str = "auto"
    weight_average: float | None = None
    semi_supervised: dict[str, Any] | None = None
    init_from: str | None = None
    fov_diameter: float | str | None = None
    field_extent: float | str | None = None
    slice_context: int | None = None
    # promptable / pretrained networks (issue 20): None = the rules decide (freeze_encoder None likewise)
    init_weights: str | None = None

    def __post_init__(self) -> None:
        self.patch_size = tuple(int(p) for p in self.patch_size)
        if isinstance(self.unfreeze_schedule, str):
            self.unfreeze_schedule = parse_unfreeze_schedule(self.unfreeze_schedule)
        if self.unfreeze_schedule is not None:
            self.unfreeze_schedule = [[int(i), str(t)] for i, t in self.unfreeze_schedule] or None
        if self.freeze_encoder and self.unfreeze_schedule:
            raise MedsegError("give --freeze-encoder or --unfreeze-schedule, not both "
                              "(a schedule starts with everything frozen)")
        if self.iterations is not None and self.iterations < 1:
            raise MedsegError(f"iterations must be >= 1, not {self.iterations}")
        if self.time_limit is not None and self.time_limit <= 0:
            raise MedsegError(f"time limit must be positive, not {self.time_limit}")
        if self.optimizer not in ("adamw", "sgd"):
            raise MedsegError(f"unknown optimizer '{self.optimizer}' (adamw, sgd)")
        if self.schedule not in ("poly", "cosine", "constant"):
            raise MedsegError(f"unknown schedule '{self.schedule}' (poly, cosine, constant)")
        if self.foreground_share is not None and not 0.0 <= self.foreground_share <= 1.0:
            raise MedsegError(f"foreground share must lie in [0, 1], not {self.foreground_share}")
        if self.cache not in ("memory", "mmap"):
            raise MedsegError(f"unknown cache '{self.cache}' (memory, mmap)")
        if self.cache_dtype not in ("float32", "float16"):
            raise MedsegError(f"unknown cache dtype '{self.cache_dtype}' (float32, float16)")
        if self.weight_average is not None and not 0.0 < self.weight_average < 1.0:
            raise MedsegError(f"the weight-average decay must lie in (0, 1), not {self.weight_average}")
        if self.semi_supervised is not None and self.weight_average is not None:
            raise MedsegError("--weight-average and semi-supervised training do not combine (the teacher is the "
                              "weight average; predict with it through predict_with='teacher')")
        if self.decision_threshold is not None and str(self.decision_threshold) != "argmax" and not (
                isinstance(self.decision_threshold, (int, float)) and 0.0 < float(self.decision_threshold) < 1.0):
            raise MedsegError(f"the decision threshold must lie in (0, 1) or be 'argmax', not {self.decision_threshold}")
        self.fov_diameter = _pixels_or_keyword(self.fov_diameter, "the FOV diameter", ("none",))
        self.field_extent = _pixels_or_keyword(self.field_extent, "the field extent", ("none", "auto", "outliers"))
        if self.slice_context is not None and not 0 <= int(self.slice_context) <= 8:
            raise MedsegError(f"the slice context must be 0 to 8 slices on each side, not {self.slice_context}")
        if self.memory_format not in MEMORY_FORMATS:
            raise MedsegError(f"unknown memory format '{self.memory_format}' ({', '.join(MEMORY_FORMATS)})")
        if self.precision not in PRECISIONS:
            raise MedsegError(f"unknown precision '{self.precision}' ({', '.join(PRECISIONS)})")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["patch_size"] = list(self.patch_size)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainingConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise MedsegError(f"unknown training option(s): {', '.join(unknown)}")
        return cls(**data)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hr)?\s*$", re.IGNORECASE)


def parse_duration(text: str | float | int | None) -> float | None:
    """Seconds from ``"20m"``, ``"90s"``, ``"1.5h"`` or a number of seconds.

    Examples
    --------
    >>> parse_duration("20m"), parse_duration("1.5h"), parse_duration(30)
    (1200.0, 5400.0, 30.0)
    """
    if text is None:
        return None
    if isinstance(text, (int, float)):
        return float(text)
    match = _DURATION.match(text)
    if not match:
        raise MedsegError(f"cannot read the duration '{text}'; write e.g. 90s, 20m or 1.5h")
    value, unit = float(match.group(1)), (match.group(2) or "s").lower()
    return value * {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600}[unit]


def parse_unfreeze_schedule(text: str | None) -> list[list[Any]] | None:
    """``"0:decoder,500:encoder.layer4,1000:all"`` -> ``[[0, "decoder"], [500, "encoder.layer4"], [1000, "all"]]``.

    Examples
    --------
    >>> parse_unfreeze_schedule("0:decoder, 500:encoder.layer4")
    [[0, 'decoder'], [500, 'encoder.layer4']]
    """
    if not text or not text.strip():
        return None
    stages = []
    for item in text.split(","):
        iteration, sep, target = item.strip().partition(":")
        if not sep or not target.strip():
            raise MedsegError(f"cannot read the unfreeze stage '{item.strip()}'; write ITERATION:TARGET, "
                              "e.g. 0:decoder,500:encoder.layer4,1000:all")
        try:
            stages.append([int(iteration), target.strip()])
        except ValueError:
            raise MedsegError(f"unfreeze stage '{item.strip()}': '{iteration}' is not an iteration number") from None
        if stages[-1][0] < 0:
            raise MedsegError(f"unfreeze stage '{item.strip()}': iterations start at 0")
    return stages


def parse_size(text: str | None, spatial_dims: int | None = None) -> tuple[int, ...]:
    """``"96,96"`` or ``"96x96"`` -> ``(96, 96)``; a single number is repeated ``spatial_dims`` times."""
    if not text:
        return ()
    try:
        values = tuple(int(v) for v in re.split(r"[,x× ]+", text.strip()) if v)
    except ValueError:
        raise MedsegError(f"cannot read the size '{text}'; write e.g. 96,96 or 64,128,128") from None
    if len(values) == 1 and spatial_dims:
        values = values * spatial_dims
    if any(v < 1 for v in values):
        raise MedsegError(f"sizes must be positive: '{text}'")
    return values


def _pixels_or_keyword(value: float | str | None, what: str, keywords: Sequence[str]) -> float | str | None:
    """A positive number of pixels, one of ``keywords`` (kept as given) or None."""
    if value is None or str(value).lower() in keywords:
        return value
    try:
        pixels = float(value)
    except ValueError:
        allowed = " or ".join(f"'{k}'" for k in keywords)
        raise MedsegError(f"{what} must be a number of pixels or {allowed}, not {value!r}") from None
    if not pixels > 0:
        raise MedsegError(f"{what} must be positive, not {value}")
    return pixels
