"""DUNet training step on CPU: what the deformable blocks cost, and the weight product they use.

Times one forward + backward + AdamW step (batch 4 × 128², one input channel, random data, best of 5 after
two warm-up steps) for DUNet with DCNv2 modulation (medseg's default), DCNv1 (the authors' release), and
the same network with every block plain. Then the two parts of medseg/nets/layers/deformable_conv.py
that were chosen by timing, at the size of DUNet's widest deformable convolution (4 × 32 × 128² input,
3×3 kernel, 16 outputs), forward + backward: the bilinear sampling with grid_sample against an explicit
4-corner gather, and the im2col weight product as a batched matrix product against a 1×1 convolution.

    .venv/bin/python -W ignore benchmarks/dunet_step.py
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from _timing import best_of
from medseg.nets import create_network


def training_step_seconds(**options) -> float:
    torch.manual_seed(0)
    net = create_network("dunet", 1, 2, 2, **options)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
    x, y = torch.randn(4, 1, 128, 128), torch.randint(0, 2, (4, 128, 128))

    def step() -> None:
        optimizer.zero_grad()
        F.cross_entropy(net(x), y).backward()
        optimizer.step()

    return best_of(step)


def gather_sampling(image: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Bilinear values of ``image`` (N, C, H, W) at pixel coordinates ``y``, ``x`` (N, P), zero outside."""
    n, c, h, w = image.shape
    flat = image.flatten(2)
    y0, x0 = y.detach().floor(), x.detach().floor()
    out = image.new_zeros(n, c, y.shape[1])
    for dy in (0, 1):
        for dx in (0, 1):
            yy, xx = y0 + dy, x0 + dx
            weight = (1 - (y - yy).abs()) * (1 - (x - xx).abs())
            inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
            index = (yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1)).long()
            corner = flat.gather(2, index[:, None].expand(n, c, -1))
            out = out + corner * (weight * inside)[:, None]
    return out


def sampling_seconds() -> dict[str, float]:
    n, channels, size, points = 4, 32, 128, 9
    torch.manual_seed(0)
    image = torch.randn(n, channels, size, size, requires_grad=True)
    # A 3×3 neighbourhood around every pixel, displaced by offsets of a few pixels.
    grid_y, grid_x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    y = (grid_y.flatten().repeat(points) + 2 * torch.randn(n, points * size * size)).requires_grad_()
    x = (grid_x.flatten().repeat(points) + 2 * torch.randn(n, points * size * size)).requires_grad_()

    def with_grid_sample() -> None:
        grid = torch.stack(((2 * x + 1) / size - 1, (2 * y + 1) / size - 1), dim=-1)[:, None]
        F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=False).sum().backward()

    def with_gather() -> None:
        gather_sampling(image, y, x).sum().backward()

    return {"grid_sample": best_of(with_grid_sample), "4-corner gather": best_of(with_gather)}


def weight_product_seconds() -> dict[str, float]:
    n, columns_channels, out_channels, size = 4, 32 * 9, 16, 128
    columns = torch.randn(n, columns_channels, size, size, requires_grad=True)
    weight = torch.randn(out_channels, columns_channels, requires_grad=True)

    def as_conv() -> None:
        F.conv2d(columns, weight[:, :, None, None]).sum().backward()

    def as_bmm() -> None:
        flat = columns.reshape(n, columns_channels, size * size)
        torch.bmm(weight.expand(n, -1, -1), flat).sum().backward()

    return {"1x1 convolution": best_of(as_conv), "bmm, expanded weight": best_of(as_bmm)}


def main() -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    for label, options in (
        ("DUNet, DCNv2 modulation (default)", {}),
        ("DUNet, DCNv1 (authors' release)", {"modulation": False}),
        ("same layout, every block plain", {"deformable_encoder": (), "deformable_decoder": ()}),
    ):
        print(f"{label}: {training_step_seconds(**options):.3f} s/step")
    for label, seconds in sampling_seconds().items():
        print(f"bilinear sampling forward + backward with {label}: {seconds:.3f} s")
    for label, seconds in weight_product_seconds().items():
        print(f"weight product forward + backward as {label}: {seconds:.3f} s")


if __name__ == "__main__":
    main()
