"""Sliding-patch CNN: classify the centre pixel of the patch around every pixel.

Ciresan D. C., Giusti A., Gambardella L. M., Schmidhuber J. "Deep Neural Networks Segment Neuronal
Membranes in Electron Microscopy Images". NIPS 2012 (the pre-FCN approach the survey starts from).

What is new (then): a deep max-pooling CNN trained to label each pixel from the raw P×P window centred
on it, applied by sliding the window over the whole image.

Two equivalent ways to run it:

- ``predict_naive``: cut every P×P patch (reflection padding by P//2) and classify it, in batches —
  the original, costly form (each pixel's features are recomputed for every patch that contains it);
- ``forward`` (dense form): the same weights run fully convolutionally over the whole image: fully
  connected layers become convolutions, and each stride-2 max-pooling becomes a stride-1 pooling whose
  subsequent layers are dilated by the accumulated factor (the "filter rarefaction" / à trous trick,
  exactly equivalent to shift-and-stitch). The dense map equals the naive map exactly (up to float
  rounding; tests/nets/test_patch_cnn.py checks it, benchmarks/patch_cnn_speed.py times both forms).

The architecture is small and configurable: valid ``kernel_size`` convolutions with ReLU, each followed
by 2×2 max-pooling (``features`` gives the widths), then a fully connected layer (a convolution covering
the remaining map) of ``fc_features`` units with ReLU, then the classifier. Training uses the dense form
as well (a batch of crops with a dense label map = all their patches at once), so the network goes
through the same trainer as the others; ``size_divisor`` is 1.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from medseg.errors import MedsegError
from medseg.nets.layers.options import build_checked
from medseg.nets.registry import NETWORKS

CITATION = "Ciresan, Giusti, Gambardella, Schmidhuber. Deep neural networks segment neuronal membranes in EM images. NIPS 2012"


class PatchCNN(nn.Module):
    """Centre-pixel patch classifier with an exactly equivalent dense form (2D).

    Parameters
    ----------
    in_channels, num_classes : int
    spatial_dims : int
        Must be 2.
    patch_size : int
        Odd window size P (default 25).
    features : sequence of int
        Widths of the conv+pool stages (default 32, 64).
    kernel_size : int
        Kernel of the stage convolutions (default 4).
    fc_features : int
        Units of the hidden fully connected layer (default 128).

    Examples
    --------
    >>> net = PatchCNN(1, 2, patch_size=13, features=(4,), kernel_size=3, fc_features=8).eval()
    >>> net(torch.zeros(1, 1, 10, 7)).shape
    torch.Size([1, 2, 10, 7])
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        spatial_dims: int = 2,
        patch_size: int = 25,
        features: Sequence[int] = (32, 64),
        kernel_size: int = 4,
        fc_features: int = 128,
    ):
        super().__init__()
        if spatial_dims != 2:
            raise MedsegError(f"patch_cnn is 2D only, got spatial_dims={spatial_dims}")
        if patch_size % 2 == 0 or patch_size < 3:
            raise MedsegError(f"patch_size must be odd and >= 3 (a centre pixel), got {patch_size}")
        self.patch_size = patch_size
        self.size_divisor = 1
        self.convs = nn.ModuleList()
        size, c = patch_size, in_channels
        for width in features:
            size = (size - kernel_size + 1) // 2
            if size < 1:
                raise MedsegError(f"patch_size {patch_size} is too small for {len(features)} conv+pool stages")
            self.convs.append(nn.Conv2d(c, width, kernel_size))
            c = width
        self.fc_kernel = size  # the fully connected layer covers the whole remaining map
        self.fc = nn.Conv2d(c, fc_features, size)
        self.classifier = nn.Conv2d(fc_features, num_classes, 1)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        # Reflection (the usual choice for patch classifiers) needs the image larger than P//2; tiny
        # inputs fall back to edge replication. Both forms pad through here, so they stay identical.
        half = self.patch_size // 2
        mode = "reflect" if min(x.shape[2:]) > half else "replicate"
        return F.pad(x, (half, half, half, half), mode=mode)

    def classify_patches(self, patches: torch.Tensor) -> torch.Tensor:
        """Class logits ``(B, K)`` of the centre pixels of patches ``(B, C, P, P)`` (the naive form)."""
        if tuple(patches.shape[2:]) != (self.patch_size, self.patch_size):
            raise MedsegError(f"patches must be {self.patch_size}x{self.patch_size}, got {tuple(patches.shape[2:])}")
        x = patches
        for conv in self.convs:
            x = F.max_pool2d(F.relu(conv(x)), 2, 2)
        x = F.relu(self.fc(x))
        return self.classifier(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Dense logits ``(N, K, H, W)``: the patch classifier applied at every pixel at once."""
        shape = x.shape[2:]
        x = self._pad(x)
        dilation = 1
        for conv in self.convs:
            x = F.relu(F.conv2d(x, conv.weight, conv.bias, dilation=dilation))
            x = F.max_pool2d(x, 2, stride=1, dilation=dilation)
            dilation *= 2
        x = F.relu(F.conv2d(x, self.fc.weight, self.fc.bias, dilation=dilation))
        # Output (y, x) is the patch whose top-left corner is padded (y, x), i.e. centred on (y, x). Pooling
        # that drops an odd last row leaves the net's true receptive field below P: crop the extra rows.
        return self.classifier(x)[:, :, : shape[0], : shape[1]]

    @torch.no_grad()
    def predict_naive(self, image: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        """Classify every pixel from its own P×P patch, patch by patch (in batches).

        Parameters
        ----------
        image : torch.Tensor
            ``(N, C, H, W)``.
        batch_size : int
            Patches per forward pass.

        Returns
        -------
        torch.Tensor
            Logits ``(N, K, H, W)``, equal to ``forward(image)``.
        """
        n, c, h, w = image.shape
        p, half = self.patch_size, self.patch_size // 2
        padded = self._pad(image)
        outputs = []
        for b in range(n):
            rows = []
            # One image row of patches at a time keeps memory at O(W * P^2) instead of O(H * W * P^2).
            strip_rows = max(1, batch_size // max(w, 1))
            for y0 in range(0, h, strip_rows):
                y1 = min(h, y0 + strip_rows)
                strip = padded[b : b + 1, :, y0 : y1 + 2 * half]
                patches = F.unfold(strip, p)  # (1, C*P*P, rows*W)
                patches = patches.transpose(1, 2).reshape(-1, c, p, p)
                rows.append(self.classify_patches(patches).reshape(y1 - y0, w, -1))
            outputs.append(torch.cat(rows).permute(2, 0, 1))
        return torch.stack(outputs)


@NETWORKS.register("patch_cnn", dims=(2,), citation=CITATION,
                   summary="Sliding-patch CNN (centre-pixel classifier) run in its exact dense form")
def build_patch_cnn(in_channels: int, num_classes: int, spatial_dims: int = 2, **options: Any) -> PatchCNN:
    """Build a :class:`PatchCNN` (see its parameters)."""
    return build_checked(PatchCNN, "patch_cnn", in_channels, num_classes, spatial_dims, options)


__all__ = ["PatchCNN", "build_patch_cnn"]
