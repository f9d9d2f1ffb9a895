"""The rules that complete a run: every default the trainer (and the predictor) would otherwise pick silently.

:mod:`medseg.planning.rules` turns a dataset fingerprint into a plan (spacing, 2D/3D, topology, patch and
batch from the machine's budget). The rules here take the plan (or its absence), the user's options and
what the prepared training cases show, and decide the rest: validation cases, budget, learning rate,
network defaults, the inference tile, the normalisation layer, the share of foreground-centred patches,
the augmentation, patch and batch size — and, after training, on the validation cases, the decision
threshold and the postprocessing. Each returns a :class:`Rule` (value, inputs, reason); the trainer
writes them all to the model folder's ``rules.json`` and prints them (:func:`describe`). A user option
always wins, and is recorded as such (``overridden_by_user``).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from medseg.errors import MedsegError
from medseg.planning.rules import is_photograph, photograph_steps
from medseg.planning.structure import BOUNDARY_DEPTH, THIN_BOUNDARY_SHARE, is_thin

#: Rule constants, named so that the rules read like their documentation.
VALIDATION_FOLDS = 5                  # a held-out fifth: fold 0 of grouped 5-fold splits (nnU-Net)
DEFAULT_TIME_LIMIT = 1200.0           # 20 minutes when neither the user nor a plan gives a budget
LEARNING_RATE = {"adamw": 2e-3, "sgd": 1e-2}
WHOLE_IMAGE_TILE_PIXELS = 1024 * 1024  # 2D images up to this size are predicted in one tile
FOREGROUND_SHARE = {"thin": 0.2, "compact": 0.5}
PATCH_TARGET = {2: 128, 3: 64}
VOXELS_PER_BATCH = 4 * 128 * 128
THRESHOLD_METRIC = {"thin": "accuracy", "compact": "f1"}
VALIDATION_EVERY = 200               # first validation after this many steps
DEFAULT_LOSS = "dice_ce"              # see rule_loss
DEFAULT_NETWORK = "unet"              # see rule_network
REGION_NETWORK = "segresnet_vae"      # see rule_network; measured (BENCHMARKS.md, session 28):
REGION_EVIDENCE = ("on the 8 BraTS cases held out in 4 folds, 60 minutes of training each: whole tumour / core / "
                   "enhancing Dice 0.843 / 0.660 / 0.456 against the U-Net's 0.815 / 0.654 / 0.454, the whole tumour "
                   "better in 6 of 8 cases; after the default 20 minutes, 6 cases: 0.835 / 0.683 / 0.420 against "
                   "0.787 / 0.534 / 0.372")
VALIDATION_TIME_SHARE = 0.05          # validation may take at most this share of the run's time
TTA_MAX_SECONDS = 60.0               # per case on the network grid: a default stays usable on 2 CPU cores
TTA_MIN_CASES = 3                     # fewer validation cases cannot show a loss beyond noise
# why mirroring is the default (BENCHMARKS.md, session 34): the held-out cases of fold models whose validation
# cases had declined it, predicted both ways
MIRRORING_EVIDENCE = ("held-out cases of cross-validation models gained from it: PROMISE12 mean Dice +0.017 "
                      "(14 of 16 prostates higher, also in the fold whose 3 validation cases had lost 0.086), LA "
                      "+0.011 (6 of 8 atria higher); it was a wash elsewhere: DukeDME fluid -0.005 (HD95 lower in "
                      "all 3 folds), BraTS whole tumour / core / enhancing -0.005 / -0.014 / +0.008 (4 cases)")
MIN_IMPROVEMENT = 1e-4                # a postprocessing step / threshold must gain at least this much
# a structure is one piece in a label when its largest component holds this share of its voxels (an annotation
# speck does not make two pieces): PROMISE12 prostates, LA atria and ACDC left ventricles 1.000 in every case;
# ACDC RV / MYO down to 0.94 / 0.95, BraTS enhancing tumour 0.63, DRIVE vessels 0.81, OCT fluid 0.22
ONE_PIECE_SHARE = 0.99
ONE_PIECE_MIN_CASES = 2               # one case says nothing about a structure's shape
# a threshold chosen on fewer validation cases is noise: the accuracy optimum of single DRIVE validation images
# spans 0.24-0.83, and 0.741 chosen on 2 STARE images cost a fine-tuned model F1 0.841 -> 0.798 on the 8 others
# (BENCHMARKS.md, session 15)
THRESHOLD_MIN_CASES = 3
# a run this long is a model to predict with, not a trial: its inference backend is built with it (compiling a 3D
# network takes ~20-50 s here, at most 8 % of such a run); see rule_prepare_backend
PREPARE_BACKEND_MIN_SECONDS = 600.0


@dataclass(frozen=True)
class Rule:
    """One decision: its name, value, what it was decided from and why.

    ``shown`` is the value in words (for a clinician-researcher reading ``medseg train``'s output);
    ``overridden_by_user`` marks a value the user gave, in which case ``reason`` says so.
    """

    name: str
    title: str
    value: Any
    shown: str
    reason: str
    inputs: dict[str, Any] = field(default_factory=dict)
    overridden_by_user: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return json.loads(json.dumps(d, default=_jsonable))


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (tuple, set, np.ndarray)):
        return list(value)
    return str(value)


def describe(rule: Rule | dict[str, Any]) -> str:
    """One line in words: ``Title: value — reason`` (``(your choice)`` for user overrides)."""
    r = rule if isinstance(rule, dict) else rule.to_dict()
    mark = " (your choice)" if r.get("overridden_by_user") else ""
    return f"{r['title']}: {r['shown']}{mark} — {r['reason']}"


def user_rule(name: str, title: str, value: Any, shown: str, option: str) -> Rule:
    """The record of a value the user gave (the rule did not run)."""
    return Rule(name, title, value, shown, f"given with {option}", {}, True)


def _size(values: Sequence[int]) -> str:
    return " × ".join(str(int(v)) for v in values)


# --- before training ------------------------------------------------------------------------------
def rule_validation(case_names: Sequence[str], fold: int | str | None, val_cases: Sequence[str] | None) -> Rule:
    """Validation cases are never silently none. Given cases or a fold win. Otherwise: five or more
    cases → fold 0 of grouped 5-fold splits (a held-out fifth, deterministic for a seed, so runs of
    several folds fit together); two to four cases → the last case is held out; a single case cannot
    be split (recorded). ``fold="all"`` trains on every case without validation (the user's choice).
    Two validation cases are worth their cost even where they are too few for a threshold: BraTS trained on all 6
    of a fold's cases scored WT / TC 0.692 / 0.631 and 0.757 / 0.429 on two folds, against 0.819 / 0.739 and
    0.765 / 0.514 with 2 of the 6 held out, whose postprocessing removed a false tumour (BENCHMARKS.md, session 23).
    Three are worth theirs where the training labels already decide the postprocessing (a prostate in one piece):
    PROMISE12 trained on all 12 of a fold's cases scored 0.511 and 0.687 on two folds against 0.616 and 0.669 with 3
    held out (session 23, same recipe), whose threshold (p ≥ 0.85) undid an over-segmentation that p ≥ 0.5 kept
    (session 29).

    Returns a Rule whose value is ``{"fold": k}``, ``{"val_cases": [...]}`` or ``{"fold": "all"}``."""
    title = "Validation cases"
    if val_cases:
        return user_rule("validation", title, {"val_cases": list(val_cases)},
                         f"{len(val_cases)} case(s): {', '.join(list(val_cases)[:4])}", "--val-cases")
    if fold is not None:
        shown = "none (train on every case)" if str(fold) == "all" else f"fold {fold} of the splits"
        return user_rule("validation", title, {"fold": fold if str(fold) == "all" else int(fold)}, shown, "--fold")
    n = len(case_names)
    inputs = {"cases": n}
    if n >= VALIDATION_FOLDS:
        return Rule("validation", title, {"fold": 0}, f"a held-out fifth (fold 0 of {VALIDATION_FOLDS})",
                    f"{n} cases: one fold of {VALIDATION_FOLDS} is held out to choose the best checkpoint, "
                    "the decision threshold and the postprocessing on cases the network did not train on", inputs)
    if n >= 2:
        return Rule("validation", title, {"val_cases": [case_names[-1]]}, f"1 case ({case_names[-1]})",
                    f"only {n} cases: one is held out so that choices are made on an unseen case", inputs)
    return Rule("validation", title, {"fold": "all"}, "none",
                "a single case cannot be split: no best checkpoint, threshold or postprocessing choice", inputs)


def rule_network(user: str | None, regions: bool, configuration: str) -> Rule:
    """The U-Net (nnU-Net's finding: a well-planned U-Net is hard to beat), except for datasets of overlapping
    regions (the BraTS layout: whole tumour ⊃ tumour core ⊃ enhancing tumour, one sigmoid output each) trained
    in 3D, which get the network that won BraTS 2018, SegResNet-VAE: its variational branch, which reconstructs
    the input from the shared encoder during training, regularises an encoder that sees a few multi-modal
    volumes only (measured: ``REGION_EVIDENCE``).

    ``configuration``: what the run trains ("2d" / "3d": the plan's, which is the same for both networks, as
    neither asks for one). In 2D SegResNet-VAE was measured on the other few-case dataset only, PROMISE12's
    prostate (one label), and lost: 8 held-out cases 0.606 against the U-Net's 0.643 (30 minutes each; the
    U-Net's runs of the same recipe from session 23; BENCHMARKS.md, session 29); so regions planned in 2D (thick
    slices) keep the U-Net."""
    title = "Network"
    inputs = {"regions": regions, "configuration": configuration}
    if user is not None:
        return user_rule("network", title, user, user, "--net")
    if regions and configuration == "3d":
        return Rule("network", title, REGION_NETWORK, "SegResNet-VAE",
                    "the dataset declares overlapping regions and trains in 3D (the BraTS layout): the BraTS 2018 "
                    f"winner's network, whose training-only VAE branch regularises the encoder ({REGION_EVIDENCE})",
                    inputs)
    return Rule("network", title, DEFAULT_NETWORK, "U-Net",
                "the default: a U-Net planned for the dataset (nnU-Net's finding: hard to beat)", inputs)


def rule_plan(plan: dict[str, Any], automatic: bool, seconds: float | None = None) -> Rule:
    """Without ``--plan``, the dataset is planned automatically with ``medseg plan``'s rules (its
    fingerprint measured during the dataset check): 2D or 3D network, voxel spacing, crop to the
    non-zero region, intensity normalisation per channel, patch and batch size. The plan is written
    to the model folder (plan.json) with every planning rule that fired."""
    from medseg.planning.describe import describe_decision

    title = "Plan"
    chosen = {"configuration": plan.get("configuration"), "target_spacing": plan.get("target_spacing"),
              "crop_to_nonzero": plan.get("crop_to_nonzero"), "patch_size": plan.get("patch_size"),
              "batch_size": plan.get("batch_size")}
    parts = [describe_decision("configuration", chosen["configuration"])]
    if chosen["target_spacing"]:
        parts.append(describe_decision("target_spacing", chosen["target_spacing"]))
    parts.append(describe_decision("crop_to_nonzero", str(bool(chosen["crop_to_nonzero"])).lower()))
    shown = "; ".join(parts)
    if not automatic:
        return user_rule("plan", title, chosen, shown, "--plan")
    inputs = {"planning_seconds": round(seconds, 2)} if seconds is not None else {}
    return Rule("plan", title, chosen, shown, "no plan given: planned automatically from the dataset (the rules "
                "of `medseg plan`, each written to plan.json in the model folder)", inputs)


def rule_budget(iterations: int | None, time_limit: float | None, plan_training: dict[str, Any] | None) -> Rule:
    """The training budget: the user's iterations / time limit; else the plan's; else 20 minutes."""
    title = "Training budget"
    if iterations is not None or time_limit is not None:
        shown = ", ".join(([f"{iterations} iterations"] if iterations else [])
                          + ([f"{time_limit / 60:g} minutes"] if time_limit else []))
        return user_rule("budget", title, {"iterations": iterations, "time_limit": time_limit}, shown,
                         "--iterations / --time-limit")
    plan_training = plan_training or {}
    if plan_training.get("time_limit") or plan_training.get("iterations"):
        it, tl = plan_training.get("iterations"), plan_training.get("time_limit")
        shown = f"{tl / 60:g} minutes" if tl else f"{it} iterations"
        return Rule("budget", title, {"iterations": it, "time_limit": tl}, shown,
                    "the plan's budget (planned for this machine)", {"plan": plan_training})
    return Rule("budget", title, {"iterations": None, "time_limit": DEFAULT_TIME_LIMIT},
                f"{DEFAULT_TIME_LIMIT / 60:g} minutes", "no budget given and no plan: the default CPU budget")


def rule_learning_rate(optimizer: str, learning_rate: float | None) -> Rule:
    """AdamW 2·10⁻³ (stable on small CPU batches), SGD with Nesterov momentum 10⁻² (nnU-Net)."""
    title = "Learning rate"
    if learning_rate is not None:
        return user_rule("learning_rate", title, float(learning_rate), f"{learning_rate:g}", "--lr")
    value = LEARNING_RATE[optimizer]
    return Rule("learning_rate", title, value, f"{value:g}", f"the starting rate for {optimizer.upper()} "
                "(decayed to zero over the budget)", {"optimizer": optimizer})


def rule_preprocessing(plan_steps: list | None, user_steps: list | None, channel_names: Sequence[str],
                       file_ending: str | None, has_roi: bool, data_dims: int) -> Rule:
    """The plan's intensity steps; without a plan, a 2D RGB photograph (three channels, raster file) is a
    fundus image: green channel (the vessel contrast), CLAHE (even illumination), z-score inside the field
    of view. Anything else: per-channel z-score (inside the ROI when there is one)."""
    title = "Intensity preprocessing"
    if user_steps is not None:
        return user_rule("preprocessing", title, list(user_steps), _steps(user_steps), "--preprocessing")
    if plan_steps:
        return Rule("preprocessing", title, list(plan_steps), _steps(plan_steps), "the plan's normalisation "
                    "(`medseg plan` prints the rule for each channel)")
    inputs = {"channels": list(channel_names), "file_ending": file_ending, "roi": has_roi, "dims": data_dims}
    if is_photograph(channel_names, file_ending, data_dims):
        steps = photograph_steps(has_roi)
        return Rule("preprocessing", title, steps, _steps(steps), "2D colour photographs: the green channel "
                    "carries the vessel contrast, CLAHE evens out the illumination", inputs)
    zscore = {"name": "zscore", "mask": "roi"} if has_roi else {"name": "zscore"}
    return Rule("preprocessing", title, [zscore], _steps([zscore]), "intensities in arbitrary units: each "
                "case standardised on its own" + (" inside its region of interest" if has_roi else ""), inputs)


#: Intensity steps in words (the registry's names are identifiers).
STEP_WORDS = {"green_channel": "green channel", "clahe": "CLAHE (local contrast equalisation)", "zscore": "z-score",
              "clip": "clip to fixed bounds", "clip_percentiles": "clip to percentiles", "rescale": "rescale"}


def _steps(steps: Sequence[dict]) -> str:
    """Intensity steps in words; one step repeated per channel is said once.

    >>> _steps([{"name": "zscore", "mask": "nonzero", "channels": [c]} for c in range(4)])
    'z-score inside the non-zero region, for each of 4 channels'
    """
    where = {"roi": " inside the ROI", "nonzero": " inside the non-zero region"}
    runs: list[list] = []
    for step in steps:
        text = STEP_WORDS.get(str(step.get("name")), str(step.get("name"))) + where.get(step.get("mask"), "")
        if runs and runs[-1][0] == text and "channels" in step:
            runs[-1][1] += 1
        else:
            runs.append([text, 1])
    return ", then ".join(t + (f", for each of {n} channels" if n > 1 else "") for t, n in runs) or "none"


def rule_network_defaults(network: str, defaults: dict[str, Any], options: dict[str, Any],
                          user: set[str] | None = None, reasons: dict[str, str] | None = None) -> list[Rule]:
    """Options the network's registry entry declares as its training defaults (e.g. the U-Net's 16
    base features and deep supervision, V-Net's 3×3×3 kernels), applied where the user gave none, each
    with the reason its entry gives."""
    out = []
    for key, value in defaults.items():
        title = f"Network option {key}"
        if key in (user or set()):
            out.append(user_rule(f"network.{key}", title, options[key], str(options[key]), "--net-option"))
        elif key in options:
            out.append(Rule(f"network.{key}", title, options[key], str(options[key]), "the plan's network",
                            {"network": network}))
        else:
            why = (reasons or {}).get(key)
            out.append(Rule(f"network.{key}", title, value, str(value),
                            f"the {network} network's training default" + (f": {why}" if why else ""),
                            {"network": network}))
    return out


def rule_loss(user: str | None, network: str, paper_loss: str | None, regions: bool = False) -> Rule:
    """Dice + cross-entropy (nnU-Net's loss: Dice for the overlap of small structures, cross-entropy for
    smooth gradients from the first steps), unless the network's registry entry declares the loss its paper
    trained with (V-Net: its Dice), so that choosing a paper's network gives the paper's recipe. Datasets
    of overlapping regions (BraTS): Dice + binary cross-entropy per region, whatever the network (a softmax
    loss cannot train one sigmoid output per region). The Dice is one per patch, averaged: nnU-Net's batch Dice
    (one over the whole batch) scored level on OCT fluid and PROMISE12 (BENCHMARKS.md, session 49), and so did
    the Tversky index in its place (missed voxels weighted 0.7, ``tversky_ce``; session 51)."""
    title = "Loss"
    if user is not None:
        return user_rule("loss", title, user, user, "--loss")
    if regions:
        return Rule("loss", title, "region", "Dice + binary cross-entropy per region",
                    "the dataset declares overlapping regions: one sigmoid output and loss per region",
                    {"network": network})
    if paper_loss:
        return Rule("loss", title, paper_loss, paper_loss,
                    f"the loss of the {network} paper (declared in its registry entry)", {"network": network})
    return Rule("loss", title, DEFAULT_LOSS, "Dice + cross-entropy",
                "the default: Dice for the overlap of small structures, cross-entropy for smooth early gradients",
                {"network": network})


def rule_inference_tile(data_dims: int, spatial_dims: int, shapes: Sequence[Sequence[int]],
                        divisor: Sequence[int], patch_size: Sequence[int]) -> Rule:
    """2D images up to 1024² pixels are predicted whole, in one tile (the largest training image
    rounded up to the network's size divisor): one well-shaped convolution pass is ~4× faster than
    overlapping patches (DRIVE: 592 × 576 vs 81 tiles of 128²) and has no tile seams. Larger images
    and volumes use overlapping tiles of the patch size."""
    title = "Inference tile"
    largest = [int(v) for v in np.max(np.asarray(shapes), axis=0)] if len(shapes) else []
    inputs = {"largest_image": largest, "patch_size": list(patch_size)}
    if data_dims == 2 and spatial_dims == 2 and largest and math.prod(largest) <= WHOLE_IMAGE_TILE_PIXELS:
        tile = [int(-(-s // d) * d) for s, d in zip(largest, divisor)]
        return Rule("inference_tile", title, tile, f"the whole image ({_size(tile)} pixels)",
                    f"2D images of at most {_size(largest)} pixels fit one tile: no seams, fewer and larger "
                    "convolutions", inputs)
    return Rule("inference_tile", title, None, f"overlapping tiles of the patch size ({_size(patch_size)})",
                "volumes and large images are predicted tile by tile", inputs)


def rule_normalisation_layer(network: str, norm_option: str | None, options: dict[str, Any],
                             whole_image_tile: bool) -> Rule | None:
    """Batch norm when whole images are predicted in one tile: instance-norm statistics of a training
    patch differ from those of a whole image, batch-norm running statistics do not depend on the tile.
    Otherwise the network's own default (instance norm for the U-Net family: small CPU batches).
    None for networks without a normalisation option."""
    if not norm_option:
        return None
    title = "Normalisation layer"
    if norm_option in options:
        return user_rule("normalisation_layer", title, options[norm_option], f"{options[norm_option]} norm",
                         f"--net-option {norm_option}=…")
    inputs = {"network": network, "whole_image_tile": whole_image_tile}
    if whole_image_tile:
        return Rule("normalisation_layer", title, "batch", "batch normalisation", "whole images are predicted "
                    "in one tile, where instance-norm statistics would differ from the training patches'", inputs)
    return Rule("normalisation_layer", title, None, "the network's default", "predicted in tiles of the "
                "training patch size: the statistics match", inputs)


def rule_structure(share: float, measured_on: str = "the training labels") -> Rule:
    """Structures are thin (vessels, nerves, membranes) when at least half their voxels lie within two
    voxels of their own boundary; such data get the thin-structure foreground share, augmentation and
    threshold metric. Measured where the planner measured it — the dataset's own grid, in the plan's
    fingerprint — when the plan says: on a grid the plan coarsened any structure looks thinner (BraTS
    tumours, 0.22 at 1 mm, measured 0.51 on one fold's 2.65 mm grid, and that fold trained with the vessel
    recipe: whole tumour Dice 0.46, core 0; BENCHMARKS.md, session 22)."""
    kind = "thin" if is_thin(share) else "compact"
    shown = "thin (vessel-like)" if kind == "thin" else "compact (organ-like)"
    return Rule("structure", "Shape of the labelled structures", kind, shown,
                f"{100 * share:.0f}% of the foreground voxels lie within {BOUNDARY_DEPTH} voxels of its boundary "
                f"on {measured_on} ({'≥' if kind == 'thin' else '<'} {100 * THIN_BOUNDARY_SHARE:.0f}%)",
                {"boundary_share": round(share, 4), "measured_on": measured_on})


def rule_foreground_share(structure: str, user: float | None) -> Rule:
    """Share of training patches centred on a foreground voxel: thin structures 0.2 (they run through
    most patches anyway; more background patches teach the background, as the DRIVE recipe measured),
    compact structures 0.5 (small organs would otherwise be seen rarely)."""
    title = "Foreground-centred patches"
    if user is not None:
        return user_rule("foreground_share", title, float(user), f"{100 * user:.0f}% of patches", "--foreground-share")
    value = FOREGROUND_SHARE[structure]
    return Rule("foreground_share", title, value, f"{100 * value:.0f}% of patches",
                f"{structure} structures", {"structure": structure})


def thin_structure_augmentation() -> dict[str, Any]:
    """The augmentation for thin structures (benchmarks/configs/drive_augmentation.json): the defaults
    without blur and low-resolution simulation (both erase a vessel one or two pixels wide), with half the
    noise and gentler brightness, contrast and gamma (vessel contrast is what the network must learn)."""
    return {"transforms": [
        {"name": "affine", "rotation": [-180.0, 180.0], "scale": [0.85, 1.25], "p": 0.3},
        {"name": "noise", "std": [0.0, 0.05], "p": 0.1},
        {"name": "brightness", "factor": [0.8, 1.2], "p": 0.15},
        {"name": "contrast", "factor": [0.8, 1.2], "p": 0.15},
        {"name": "gamma", "gamma": [0.8, 1.25], "p": 0.3},
        {"name": "flip", "p": 0.5},
    ]}


def paper_transforms(transforms: Sequence[dict[str, Any]], patch_size: Sequence[int],
                     train_cases: int) -> tuple[list[dict[str, Any]], list[str]]:
    """A network's paper augmentation made concrete for this run: a ``max_displacement_share`` becomes
    voxels of the training patch per axis; histogram matching needs a second training case to match to.
    Returns the transforms and what was left out (in words).

    Examples
    --------
    >>> paper_transforms([{"name": "bspline", "max_displacement_share": 0.05}], [16, 96, 128], 12)[0]
    [{'name': 'bspline', 'max_displacement': [0.8, 4.8, 6.4]}]
    """
    out, dropped = [], []
    for t in transforms:
        t = dict(t)
        if t.get("name") == "histogram_matching" and train_cases < 2:
            dropped.append("histogram matching (one training case: nothing to match to)")
            continue
        share = t.pop("max_displacement_share", None)
        if share is not None:
            t["max_displacement"] = [round(float(share) * int(p), 2) for p in patch_size]
        out.append(t)
    return out, dropped


def _paper_words(transforms: Sequence[dict[str, Any]]) -> str:
    words = {"histogram_matching": "histogram matching between training cases",
             "bspline": "random B-spline deformation"}
    return ", ".join(words.get(t.get("name"), str(t.get("name"))) for t in transforms)


def rule_augmentation(structure: str, spatial_dims: int, user: dict[str, Any] | None,
                      paper: tuple[str, Sequence[dict[str, Any]]] | None = None,
                      patch_size: Sequence[int] = (), train_cases: int = 0) -> Rule:
    """Thin structures: no blur and no low-resolution simulation, gentler intensity changes
    (:func:`thin_structure_augmentation`); otherwise medseg's nnU-Net-like defaults (in-plane only for
    thick-slice 3D data). A network whose registry entry declares the augmentation its paper trained with
    (``paper``: network name and transforms; V-Net: histogram matching between training cases and a B-spline
    deformation on a 2×2×2 control grid) gets those transforms too, run first (:func:`paper_transforms`).
    ``--augmentation '{}'`` keeps medseg's defaults without them."""
    title = "Data augmentation"
    if user is not None:
        shown = "off" if user.get("enabled", True) is False else "the given transforms"
        return user_rule("augmentation", title, user, shown, "--augmentation / --no-augmentation")
    network, declared = paper if paper else ("", ())
    extra, dropped = paper_transforms(declared, patch_size, train_cases)
    inputs: dict[str, Any] = {"structure": structure, "spatial_dims": spatial_dims}
    if declared:
        inputs.update(network=network, paper_transforms=list(declared), train_cases=train_cases)
    added = f"; first, as the {network} paper trained: {_paper_words(extra)}" if extra else ""
    why = (f"; the {network} paper's augmentation is added (declared in its registry entry)" if extra else "") + \
        (f"; left out: {', '.join(dropped)}" if dropped else "")
    if structure == "thin" and spatial_dims == 2:
        return Rule("augmentation", title, {"transforms": extra + thin_structure_augmentation()["transforms"]},
                    "rotation, zoom, flips, mild noise and intensity changes; no blur or low resolution" + added,
                    "blurring or down-sampling erases structures one or two pixels wide" + why, inputs)
    return Rule("augmentation", title, {"leading_transforms": extra} if extra else None,
                "rotation, zoom, flips, noise, blur, intensity, low resolution" + added,
                "medseg's defaults (nnU-Net-like)" + why, inputs)


def rule_patch_size(user: Sequence[int], planned: Sequence[int] | None, shapes: Sequence[Sequence[int]],
                    spatial_dims: int, divisor: Sequence[int], replaced: Sequence[int] | None = None) -> Rule:
    """The user's or the plan's patch, rounded up to the network's size divisor (e.g. a plan's 8-slice
    patch for V-Net, which halves every axis four times). Without either: 128² in 2D, 64³ in 3D, each
    axis clipped to the median image size rounded up to the divisor (two cores afford these).

    ``replaced``: an automatic plan's patch set aside for thin structures (:func:`uses_plan_patch`)."""
    title = "Training patch"

    def fit(p: Sequence[int]) -> list[int]:
        return [int(-(-int(v) // d) * d) for v, d in zip(p, divisor)]

    if user:
        fitted = fit(user)
        note = "" if list(user) == fitted else f" (rounded up from {_size(user)} to the network's multiples)"
        return Rule("patch_size", title, fitted, _size(fitted) + note, "given with --patch-size", {}, True)
    if planned:
        fitted = fit(planned)
        note = "" if list(planned) == fitted else f", rounded up from {_size(planned)} to multiples of {_size(divisor)}"
        return Rule("patch_size", title, fitted, _size(fitted), "the plan's patch (fits this machine's step "
                    f"budget){note}", {"planned": list(planned), "divisor": list(divisor)})
    target = PATCH_TARGET[spatial_dims]
    median = np.median(np.asarray(shapes), axis=0) if len(shapes) else np.full(spatial_dims, target)
    out = [max(int(d), int(math.ceil(min(target, int(m)) / d) * d)) for m, d in zip(median, divisor)]
    inputs = {"median_shape": [int(v) for v in median], "divisor": list(divisor)}
    reason = f"{target} per axis on two cores, clipped to the median image ({_size(median)})"
    if replaced:
        inputs["automatic_plan_patch"] = [int(v) for v in replaced]
        reason = (f"thin structures are recognised locally: the automatic plan's {_size(replaced)} patch (sized to "
                  f"see most of an organ) is set aside for {reason}, which buys more steps per minute (the "
                  "DRIVE recipe, BENCHMARKS.md)")
    return Rule("patch_size", title, out, _size(out), reason, inputs)


def uses_plan_patch(automatic_plan: bool, structure: str) -> bool:
    """Whether the plan's patch, batch and network topology apply: always for a plan the user gave; for
    an automatic plan, not for thin structures. The planner sizes a patch to cover most of the median
    image (an organ's context); a vessel a few pixels wide is recognised locally, and on DRIVE the
    128² patches, batch 4 and the registry's 16-wide U-Net met the benchmark (~6,000 steps in 20
    minutes) where the plan's 192 × 256 patch at batch 2 allows fewer."""
    return not (automatic_plan and structure == "thin")


def rule_batch_size(user: int, planned: int | None, patch_size: Sequence[int]) -> Rule:
    """The user's or the plan's; else about 4 × 128² voxels per step (at least 2, at most 32)."""
    title = "Batch size"
    if user:
        return user_rule("batch_size", title, int(user), f"{user} patches per step", "--batch-size")
    if planned:
        return Rule("batch_size", title, int(planned), f"{planned} patches per step", "the plan's batch size")
    value = int(max(2, min(32, VOXELS_PER_BATCH // int(np.prod(patch_size)))))
    return Rule("batch_size", title, value, f"{value} patches per step",
                f"about {VOXELS_PER_BATCH:,} voxels per step on a CPU", {"patch_size": list(patch_size)})


def rule_validation_interval(user: int | None, val_cases: int) -> Rule:
    """Validate every 200 steps, stretched once the first validation is timed so that validation takes at
    most 5 % of the run. Every second spent validating is a step not taken under a time budget (40 3D
    validation volumes can cost as much as hundreds of steps on a CPU), and under the decaying learning rate
    the best checkpoint is one of the last (ACDC, 60 minutes at 10 %: 13 validations cost ~700 of 7,600
    steps and the last one was the best), so a point every few minutes is all the curve and the checkpoint
    choice need."""
    title = "Validation interval"
    if user is not None:
        return user_rule("validation_interval", title, {"every": int(user), "time_share": None},
                         f"every {user} steps", "--val-every")
    return Rule("validation_interval", title, {"every": VALIDATION_EVERY, "time_share": VALIDATION_TIME_SHARE},
                f"every {VALIDATION_EVERY} steps or more",
                f"at most {100 * VALIDATION_TIME_SHARE:.0f}% of the time goes to validating {val_cases} case(s): the "
                "interval grows when one validation takes longer than that share", {"val_cases": val_cases})


# --- after training, on the validation cases --------------------------------------------------------
def rule_decision_threshold(user: float | str | None, binary: bool, structure: str,
                            probabilities: Sequence[np.ndarray], references: Sequence[np.ndarray],
                            rois: Sequence[np.ndarray | None], one_piece: bool = False) -> Rule | None:
    """Binary softmax models: the foreground probability threshold that maximises pixel accuracy (thin
    structures: the retinal-vessel convention) or Dice (compact structures) on the validation cases, on their
    input's grid (where predictions are thresholded) — a Dice + CE model over-segments thin vessels at
    p = 0.5. Kept only when it beats 0.5 there; never chosen on training cases (optimistic) — with fewer than
    :data:`THRESHOLD_MIN_CASES` validation cases the argmax stays (a fine-tuned model keeps its source's
    threshold instead: :func:`medseg.planning.device_rules.rule_inherited_threshold`).

    A structure in one piece (:func:`rule_one_piece`) is scored as the predictor will output it, by its
    largest component: the plain optimum climbs to where far false blobs vanish (PROMISE12: p ≥ 0.86–0.97),
    under-segmenting the gland, though the postprocessing removes those blobs anyway. Measured on 3 PROMISE12
    models' 12 held-out cases (BENCHMARKS.md, session 22): mean Dice 0.672 → 0.697 after the largest component
    (per model +0.062, −0.001, +0.013).

    Region (sigmoid) models keep p ≥ 0.5: BraTS folds validate on 2 cases, and the same search per region on them
    moved 9 fold models' held-out whole-tumour Dice by −0.004 on average (−0.19 to +0.08; a validation case with
    a false tumour drove the threshold to 0.995), tumour core +0.010, enhancing tumour +0.009 (BENCHMARKS.md,
    session 27)."""
    title = "Decision threshold"
    if not binary:
        return None
    if user is not None:
        if str(user) == "argmax":
            return user_rule("decision_threshold", title, None, "argmax (p ≥ 0.5)", "--decision-threshold")
        return user_rule("decision_threshold", title, float(user), f"p ≥ {float(user):.3f}", "--decision-threshold")
    if not probabilities:
        return Rule("decision_threshold", title, None, "argmax (p ≥ 0.5)",
                    "no validation cases to choose on (choosing on training cases would be optimistic)")
    if len(probabilities) < THRESHOLD_MIN_CASES:
        return Rule("decision_threshold", title, None, "argmax (p ≥ 0.5)",
                    f"{len(probabilities)} validation case(s): too few to choose a threshold on (at least "
                    f"{THRESHOLD_MIN_CASES}; one image's optimum is far from another's)", {"cases": len(probabilities)})
    from medseg.planning.threshold import choose_threshold

    metric = THRESHOLD_METRIC[structure]
    chosen, score, at_half = choose_threshold(probabilities, references, rois, metric, largest_component=one_piece)
    scored = f"{metric} of the largest component" if one_piece else metric
    inputs = {"metric": metric, "cases": len(probabilities), "score_at_0.5": round(at_half, 5),
              "score_at_chosen": round(score, 5), "largest_component": one_piece}
    if not score > at_half + MIN_IMPROVEMENT or not 0.0 < chosen < 1.0:
        return Rule("decision_threshold", title, None, "argmax (p ≥ 0.5)",
                    f"no threshold beat 0.5 on the {len(probabilities)} validation case(s) ({scored} {at_half:.4f})",
                    inputs)
    return Rule("decision_threshold", title, float(chosen), f"p ≥ {chosen:.3f}",
                f"maximises {scored} on the {len(probabilities)} validation case(s): {at_half:.4f} at 0.5 → "
                f"{score:.4f}", inputs)


def mirroring_measurable(axes: Sequence[int], cases: int, plain_seconds: float) -> bool:
    """Whether :func:`rule_test_time_mirroring` can measure mirroring on the validation cases: axes to mirror,
    enough cases to tell a loss from noise, and 2^axes passes within :data:`TTA_MAX_SECONDS` per case (else the
    mirrored pass is not worth making)."""
    return bool(axes) and cases >= TTA_MIN_CASES and plain_seconds * 2 ** len(axes) <= TTA_MAX_SECONDS


def rule_test_time_mirroring(axes: Sequence[int], plain_dice: Sequence[float], plain_seconds: float,
                              mirrored_dice: Sequence[float] | None = None,
                              mirrored_seconds: float | None = None) -> Rule:
    """Mirroring test-time augmentation (average the predictions of a case and of its mirror images) is the
    default, as in nnU-Net: on held-out cases it gained where the validation cases were too few to show it
    (:data:`MIRRORING_EVIDENCE`). It is off when a case would take more than :data:`TTA_MAX_SECONDS` on the
    network grid (2^axes network passes: 4× in 2D, 8× in 3D), when the validation cases show it lowers the mean
    Dice beyond noise (a loss above two standard errors, over at least :data:`TTA_MIN_CASES` cases), and when
    nothing timed a plain prediction (``plain_seconds`` 0; without validation cases a training case times it).
    Every prediction then uses it unless told otherwise (``medseg predict --no-tta``)."""
    title = "Test-time mirroring"
    axes = [int(a) for a in axes]
    passes = 2 ** len(axes)
    inputs = {"axes": axes, "cases": len(plain_dice), "plain_seconds_per_case": round(plain_seconds, 3)}
    shown = f"mirror axes {', '.join(map(str, axes))} ({passes} passes)"
    if not axes:
        return Rule("tta", title, [], "off", "the model has no axes to mirror", inputs)
    if plain_seconds <= 0:
        return Rule("tta", title, [], "off", "no case to time the mirrored passes on", inputs)
    if mirrored_dice is None or mirrored_seconds is None:
        estimate = plain_seconds * passes
        if estimate > TTA_MAX_SECONDS:
            return Rule("tta", title, [], "off", f"{passes} passes would take ~{estimate:.0f} s per case on this "
                        f"machine (at most {TTA_MAX_SECONDS:.0f} s)", inputs)
        few = (f"{len(plain_dice)} validation case(s) cannot show a loss (at least {TTA_MIN_CASES})" if plain_dice
               else "no validation cases to show a loss (a training case timed it)")
        return Rule("tta", title, axes, shown, f"{few}, so the default: {MIRRORING_EVIDENCE}; ~{estimate:.0f} s per "
                    "case", inputs)
    gains = np.asarray(mirrored_dice, dtype=np.float64) - np.asarray(plain_dice, dtype=np.float64)
    mean, error = float(gains.mean()), float(gains.std(ddof=1) / np.sqrt(gains.size))
    inputs.update({"mean_dice_plain": round(float(np.mean(plain_dice)), 5),
                   "mean_dice_mirrored": round(float(np.mean(mirrored_dice)), 5), "mean_gain": round(mean, 5),
                   "standard_error": round(error, 5), "mirrored_seconds_per_case": round(mirrored_seconds, 3)})
    measured = (f"mean validation Dice {np.mean(plain_dice):.4f} → {np.mean(mirrored_dice):.4f} "
                f"(gain {mean:+.4f} ± {error:.4f} s.e. over {gains.size} cases), {plain_seconds:.1f} → "
                f"{mirrored_seconds:.1f} s per case")
    if mirrored_seconds > TTA_MAX_SECONDS:
        return Rule("tta", title, [], "off", f"{measured}: slower than {TTA_MAX_SECONDS:.0f} s per case", inputs)
    if mean < 0 and -mean > 2 * error:
        return Rule("tta", title, [], "off", f"{measured}: a loss beyond noise", inputs)
    return Rule("tta", title, axes, shown, f"{measured}: no loss beyond noise, so the default ({MIRRORING_EVIDENCE})",
                inputs)


def rule_one_piece(train_labels: Sequence[np.ndarray], targets: dict[int | str, Sequence[int]]) -> Rule:
    """The labels (regions) that are one connected piece in every training label where they occur — organs
    such as a prostate, a left atrium, a left ventricle; not vessels, fluid pockets or tumour parts. The
    postprocessing rule keeps their largest component unless it lowers the validation Dice: a handful of
    validation cases often ties (no stray blob in any of them), and a tie is no evidence against what every
    training label shows. Measured (BENCHMARKS.md, sessions 21 and 22): a PROMISE12 fold-2 model chose no
    postprocessing on its 3 validation cases and kept a far false blob in a held-out case; over 20 held-out
    prostates of 5 models the largest component raised mean Dice 0.611 → 0.645.

    ``targets``: each label value (region name) → the class indices of ``train_labels`` it covers."""
    from medseg.postprocessing import largest_component_share

    shares: dict[int | str, list[float]] = {key: [] for key in targets}
    for label in train_labels:
        label = np.asarray(label)
        for key, indices in targets.items():
            share = largest_component_share(np.isin(label, indices))
            if share is not None:
                shares[key].append(share)
    one_piece = [key for key, found in shares.items()
                 if len(found) >= ONE_PIECE_MIN_CASES and min(found) >= ONE_PIECE_SHARE]
    inputs = {"smallest_share": {str(k): round(min(v), 4) for k, v in shares.items() if v},
              "cases": {str(k): len(v) for k, v in shares.items()}}

    def named(key: int | str) -> str:
        return f"label {key}" if isinstance(key, int) else key

    shown = ", ".join(map(named, one_piece)) if one_piece else "none"
    reason = (f"in every training label where they occur (≥ {ONE_PIECE_MIN_CASES} cases), the largest component "
              f"holds ≥ {100 * ONE_PIECE_SHARE:.0f}% of the voxels: " + (
                  ", ".join(f"{named(k)} ({len(shares[k])} cases)" for k in one_piece) if one_piece
                  else "no label does"))
    return Rule("one_piece", "Structures in one piece", one_piece, shown, reason, inputs)


def rule_postprocessing(user: Sequence[dict] | None, predictions: Sequence[np.ndarray],
                        references: Sequence[np.ndarray], spacings: Sequence[Sequence[float]],
                        label_values: Sequence[int], rois: Sequence[np.ndarray | None] | None = None,
                        regions: dict[str, Sequence[int]] | None = None, one_piece: Sequence[int | str] = ()) -> Rule:
    """Per label (per region for a region model), candidate steps (largest component, fill holes, remove
    objects below a size) are kept only where they raise its mean Dice on the validation cases (nnU-Net's
    rule); the largest component of a structure in one piece (:func:`rule_one_piece`) also where it ties, and
    without validation cases (``--fold all``); see
    :func:`medseg.postprocessing.choose_postprocessing`."""
    title = "Postprocessing"
    if user is not None:
        return user_rule("postprocessing", title, list(user), describe_steps(user), "--postprocessing")
    from medseg.postprocessing import choose_postprocessing, one_piece_steps

    if not predictions:
        kept = one_piece_steps(label_values, regions, one_piece)
        return Rule("postprocessing", title, kept, describe_steps(kept),
                    "no validation cases to test steps on" + (
                        ": the largest component of each structure the training labels show in one piece" if kept
                        else ""))

    steps, trials = choose_postprocessing(predictions, references, spacings, label_values, rois=rois, regions=regions,
                                          one_piece=one_piece)
    reason = ("kept where it raised the label's validation Dice (or, for a structure in one piece, did not lower "
              "it): " + "; ".join(
                  f"{t['step']} on {t.get('region', t['label'])} {t['dice_before']:.4f} → {t['dice_after']:.4f}"
                  + (" (one piece)" if t.get("one_piece") else "") for t in trials if t["kept"])
              if steps else "no candidate step raised any label's validation Dice")
    return Rule("postprocessing", title, steps, describe_steps(steps), reason, {"trials": trials})


def rule_prepare_backend(trained_seconds: float, promptable: bool = False) -> Rule:
    """After a run of at least ten minutes, build the inference backend's one-time part into the model folder
    (the compiled package of a 3D network, the ONNX export of a 2D one) instead of in the first prediction: a
    BraTS case predicted by a fresh SegResNet-VAE folder took 60.8 s, 9.5 s once the package had been built (48 s,
    one thread; BENCHMARKS.md, session 31). Shorter runs (trials, the tests) leave it to the first prediction, as
    before; a promptable network has no tile backend (``medseg prompt`` runs it)."""
    title = "Inference backend built with the model"
    minutes = PREPARE_BACKEND_MIN_SECONDS / 60
    if promptable:
        return Rule("prepare_backend", title, False, "no", "a promptable network runs through medseg prompt",
                    {"promptable": True})
    inputs = {"trained_seconds": round(trained_seconds, 1)}
    if trained_seconds >= PREPARE_BACKEND_MIN_SECONDS:
        return Rule("prepare_backend", title, True, "yes",
                    f"trained {trained_seconds / 60:.0f} min (≥ {minutes:g}): the first prediction need not compile",
                    inputs)
    return Rule("prepare_backend", title, False, "no, at the first prediction",
                f"trained {trained_seconds / 60:.1f} min (< {minutes:g}): a trial run", inputs)


def describe_steps(steps: Sequence[dict]) -> str:
    """Recorded postprocessing steps in words."""
    if not steps:
        return "none"
    return "; ".join(f"{s['step']}" + (f" < {s['min_size']:g} mm{'³' if s.get('dims', 3) == 3 else '²'}"
                                          if s["step"] == "min_size" else "")
                     + (f" ({s['region']})" if "region" in s else f" (label {s['label']})")
                     for s in steps)


# --- at prediction time ---------------------------------------------------------------------------------
def rule_backend(spatial_dims: int, onnx_available: bool) -> Rule:
    """``--backend auto``: ONNX Runtime for 2D networks (measured 1.5–1.7× faster than eager PyTorch
    here), a TorchInductor-compiled network for 3D ones (1.23× per volume; ONNX Runtime gains nothing in
    3D), eager PyTorch when ONNX Runtime is not installed (benchmarks/inference3d.py)."""
    title = "Inference backend"
    inputs = {"spatial_dims": spatial_dims, "onnxruntime": onnx_available}
    if spatial_dims == 3:
        return Rule("backend", title, "compile", "compiled network (TorchInductor)",
                    "3D networks: compiled 1.23× faster per volume; ONNX Runtime gains nothing in 3D", inputs)
    if onnx_available:
        return Rule("backend", title, "onnx", "ONNX Runtime", "2D networks: 1.5–1.7× faster than eager PyTorch",
                    inputs)
    return Rule("backend", title, "torch", "eager PyTorch", "ONNX Runtime is not installed", inputs)


# --- promptable networks (trained from box prompts sampled from the labels) ------------------------------
PROMPT_VALIDATION_SLICES = 32   # validation slices (seeded): a LiteMedSAM encoder pass costs ~2-6 s on a CPU core
# Measured (benchmarks/litemedsam_finetune.py --compare-freezing, BENCHMARKS.md): see rule_prompt_encoder.
PROMPT_FREEZE_ENCODER = True


def rule_initial_weights(network: str, user: str | None, has_released: bool) -> Rule | None:
    """A network that ships released weights (LiteMedSAM) starts from them: a promptable model trained from
    scratch learns nothing useful in a CPU budget, the released one was trained on 1.5 M image-mask pairs.
    None for networks without released weights and no ``--init-from-weights``."""
    title = "Initial weights"
    if user:
        return user_rule("initial_weights", title, user, user, "--init-from-weights")
    if not has_released:
        return None
    return Rule("initial_weights", title, "released", "the released weights",
                f"{network} declares released weights in its registry entry: fine-tuning starts from them "
                "(from random weights a promptable network learns nothing useful in a CPU budget)",
                {"network": network})


def rule_prompt_encoder(user: bool | None, network: str) -> Rule:
    """Promptable networks: the image encoder stays frozen by default. Measured on ACDC (benchmarks/
    litemedsam_finetune.py --compare-freezing, 4-minute budgets, BENCHMARKS.md), twice: at load ~2-5 a
    frozen step (2 slices, ~6 boxes) took 6.7 s and a trained-encoder step 15.0 s (36 vs 16 steps); the
    trainer's prompted validation Dice (RV / MYO / LV, 32 slices) was 0.898 / 0.672 / 0.902 (mean 0.824)
    frozen vs 0.894 / 0.407 / 0.919 (0.740) trained; at load ~15 the steps took 14 vs 174 s (18 vs 2 steps,
    mean 0.719 vs 0.678). The frozen encoder also keeps the batch-norm statistics of the released training
    set instead of batches of two slices."""
    title = "Image encoder"
    if user is not None:
        return user_rule("freeze_encoder", title, bool(user), "frozen" if user else "trained",
                         "--freeze-encoder / --train-encoder")
    return Rule("freeze_encoder", title, PROMPT_FREEZE_ENCODER, "frozen" if PROMPT_FREEZE_ENCODER else "trained",
                "measured on ACDC under equal 4-minute budgets: a frozen-encoder step cost 2.2× less (6.7 vs 15.0 s; "
                "12× less on a loaded machine), so the frozen run made more steps and reached the higher mean "
                "validation Dice (0.824 vs 0.740: the myocardium learns, RV/LV within 0.02); its batch-norm "
                "statistics stay those of the released training set", {"network": network})


def rule_prompt_frame(network: str, input_size: int) -> Rule:
    """Promptable networks are trained on what they are prompted with: each 2D slice whole, framed as
    MedSAM does (window, longest side to the input size, zero padding); one box per structure on it."""
    return Rule("patch_size", "Training patch", [input_size, input_size], f"whole slices framed at {input_size}²",
                "a promptable network is trained on the frame it is prompted with (medseg prompt): each slice "
                "resized whole, one jittered box per structure on it (MedSAM)", {"network": network})


def rule_prompt_learning_rate(optimizer: str, user: float | None, declared: float) -> Rule:
    """A pretrained promptable network is fine-tuned at the rate its registry entry declares (MedSAM's
    AdamW 10⁻⁴): medseg's from-scratch 2·10⁻³ would wash out the released weights within steps."""
    if user is not None:
        return user_rule("learning_rate", "Learning rate", float(user), f"{user:g}", "--lr")
    return Rule("learning_rate", "Learning rate", float(declared), f"{declared:g}",
                "the fine-tuning rate declared by the network (the rate its released weights were trained "
                "with); the from-scratch rate would wash them out", {"optimizer": optimizer})


def rule_prompt_training(jitter: int, structures: Sequence[str]) -> Rule:
    """What a prompt-training sample is: a slice, one box per structure present, each side pushed out by
    0..jitter pixels of the frame (MedSAM's bbox_shift); loss Dice + BCE on the mask logits (MedSAM) plus
    the IoU head's squared error (LiteMedSAM), so the predicted IoU stays a usable confidence; no image
    augmentation (MedSAM's protocol; the jitter perturbs the prompt)."""
    return Rule("prompt_training", "Prompt training", {"jitter": int(jitter), "structures": list(structures),
                                                      "loss": "mask_prompt", "augmentation": None},
                f"one box per structure per slice ({', '.join(structures)}), jitter 0–{jitter} px, "
                "Dice + BCE + IoU-head MSE, no image augmentation",
                "MedSAM's fine-tuning protocol; the IoU head is trained too so that the predicted IoU stays "
                "the confidence of generated labels", {"structures": list(structures)})


def rule_prompt_validation() -> Rule:
    """Promptable networks are validated by prompting: up to 32 validation slices (seeded), the reference's
    boxes jittered with a fixed seed, Dice per structure in the frame — every slice costs an encoder pass."""
    return Rule("prompt_validation", "Prompted validation", PROMPT_VALIDATION_SLICES,
                f"up to {PROMPT_VALIDATION_SLICES} slices with a structure, one jittered reference box per structure",
                "each validation slice costs an encoder pass (seconds on a CPU core): a fixed, seeded subset, "
                "boxes from the reference with a fixed jitter, Dice per structure in the frame")


SLICE_CONTEXT = 0                     # neighbouring slices on each side a 2D network on a volume sees


def rule_slice_context(slice_axis: int | None, promptable: bool, user: int | None) -> Rule | None:
    """How many neighbouring slices on each side a 2D network on a volume sees as extra channels (2.5D): none.

    Measured (BENCHMARKS.md, session 20): on PROMISE12 the neighbours halve the prostate painted past the gland's
    ends but leave Dice where it was (0.617 against 0.619), and on ACDC, whose slices lie 5-10 mm apart, they
    cost 0.05 Dice (0.787 against 0.833). None (nothing recorded) when the network is not 2D on volumes, or is
    promptable (it frames one slice itself, as ``medseg prompt`` does)."""
    title = "Slice context"
    if slice_axis is None or promptable:
        if user:
            raise MedsegError("--slice-context needs a 2D network on volumes (a plan's 2d configuration)")
        return None
    if user is not None:
        shown = f"{user} slice(s) on each side, as extra channels" if user else "none: one slice at a time"
        return user_rule("slice_context", title, int(user), shown, "--slice-context")
    return Rule("slice_context", title, SLICE_CONTEXT, "none: one slice at a time",
                "neighbouring slices as channels measured no better on PROMISE12 (Dice 0.617 against 0.619) and "
                "worse on ACDC (0.787 against 0.833; BENCHMARKS.md session 20); --slice-context N adds them",
                {"slice_axis": slice_axis})


def rule_slices_of_volumes(network: str, dims: Sequence[int]) -> Rule:
    """A 2D-only network on 3D data without a plan works on the slices across the first array axis (the
    slices of the files, which is also how ``medseg prompt`` slices a volume)."""
    return Rule("slice_axis", "Slices", 0, "2D slices across the first array axis",
                f"{network} is 2D only (dims {tuple(dims)}) and no plan names a slice axis: the files' own slices",
                {"network": network})
