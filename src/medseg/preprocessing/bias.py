"""N4 bias field correction for MR (Tustison et al., IEEE TMI 2010) via SimpleITK."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import SimpleITK as sitk

from medseg.errors import MedsegError
from medseg.preprocessing._channels import apply_per_channel, as_float


def n4_bias_correction(
    image: np.ndarray,
    mask: np.ndarray | None = None,
    shrink_factor: int = 4,
    iterations: Sequence[int] = (50, 50, 50),
    spacing: Sequence[float] | None = None,
    channel_axis: int | None = None,
) -> np.ndarray:
    """Remove a smooth multiplicative intensity inhomogeneity (``SimpleITK.N4BiasFieldCorrectionImageFilter``).

    The bias field is fitted on an image shrunk by ``shrink_factor`` (fast) and then evaluated on the
    full grid, so the correction is applied at full resolution.

    Parameters
    ----------
    image : ndarray
        2D or 3D MR intensities (per channel).
    mask : ndarray of bool, optional
        Region used to fit the field; default Otsu's foreground.
    shrink_factor : int
        Downsampling used during the fit.
    iterations : sequence of int
        Iterations per fitting level (its length is the number of levels).
    spacing : sequence of float, optional
        Voxel size in array-axis order.
    channel_axis : int, optional
        Axis holding channels.

    Returns
    -------
    ndarray
        Corrected float array ``image / exp(log_bias)``.

    Examples
    --------
    >>> y = np.linspace(1, 2, 32)[:, None] * np.ones((32, 32)) * 100
    >>> out = n4_bias_correction(y, shrink_factor=2, iterations=(10,))
    >>> out.shape
    (32, 32)
    """
    if shrink_factor < 1 or not iterations or any(int(i) < 1 for i in iterations):
        raise MedsegError(f"N4 needs shrink_factor >= 1 and positive iterations; got {shrink_factor}, {list(iterations)}")
    image = as_float(image)

    def one(x, m):
        if x.ndim not in (2, 3):
            raise MedsegError(f"N4 needs 2D or 3D channels; got shape {x.shape}")
        # N4 works on the log of the intensities: shift so that the fitted region is strictly positive.
        shift = 0.0
        low = float(x[m].min()) if m is not None else float(x.min())
        if low <= 0:
            shift = 1.0 - low
        img = sitk.GetImageFromArray((x + shift).astype(np.float32))
        if spacing is not None:
            img.SetSpacing([float(s) for s in reversed(spacing)])
        if m is None:
            msk = sitk.OtsuThreshold(img, 0, 1, 200)
        else:
            msk = sitk.GetImageFromArray(m.astype(np.uint8))
            msk.CopyInformation(img)
        small, small_mask = img, msk
        if shrink_factor > 1:
            small = sitk.Shrink(img, [int(shrink_factor)] * x.ndim)
            small_mask = sitk.Shrink(msk, [int(shrink_factor)] * x.ndim)
        corrector = sitk.N4BiasFieldCorrectionImageFilter()
        corrector.SetMaximumNumberOfIterations([int(i) for i in iterations])
        corrector.Execute(small, small_mask)
        log_bias = sitk.GetArrayFromImage(corrector.GetLogBiasFieldAsImage(img))
        return (x + shift) / np.exp(log_bias) - shift

    return apply_per_channel(one, image, channel_axis, mask)
