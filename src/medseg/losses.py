"""Segmentation losses: soft Dice, Dice + cross-entropy, V-Net Dice, region-based (sigmoid) losses,
deep supervision and the VAE regularisation terms, all with an *ignore* label.

Every loss built by :func:`build_loss` takes the network output as the network contract defines it
(a logits tensor ``(N, K, *S)`` or a dict with ``"logits"`` and optional ``"deep_supervision"``,
``"reconstruction"``, ``"mu"``, ``"logvar"``) and an integer target ``(N, 1, *S)`` of *class indices*
(``0 .. K-1``) in which the value ``ignore_index`` marks voxels that contribute no loss at all (sparse
annotation, outside the field of view). Region-based losses take the same integer target and the list
of regions (each a list of class indices) and build the nested binary targets themselves.

References
----------
Milletari, Navab, Ahmadi, "V-Net", 3DV 2016 (Dice loss with squared denominators).
Isensee et al., "nnU-Net", Nature Methods 2021 (Dice + CE, batch Dice, deep supervision, regions).
Myronenko, "3D MRI brain tumor segmentation using autoencoder regularization", BrainLes 2018
(L2 reconstruction + KL terms weighted 0.1 each).

Examples
--------
>>> import torch
>>> loss = build_loss("dice_ce")
>>> logits = torch.zeros(2, 3, 8, 8, requires_grad=True)
>>> target = torch.randint(0, 3, (2, 1, 8, 8))
>>> value = loss(logits, target)
>>> value.backward()
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medseg.errors import MedsegError
from medseg.registry import Registry

LOSSES = Registry("loss", entry_point_group="medseg.losses")

#: Default value marking unlabelled voxels in *class-index* targets (datasets map their own ignore
#: label value onto it).
IGNORE_INDEX = -1


def _split_target(target: Tensor, ignore_index: int | None) -> tuple[Tensor, Tensor | None]:
    """Class-index target (N, *S) with ignored voxels set to 0, and a float mask (N, 1, *S) or None."""
    if target.ndim >= 2 and target.shape[1] == 1:
        target = target[:, 0]
    target = target.long()
    if ignore_index is None:
        return target, None
    valid = target != ignore_index
    if bool(valid.all()):
        return target, None
    return torch.where(valid, target, torch.zeros_like(target)), valid.unsqueeze(1).to(torch.float32)


def _one_hot(target: Tensor, num_classes: int, dtype: torch.dtype) -> Tensor:
    # scatter into the logits' dtype: never a float64 one-hot of the whole batch
    shape = (target.shape[0], num_classes, *target.shape[1:])
    out = torch.zeros(shape, dtype=dtype, device=target.device)
    return out.scatter_(1, target.unsqueeze(1), 1)


def soft_dice(
    probabilities: Tensor,
    one_hot: Tensor,
    mask: Tensor | None = None,
    *,
    batch_dice: bool = False,
    smooth: float = 1e-5,
    squared: bool = False,
    false_negative_weight: float = 0.5,
) -> Tensor:
    """Per-class soft Dice coefficient (or Tversky index).

    Parameters
    ----------
    probabilities, one_hot : Tensor
        ``(N, K, *S)``.
    mask : Tensor, optional
        ``(N, 1, *S)`` with 0 at ignored voxels.
    batch_dice : bool
        Sum over the batch as if it were one image (nnU-Net's batch Dice; stabler for small structures).
    smooth : float
        Added to numerator and denominator (a class absent from target and prediction scores 1).
    squared : bool
        Milletari's V-Net form: squared terms in the denominator.
    false_negative_weight : float
        β of the Tversky index ``TP / (TP + (1 - β) FP + β FN)`` (Salehi et al. 2017); 0.5 is the Dice.
        Above 0.5 a missed voxel costs more than a false one (``squared`` then does not apply).

    Returns
    -------
    Tensor
        ``(K,)`` when ``batch_dice`` else ``(N, K)``.
    """
    if mask is not None:
        probabilities = probabilities * mask
        one_hot = one_hot * mask
    axes = tuple(range(2, probabilities.ndim))
    if batch_dice:
        axes = (0,) + axes
    intersection = (probabilities * one_hot).sum(axes)
    if false_negative_weight != 0.5:
        false_positive = probabilities.sum(axes) - intersection
        false_negative = one_hot.sum(axes) - intersection
        beta = false_negative_weight
        denominator = intersection + (1 - beta) * false_positive + beta * false_negative
        return (intersection + smooth) / (denominator + smooth).clamp_min(1e-8)
    if squared:
        denominator = (probabilities * probabilities).sum(axes) + (one_hot * one_hot).sum(axes)
    else:
        denominator = probabilities.sum(axes) + one_hot.sum(axes)
    return (2 * intersection + smooth) / (denominator + smooth).clamp_min(1e-8)


class SoftDiceLoss(nn.Module):
    """``1 - mean soft Dice`` over the classes (background excluded by default).

    Parameters
    ----------
    include_background : bool
        Also average the background class.
    batch_dice, smooth, squared, false_negative_weight : see :func:`soft_dice`.
    ignore_index : int or None
        Target value whose voxels contribute nothing.
    """

    def __init__(
        self,
        include_background: bool = False,
        batch_dice: bool = False,
        smooth: float = 1e-5,
        squared: bool = False,
        ignore_index: int | None = IGNORE_INDEX,
        false_negative_weight: float = 0.5,
    ):
        super().__init__()
        self.include_background = include_background
        self.batch_dice = batch_dice
        self.smooth = smooth
        self.squared = squared
        self.ignore_index = ignore_index
        self.false_negative_weight = false_negative_weight

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        labels, mask = _split_target(target, self.ignore_index)
        probabilities = torch.softmax(logits, 1)
        one_hot = _one_hot(labels, logits.shape[1], probabilities.dtype)
        if not self.include_background and logits.shape[1] > 1:
            probabilities, one_hot = probabilities[:, 1:], one_hot[:, 1:]
        dc = soft_dice(
            probabilities, one_hot, mask, batch_dice=self.batch_dice, smooth=self.smooth, squared=self.squared,
            false_negative_weight=self.false_negative_weight,
        )
        return 1 - dc.mean()


class CrossEntropyLoss(nn.Module):
    """Cross-entropy averaged over the voxels that are not ignored."""

    def __init__(self, ignore_index: int | None = IGNORE_INDEX):
        super().__init__()
        self.ignore_index = ignore_index

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        labels = target[:, 0] if target.ndim == logits.ndim else target
        labels = labels.long()
        if self.ignore_index is None:
            return F.cross_entropy(logits, labels)
        if bool((labels == self.ignore_index).all()):
            return logits.sum() * 0.0  # nothing labelled in this batch: zero loss, zero gradient
        return F.cross_entropy(logits, labels, ignore_index=self.ignore_index)


class DiceCELoss(nn.Module):
    """nnU-Net's compound loss: ``ce_weight * CE + dice_weight * (1 - soft Dice)``."""

    def __init__(
        self,
        ce_weight: float = 1.0,
        dice_weight: float = 1.0,
        batch_dice: bool = False,
        smooth: float = 1e-5,
        include_background: bool = False,
        ignore_index: int | None = IGNORE_INDEX,
        false_negative_weight: float = 0.5,
    ):
        super().__init__()
        self.ce_weight, self.dice_weight = ce_weight, dice_weight
        self.ce = CrossEntropyLoss(ignore_index)
        self.dice = SoftDiceLoss(include_background, batch_dice, smooth, False, ignore_index, false_negative_weight)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return self.ce_weight * self.ce(logits, target) + self.dice_weight * self.dice(logits, target)


def region_targets(target: Tensor, regions: Sequence[Sequence[int]]) -> Tensor:
    """Binary region maps ``(N, R, *S)`` from a class-index target ``(N, 1, *S)``.

    Region ``r`` is on where the class index is one of ``regions[r]`` (e.g. BraTS whole tumour
    ``[1, 2, 3]``, tumour core ``[2, 3]``, enhancing ``[3]``).
    """
    labels = target[:, :1] if target.ndim > 1 else target
    maps = [torch.isin(labels, torch.as_tensor(list(r), device=labels.device)) for r in regions]
    return torch.cat(maps, 1).to(torch.float32)


class RegionLoss(nn.Module):
    """Sigmoid per region: ``BCE + (1 - soft Dice)`` for nested, overlapping regions.

    Parameters
    ----------
    regions : list of list of int
        Class indices making up each output channel's region.
    """

    def __init__(
        self,
        regions: Sequence[Sequence[int]],
        bce_weight: float = 1.0,
        dice_weight: float = 1.0,
        batch_dice: bool = False,
        smooth: float = 1e-5,
        ignore_index: int | None = IGNORE_INDEX,
    ):
        super().__init__()
        if not regions:
            raise MedsegError("a region-based loss needs at least one region")
        self.regions = [list(map(int, r)) for r in regions]
        self.bce_weight, self.dice_weight = bce_weight, dice_weight
        self.batch_dice, self.smooth, self.ignore_index = batch_dice, smooth, ignore_index

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        if logits.shape[1] != len(self.regions):
            raise MedsegError(f"{logits.shape[1]} output channels for {len(self.regions)} regions")
        labels, mask = _split_target(target, self.ignore_index)
        maps = region_targets(labels.unsqueeze(1), self.regions).to(logits.dtype)
        bce = F.binary_cross_entropy_with_logits(logits, maps, reduction="none")
        if mask is not None:
            bce = (bce * mask).sum() / (mask.sum() * logits.shape[1]).clamp_min(1)
        else:
            bce = bce.mean()
        dc = soft_dice(torch.sigmoid(logits), maps, mask, batch_dice=self.batch_dice, smooth=self.smooth)
        return self.bce_weight * bce + self.dice_weight * (1 - dc.mean())


def downsample_target(target: Tensor, size: Sequence[int], mode: str = "nearest") -> Tensor:
    """Bring an integer target ``(N, 1, *S)`` to ``size`` for a deep-supervision output.

    ``mode="nearest"`` picks voxels; ``"max"`` max-pools (keeps thin foreground alive at coarse scales;
    ignored voxels then only survive where the whole pooling window was ignored).
    """
    if tuple(target.shape[2:]) == tuple(size):
        return target
    if mode == "nearest":
        return F.interpolate(target.float(), size=tuple(size), mode="nearest").to(target.dtype)
    if mode == "max":
        pool = {1: F.adaptive_max_pool1d, 2: F.adaptive_max_pool2d, 3: F.adaptive_max_pool3d}[target.ndim - 2]
        return pool(target.float(), tuple(size)).to(target.dtype)
    raise MedsegError(f"unknown target downsampling mode '{mode}' (nearest, max)")


DEEP_SUPERVISION_WEIGHTINGS = ("halving", "equal")


def deep_supervision_weights(count: int, weighting: str = "halving") -> list[float]:
    """Weights of the deep-supervision outputs (full resolution first), normalised to sum to 1.

    ``"halving"``: nnU-Net's, halved per coarser level. ``"equal"``: the same weight for every output
    (UNet++, whose outputs X^{0,1..L} all have full resolution and are all used when pruning).

    Examples
    --------
    >>> deep_supervision_weights(3), deep_supervision_weights(2, "equal")
    ([0.5714285714285714, 0.2857142857142857, 0.14285714285714285], [0.5, 0.5])
    """
    if weighting not in DEEP_SUPERVISION_WEIGHTINGS:
        raise MedsegError(f"unknown deep-supervision weighting '{weighting}' ({', '.join(DEEP_SUPERVISION_WEIGHTINGS)})")
    weights = [0.5**i if weighting == "halving" else 1.0 for i in range(count)]
    total = sum(weights)
    return [w / total for w in weights]


def kl_divergence(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, sigma) || N(0, 1)) averaged over the latent elements (Myronenko's L_KL / N)."""
    return torch.mean(mu * mu + logvar.exp() - logvar - 1)


class NetworkLoss(nn.Module):
    """Apply a base loss to the network contract's output: plain logits, deep supervision, VAE terms.

    Parameters
    ----------
    base : nn.Module
        ``base(logits, target) -> scalar``.
    downsample : {"nearest", "max"}
        How targets are brought to the coarser deep-supervision outputs.
    reconstruction_weight, kl_weight : float
        Weights of the VAE terms (Myronenko: 0.1 and 0.1), used when the output has them.
    weighting : {"halving", "equal"}
        Deep-supervision weighting (see :func:`deep_supervision_weights`); the trainer passes the
        network's ``deep_supervision_weighting`` attribute (UNet++: ``"equal"``), default ``"halving"``.
    """

    def __init__(
        self,
        base: nn.Module,
        downsample: str = "nearest",
        reconstruction_weight: float = 0.1,
        kl_weight: float = 0.1,
        weighting: str = "halving",
    ):
        super().__init__()
        deep_supervision_weights(1, weighting)  # validates the name now, not at the first batch
        self.weighting = weighting
        self.base = base
        self.downsample = downsample
        self.reconstruction_weight = reconstruction_weight
        self.kl_weight = kl_weight

    def forward(self, output: Tensor | dict[str, Any], target: Tensor, image: Tensor | None = None) -> Tensor:
        if isinstance(output, Tensor):
            return self.base(output, target)
        logits = output["logits"]
        extras = list(output.get("deep_supervision") or [])
        outputs = [logits] + extras
        weights = deep_supervision_weights(len(outputs), self.weighting)
        total = logits.new_zeros(())
        for w, out in zip(weights, outputs):
            total = total + w * self.base(out, downsample_target(target, out.shape[2:], self.downsample))
        if "reconstruction" in output:
            if image is None:
                raise MedsegError("a VAE-regularised network's loss needs the input image")
            total = total + self.reconstruction_weight * F.mse_loss(output["reconstruction"], image)
        if "mu" in output and "logvar" in output:
            total = total + self.kl_weight * kl_divergence(output["mu"], output["logvar"])
        return total


class MaskPromptLoss(nn.Module):
    """The loss of a promptable network: one binary mask (logits) and one predicted IoU per prompt.

    MedSAM's segmentation loss — soft Dice with squared terms on the sigmoid (MONAI ``DiceLoss(sigmoid=True,
    squared_pred=True)``) plus binary cross-entropy on the logits — and, as LiteMedSAM's training adds, the
    squared error between the IoU head's estimate and the IoU of the thresholded mask (so the predicted
    IoU remains a calibrated confidence).

    Call as ``loss(logits (B, 1, H, W), predicted_iou (B, 1), target (B, 1, H, W) in {0, 1}, valid=None)``;
    ``valid`` (same shape, 0/1) excludes ignored pixels.

    Examples
    --------
    >>> loss = MaskPromptLoss()
    >>> target = torch.zeros(2, 1, 8, 8); target[:, :, 2:6, 2:6] = 1
    >>> good = loss(20 * (2 * target - 1), torch.ones(2, 1), target)
    >>> bad = loss(-20 * (2 * target - 1), torch.ones(2, 1), target)
    >>> bool(good < 0.01 < bad)
    True
    """

    def __init__(self, iou_weight: float = 1.0, smooth: float = 1e-5):
        super().__init__()
        self.iou_weight = iou_weight
        self.smooth = smooth

    def forward(self, logits: Tensor, predicted_iou: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
        target = target.to(logits.dtype)
        weight = torch.ones_like(logits) if valid is None else valid.to(logits.dtype)
        p = torch.sigmoid(logits) * weight
        t = target * weight
        axes = tuple(range(1, logits.ndim))
        dice = (2 * (p * t).sum(axes) + self.smooth) / ((p * p).sum(axes) + (t * t).sum(axes) + self.smooth)
        bce = F.binary_cross_entropy_with_logits(logits, target, weight=weight, reduction="sum") / weight.sum().clamp_min(1)
        with torch.no_grad():
            hard = (logits > 0).to(logits.dtype) * weight
            inter = (hard * t).sum(axes)
            union = (hard + t - hard * t).sum(axes)
            iou = torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))
        iou_term = F.mse_loss(predicted_iou.reshape(-1), iou.reshape(-1))
        return (1 - dice).mean() + bce + self.iou_weight * iou_term


@LOSSES.register("dice", summary="soft Dice (1 - mean foreground Dice)")
def _dice(**opts: Any) -> nn.Module:
    return SoftDiceLoss(**opts)


@LOSSES.register("ce", summary="cross-entropy")
def _ce(**opts: Any) -> nn.Module:
    return CrossEntropyLoss(**opts)


@LOSSES.register("dice_ce", summary="Dice + cross-entropy (nnU-Net)")
def _dice_ce(**opts: Any) -> nn.Module:
    return DiceCELoss(**opts)


@LOSSES.register("tversky_ce", summary="Tversky (missed voxels weighted 0.7) + cross-entropy")
def _tversky_ce(**opts: Any) -> nn.Module:
    opts.setdefault("false_negative_weight", 0.7)  # Salehi et al. 2017's best F2 on lesions: α 0.3, β 0.7
    return DiceCELoss(**opts)


@LOSSES.register("vnet_dice", summary="Milletari's V-Net Dice loss (squared denominators)")
def _vnet_dice(**opts: Any) -> nn.Module:
    opts.setdefault("squared", True)
    opts.setdefault("smooth", 1.0)
    return SoftDiceLoss(**opts)


@LOSSES.register("region", summary="sigmoid per region: BCE + Dice (nested regions, e.g. BraTS)")
def _region(**opts: Any) -> nn.Module:
    return RegionLoss(**opts)


def build_loss(
    name: str = "dice_ce",
    *,
    downsample: str = "nearest",
    reconstruction_weight: float = 0.1,
    kl_weight: float = 0.1,
    weighting: str = "halving",
    **options: Any,
) -> NetworkLoss:
    """Build a registered loss wrapped for the network contract (deep supervision, VAE terms).

    Parameters
    ----------
    name : str
        ``dice``, ``ce``, ``dice_ce`` (default), ``vnet_dice``, ``region`` or a plug-in's name.
    downsample, reconstruction_weight, kl_weight, weighting
        See :class:`NetworkLoss`.
    **options
        Passed to the base loss (``ignore_index``, ``batch_dice``, ``regions`` ...).

    Returns
    -------
    NetworkLoss
        Call as ``loss(output, target, image=None)``.
    """
    base = LOSSES.get(name)(**options)
    return NetworkLoss(base, downsample, reconstruction_weight, kl_weight, weighting)
