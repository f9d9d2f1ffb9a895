"""Checks shared by the network tests: shapes, gradient flow, ONNX round trip."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from medseg.nets.export import export_onnx, onnx_session


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _tensors(out) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [t for v in out.values() for t in _tensors(v)]
    if isinstance(out, (list, tuple)):
        return [t for v in out for t in _tensors(v)]
    return []


def assert_gradient_flow(model: torch.nn.Module, x: torch.Tensor) -> None:
    """Every parameter receives a non-zero, finite gradient from a random projection of all outputs."""
    torch.manual_seed(0)
    model.train()
    model.zero_grad()
    out = model(x)
    loss = sum((t * torch.randn_like(t)).sum() for t in _tensors(out))
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"no gradient for {missing}"
    zero = [n for n, p in model.named_parameters() if p.requires_grad and not torch.any(p.grad != 0)]
    assert not zero, f"zero gradient for {zero}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def assert_onnx_matches(
    model: torch.nn.Module,
    tmp_path: Path,
    example_shape: Sequence[int],
    test_shapes: Sequence[Sequence[int]] = (),
    atol: float = 1e-4,
    dynamic_spatial: bool = True,
) -> None:
    """Export, run in onnxruntime on the example and the other shapes, compare with eager PyTorch."""
    model.eval()
    path = export_onnx(model, tmp_path / "net.onnx", example_shape, dynamic_spatial=dynamic_spatial)
    assert path.is_file() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    session = onnx_session(path, threads=1)
    gen = torch.Generator().manual_seed(1)
    for shape in [tuple(example_shape), *map(tuple, test_shapes)]:
        x = torch.randn(shape, generator=gen)
        with torch.no_grad():
            expected = model(x).numpy()
        got = session.run(None, {"image": x.numpy()})[0]
        assert got.shape == expected.shape, (shape, got.shape, expected.shape)
        np.testing.assert_allclose(got, expected, atol=atol, rtol=1e-4)
