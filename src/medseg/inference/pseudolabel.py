"""Pseudo-labels: a trained model labels unlabelled images, and says where it is sure.

Per voxel the confidence is ``1 - H(p) / log K``: one minus the normalised entropy of the (test-time
augmented, ensemble-averaged) class probabilities ``p`` over ``K`` classes; 1 = certain, 0 = uniform.
Voxels below a confidence threshold get the ignore label, so a next model learns only what the first
was sure of; per case the confidence is the mean voxel confidence over the voxels predicted as
foreground (a case's label is about its structures; the easy background would hide every doubt), and
cases below a case threshold are left out. The output is a dataset folder that ``medseg train`` reads
(the ignore label declared in dataset.json) with the confidence maps beside the labels.

Self-training with confident pseudo-labels: Lee, "Pseudo-Label", ICML workshop 2013; Bai et al.,
"Semi-supervised learning for network-based cardiac MR image segmentation", MICCAI 2017.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from medseg.errors import MedsegError
from medseg.image import Image

CONFIDENCE_FOLDER = "confidenceTr"
TABLE_NAME = "pseudolabels.csv"


def voxel_confidence(probabilities: np.ndarray) -> np.ndarray:
    """``1 - entropy / log K`` per voxel of ``(K, *S)`` class probabilities, float32 in [0, 1].

    Examples
    --------
    >>> p = np.array([[1.0, 0.5], [0.0, 0.5]])
    >>> voxel_confidence(p).round(3).tolist()
    [1.0, 0.0]
    """
    p = np.clip(np.asarray(probabilities, dtype=np.float32), 1e-7, 1.0)
    k = p.shape[0]
    if k < 2:
        raise MedsegError("confidence needs at least two class probabilities")
    entropy = -(p * np.log(p)).sum(0)
    return np.clip(1.0 - entropy / np.log(k), 0.0, 1.0).astype(np.float32)


def case_confidence(confidence: np.ndarray, label_map: np.ndarray) -> float:
    """Mean voxel confidence over the voxels predicted as foreground (all voxels when there are none)."""
    foreground = np.asarray(label_map) != 0
    return float(confidence[foreground].mean() if foreground.any() else confidence.mean())


@dataclass
class PseudoLabel:
    """One case's pseudo-label.

    Attributes
    ----------
    label_map : ndarray
        Label values; the ignore value where the voxel confidence is below the threshold.
    confidence : ndarray
        Voxel confidence in [0, 1].
    case_confidence : float
    kept_share : float
        Share of voxels that kept their label.
    """

    label_map: np.ndarray
    confidence: np.ndarray
    case_confidence: float
    kept_share: float


def pseudo_label(probabilities: np.ndarray, label_values: Sequence[int], ignore_value: int,
                 voxel_threshold: float = 0.0) -> PseudoLabel:
    """Argmax label map of ``(K, *S)`` probabilities, with the ignore value on unconfident voxels.

    Parameters
    ----------
    probabilities : ndarray
        ``(K, *S)`` class probabilities (channel ``k`` = ``label_values[k]``).
    label_values : sequence of int
    ignore_value : int
        Written where the voxel confidence is below ``voxel_threshold``; must not be a label value.
    voxel_threshold : float
        In [0, 1); 0 keeps every voxel.

    Examples
    --------
    >>> probs = np.array([[0.99, 0.5], [0.01, 0.5]])
    >>> pseudo_label(probs, [0, 1], ignore_value=2, voxel_threshold=0.5).label_map.tolist()
    [0, 2]
    """
    if ignore_value in set(int(v) for v in label_values):
        raise MedsegError(f"the ignore value {ignore_value} is a label value")
    if not 0.0 <= voxel_threshold < 1.0:
        raise MedsegError(f"the voxel confidence threshold must lie in [0, 1), not {voxel_threshold}")
    lut = np.asarray(label_values)
    labels = lut[np.argmax(probabilities, 0)]
    confidence = voxel_confidence(probabilities)
    score = case_confidence(confidence, labels)
    keep = confidence >= voxel_threshold
    dtype = np.uint8 if max(int(lut.max()), ignore_value) < 256 and min(int(lut.min()), ignore_value) >= 0 else np.int16
    out = np.where(keep, labels, ignore_value).astype(dtype)
    return PseudoLabel(out, confidence, score, float(keep.mean()))


def ignore_value_for(config: Any) -> int:
    """The model's dataset ignore label, else the value after the largest label value."""
    if getattr(config, "ignore_label", None) is not None:
        return int(config.ignore_label)
    return int(max(config.label_values)) + 1


def _copy_image(paths: Sequence[Path], image: Image, folder: Path, case: str) -> str:
    """The input's own files, copied under nnU-Net names (lossless); DICOM and others as NIfTI."""
    from medseg.io import SUPPORTED_EXTENSIONS, image_extension, write_image
    from medseg.io.formats import DICOM_EXTENSIONS

    exts = {image_extension(p) for p in paths if p.is_file()}
    if len(exts) == 1 and all(p.is_file() for p in paths):
        ext = exts.pop()
        if ext in SUPPORTED_EXTENSIONS and ext not in DICOM_EXTENSIONS:
            for c, p in enumerate(paths):
                shutil.copyfile(p, folder / f"{case}_{c:04d}{ext}")
            return ext
    for c in range(image.num_channels):
        write_image(image.channel(c), folder / f"{case}_{c:04d}.nii.gz")
    return ".nii.gz"


def write_pseudo_dataset(predictor: Any, cases: Sequence[tuple[str, Sequence[Path]]], out: str | Path, *,
                         voxel_threshold: float = 0.9, case_threshold: float = 0.0,
                         progress: Any = None) -> list[dict[str, Any]]:
    """Pseudo-label ``cases`` with ``predictor`` and write a training dataset to ``out``.

    Parameters
    ----------
    predictor : medseg.Predictor
        Its TTA and ensemble settings apply (the probabilities are what it averages).
    cases : sequence of (name, paths)
        One file per channel, or one multi-channel file.
    out : path
        Dataset folder: ``imagesTr/``, ``labelsTr/`` (ignore label on unconfident voxels),
        ``confidenceTr/`` (voxel confidence, float), ``dataset.json`` (labels with ``ignore``, the
        thresholds) and ``pseudolabels.csv`` (per case: confidence, kept share, kept or not). Written
        to a temporary folder and renamed when complete.
    voxel_threshold, case_threshold : float
        Voxels / cases with a lower confidence are left out.
    progress : callable, optional
        ``progress(done, total, case)``.

    Returns
    -------
    list of dict
        The rows of pseudolabels.csv.
    """
    from medseg.datasets.dataset import write_dataset_json
    from medseg.fileutil import atomic_dir, write_text_atomic
    from medseg.io import read_image, write_image
    from medseg.io.formats import RASTER_EXTENSIONS

    config = predictor.config
    if config.regions or config.activation != "softmax":
        raise MedsegError("pseudo-labels need a model with one softmax class per label (not region outputs)")
    if not cases:
        raise MedsegError("no input images to pseudo-label")
    ignore = ignore_value_for(config)
    rows: list[dict[str, Any]] = []
    ending = None
    with atomic_dir(out) as tmp:
        for sub in ("imagesTr", "labelsTr", CONFIDENCE_FOLDER):
            (tmp / sub).mkdir()
        for i, (name, paths) in enumerate(cases):
            paths = [Path(p) for p in paths]
            image = read_image(paths if len(paths) > 1 else paths[0])
            _, probs = predictor.predict_with_probabilities(image)
            result = pseudo_label(probs.array, config.label_values, ignore, voxel_threshold)
            kept = result.case_confidence >= case_threshold
            rows.append({"case": name, "confidence": round(result.case_confidence, 5),
                         "kept_voxels": round(result.kept_share, 5), "kept": int(kept)})
            if kept:
                ext = _copy_image(paths, image, tmp / "imagesTr", name)
                if ending not in (None, ext):
                    raise MedsegError(f"inputs mix file formats ({ending}, {ext}); a dataset has one file ending",
                                      paths[0])
                ending = ext
                write_image(image.with_array(result.label_map[None], ("label",)), tmp / "labelsTr" / f"{name}{ext}")
                conf_ext = ".tif" if ext in RASTER_EXTENSIONS else ext
                write_image(image.with_array(result.confidence[None], ("confidence",)),
                            tmp / CONFIDENCE_FOLDER / f"{name}{conf_ext}")
            if progress is not None:
                progress(i + 1, len(cases), name)
        if ending is None:
            raise MedsegError(f"no case reached the case confidence threshold {case_threshold}; the highest was "
                              f"{max(r['confidence'] for r in rows):.3f}", Path(out))
        labels = {str(k): int(v) for k, v in config.labels.items()}
        labels["ignore"] = ignore
        write_dataset_json(tmp, name=f"pseudolabels_{config.dataset or 'model'}", channel_names=config.channel_names,
                           labels=labels, file_ending=ending, num_training=sum(r["kept"] for r in rows),
                           pseudo_labels={"voxel_threshold": voxel_threshold, "case_threshold": case_threshold,
                                          "confidence": "1 - entropy / log(num_classes) of the averaged "
                                                        "probabilities", "tta": predictor.tta is not False})
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        write_text_atomic(tmp / TABLE_NAME, buffer.getvalue())
    return rows


def read_settings(folder: str | Path) -> dict[str, Any]:
    """The pseudo-label settings a pseudo-label dataset records."""
    return json.loads((Path(folder) / "dataset.json").read_text(encoding="utf-8")).get("pseudo_labels", {})
