"""SegResNet with a variational auto-encoder regulariser.

Myronenko A. "3D MRI brain tumor segmentation using autoencoder regularization". BrainLes workshop,
MICCAI 2018 (LNCS 11384, pp. 311-320); winner of BraTS 2018.

What is new: an asymmetric ResNet-style encoder-decoder (large encoder, light decoder) whose shared
encoder is regularised, during training only, by a VAE branch that reconstructs the input image from the
encoder end-point — an extra training signal that helps with a small training set.

Configuration of the paper (Table 1/2): initial 3×3×3 conv to 32 filters and spatial dropout 0.2; ResNet
blocks (GroupNorm(8) → ReLU → conv3 → GroupNorm(8) → ReLU → conv3, plus identity) — 1, 2, 2, 4 blocks at
32, 64, 128, 256 filters, levels joined by stride-2 3×3×3 convolutions; decoder levels: 1×1×1 conv
halving the filters, ×2 linear up-sampling, addition of the encoder output of that level, one block;
final 1×1×1 conv to the outputs (3 BraTS regions with sigmoids in the paper: the heads' activation is
the loss's business, this network outputs ``num_classes`` logits). VAE branch: GroupNorm → ReLU → stride-2
conv to 16 filters → dense to 256 (128 means, 128 log-variances) → sample → dense back to 16 × (S/16) →
ReLU → 1×1×1 conv to 256 → up-sampling and blocks mirroring the decoder → 1×1×1 conv to the input
channels.

``input_size`` — the training patch size (paper: 160×192×128) — fixes the dense layers' sizes and must
be divisible by 16 (``size_divisor`` is then 16, else 8). In train mode ``forward`` returns ``{"logits", "reconstruction", "mu", "logvar"}`` and
requires inputs of exactly ``input_size``; in eval mode it returns the logits for any input size, the VAE
branch being unused (and therefore never exported to ONNX). The loss of the paper,
Dice + 0.1·L2(reconstruction) + 0.1·KL, lives in :mod:`medseg.losses`.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import nn

from medseg.errors import MedsegError
from medseg.nets.layers.conv import as_tuple, conv_type, crop_to, make_norm, pad_to_multiple
from medseg.nets.layers.options import build_checked
from medseg.nets.registry import NETWORKS

CITATION = "Myronenko. 3D MRI brain tumor segmentation using autoencoder regularization. BrainLes (MICCAI) 2018"


class ResBlock(nn.Module):
    """GN → ReLU → conv3 → GN → ReLU → conv3, plus the identity (pre-activation ResNet block)."""

    def __init__(self, spatial_dims: int, channels: int, groups: int = 8):
        super().__init__()
        conv = conv_type(spatial_dims)
        self.body = nn.Sequential(
            make_norm("group", spatial_dims, channels, groups), nn.ReLU(),
            conv(channels, channels, 3, padding=1, bias=False),
            make_norm("group", spatial_dims, channels, groups), nn.ReLU(inplace=True),
            conv(channels, channels, 3, padding=1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class _UpLevel(nn.Module):
    """1×1 conv halving the channels, then ×2 linear up-sampling."""

    def __init__(self, spatial_dims: int, c_in: int, c_out: int):
        super().__init__()
        self.conv = conv_type(spatial_dims)(c_in, c_out, 1, bias=False)
        self.up = nn.Upsample(scale_factor=2.0, mode="bilinear" if spatial_dims == 2 else "trilinear",
                              align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.conv(x))


class SegResNetVAE(nn.Module):
    """Myronenko's SegResNet with the VAE regulariser (3D, and 2D).

    Parameters
    ----------
    in_channels : int
        Input modalities (BraTS: 4).
    num_classes : int
        Output channels (BraTS regions: 3).
    spatial_dims : int
        3 (paper) or 2.
    input_size : sequence of int, optional
        Training patch size, divisible by 16 (default: the paper's 160×192×128 crop in 3D, 160×192 in 2D).
    features : int
        Initial filters (paper: 32).
    blocks_down : sequence of int
        ResNet blocks per encoder level (paper: 1, 2, 2, 4).
    blocks_up : sequence of int
        Blocks per decoder level, coarsest first (paper: 1, 1, 1).
    latent_dim : int
        VAE latent size (paper: 128).
    dropout : float
        Spatial dropout after the initial convolution (paper: 0.2).
    groups : int
        GroupNorm groups (paper: 8).
    vae : bool
        Build the VAE branch (False gives the plain SegResNet).

    Examples
    --------
    >>> net = SegResNetVAE(2, 3, 3, input_size=(16, 16, 16), features=8, blocks_down=(1, 1, 1, 1))
    >>> out = net(torch.zeros(1, 2, 16, 16, 16))
    >>> sorted(out), out["reconstruction"].shape
    (['logits', 'logvar', 'mu', 'reconstruction'], torch.Size([1, 2, 16, 16, 16]))
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        spatial_dims: int = 3,
        input_size: Sequence[int] | None = None,
        features: int = 32,
        blocks_down: Sequence[int] = (1, 2, 2, 4),
        blocks_up: Sequence[int] = (1, 1, 1),
        latent_dim: int = 128,
        dropout: float = 0.2,
        groups: int = 8,
        vae: bool = True,
    ):
        super().__init__()
        levels = len(blocks_down) - 1
        if levels < 1 or len(blocks_up) != levels:
            raise MedsegError(f"SegResNet needs len(blocks_up) == len(blocks_down) - 1 >= 1, got {blocks_down}, {blocks_up}")
        if input_size is None:
            input_size = (160, 192, 128)[:spatial_dims]
        self.input_size = as_tuple(input_size, spatial_dims, "input_size")
        self.spatial_dims = spatial_dims
        self.levels = levels
        self.size_divisor = 2**levels
        self.vae = vae
        conv = conv_type(spatial_dims)
        ch = [features * 2**i for i in range(levels + 1)]
        self.channels = ch
        dropout_layer = {2: nn.Dropout2d, 3: nn.Dropout3d}.get(spatial_dims, nn.Dropout)
        self.stem = nn.Sequential(conv(in_channels, ch[0], 3, padding=1, bias=False),
                                  dropout_layer(dropout) if dropout > 0 else nn.Identity())
        self.encoder = nn.ModuleList()
        for i, n in enumerate(blocks_down):
            down = conv(ch[i - 1], ch[i], 3, stride=2, padding=1, bias=False) if i > 0 else nn.Identity()
            self.encoder.append(nn.Sequential(down, *[ResBlock(spatial_dims, ch[i], groups) for _ in range(n)]))
        self.up = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for k, n in enumerate(blocks_up):
            i = levels - 1 - k
            self.up.append(_UpLevel(spatial_dims, ch[i + 1], ch[i]))
            self.decoder.append(nn.Sequential(*[ResBlock(spatial_dims, ch[i], groups) for _ in range(n)]))
        self.head = conv(ch[0], num_classes, 1)

        if vae:
            factor = 2 ** (levels + 1)
            if any(s % factor for s in self.input_size):
                raise MedsegError(
                    f"SegResNet-VAE input_size {self.input_size} must be divisible by {factor} "
                    "(the VAE down-samples the encoder end-point once more)"
                )
            self.vae_grid = tuple(s // factor for s in self.input_size)
            # Training patches must be divisible by 16 for the VAE: say so to the patch-size planner.
            self.size_divisor = factor
            vae_channels = 16
            flat = vae_channels * math.prod(self.vae_grid)
            self.vae_channels = vae_channels
            self.vae_down = nn.Sequential(
                make_norm("group", spatial_dims, ch[-1], groups), nn.ReLU(),
                conv(ch[-1], vae_channels, 3, stride=2, padding=1),
            )
            self.vae_dense = nn.Linear(flat, 2 * latent_dim)
            self.vae_expand = nn.Linear(latent_dim, flat)
            self.vae_up_first = nn.Sequential(nn.ReLU(), _UpLevel(spatial_dims, vae_channels, ch[-1]))
            self.vae_up = nn.ModuleList()
            self.vae_blocks = nn.ModuleList()
            for i in reversed(range(levels)):
                self.vae_up.append(_UpLevel(spatial_dims, ch[i + 1], ch[i]))
                self.vae_blocks.append(ResBlock(spatial_dims, ch[i], groups))
            self.vae_head = conv(ch[0], in_channels, 1)

    def _vae(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.vae_down(features).flatten(1)
        mu, logvar = self.vae_dense(h).chunk(2, dim=1)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        h = self.vae_expand(z).view(-1, self.vae_channels, *self.vae_grid)
        h = self.vae_up_first(h)
        for up, block in zip(self.vae_up, self.vae_blocks):
            h = block(up(h))
        return self.vae_head(h), mu, logvar

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, Any]:
        use_vae = self.training and self.vae
        if use_vae and tuple(x.shape[2:]) != self.input_size:
            raise MedsegError(
                f"SegResNet-VAE was built for input_size {self.input_size} (the VAE's dense layers fix it); "
                f"got a training input of size {tuple(x.shape[2:])}. Pass input_size=<patch size>."
            )
        x, shape = pad_to_multiple(x, self.size_divisor)
        x = self.stem(x)
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        end_point = skips.pop()
        x = end_point
        for up, stage in zip(self.up, self.decoder):
            x = stage(up(x) + skips.pop())
        logits = crop_to(self.head(x), shape)
        if not use_vae:
            return logits
        reconstruction, mu, logvar = self._vae(end_point)
        return {"logits": logits, "reconstruction": reconstruction, "mu": mu, "logvar": logvar}


def _smallest_input_size(options: dict[str, Any]) -> int:
    # the VAE halves the end-point of len(blocks_down) - 1 down-samplings once more
    return 2 ** len(options.get("blocks_down", (1, 2, 2, 4)))


_TRAINING_DEFAULTS = {"features": 16}
_TRAINING_DEFAULT_REASONS = {
    "features": "half the paper's 32: on one CPU core a 32-wide step takes 7.8 s (334 steps in an hour) and a BraTS "
                "case 70 s to predict, 16 features 2 s and 22-40 s; on the BraTS fold measured at both widths WT / "
                "TC / ET 0.800 / 0.627 / 0.488 against 0.743 / 0.637 / 0.413; 8 features lost (BENCHMARKS.md, "
                "sessions 11 and 25)",
}


@NETWORKS.register("segresnet_vae", dims=(3, 2), citation=CITATION, needs_input_size=True,
                   smallest_input_size=_smallest_input_size, training_defaults=_TRAINING_DEFAULTS,
                   training_default_reasons=_TRAINING_DEFAULT_REASONS,
                   summary="SegResNet-VAE: ResNet encoder, light decoder, VAE regulariser (train only)")
def build_segresnet_vae(in_channels: int, num_classes: int, spatial_dims: int = 3, **options: Any) -> SegResNetVAE:
    """Build a :class:`SegResNetVAE` (see its parameters; pass ``input_size`` = the training patch size)."""
    return build_checked(SegResNetVAE, "segresnet_vae", in_channels, num_classes, spatial_dims, options)


__all__ = ["ResBlock", "SegResNetVAE", "build_segresnet_vae"]
