"""The field of view (FOV) of a fundus photograph, and rescaling an image so that its FOV has a given
diameter — what differs most between fundus cameras, normalised before the network sees the image.

:func:`find_fov`: the camera's circular aperture is bright against a dark surround. Median-filter the
brightest channel (red in fundus photographs, strong even over dark vessels), threshold it at a fixed
share of the way from the surround's level (1st percentile) to the retina's (90th percentile), keep the
largest component, fill its holes and open it with a small disc (removes glare and the thin bright
borders some cameras print). STARE ships no FOV masks; DRIVE's masks measure it (BENCHMARKS.md).

:func:`fit_fov_circle` / :func:`fov_diameter`: the aperture's circle fitted to the FOV's edge (RANSAC,
robust to the straight cuts at the top and bottom in DRIVE and STARE and to the sides cut by the sensor);
:func:`fit_aperture`: that circle, or an ellipse where a photograph was resized non-uniformly, checked
against the FOV (no aperture, no rescaling: an error).

:func:`fov_spacing`: the spacing that makes resampling bring an image's FOV to the training camera's
diameter (recorded in the model as ``fov_diameter``); :func:`medseg.preprocessing.grid.to_network_grid`
applies it, and brings predictions back to the input's size. :func:`restore_size` zooms an array back.

Examples
--------
>>> import numpy as np
>>> yy, xx = np.mgrid[:200, :240]
>>> disc = ((yy - 100) ** 2 + (xx - 120) ** 2 < 90 ** 2).astype(np.float32)
>>> rgb = np.stack([disc * 180, disc * 90, disc * 40]) + 5
>>> roi = find_fov(rgb)
>>> round(fov_diameter(roi))
180
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
from scipy import ndimage

from medseg.errors import MedsegError

if TYPE_CHECKING:
    from medseg.image import Image

#: threshold = surround + FOV_LEVEL * (retina - surround); 0.25 sits well above the camera's dark noise
#: and below the darkest retina at the rim
FOV_LEVEL = 0.25
SURROUND_PERCENTILE = 1.0
RETINA_PERCENTILE = 90.0
MIN_CONTRAST = 10.0 / 255.0     # retina - surround below this share of the dynamic range: no aperture
MIN_FOV_FRACTION = 0.05         # a FOV covering less of the image than this was not found
OPENING_FRACTION = 0.01         # opening disc radius as a share of the image's smaller side
RANSAC_TRIALS = 300             # triples of edge pixels tried when fitting the aperture circle
RANSAC_TOLERANCE = 1.5          # pixels from the circle that count as on it
#: an aperture within this share of the recorded diameter is not rescaled: the training camera's own images
#: (DRIVE's 40 apertures lie within 0.7 % of the training median) keep their pixels, and a zoom this small
#: is well inside the training augmentation's scale range (0.85-1.25)
FOV_TOLERANCE = 0.02


def _open_with_disc(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary opening by a disc of ``radius`` pixels (``y² + x² ≤ r²``) from two Euclidean distance
    transforms: erosion keeps the pixels farther than r from the background, dilation adds those within r
    of what is kept. Its cost does not grow with the disc, unlike ``ndimage.binary_opening`` with the
    disc as structuring element (find_fov on a 3504 × 2336 photograph: 11.2 s → 2.9 s; the same FOV on
    DRIVE's 40 and STARE's 18 images: benchmarks/fov_opening.py)."""
    r = max(int(radius), 1)
    mask = np.asarray(mask, dtype=bool)
    if mask.all() or not mask.any():  # a transform needs a zero somewhere
        return mask.copy()
    eroded = ndimage.distance_transform_edt(mask) > r
    if not eroded.any():
        return eroded
    return ndimage.distance_transform_edt(~eroded) <= r


def find_fov(image: np.ndarray, level: float = FOV_LEVEL, name: str = "image") -> np.ndarray:
    """The field of view of a fundus photograph as a boolean roi.

    Parameters
    ----------
    image : ndarray, shape (C, Y, X) or (Y, X)
        Colour (channels first) or grey photograph, any intensity range.
    level : float
        Threshold position between the surround and the retina level (0..1).
    name : str
        Named in the error message (e.g. the file).

    Returns
    -------
    ndarray of bool, shape (Y, X)

    Raises
    ------
    MedsegError
        When no aperture stands out from the surround (e.g. an all-black image).
    """
    array = np.asarray(image, dtype=np.float32)
    name = f"{name}: " if name else ""
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise MedsegError(f"{name}a field of view is found in a 2D photograph (C, Y, X); got shape {array.shape}")
    # brightest channel: red in fundus photographs, the one where the retina stands out most from black
    channel = array[int(np.argmax(array.reshape(len(array), -1).mean(1)))]
    dynamic = float(channel.max() - channel.min()) if channel.size else 0.0
    span = max(float(np.abs(channel).max()), 1e-12) if channel.size else 1.0
    scale = 255.0 if span > 1.5 else 1.0  # 8-bit or [0, 1] images
    smooth = ndimage.median_filter(channel, size=5)  # edge-preserving: the aperture keeps its size
    surround = float(np.percentile(smooth, SURROUND_PERCENTILE))
    retina = float(np.percentile(smooth, RETINA_PERCENTILE))
    if dynamic <= 0 or retina - surround < MIN_CONTRAST * scale:
        raise MedsegError(f"{name}no field of view found (the image has no bright aperture on a dark surround; "
                          f"brightest channel spans {surround:.3g}..{retina:.3g})")
    roi = smooth > surround + level * (retina - surround)
    components, n = ndimage.label(roi)
    if n == 0:
        raise MedsegError(f"{name}no field of view found")
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    roi = ndimage.binary_fill_holes(components == int(np.argmax(sizes)))
    radius = round(OPENING_FRACTION * min(roi.shape))
    # opening removes bright borders/glare attached to the aperture; pad so the image edge is not eroded
    padded = np.pad(roi, radius + 1, mode="edge")
    roi = _open_with_disc(padded, radius)[radius + 1:-radius - 1, radius + 1:-radius - 1]
    components, n = ndimage.label(roi)
    if n > 1:
        sizes = np.bincount(components.ravel())
        sizes[0] = 0
        roi = components == int(np.argmax(sizes))
    if roi.mean() < MIN_FOV_FRACTION:
        raise MedsegError(f"{name}no field of view found (the bright region covers {roi.mean():.1%} of the image)")
    return roi


def fit_fov_circle(roi: np.ndarray, seed: int = 0) -> tuple[float, float, float]:
    """The camera's circular aperture fitted to the FOV's edge: ``(centre_y, centre_x, radius)`` in pixels.

    Edge pixels on the image border are left out (the sensor cuts the circle there), and the circle is
    found by RANSAC over triples of edge pixels (seeded, so the same roi gives the same circle), refined by
    a least-squares fit of its inliers: straight cuts of the aperture (top and bottom in DRIVE and STARE)
    do not pull it.

    Examples
    --------
    >>> yy, xx = np.mgrid[:100, :140]
    >>> roi = ((yy - 50) ** 2 + (xx - 70) ** 2 < 60 ** 2)   # cut off at the top and bottom
    >>> [round(v) for v in fit_fov_circle(roi)]
    [50, 70, 60]
    """
    points = _edge_points(roi, 3)
    rng = np.random.default_rng(seed)
    best, best_inliers = None, -1
    for _ in range(RANSAC_TRIALS):
        circle = _circle_through(points[rng.choice(len(points), 3, replace=False)])
        if circle is None:
            continue
        residual = np.abs(np.hypot(*(points - circle[:2]).T) - circle[2])
        inliers = int((residual < RANSAC_TOLERANCE).sum())
        if inliers > best_inliers:
            best, best_inliers = circle, inliers
    if best is None:
        raise MedsegError("the field of view's edge is a straight line: no circular aperture")
    inside = np.abs(np.hypot(*(points - best[:2]).T) - best[2]) < RANSAC_TOLERANCE
    cy, cx, radius = _least_squares_circle(points[inside])
    return cy, cx, radius + 0.5  # edge pixel centres lie half a pixel inside the aperture's outline


def _nonempty(roi: np.ndarray) -> np.ndarray:
    roi = np.asarray(roi, dtype=bool)
    if roi.ndim != 2 or not roi.any():
        raise MedsegError("the field of view is empty")
    return roi


def _edge_points(roi: np.ndarray, needed: int) -> np.ndarray:
    """The FOV's edge pixels (y, x) away from the image border, where the sensor cuts the aperture."""
    roi = _nonempty(roi)
    edge = roi & ~ndimage.binary_erosion(roi)
    edge[:2], edge[-2:], edge[:, :2], edge[:, -2:] = False, False, False, False
    points = np.argwhere(edge).astype(np.float64)
    if len(points) < needed:
        raise MedsegError("the field of view has no edge inside the image: its aperture cannot be fitted")
    return points


def fit_fov_ellipse(roi: np.ndarray, seed: int = 0) -> tuple[float, float, float, float]:
    """An aperture stretched along the image axes (a photograph resized non-uniformly) fitted to the FOV:
    ``(centre_y, centre_x, radius_y, radius_x)`` in pixels.

    Axis-aligned only, because resizing stretches along the axes. Each row of the ROI is a chord of the
    ellipse, whose squared half-width is a quadratic in the row, ``rx² (1 - (y - cy)² / ry²)``: the
    quadratic is fitted by RANSAC over triples of rows (seeded), refined by least squares on its inliers.
    Rows reaching the image's sides (cut by the sensor) are left out; rows cut by a straight edge of the
    aperture are still whole chords. (Fitting the edge pixels as for the circle fails here: an ellipse
    through four nearby edge pixels is mostly a hyperbola, and an ellipse can hug a straight cut.)

    Examples
    --------
    >>> yy, xx = np.mgrid[:100, :200]
    >>> roi = ((yy - 50) / 60) ** 2 + ((xx - 100) / 90) ** 2 < 1   # cut off at the top and bottom
    >>> [round(v) for v in fit_fov_ellipse(roi)]
    [50, 100, 60, 90]
    """
    roi = _nonempty(roi)
    width = roi.shape[1]
    left = np.argmax(roi, 1)
    right = width - 1 - np.argmax(roi[:, ::-1], 1)
    rows = np.flatnonzero(roi.any(1) & (left > 0) & (right < width - 1))
    if len(rows) < 3:
        raise MedsegError("the field of view has no edge inside the image: its aperture cannot be fitted")
    half = (right[rows] - left[rows] + 1) / 2.0
    y = rows.astype(np.float64)
    design = np.c_[np.ones_like(y), y, y * y]
    rng = np.random.default_rng(seed)
    best, best_inliers = None, -1
    for _ in range(RANSAC_TRIALS):
        pick = rng.choice(len(rows), 3, replace=False)
        try:
            coefficients = np.linalg.solve(design[pick], half[pick] ** 2)
        except np.linalg.LinAlgError:
            continue
        inliers = int((np.abs(np.sqrt(np.maximum(design @ coefficients, 0)) - half) < RANSAC_TOLERANCE).sum())
        if coefficients[2] < 0 and inliers > best_inliers:
            best, best_inliers = coefficients, inliers
    if best is None:
        raise MedsegError("the field of view's rows fit no elliptical aperture")
    inside = np.abs(np.sqrt(np.maximum(design @ best, 0)) - half) < RANSAC_TOLERANCE
    (a, b, c), *_ = np.linalg.lstsq(design[inside], half[inside] ** 2, rcond=None)
    if c >= 0:
        a, b, c = best
    cy = -b / (2 * c)
    rx = np.sqrt(max(a - c * cy * cy, 0.0))
    cx = float(np.mean((left[rows][inside] + right[rows][inside]) / 2.0))
    return float(cy), cx, float(rx / np.sqrt(-c)), float(rx)


def _circle_through(p: np.ndarray) -> np.ndarray | None:
    (y1, x1), (y2, x2), (y3, x3) = p
    d = 2 * (y1 * (x2 - x3) + y2 * (x3 - x1) + y3 * (x1 - x2))
    if abs(d) < 1e-9:
        return None
    s1, s2, s3 = y1 ** 2 + x1 ** 2, y2 ** 2 + x2 ** 2, y3 ** 2 + x3 ** 2
    cy = (s1 * (x2 - x3) + s2 * (x3 - x1) + s3 * (x1 - x2)) / d
    cx = (s1 * (y3 - y2) + s2 * (y1 - y3) + s3 * (y2 - y1)) / d
    return np.array([cy, cx, np.hypot(y1 - cy, x1 - cx)])


def _least_squares_circle(points: np.ndarray) -> tuple[float, float, float]:
    # Kåsa's algebraic fit: y² + x² = 2a·y + 2b·x + c, radius² = c + a² + b²
    A = np.c_[2 * points, np.ones(len(points))]
    (a, b, c), *_ = np.linalg.lstsq(A, (points ** 2).sum(1), rcond=None)
    return float(a), float(b), float(np.sqrt(c + a * a + b * b))


def fov_diameter(roi: np.ndarray) -> float:
    """Diameter of the camera's aperture in pixels (twice the radius of :func:`fit_fov_circle`); unlike
    the FOV's width, it does not shrink when the sensor cuts the circle at the sides."""
    return 2.0 * fit_fov_circle(roi)[2]


APERTURE_DICE = 0.95            # an ROI is a camera aperture when its fitted circle (cut by the image) matches it
#: below this match no aperture is fitted at all (refused): found FOVs of STARE's 18 photographs match their
#: circle at 0.965-0.976, DRIVE's 40 at 0.998; a circle through a straight cut of an ellipse matches far less
APERTURE_MIN_MATCH = 0.9


def _match(roi: np.ndarray, cy: float, cx: float, ry: float, rx: float) -> float:
    """Dice between the aperture (cut by the image) and the ROI."""
    yy, xx = np.ogrid[:roi.shape[0], :roi.shape[1]]
    inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
    return 2.0 * np.logical_and(inside, roi).sum() / max(int(inside.sum() + roi.sum()), 1)


def fit_aperture(roi: np.ndarray, name: str = "") -> tuple[float, float, float, float, float]:
    """The camera's aperture in a FOV ROI: ``(centre_y, centre_x, radius_y, radius_x, match)``.

    The circle (:func:`fit_fov_circle`) when it matches the ROI (Dice at least :data:`APERTURE_DICE`);
    else the axis-aligned ellipse (:func:`fit_fov_ellipse`, a photograph resized non-uniformly) when it
    matches better; else the better of the two if it matches at least :data:`APERTURE_MIN_MATCH`. Below
    that the ROI is no aperture, and rescaling by a fit would be wrong (a circle through a straight cut has
    a diameter of 10⁵ pixels): a one-line error naming ``name``.

    Examples
    --------
    >>> yy, xx = np.mgrid[:100, :200]
    >>> stretched = ((yy - 50) / 60) ** 2 + ((xx - 100) / 90) ** 2 < 1
    >>> [round(v) for v in fit_aperture(stretched)[:4]]
    [50, 100, 60, 90]
    """
    roi = np.asarray(roi) != 0
    prefix = f"{name}: " if name else ""
    fits = []
    try:
        cy, cx, radius = fit_fov_circle(roi)
        fits.append((cy, cx, radius, radius, _match(roi, cy, cx, radius, radius)))
    except MedsegError:
        pass
    if not fits or fits[0][4] < APERTURE_DICE:
        try:
            ellipse = fit_fov_ellipse(roi)
            fits.append((*ellipse, _match(roi, *ellipse)))
        except MedsegError:
            pass
    if not fits:
        raise MedsegError(f"{prefix}the field of view's edge fits no camera aperture")
    best = max(fits, key=lambda fit: fit[4])
    if best[4] < APERTURE_MIN_MATCH:
        raise MedsegError(f"{prefix}the field of view is no camera aperture: the best circle or ellipse fitted to "
                          f"its edge matches it at Dice {best[4]:.2f} (at least {APERTURE_MIN_MATCH} needed)")
    return tuple(float(v) for v in best)  # type: ignore[return-value]


def aperture_diameter(roi: np.ndarray) -> float | None:
    """The aperture diameter of a field-of-view ROI (:func:`fov_diameter`), or None when the ROI is not a
    circular aperture (a rectangle, the whole image: the fitted circle, cut by the image, does not match it).

    Examples
    --------
    >>> yy, xx = np.mgrid[:100, :120]
    >>> round(aperture_diameter((yy - 50) ** 2 + (xx - 60) ** 2 < 40 ** 2)), aperture_diameter(np.ones((50, 50)))
    (80, None)
    """
    roi = np.asarray(roi) != 0
    try:
        cy, cx, radius = fit_fov_circle(roi)
    except MedsegError:
        return None
    return 2.0 * radius if _match(roi, cy, cx, radius, radius) >= APERTURE_DICE else None


def _resize(array: np.ndarray, shape: Sequence[int], order: int) -> np.ndarray:
    # zoom factors from the exact shapes, so that restore_size returns the very same grid
    factors = [t / s for t, s in zip(shape, array.shape)]
    return ndimage.zoom(array, factors, order=order, mode="nearest", grid_mode=True)


def fov_spacing(fov: np.ndarray, target_diameter: float, unit_spacing: Sequence[float],
                tolerance: float = FOV_TOLERANCE, name: str = "") -> tuple[float, ...]:
    """The spacing to give an image so that resampling it to ``unit_spacing`` brings its FOV to
    ``target_diameter`` pixels: ``unit_spacing × target / found diameter``, per axis (an aperture stretched
    to an ellipse comes back round, :func:`fit_aperture`).

    This is how FOV normalisation enters the case ↔ network-grid transform
    (:func:`medseg.preprocessing.grid.to_network_grid`): the zoom is a resampling like any other, and the
    result is brought back onto the input's grid by the same code. Apertures within ``tolerance`` of the
    target keep ``unit_spacing`` (no resampling).

    Examples
    --------
    >>> yy, xx = np.mgrid[:100, :120]
    >>> [round(v, 2) for v in fov_spacing((yy - 50) ** 2 + (xx - 60) ** 2 < 40 ** 2, 40, (1.0, 1.0))]
    [0.5, 0.5]
    """
    if not target_diameter > 0:
        raise MedsegError(f"target FOV diameter must be positive; got {target_diameter}")
    _, _, ry, rx, _ = fit_aperture(fov, name)
    scales = [float(target_diameter) / (2 * r) for r in (ry, rx)]
    unit = tuple(float(v) for v in unit_spacing)
    if all(abs(scale - 1.0) <= tolerance for scale in scales):
        return unit
    return tuple(u * scale for u, scale in zip(unit, scales))


def fov_roi(image: "Image", name: str = "") -> "Image":
    """The found field of view of a photograph as an ROI :class:`~medseg.Image` on its grid (see :func:`find_fov`)."""
    roi = find_fov(image.array, name=name)
    return image.with_array(roi[None].astype(np.uint8), ("roi",))


def restore_size(array: np.ndarray, shape: Sequence[int], order: int = 1) -> np.ndarray:
    """Bring a prediction made on the rescaled image back to the input's ``shape`` (Y, X).

    Probabilities (C, Y, X) or (Y, X) with ``order=1``; label maps with ``order=0``.
    """
    array = np.asarray(array)
    if array.ndim == 2:
        return _resize(array.astype(np.float32) if order else array, shape, order).astype(array.dtype, copy=False)
    return np.stack([_resize(c.astype(np.float32) if order else c, shape, order) for c in array]).astype(
        array.dtype, copy=False)
