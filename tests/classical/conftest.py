"""Synthetic phantoms where the right answer is known (tiny, generated in the test)."""

from __future__ import annotations

import numpy as np
import pytest


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a).astype(bool), np.asarray(b).astype(bool)
    return 2.0 * np.count_nonzero(a & b) / max(np.count_nonzero(a) + np.count_nonzero(b), 1)


@pytest.fixture
def disc():
    """Noisy bright disc (radius 12) on a dark background: (image, truth)."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:48, :48]
    truth = (yy - 24) ** 2 + (xx - 22) ** 2 < 144
    image = np.where(truth, 100.0, 20.0) + rng.normal(0, 12, truth.shape)
    return image.astype(np.float32), truth


@pytest.fixture
def two_level():
    """Noise-free two-intensity phantom (uint16), a square object."""
    x = np.full((32, 40), 300, np.uint16)
    x[8:24, 10:30] = 900
    return x, x == 900


@pytest.fixture
def three_class():
    """Three tissue classes (dark background, grey ring, bright core) with noise: (image, labels 0/1/2)."""
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[:48, :48]
    r = np.hypot(yy - 24, xx - 24)
    labels = np.where(r < 8, 2, np.where(r < 16, 1, 0))
    image = np.choose(labels, [10.0, 60.0, 120.0]) + rng.normal(0, 6, labels.shape)
    return image, labels


@pytest.fixture
def blobs3d():
    """Two separated bright blobs in a noisy 3D volume, anisotropic spacing (z 2 mm)."""
    rng = np.random.default_rng(3)
    zz, yy, xx = np.mgrid[:16, :32, :32]
    a = ((zz - 5) * 2.0) ** 2 + (yy - 10) ** 2 + (xx - 10) ** 2 < 36
    b = ((zz - 10) * 2.0) ** 2 + (yy - 22) ** 2 + (xx - 22) ** 2 < 49
    image = np.where(a | b, 80.0, 10.0) + rng.normal(0, 8, a.shape)
    return image.astype(np.float32), a, b, (2.0, 1.0, 1.0)


@pytest.fixture
def tube():
    """Dark horizontal tube (width ~5 px) on a bright background with noise: (image, truth)."""
    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[:48, :64]
    truth = np.abs(yy - 24) <= 2
    image = 200.0 - 80.0 * np.exp(-((yy - 24) ** 2) / (2 * 2.0**2)) + rng.normal(0, 3, truth.shape)
    return image, truth
