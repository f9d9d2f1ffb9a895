"""Checking a dataset before using it: every case is read once, problems are collected (not raised),
and a summary describes the data (shapes, spacings, intensities, label frequencies)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from medseg.errors import MedsegError
from medseg.image import is_placeholder_spacing
from medseg.io.labels import label_histogram
from medseg.datasets.dataset import Case, Dataset, _load

__all__ = ["Problem", "CheckReport", "check_dataset"]


@dataclass
class Problem:
    """One problem: the case (None for dataset-wide problems), the file, and what is wrong."""

    case: str | None
    file: Path | None
    problem: str


@dataclass
class CheckReport:
    """What :func:`check_dataset` found. ``ok`` is True when there are no problems; ``warnings`` are
    legitimate but worth a look (e.g. a label map holding only background)."""

    dataset: Dataset
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


class _Stats:
    """Running per-channel intensity statistics and label voxel counts."""

    def __init__(self, channels: int):
        self.min = np.full(channels, np.inf)
        self.max = np.full(channels, -np.inf)
        self.sum = np.zeros(channels)
        self.sumsq = np.zeros(channels)
        self.count = 0
        self.label_counts: dict[int, int] = {}
        self.label_cases: dict[int, int] = {}
        self.roi_fraction: list[float] = []

    def add_image(self, array: np.ndarray) -> None:
        if array.shape[0] != len(self.min):
            return
        flat = array.reshape(array.shape[0], -1).astype(np.float64, copy=False)
        finite = np.where(np.isfinite(flat), flat, np.nan)
        self.min = np.fmin(self.min, np.nanmin(finite, axis=1))
        self.max = np.fmax(self.max, np.nanmax(finite, axis=1))
        self.sum += np.nansum(finite, axis=1)
        self.sumsq += np.nansum(finite * finite, axis=1)
        self.count += flat.shape[1]

    def add_label(self, values: np.ndarray, counts: np.ndarray) -> None:
        for v, c in zip(values.tolist(), counts.tolist()):
            self.label_counts[v] = self.label_counts.get(v, 0) + c
            self.label_cases[v] = self.label_cases.get(v, 0) + 1


def _check_case(case: Case, dataset: Dataset, stats: _Stats, report: CheckReport, record: dict,
                on_case: Callable[[Case, Any, Any], None] | None = None) -> None:
    def problem(file, text):
        report.problems.append(Problem(case.name, Path(file) if file else None, text))

    problems_before = len(report.problems)
    try:
        image = case.read_image()
    except MedsegError as exc:
        problem(exc.path or case.image_paths[0], exc.message)
        return
    record["shape"] = image.spatial_shape
    record["spacing"] = image.spacing
    missing = _missing_channel_files(case, dataset) if image.num_channels < len(dataset.channel_names) else []
    if missing:  # one file per modality and some are absent: name them (multi-modal tasks such as BraTS)
        problem(missing[0][1], "missing modality " + ", ".join(f"{i} ({dataset.channel_names[i]})" for i, _ in missing)
                + ": no " + ", ".join(f.name for _, f in missing))
    elif image.num_channels != len(dataset.channel_names) and all(p.case != case.name for p in report.problems):
        # (a gap in the channel files was already named by the scan)
        problem(case.image_paths[0], f"{image.num_channels} channel(s) but dataset.json names "
                                     f"{len(dataset.channel_names)} ({', '.join(dataset.channel_names)})")
    if np.issubdtype(image.array.dtype, np.floating) and not np.all(np.isfinite(image.array)):
        bad = int(np.count_nonzero(~np.isfinite(image.array)))
        problem(case.image_paths[0], f"{bad} NaN/Inf value(s) in the image")
    stats.add_image(image.array)
    allowed = set(dataset.label_values)
    label = None
    for kind, path, reader in (("label", case.label_path, case.read_label), ("roi", case.roi_path, case.read_roi)):
        if path is None:
            continue
        try:
            mask = reader()
        except MedsegError as exc:
            problem(exc.path or path, exc.message)
            continue
        diff = image.geometry_difference(mask)
        if diff is not None:
            problem(path, f"{kind} and image do not share a voxel grid: {diff}")
            continue
        values, counts = label_histogram(mask.array)
        if kind == "label":
            undeclared = sorted(set(values.tolist()) - allowed)
            if undeclared and dataset.regions:
                regions = "; ".join(f"{n} {list(v)}" for n, v in dataset.regions.items())
                problem(path, f"label values {undeclared} are not covered by any region ({regions})")
            elif undeclared:
                problem(path, f"label values {undeclared} are not declared in dataset.json (declared {sorted(allowed)})")
            if not set(values.tolist()) - {0, dataset.ignore_label}:
                report.warnings.append(Problem(case.name, Path(path), "the label map is empty (background only)"))
                record["empty_label"] = True
            stats.add_label(values, counts)
            label = mask
        else:
            if not set(values.tolist()) <= {0, 1}:
                problem(path, f"an ROI mask must hold 0/1; found values {values.tolist()[:8]}")
            stats.roi_fraction.append(float(np.count_nonzero(mask.array)) / mask.array.size)
    if on_case is not None and len(report.problems) == problems_before:
        on_case(case, image, label)  # e.g. the fingerprint, from the voxels already in memory


def _missing_channel_files(case: Case, dataset: Dataset) -> list[tuple[int, Path]]:
    """The expected ``<case>_NNNN<ending>`` files that are absent, for one-file-per-channel layouts."""
    paths = case.image_paths
    ending = dataset.file_ending or ""
    expected = len(dataset.channel_names)
    if expected < 2 or not paths or not ending or not all(p.name.endswith(ending) for p in paths):
        return []
    if not all(p.name[: -len(ending)].endswith(f"_{i:04d}") for i, p in enumerate(paths)) or len(paths) >= expected:
        return []  # numbered otherwise (reported by the scan) or complete
    folder = paths[0].parent
    present = {p.name for p in paths}
    return [(i, folder / f"{case.name}_{i:04d}{ending}") for i in range(expected)
            if f"{case.name}_{i:04d}{ending}" not in present]


def _check_regions(dataset: Dataset, stats: _Stats, report: CheckReport) -> None:
    """Region tasks: a declared value that no label map holds is a warning naming the region (legitimate in
    a small subset, but that part of the region teaches nothing); a region none of whose values occurs
    anywhere leaves its sigmoid head without a positive voxel: a problem."""
    if not dataset.regions or not stats.label_counts:
        return
    seen = set(stats.label_counts)
    json_path = dataset.root / "dataset.json"
    for name, members in dataset.regions.items():
        absent = [v for v in members if v not in seen]
        if absent and len(absent) == len(members):
            report.problems.append(Problem(None, json_path, f"region '{name}' {list(members)}: none of its values "
                                                            "occurs in any label map, so it cannot be learned"))
        elif absent:
            report.warnings.append(Problem(None, json_path, f"region '{name}' declares value(s) {absent} that no "
                                                            "label map holds"))


def _check_orphans(dataset: Dataset, report: CheckReport) -> None:
    """Label / ROI files with no image, and image folders whose files do not end with ``file_ending``."""
    from medseg.io.cases import case_name
    from medseg.io.formats import image_extension

    ending = dataset.file_ending
    known = {c.name for c in dataset.cases + dataset.test_cases}
    for folder in ("labelsTr", "labelsTs", "roisTr", "roisTs"):
        path = dataset.root / folder
        if not path.is_dir():
            continue
        for entry in sorted(path.iterdir()):
            if entry.name.startswith(".") or not entry.is_file() or not entry.name.endswith(ending):
                continue
            if case_name(entry) not in known:
                report.problems.append(Problem(case_name(entry), entry, f"{folder[:-2]} file has no image in "
                                               f"images{folder[-2:]} (expected {case_name(entry)}_0000{ending})"))
    for folder in ("imagesTr", "imagesTs"):
        path = dataset.root / folder
        if not path.is_dir():
            continue
        others = sorted({image_extension(p) for p in path.iterdir()
                         if p.is_file() and not p.name.startswith(".") and not p.name.endswith(ending)})
        if others:
            report.problems.append(Problem(None, path, f"holds {', '.join(others)} files but dataset.json's "
                                                       f"file_ending is '{ending}': they are not read"))


def _check_unit_spacing(dataset: Dataset, records: list[dict], report: CheckReport) -> None:
    """Warn when every 3D volume has exactly 1 mm spacing: often spacing lost upstream (volumes in mL and
    distances in mm computed from it would be wrong)."""
    spacings = [tuple(r["spacing"]) for r in records if "spacing" in r and len(r["spacing"]) == 3]
    if len(spacings) >= 2 and all(is_placeholder_spacing(sp) for sp in spacings):
        report.warnings.append(Problem(None, dataset.root, "every volume has exactly 1×1×1 mm spacing: check that "
                                                           "the spacing was not lost in conversion (volumes and "
                                                           "distances are computed from it)"))


def _range(values: list[tuple[float, ...]]) -> dict[str, list[float]] | None:
    if not values:
        return None
    a = np.asarray(values, dtype=float)
    return {"min": a.min(0).tolist(), "median": np.median(a, 0).tolist(), "max": a.max(0).tolist()}


def check_dataset(dataset_or_path: Dataset | str | os.PathLike,
                  progress: Callable[[int, int, str], None] | None = None,
                  on_case: Callable[[Case, Any, Any], None] | None = None) -> CheckReport:
    """Check every case of a dataset and summarise it.

    Checks that files exist and open, image / label / ROI grids agree, label values are declared,
    images hold no NaN/Inf, and the channel count matches ``channel_names``. Each file is read once.

    Parameters
    ----------
    dataset_or_path : Dataset or path
        A loaded dataset or its folder.
    progress : callable, optional
        Called as ``progress(done, total, case_name)`` after each case.
    on_case : callable, optional
        Called as ``on_case(case, image, label)`` for each training case that read without a problem
        (``label`` None when it has none), so that a caller measures the voxels without reading them again
        (:class:`medseg.planning.fingerprint.FingerprintCollector`).

    Returns
    -------
    CheckReport
        ``problems`` (case, file, problem) and ``summary`` (cases, shapes, spacings, per-channel
        intensity min/max/mean/std, label voxel fractions and the number of cases holding each label).

    Examples
    --------
    >>> import tempfile
    >>> from medseg.datasets.synthetic import make_vessels2d
    >>> report = check_dataset(make_vessels2d(tempfile.mkdtemp() + "/v", cases=2, seed=0, size=64))
    >>> report.ok, report.summary["training_cases"]
    (True, 2)
    """
    if isinstance(dataset_or_path, Dataset):
        dataset, load_problems = dataset_or_path, []
    else:
        dataset, load_problems = _load(dataset_or_path)
    report = CheckReport(dataset, [Problem(c, f, p) for c, f, p in load_problems])
    stats = _Stats(len(dataset.channel_names))
    records: list[dict] = []
    all_cases = dataset.cases + dataset.test_cases
    if not all_cases:
        report.problems.append(Problem(None, dataset.root, "dataset has no cases"))
    for index, case in enumerate(all_cases):
        record: dict[str, Any] = {"case": case.name}
        _check_case(case, dataset, stats, report, record, on_case if index < len(dataset.cases) else None)
        records.append(record)
        if progress is not None:
            progress(index + 1, len(all_cases), case.name)
    _check_regions(dataset, stats, report)
    _check_orphans(dataset, report)
    _check_unit_spacing(dataset, records, report)
    labelled = [r for r, c in zip(records, dataset.cases) if c.label_path is not None]  # training cases come first
    if dataset.cases and not labelled:  # legitimate (images to pseudo-label), but nothing to train from
        report.warnings.append(Problem(None, dataset.root, "no training case has a label: training needs at least "
                                                           "one labelled case (medseg train --labeled)"))
    if labelled and all(r.get("empty_label") for r in labelled):
        report.problems.append(Problem(None, dataset.root, "every training label map is empty (background "
                                                            "only): there is nothing to learn"))
    total = sum(stats.label_counts.values())
    names = {v: k for k, v in dataset.labels.items()}
    if dataset.ignore_label is not None:
        names[dataset.ignore_label] = "ignore"
    mean = stats.sum / max(stats.count, 1)
    report.summary = {
        "name": dataset.name,
        "root": str(dataset.root),
        "training_cases": len(dataset.cases),
        "unlabeled_cases": len(dataset.unlabeled_cases),
        "test_cases": len(dataset.test_cases),
        "cases_with_roi": sum(c.roi_path is not None for c in all_cases),
        "channel_names": list(dataset.channel_names),
        "shape": _range([r["shape"] for r in records if "shape" in r]),
        "spacing": _range([r["spacing"] for r in records if "spacing" in r]),
        "intensity": {
            name: {"min": float(stats.min[c]), "max": float(stats.max[c]), "mean": float(mean[c]),
                   "std": float(np.sqrt(max(stats.sumsq[c] / max(stats.count, 1) - mean[c] ** 2, 0.0)))}
            for c, name in enumerate(dataset.channel_names) if stats.count
        },
        "labels": {
            names.get(v, str(v)): {"value": v, "fraction": stats.label_counts[v] / total, "cases": stats.label_cases[v]}
            for v in sorted(stats.label_counts)
        },
        "roi_fraction_mean": float(np.mean(stats.roi_fraction)) if stats.roi_fraction else None,
        "problems": len(report.problems),
        "warnings": len(report.warnings),
    }
    return report
