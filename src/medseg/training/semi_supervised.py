"""Semi-supervised training: unlabelled cases count too.

Three methods, each a step function ``(networks, labelled batch, unlabelled batch) -> losses`` that the
training loop back-propagates (the loop owns optimisation, schedule, validation and checkpoints):

- **mean teacher** — Tarvainen & Valpola, "Mean teachers are better role models", NeurIPS 2017; as in
  UA-MT / SSL4MIS (Yu et al., MICCAI 2019): the teacher is an exponential moving average (EMA) of the
  student, sees the unlabelled batch with a little Gaussian noise, and the student's softmax is pulled
  towards the teacher's (mean squared error) with a sigmoid ramp-up of the weight.
- **cross pseudo supervision (CPS)** — Chen, Yuan, Zeng & Wang, CVPR 2021: two students with different
  initialisations; each one's hard prediction on the unlabelled batch is the other's target.
- **bidirectional copy-paste (BCP)** — Bai, Chen, Li, Wei & Wang, "Bidirectional Copy-Paste for
  Semi-Supervised Medical Image Segmentation", CVPR 2023: a box of an unlabelled patch is pasted into a
  labelled one and a box of a labelled patch into an unlabelled one; the student learns the mixed images
  against the mixed targets (ground truth where the voxels came from a labelled patch, the EMA
  teacher's pseudo-label elsewhere), so labelled and unlabelled data share one distribution.

Every setting is explicit and recorded (:class:`SemiSupervisedSettings`, stored in the model folder's
config.json under ``training.semi_supervised``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from medseg.errors import MedsegError
from medseg.losses import IGNORE_INDEX
from medseg.planning.semi_supervised_rules import (DEFAULT_METHOD, METHODS, PRETRAIN_SHARE, RAMPUP_SHARE,
                                                   TEACHER_EMA_DECAY, UNLABELED_WEIGHT)
from medseg.training.averaging import WeightAverage

# The method list, the default method and every default setting are rules with their reasons, in
# medseg.planning.semi_supervised_rules (recorded in rules.json and printed by `medseg train`).


@dataclass
class SemiSupervisedSettings:
    """What a semi-supervised run does with its unlabelled cases.

    Parameters
    ----------
    method : {"mean_teacher", "cps", "bcp", "none"}
    labeled : list of str
        The labelled training cases (every other training case is used without its label).
    unlabeled : list of str
        The unlabelled cases (dataset case names, or file stems of an ``--unlabeled`` folder).
    unlabeled_folder : str or None
        A folder of extra unlabelled images.
    unlabeled_batch_size : int
        Unlabelled patches per iteration, beside the ``batch_size`` labelled ones (the batch mix).
        0 = as many as labelled ones.
    weight : float or None
        Weight of the unlabelled loss after the ramp-up; None = the method's published value
        (:data:`medseg.planning.semi_supervised_rules.UNLABELED_WEIGHT`).
    rampup : float
        Share of the training budget (iterations or time) over which the weight rises along the sigmoid
        ``exp(-5 (1 - t)^2)`` (Laine & Aila 2017); 0 = no ramp-up.
    ema_decay : float
        Decay of the teacher's weight average (mean teacher, BCP).
    confidence_threshold : float
        Pseudo-label voxels whose top probability is below it are ignored (CPS, BCP); 0 keeps all.
    teacher_noise : float
        Standard deviation of the Gaussian noise on the teacher's input (mean teacher), clipped to 2×.
    copy_paste_size : float
        Side of the pasted box as a share of the patch side (BCP: 2/3).
    pretrain : float
        BCP: share of the budget trained on the labelled patches only before the copy-paste self-training
        starts (the paper pre-trains 10k of 40k iterations; the EMA teacher follows the student meanwhile,
        so its first pseudo-labels come from a trained network rather than a random one).
    predict_with : {"student", "teacher"}
        Which network is validated, saved and predicted with.
    reason : str
        Why this method (filled in when the method was chosen by the default rule).
    """

    method: str = DEFAULT_METHOD
    labeled: list[str] = field(default_factory=list)
    unlabeled: list[str] = field(default_factory=list)
    unlabeled_folder: str | None = None
    unlabeled_batch_size: int = 0
    weight: float | None = None
    rampup: float = RAMPUP_SHARE
    ema_decay: float = TEACHER_EMA_DECAY
    confidence_threshold: float = 0.0
    teacher_noise: float = 0.1
    copy_paste_size: float = 2.0 / 3.0
    pretrain: float = PRETRAIN_SHARE
    predict_with: str = "student"
    reason: str = ""

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise MedsegError(f"unknown semi-supervised method '{self.method}' ({', '.join(METHODS)})")
        if self.weight is None:
            self.weight = UNLABELED_WEIGHT[self.method]
        if not 0.0 < self.ema_decay < 1.0:
            raise MedsegError(f"the teacher's EMA decay must lie in (0, 1), not {self.ema_decay}")
        if not 0.0 <= self.rampup <= 1.0:
            raise MedsegError(f"the ramp-up share must lie in [0, 1], not {self.rampup}")
        if not 0.0 <= self.confidence_threshold < 1.0:
            raise MedsegError(f"the confidence threshold must lie in [0, 1), not {self.confidence_threshold}")
        if not 0.0 <= self.pretrain < 1.0:
            raise MedsegError(f"the pre-training share must lie in [0, 1), not {self.pretrain}")
        if not 0.0 < self.copy_paste_size < 1.0:
            raise MedsegError(f"the copy-paste box share must lie in (0, 1), not {self.copy_paste_size}")
        if self.predict_with not in ("student", "teacher"):
            raise MedsegError(f"predict_with must be 'student' or 'teacher', not '{self.predict_with}'")
        if self.predict_with == "teacher" and self.method == "cps":
            raise MedsegError("cross pseudo supervision has no teacher; predict with the student")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sigmoid_rampup(progress: float, length: float) -> float:
    """``exp(-5 (1 - t)^2)`` with ``t = progress / length`` clipped to [0, 1]; 1 when ``length`` is 0.

    Examples
    --------
    >>> sigmoid_rampup(0.0, 0.4) < 0.01, sigmoid_rampup(0.4, 0.4), sigmoid_rampup(0.9, 0.0)
    (True, 1.0, 1.0)
    """
    if length <= 0:
        return 1.0
    t = min(max(progress / length, 0.0), 1.0)
    return float(math.exp(-5.0 * (1.0 - t) ** 2))


def logits_of(output: Any) -> torch.Tensor:
    """The full-resolution logits of a network output (a tensor, or a dict with ``"logits"``)."""
    return output["logits"] if isinstance(output, dict) else output


def select_labeled(candidates: Sequence[str], labeled: str | int | Sequence[str], seed: int) -> list[str]:
    """The labelled cases: named ones, or ``N`` drawn from ``candidates`` (deterministic for a seed).

    ``labeled`` may be a number (``3`` or ``"3"``), a comma-separated string or a list of names.

    Examples
    --------
    >>> select_labeled(["a", "b", "c", "d"], 2, seed=0) == select_labeled(["d", "c", "b", "a"], "2", seed=0)
    True
    """
    if isinstance(labeled, str):
        text = labeled.strip()
        labeled = int(text) if text.isdigit() else [n.strip() for n in text.split(",") if n.strip()]
    if isinstance(labeled, int):
        if labeled < 1:
            raise MedsegError(f"--labeled {labeled}: semi-supervised training needs at least one labelled case")
        if labeled > len(candidates):
            raise MedsegError(f"--labeled {labeled}: only {len(candidates)} labelled training case(s) are available")
        pool = sorted(candidates)  # the draw does not depend on the order cases were listed in
        rng = np.random.default_rng([int(seed), 19])
        return sorted(pool[i] for i in rng.choice(len(pool), labeled, replace=False))
    names = list(dict.fromkeys(labeled))
    if not names:
        raise MedsegError("--labeled names no case: semi-supervised training needs at least one labelled case")
    unknown = [n for n in names if n not in set(candidates)]
    if unknown:
        raise MedsegError(f"--labeled names case(s) that are not labelled training cases: {', '.join(unknown[:5])}")
    return names


# --- the three step functions --------------------------------------------------------------------
def consistency_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the two softmax maps (the mean teacher's consistency)."""
    return F.mse_loss(torch.softmax(student_logits, 1), torch.softmax(teacher_logits.detach(), 1))


def pseudo_labels(logits: torch.Tensor, threshold: float = 0.0) -> torch.Tensor:
    """Hard pseudo-labels ``(N, 1, *S)``; voxels with top probability below ``threshold`` are ignored.

    Examples
    --------
    >>> logits = torch.tensor([[[[4.0, 0.1]], [[0.0, 0.0]]]])  # 2 classes, 1×2 image
    >>> pseudo_labels(logits, threshold=0.9).tolist()
    [[[[0, -1]]]]
    """
    probs = torch.softmax(logits.detach().float(), 1)
    confidence, label = probs.max(1, keepdim=True)
    if threshold > 0:
        label = torch.where(confidence >= threshold, label, torch.full_like(label, IGNORE_INDEX))
    return label


def mean_teacher_step(student: torch.nn.Module, teacher: torch.nn.Module, loss_fn: Callable,
                      labeled: tuple[torch.Tensor, torch.Tensor], unlabeled: torch.Tensor, weight: float,
                      settings: SemiSupervisedSettings, generator: torch.Generator | None = None,
                      ) -> dict[str, torch.Tensor]:
    """Supervised loss on the labelled batch + ``weight`` × softmax MSE to the teacher on the unlabelled.

    The teacher runs without gradients (it changes only through :func:`update_teacher`).

    Returns
    -------
    dict
        ``loss`` (to back-propagate), ``supervised``, ``unsupervised``.
    """
    image, label = labeled
    supervised = loss_fn(student(image), label, image)
    student_logits = logits_of(student(unlabeled))
    noise = torch.randn(unlabeled.shape, generator=generator, dtype=unlabeled.dtype) * settings.teacher_noise
    noise = noise.clamp(-2 * settings.teacher_noise, 2 * settings.teacher_noise)
    with torch.no_grad():
        teacher_logits = logits_of(teacher(unlabeled + noise))
    unsupervised = consistency_loss(student_logits, teacher_logits)
    return {"loss": supervised + weight * unsupervised, "supervised": supervised, "unsupervised": unsupervised}


def cps_step(student: torch.nn.Module, partner: torch.nn.Module, loss_fn: Callable,
             labeled: tuple[torch.Tensor, torch.Tensor], unlabeled: torch.Tensor, weight: float,
             settings: SemiSupervisedSettings) -> dict[str, torch.Tensor]:
    """Cross pseudo supervision: both students learn the labels, and each the other's pseudo-labels.

    Returns
    -------
    dict
        ``loss`` (both students' terms: back-propagating it updates both), ``supervised``, ``unsupervised``.
    """
    image, label = labeled
    supervised = loss_fn(student(image), label, image) + loss_fn(partner(image), label, image)
    a, b = logits_of(student(unlabeled)), logits_of(partner(unlabeled))
    threshold = settings.confidence_threshold
    unsupervised = (loss_fn(a, pseudo_labels(b, threshold), unlabeled)
                    + loss_fn(b, pseudo_labels(a, threshold), unlabeled))
    return {"loss": supervised + weight * unsupervised, "supervised": supervised, "unsupervised": unsupervised}


def copy_paste_box(shape: Sequence[int], size: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """A ``(1, 1, *shape)`` float mask: 1 inside a random box of ``size`` × each side, 0 outside.

    Examples
    --------
    >>> box = copy_paste_box((6, 9), 2 / 3, torch.Generator().manual_seed(0))
    >>> int(box.sum())
    24
    """
    mask = torch.zeros((1, 1, *shape))
    index = []
    for side in shape:
        length = max(1, int(round(side * size)))
        start = int(torch.randint(0, side - length + 1, (1,), generator=generator))
        index.append(slice(start, start + length))
    mask[(slice(None), slice(None), *index)] = 1.0
    return mask


def bidirectional_copy_paste(labeled_image: torch.Tensor, labeled_target: torch.Tensor, unlabeled_image: torch.Tensor,
                             unlabeled_target: torch.Tensor, box: torch.Tensor,
                             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """BCP's two mixed batches, stacked: inward (unlabelled box in a labelled patch) and outward.

    ``box`` is the mask of :func:`copy_paste_box`. Returns the mixed images ``(2N, C, *S)``, the mixed
    targets ``(2N, 1, *S)`` (labels where the voxel came from a labelled patch, pseudo-labels elsewhere)
    and ``from_labeled`` ``(2N, 1, *S)`` bool: which voxels came from a labelled patch. The outward
    pair takes the next sample of each batch, so every image meets a different partner.
    """
    inside = box.bool()
    partner_l, partner_lt = labeled_image.roll(1, 0), labeled_target.roll(1, 0)
    partner_u, partner_ut = unlabeled_image.roll(1, 0), unlabeled_target.roll(1, 0)
    image_in = torch.where(inside, unlabeled_image, labeled_image)
    target_in = torch.where(inside, unlabeled_target, labeled_target)
    image_out = torch.where(inside, partner_l, partner_u)
    target_out = torch.where(inside, partner_lt, partner_ut)
    from_labeled = torch.cat([(~inside).expand_as(target_in), inside.expand_as(target_out)])
    return torch.cat([image_in, image_out]), torch.cat([target_in, target_out]), from_labeled


def bcp_step(student: torch.nn.Module, teacher: torch.nn.Module, loss_fn: Callable,
             labeled: tuple[torch.Tensor, torch.Tensor], unlabeled: torch.Tensor, weight: float,
             settings: SemiSupervisedSettings, generator: torch.Generator | None = None,
             ) -> dict[str, torch.Tensor]:
    """Bidirectional copy-paste: the student learns mixed images against mixed targets.

    The labelled part of each mixed target weighs 1, the pseudo-labelled part ``weight``. With more
    labelled than unlabelled patches (or fewer), the surplus of the larger batch is not mixed.

    Returns
    -------
    dict
        ``loss``, ``supervised`` (labelled voxels), ``unsupervised`` (pseudo-labelled voxels).
    """
    image, label = labeled
    n = min(len(image), len(unlabeled))
    image, label, unlabeled = image[:n], label[:n], unlabeled[:n]
    with torch.no_grad():
        pseudo = pseudo_labels(logits_of(teacher(unlabeled)), settings.confidence_threshold)
    box = copy_paste_box(image.shape[2:], settings.copy_paste_size, generator)
    mixed, target, from_labeled = bidirectional_copy_paste(image, label, unlabeled, pseudo, box)
    output = student(mixed)
    ignore = torch.full_like(target, IGNORE_INDEX)
    supervised = loss_fn(output, torch.where(from_labeled, target, ignore), mixed)
    unsupervised = loss_fn(output, torch.where(from_labeled, ignore, target), mixed)
    return {"loss": supervised + weight * unsupervised, "supervised": supervised, "unsupervised": unsupervised}


# --- the state a semi-supervised run keeps beside the student --------------------------------------
class SemiSupervised:
    """The teacher (EMA) or second student of a run, and the step that uses them.

    Parameters
    ----------
    student : torch.nn.Module
        The network the loop trains (and its optimizer).
    settings : SemiSupervisedSettings
    make_network : callable
        Builds a fresh network of the same architecture (CPS's partner, with its own initialisation).
    optimizer : torch.optim.Optimizer
        The loop's optimizer; CPS adds the partner's parameters to it as a second group, so the
        schedule, checkpoint and resume cover both students.

    Examples
    --------
    >>> net = torch.nn.Conv2d(1, 2, 3, padding=1)
    >>> opt = torch.optim.SGD(net.parameters(), lr=0.1)
    >>> ssl = SemiSupervised(net, SemiSupervisedSettings("mean_teacher"), lambda: None, opt)
    >>> ssl.teacher is not None
    True
    """

    def __init__(self, student: torch.nn.Module, settings: SemiSupervisedSettings,
                 make_network: Callable[[], torch.nn.Module], optimizer: torch.optim.Optimizer):
        self.settings = settings
        self.student = student
        self.average: WeightAverage | None = None
        self.partner: torch.nn.Module | None = None
        if settings.method in ("mean_teacher", "bcp"):
            self.average = WeightAverage(student, settings.ema_decay)
        else:
            self.partner = make_network().to(next(student.parameters()).device)
            optimizer.add_param_group({"params": list(self.partner.parameters())})

    @property
    def teacher(self) -> torch.nn.Module | None:
        return self.average.model if self.average is not None else None

    @property
    def predicting(self) -> torch.nn.Module:
        """The network validated, saved and predicted with."""
        return self.teacher if self.settings.predict_with == "teacher" else self.student

    def weight(self, progress: float) -> float:
        """The unlabelled loss weight at ``progress`` (0..1 of the budget); BCP ramps up after pre-training."""
        if self.settings.method == "bcp":
            if progress < self.settings.pretrain:
                return 0.0
            progress = (progress - self.settings.pretrain) / (1.0 - self.settings.pretrain)
        return float(self.settings.weight) * sigmoid_rampup(progress, self.settings.rampup)

    def losses(self, labeled: tuple[torch.Tensor, torch.Tensor], unlabeled: torch.Tensor, loss_fn: Callable,
               progress: float, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """The method's losses for one labelled and one unlabelled batch (networks in train mode)."""
        weight = self.weight(progress)
        self.student.train()
        if self.settings.method == "cps":
            self.partner.train()
            return cps_step(self.student, self.partner, loss_fn, labeled, unlabeled, weight, self.settings)
        self.teacher.train()  # as in the papers: the teacher sees the data as the student does (batch norm)
        if self.settings.method == "bcp" and progress < self.settings.pretrain:
            image, label = labeled
            supervised = loss_fn(self.student(image), label, image)
            return {"loss": supervised, "supervised": supervised, "unsupervised": torch.zeros(())}
        step = mean_teacher_step if self.settings.method == "mean_teacher" else bcp_step
        return step(self.student, self.teacher, loss_fn, labeled, unlabeled, weight, self.settings, generator)

    def step(self, labeled: tuple[torch.Tensor, torch.Tensor], unlabeled: torch.Tensor, loss_fn: Callable,
             optimizer: torch.optim.Optimizer, progress: float, grad_clip: float | None = None,
             generator: torch.Generator | None = None) -> dict[str, float]:
        """One optimisation step, then the teacher's EMA update; returns the loss values."""
        optimizer.zero_grad(set_to_none=True)
        losses = self.losses(labeled, unlabeled, loss_fn, progress, generator)
        if not torch.isfinite(losses["loss"]):
            raise MedsegError(f"the loss became {losses['loss'].item()}; lower the learning rate (--lr)")
        losses["loss"].backward()
        if grad_clip:
            params = [p for group in optimizer.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        optimizer.step()
        self.update_teacher()
        out = {k: float(v.detach()) for k, v in losses.items()}
        out["unsupervised_weight"] = self.weight(progress)
        return out

    def update_teacher(self) -> None:
        """The teacher follows the student by EMA only (never by gradients)."""
        if self.average is not None:
            self.average.update(self.student)

    def state_dict(self) -> dict[str, Any]:
        """Teacher or partner weights, for the checkpoint."""
        if self.average is not None:
            return {"teacher": self.average.state_dict(), "updates": self.average.updates}
        return {"partner": self.partner.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.average is not None:
            self.average.load_state_dict(state["teacher"], int(state["updates"]))
        else:
            self.partner.load_state_dict(state["partner"])
