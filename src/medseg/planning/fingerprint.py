"""Dataset fingerprint: what the planner needs to know about a dataset, measured once.

Per case: shape, spacing, direction and orientation code, the intensity statistics of each channel
inside the foreground (label > 0, the ignore label excluded), label volumes (voxels and mm³) and
connected-component counts, how thin the labelled structures are (the share of foreground voxels on their
boundary, :func:`medseg.planning.structure.boundary_share`), how much they continue from one slice of a
stack to the next (:func:`medseg.planning.structure.slice_continuity`) and how much of the image a crop to its
non-zero region keeps. Then a summary over cases: median shape and spacing, spacing percentiles,
anisotropy, the pooled boundary share, the median slice continuity, and intensity statistics of each channel
pooled over a fixed-size sample of foreground voxels per case (nnU-Net's scheme: the pooled sample weights every
case equally and keeps the fingerprint fast and memory-bounded).

Every case is read exactly once; ``workers > 1`` reads cases in threads (decompression and NumPy
release the GIL).
"""

from __future__ import annotations

import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

import numpy as np

from medseg.errors import DatasetError, GeometryError
from medseg.image import Image
from medseg.io.labels import label_histogram
from medseg.planning.structure import boundary_share, slice_continuity

#: Foreground voxels sampled per case and channel for the pooled intensity statistics.
DEFAULT_SAMPLES_PER_CASE = 10_000
SPACING_PERCENTILES = (0, 10, 50, 90, 100)


def orientation_code(image: Image) -> str | None:
    """The three-letter DICOM/ITK orientation code (e.g. ``"LPS"``, ``"RAI"``) of a 3D image, else None.

    The code is ITK's (``DICOMOrientImageFilter``): one letter per ITK axis x, y, z, computed from the
    direction cosines; images of one dataset normally share it.
    """
    if image.spatial_dims != 3:
        return None
    import SimpleITK as sitk

    itk_direction = np.asarray(image.direction)[::-1, ::-1]  # back to ITK's (x, y, z) order
    try:
        return sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(
            [float(v) for v in itk_direction.ravel()]
        )
    except Exception:  # a degenerate direction matrix has no orientation code
        return None


def _stats(values: np.ndarray) -> dict[str, float] | None:
    if values.size == 0:
        return None
    values = values.astype(np.float64, copy=False)
    p05, p50, p995 = np.percentile(values, [0.5, 50.0, 99.5])
    return {
        "mean": float(values.mean()), "std": float(values.std()), "median": float(p50),
        "percentile_00_5": float(p05), "percentile_99_5": float(p995),
        "min": float(values.min()), "max": float(values.max()),
    }


def _nonzero_bbox_fraction(array: np.ndarray) -> float:
    """Share of the voxels kept by a crop to the bounding box of non-zero voxels in any channel."""
    nonzero = np.any(array != 0, axis=0)
    if not nonzero.any():
        return 1.0
    size = 1
    for axis in range(nonzero.ndim):
        other = tuple(a for a in range(nonzero.ndim) if a != axis)
        hit = np.flatnonzero(nonzero.any(axis=other))
        size *= int(hit[-1] - hit[0] + 1)
    return size / nonzero.size


def case_fingerprint(case: Any, label_values: Sequence[int], ignore_label: int | None = None,
                     samples_per_case: int = DEFAULT_SAMPLES_PER_CASE, num_channels: int | None = None,
                     seed: int = 0, read: tuple[Image, Image | None] | None = None,
                     ) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Fingerprint of one case and its sampled foreground intensities (one array per channel).

    Parameters
    ----------
    case : Case
        Has ``name``, ``read_image()``, ``read_label()``.
    label_values : sequence of int
        Declared label values (background included).
    ignore_label : int, optional
        Value that marks unlabelled voxels; excluded from the foreground.
    samples_per_case : int
        Foreground voxels sampled per channel for the pooled statistics.
    num_channels : int, optional
        Expected number of channels; a different count raises :class:`DatasetError`.
    seed : int
        Sampling seed (combined with the case name, so the result does not depend on case order).
    read : (Image, Image or None), optional
        The case's image and label when the caller has read them already (``medseg train`` measures
        the fingerprint during the dataset check's single read of every case).
    """
    image, label = read if read is not None else (case.read_image(), case.read_label())
    where = getattr(case, "label_path", None) or (case.image_paths[0] if getattr(case, "image_paths", None) else None)
    if num_channels is not None and image.num_channels != num_channels:
        raise DatasetError(
            f"case '{case.name}' has {image.num_channels} channel(s); the dataset declares {num_channels}",
            case.image_paths[0] if getattr(case, "image_paths", None) else None,
        )
    warnings: list[str] = []
    if label is not None:
        diff = image.geometry_difference(label)
        if diff is not None:
            raise GeometryError(f"case '{case.name}': image and label do not share a voxel grid ({diff})", where)
        lab = label.array[0]
        foreground = lab > 0
        if ignore_label is not None:
            foreground &= lab != ignore_label
        share = boundary_share([foreground], [image.spacing]) if foreground.any() else None
        continuity = slice_continuity(lab, image.spacing, ignore_label)
        if not foreground.any():
            warnings.append(f"case '{case.name}': the label map is empty (no foreground); "
                            "intensity statistics use the whole image")
            foreground = np.ones(image.spatial_shape, bool)
    else:
        lab, share, continuity = None, None, None
        foreground = np.ones(image.spatial_shape, bool)

    rng = np.random.default_rng([seed, zlib.crc32(case.name.encode())])
    fg_index = np.flatnonzero(foreground)
    pick = rng.choice(fg_index, size=min(samples_per_case, fg_index.size), replace=False) if fg_index.size else fg_index
    samples, channel_stats = [], []
    for c in range(image.num_channels):
        flat = image.array[c].reshape(-1)
        sample = np.asarray(flat[pick], dtype=np.float32)
        samples.append(sample)
        channel_stats.append(_stats(sample))

    voxel_mm3 = float(np.prod(image.spacing))
    labels_info: dict[str, dict[str, float]] = {}
    if lab is not None:
        values, counts = label_histogram(lab)
        undeclared = sorted(set(int(v) for v in values) - set(int(v) for v in label_values) - {ignore_label})
        if undeclared:
            raise DatasetError(f"case '{case.name}': label values {undeclared} are not declared in dataset.json", where)
        import cc3d

        for value in label_values:
            if value == 0:
                continue
            n = int(counts[values == value].sum())
            components = 0
            if n:
                mask = np.ascontiguousarray(lab == value)
                _, components = cc3d.connected_components(mask, return_N=True)
            labels_info[str(int(value))] = {"voxels": n, "mm3": n * voxel_mm3, "components": int(components)}

    info = {
        "name": case.name,
        "shape": [int(s) for s in image.spatial_shape],
        "spacing": [float(s) for s in image.spacing],
        "origin": [float(o) for o in image.origin],
        "direction": np.asarray(image.direction).round(6).tolist(),
        "orientation": orientation_code(image),
        "num_channels": image.num_channels,
        "dtype": str(image.array.dtype),
        "intensity": channel_stats,
        "labels": labels_info,
        "nonzero_crop_fraction": _nonzero_bbox_fraction(image.array),
        "foreground_voxels": int(foreground.sum()) if lab is not None else 0,
        "boundary_share": share,
        "slice_continuity": continuity,
        "warnings": warnings,
    }
    return info, samples


def compute_fingerprint(dataset: Any, samples_per_case: int = DEFAULT_SAMPLES_PER_CASE, workers: int = 1,
                        seed: int = 0, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Measure a dataset once: per-case geometry, intensities and label volumes, and a summary.

    Parameters
    ----------
    dataset : Dataset
        From :func:`medseg.datasets.load_dataset`.
    samples_per_case : int
        Foreground voxels sampled per case for the pooled intensity statistics.
    workers : int
        Threads reading cases in parallel.
    seed : int
        Sampling seed.
    progress : callable, optional
        Called as ``progress(done, total)`` after each case.

    Returns
    -------
    dict
        JSON-serialisable: ``{"dataset", "channel_names", "labels", "ignore_label", "regions",
        "file_ending", "cases_with_roi", "num_cases", "cases": [...], "summary": {...}, "warnings": [...]}``.

    Examples
    --------
    >>> import tempfile
    >>> from medseg.datasets import load_dataset, make_organs3d
    >>> ds = load_dataset(make_organs3d(tempfile.mkdtemp() + "/o", cases=2, shape=(8, 16, 16)))
    >>> fp = compute_fingerprint(ds)
    >>> fp["summary"]["median_shape"], fp["summary"]["median_spacing"]
    ([8, 16, 16], [3.0, 1.0, 1.0])
    """
    cases = list(dataset.cases)
    if not cases:
        raise DatasetError("dataset has no training cases to fingerprint", getattr(dataset, "root", None))
    collector = FingerprintCollector(dataset, samples_per_case, seed)

    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for i, result in enumerate(pool.map(collector.measure, cases)):
                collector.results[cases[i].name] = result
                if progress:
                    progress(i + 1, len(cases))
    else:
        for i, case in enumerate(cases):
            collector.add(case)
            if progress:
                progress(i + 1, len(cases))
    return collector.fingerprint()


class FingerprintCollector:
    """A fingerprint built case by case, from files or from images the caller has already read.

    :func:`compute_fingerprint` reads every case itself; ``medseg train`` without a plan passes
    :meth:`add` to :func:`medseg.datasets.check_dataset`, so that each case is read once for both.

    Examples
    --------
    >>> import tempfile
    >>> from medseg.datasets import load_dataset, make_organs3d
    >>> ds = load_dataset(make_organs3d(tempfile.mkdtemp() + "/o", cases=2, shape=(8, 16, 16)))
    >>> collector = FingerprintCollector(ds)
    >>> for case in ds.cases:
    ...     collector.add(case, case.read_image(), case.read_label())
    >>> collector.fingerprint()["num_cases"]
    2
    """

    def __init__(self, dataset: Any, samples_per_case: int = DEFAULT_SAMPLES_PER_CASE, seed: int = 0):
        self.dataset = dataset
        self.samples_per_case = samples_per_case
        self.seed = seed
        self.label_values = sorted(set(int(v) for v in dataset.labels.values())
                                   | {int(v) for members in (dataset.regions or {}).values() for v in members})
        self.num_channels = len(dataset.channel_names) or None
        self.results: dict[str, tuple[dict[str, Any], list[np.ndarray]]] = {}

    def measure(self, case: Any, image: Image | None = None, label: Image | None = None,
                ) -> tuple[dict[str, Any], list[np.ndarray]]:
        """One case's fingerprint (reads the files unless ``image`` is given)."""
        read = (image, label) if image is not None else None
        return case_fingerprint(case, self.label_values, self.dataset.ignore_label, self.samples_per_case,
                                self.num_channels, self.seed, read)

    def add(self, case: Any, image: Image | None = None, label: Image | None = None) -> None:
        """Measure a case and keep the result (``image`` / ``label``: already read, else read here)."""
        self.results[case.name] = self.measure(case, image, label)

    def fingerprint(self) -> dict[str, Any]:
        """The dataset's fingerprint over the training cases (every one must have been added)."""
        dataset = self.dataset
        missing = [c.name for c in dataset.cases if c.name not in self.results]
        if missing:
            raise DatasetError(f"no fingerprint of case(s) {', '.join(missing[:5])}", getattr(dataset, "root", None))
        results = [self.results[c.name] for c in dataset.cases]
        infos = [r[0] for r in results]
        dims = {len(i["shape"]) for i in infos}
        if len(dims) > 1:
            raise DatasetError(f"cases mix 2D and 3D images (spatial dimensions {sorted(dims)})", dataset.root)
        channels = len(infos[0]["intensity"])
        pooled = [np.concatenate([r[1][c] for r in results]) for c in range(channels)]
        return {
            "dataset": getattr(dataset, "name", None),
            "root": str(getattr(dataset, "root", "")),
            "channel_names": list(dataset.channel_names),
            "labels": {k: int(v) for k, v in dataset.labels.items()},
            "regions": dataset.regions,
            "ignore_label": dataset.ignore_label,
            "file_ending": getattr(dataset, "file_ending", None),
            "cases_with_roi": sum(getattr(c, "roi_path", None) is not None for c in dataset.cases),
            "num_cases": len(infos),
            "samples_per_case": self.samples_per_case,
            "cases": infos,
            "summary": summarise(infos, pooled, self.label_values),
            "warnings": [w for i in infos for w in i["warnings"]],
        }


def summarise(infos: Sequence[dict], pooled: Sequence[np.ndarray], label_values: Sequence[int]) -> dict[str, Any]:
    """Summary over cases: medians and percentiles of geometry, pooled intensities, label statistics."""
    shapes = np.array([i["shape"] for i in infos], dtype=float)
    spacings = np.array([i["spacing"] for i in infos], dtype=float)
    median_spacing = np.median(spacings, axis=0)
    labels = {}
    for value in label_values:
        if value == 0:
            continue
        vols = [i["labels"].get(str(value), {}).get("mm3", 0.0) for i in infos]
        present = [v for v in vols if v > 0]
        labels[str(value)] = {
            "cases_present": len(present),
            "median_mm3": float(np.median(present)) if present else 0.0,
            "median_voxels": float(np.median([i["labels"].get(str(value), {}).get("voxels", 0) for i in infos])),
            "median_components": float(np.median([i["labels"].get(str(value), {}).get("components", 0) for i in infos])),
        }
    measured = [i for i in infos if i.get("boundary_share") is not None]
    boundary = (sum(i["boundary_share"] * i["foreground_voxels"] for i in measured)
                / max(1, sum(i["foreground_voxels"] for i in measured))) if measured else None
    continuity = [i["slice_continuity"] for i in infos if i.get("slice_continuity") is not None]
    orientations = sorted({str(i["orientation"]) for i in infos if i["orientation"]})
    return {
        "spatial_dims": int(shapes.shape[1]),
        "num_channels": len(pooled),
        "median_shape": [int(round(v)) for v in np.median(shapes, axis=0)],
        "min_shape": [int(v) for v in shapes.min(axis=0)],
        "max_shape": [int(v) for v in shapes.max(axis=0)],
        "median_spacing": [float(v) for v in median_spacing],
        "spacing_percentiles": {str(p): [float(v) for v in np.percentile(spacings, p, axis=0)]
                                for p in SPACING_PERCENTILES},
        "anisotropy": float(median_spacing.max() / median_spacing.min()),
        "orientations": orientations,
        "median_nonzero_crop_fraction": float(np.median([i["nonzero_crop_fraction"] for i in infos])),
        "intensity": [_stats(p) for p in pooled],
        "labels": labels,
        "boundary_share": boundary,
        "slice_continuity": float(np.median(continuity)) if continuity else None,
        "empty_label_cases": [i["name"] for i in infos if any("empty" in w for w in i["warnings"])],
    }
