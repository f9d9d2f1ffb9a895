"""A dataset is a folder with ``dataset.json``. Two layouts are read:

- **nnU-Net v2**: ``imagesTr/<case>_0000<ending>`` (one file per channel, or one RGB file),
  ``labelsTr/<case><ending>``; dataset.json has ``channel_names``, ``labels`` (name -> value, or
  name -> list of values for region-based tasks with ``regions_class_order``), ``file_ending``,
  ``numTraining``. medseg adds optional ``roisTr/<case><ending>`` (a region-of-interest mask such as a
  retina's field of view) and a test set in ``imagesTs/``, ``labelsTs/``, ``roisTs/``.
- **Medical Segmentation Decathlon**: dataset.json has ``modality``, ``labels`` (value -> name),
  ``training`` (list of ``{"image", "label"}``) and ``test``; images are 4D NIfTI whose 4th axis is
  the modality.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence


from medseg.errors import DatasetError, MedsegError
from medseg.fileutil import write_text_atomic
from medseg.image import Image
from medseg.io import read_image

IGNORE_LABEL_NAME = "ignore"
#: dataset.json key: ``true`` lets training cases lack a label file (they are unlabelled cases for
#: semi-supervised training, see medseg.training.semi_supervised).
ALLOW_UNLABELED = "allow_unlabeled"


@dataclass
class Case:
    """One case: its image file(s) (one per channel, or one multi-channel file), label and ROI mask.

    Examples
    --------
    >>> case = Case("a", [Path("imagesTr/a_0000.nii.gz")], Path("labelsTr/a.nii.gz"), None)
    >>> case.name, case.roi_path
    ('a', None)
    """

    name: str
    image_paths: list[Path]
    label_path: Path | None = None
    roi_path: Path | None = None
    channel_names: list[str] | None = None

    def read_image(self) -> Image:
        """The image with all channels stacked, named after the dataset's channel names."""
        image = read_image(self.image_paths)
        if self.channel_names and len(self.channel_names) == image.num_channels:
            image = image.with_array(image.array, self.channel_names)
        return image

    def read_label(self) -> Image | None:
        """The label map (one integer channel), or None when the case has no label."""
        return None if self.label_path is None else _read_mask(self.label_path, "label")

    def read_roi(self) -> Image | None:
        """The region-of-interest mask (one integer channel, non-zero inside), or None."""
        return None if self.roi_path is None else _read_mask(self.roi_path, "roi")


def _read_mask(path: Path, name: str) -> Image:
    # one label-reading policy for the dataset and the evaluator (medseg.io.labels)
    from medseg.io.labels import read_label_map

    return read_label_map(path, name if name != "label" else "label map", DatasetError)


@dataclass
class Dataset:
    """A segmentation dataset: its cases and what dataset.json declares.

    ``labels`` maps name -> value and includes the background (0) but not the ``ignore`` label, whose
    value is ``ignore_label``. For region-based tasks ``regions`` maps each region name to the label
    values it unites (``raw["regions_class_order"]`` gives the value painted for each region).
    """

    root: Path
    name: str
    channel_names: list[str]
    labels: dict[str, int]
    regions: dict[str, list[int]] | None
    ignore_label: int | None
    file_ending: str
    cases: list[Case]
    test_cases: list[Case]
    splits_path: Path | None
    raw: dict = field(default_factory=dict)

    @property
    def label_values(self) -> list[int]:
        """Every value a label map may hold (declared labels, region members, ignore)."""
        values = set(self.labels.values())
        for members in (self.regions or {}).values():
            values.update(members)
        if self.ignore_label is not None:
            values.add(self.ignore_label)
        return sorted(values)

    @property
    def num_classes(self) -> int:
        """Number of output classes of a network: labels incl. background, or regions (+ background)."""
        return len(self.regions) if self.regions else len(self.labels)

    @property
    def spatial_dims(self) -> int | None:
        """2 or 3, judged from the file ending (raster -> 2), None when it needs a file to be read."""
        from medseg.io.formats import is_raster

        return 2 if is_raster(self.file_ending) else None

    @property
    def unlabeled_cases(self) -> list[Case]:
        """Training cases without a label file (allowed when dataset.json sets ``"allow_unlabeled": true``)."""
        return [c for c in self.cases if c.label_path is None]

    def case(self, name: str) -> Case:
        """The training or test case called ``name``."""
        for case in self.cases + self.test_cases:
            if case.name == name:
                return case
        raise DatasetError(f"no case named '{name}'", self.root)


def _load_json(path: Path) -> dict:
    from medseg.io.jsonfile import read_json

    if not path.is_file():
        raise DatasetError("dataset.json not found (a dataset is a folder with dataset.json)", path.parent)
    return read_json(path, "dataset description", dict, DatasetError)


def _require(data: dict, keys: Sequence[str], path: Path, layout: str) -> None:
    missing = [k for k in keys if k not in data]
    if missing:
        raise DatasetError(f"missing field(s) {', '.join(missing)} required by the {layout} layout", path)


def _ordered_names(mapping: Mapping, what: str, path: Path) -> list[str]:
    try:
        items = sorted(((int(k), str(v)) for k, v in mapping.items()))
    except (TypeError, ValueError, AttributeError):
        raise DatasetError(f"'{what}' must map channel indices (\"0\", \"1\", ...) to names", path) from None
    if [i for i, _ in items] != list(range(len(items))):
        raise DatasetError(f"'{what}' indices must be 0..{len(items) - 1}; got {[i for i, _ in items]}", path)
    return [n for _, n in items]


def _parse_labels(raw_labels: Any, path: Path, msd: bool):
    if not isinstance(raw_labels, dict) or not raw_labels:
        raise DatasetError("'labels' must be a non-empty object", path)
    if msd:  # {"0": "background", "1": "edema"}
        try:
            raw_labels = {str(v): int(k) for k, v in raw_labels.items()}
        except ValueError:
            raise DatasetError("MSD 'labels' must map values (\"0\", \"1\", ...) to names", path) from None
    labels: dict[str, int] = {}
    regions: dict[str, list[int]] = {}
    ignore = None
    is_region_task = any(isinstance(v, list) for v in raw_labels.values())
    for name, value in raw_labels.items():
        try:
            members = [int(v) for v in value] if isinstance(value, list) else [int(value)]
        except (TypeError, ValueError):
            raise DatasetError(f"label '{name}' has a non-integer value {value!r}", path) from None
        if name == IGNORE_LABEL_NAME:
            ignore = members[0]
        elif is_region_task and members != [0]:
            regions[name] = members
        else:
            labels[name] = members[0]
    if 0 not in labels.values() and 0 not in regions.get("background", []):
        labels.setdefault("background", 0)
    return labels, (regions or None), ignore


def read_labels(path: str | os.PathLike) -> tuple[dict[str, int], dict[str, list[int]] | None, int | None]:
    """The labels, regions and ignore value a dataset.json declares, without looking for its cases.

    For folders that carry a dataset.json but no images (e.g. an evaluation folder). Both layouts:
    nnU-Net ``{name: value | [values]}`` and MSD ``{"value": name}``.

    Parameters
    ----------
    path : path
        The dataset.json file.

    Returns
    -------
    labels : dict of str to int
    regions : dict of str to list of int, or None
    ignore : int or None

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "dataset.json"
    >>> _ = p.write_text('{"labels": {"0": "background", "1": "organ"}}', encoding="utf-8")
    >>> read_labels(p)
    ({'background': 0, 'organ': 1}, None, None)
    """
    path = Path(path)
    data = _load_json(path)
    if "labels" not in data:
        raise DatasetError("missing field 'labels'", path)
    raw = data["labels"]
    msd = isinstance(data.get("training"), list) or (
        isinstance(raw, dict) and all(str(k).lstrip("-").isdigit() for k in raw))
    return _parse_labels(raw, path, msd=msd)


def _find_splits(root: Path) -> Path | None:
    for name in ("splits.json", "splits_final.json"):
        if (root / name).is_file():
            return root / name
    return None


def _scan_nnunet(root: Path, images: str, labels: str, rois: str, ending: str, problems: list,
                 channel_names: Sequence[str] = ()) -> list[Case]:
    folder = root / images
    if not folder.is_dir():
        return []
    from medseg.io.cases import channel_file_pattern

    pattern = channel_file_pattern(ending)
    channels: dict[str, dict[int, Path]] = {}
    for entry in sorted(os.listdir(folder)):
        match = pattern.match(entry)
        if match:  # other files are ignored, as nnU-Net does
            channels.setdefault(match.group("case"), {})[int(match.group("channel"))] = folder / entry
    cases = []
    for name, files in channels.items():
        indices = sorted(files)
        missing = [c for c in range(len(channel_names)) if c not in files]
        gap = indices != list(range(len(indices)))
        if gap and indices[-1] < len(channel_names):  # one file per modality, a middle one absent (the last
            # ones missing are numbered correctly: medseg.datasets.check reports them, naming them the same way)
            problems.append((name, folder / f"{name}_{missing[0]:04d}{ending}", f"case {name}: missing modality "
                             + ", ".join(f"{c} ({channel_names[c]})" for c in missing)
                             + ": no " + ", ".join(f"{name}_{c:04d}{ending}" for c in missing)))
        elif gap:
            problems.append((name, folder, f"case {name}: channel files {indices} are not numbered "
                             f"0000..{len(indices) - 1:04d}"))
        label = root / labels / f"{name}{ending}"
        roi = root / rois / f"{name}{ending}"
        cases.append(Case(name, [files[i] for i in indices], label if label.exists() else None,
                          roi if roi.exists() else None))
    return cases


def _resolve(root: Path, entry: Any, path: Path) -> Path:
    if not isinstance(entry, str):
        raise DatasetError(f"expected a file path, got {entry!r}", path)
    return (root / entry).resolve() if not Path(entry).is_absolute() else Path(entry)


def _load(path: str | os.PathLike) -> tuple[Dataset, list[tuple[str | None, Path, str]]]:
    """Load without raising on per-file problems; return them as (case, file, problem) tuples."""
    root = Path(path)
    if root.name == "dataset.json":
        root = root.parent
    json_path = root / "dataset.json"
    data = _load_json(json_path)
    problems: list[tuple[str | None, Path, str]] = []
    msd = isinstance(data.get("training"), list)
    if msd:
        _require(data, ["modality", "labels", "training"], json_path, "Medical Segmentation Decathlon")
        channel_names = _ordered_names(data["modality"], "modality", json_path)
        labels, regions, ignore = _parse_labels(data["labels"], json_path, msd=True)
        cases = []
        for entry in data["training"]:
            if not isinstance(entry, dict) or "image" not in entry:
                raise DatasetError(f"each 'training' entry needs 'image' and 'label'; got {entry!r}", json_path)
            image = _resolve(root, entry["image"], json_path)
            label = _resolve(root, entry["label"], json_path) if entry.get("label") else None
            cases.append(Case(_case_name(image), [image], label, None))
        test_cases = [Case(_case_name(p), [p]) for p in (_resolve(root, e, json_path) for e in data.get("test", []))]
        ending = data.get("file_ending", ".nii.gz")
        for case in cases + test_cases:
            for p in case.image_paths + ([case.label_path] if case.label_path else []):
                if not p.exists():
                    problems.append((case.name, p, "named in dataset.json but missing"))
    else:
        _require(data, ["labels", "file_ending"], json_path, "nnU-Net v2")
        if "channel_names" not in data and "modality" not in data:
            raise DatasetError("missing field channel_names required by the nnU-Net v2 layout", json_path)
        channel_names = _ordered_names(data.get("channel_names", data.get("modality")), "channel_names", json_path)
        labels, regions, ignore = _parse_labels(data["labels"], json_path, msd=False)
        if regions and "regions_class_order" not in data:
            raise DatasetError("region-based labels need 'regions_class_order'", json_path)
        ending = str(data["file_ending"])
        cases = _scan_nnunet(root, "imagesTr", "labelsTr", "roisTr", ending, problems, channel_names)
        test_cases = _scan_nnunet(root, "imagesTs", "labelsTs", "roisTs", ending, problems, channel_names)
        if not (root / "imagesTr").is_dir():
            problems.append((None, root / "imagesTr", "folder missing"))
        for case in cases:
            if case.label_path is None and not data.get(ALLOW_UNLABELED):
                problems.append((case.name, root / "labelsTr" / f"{case.name}{ending}", "label file missing (a "
                                 f"dataset with unlabelled cases declares \"{ALLOW_UNLABELED}\": true)"))
        expected = data.get("numTraining")
        if expected is not None and int(expected) != len(cases):
            problems.append((None, json_path, f"numTraining is {expected} but imagesTr holds {len(cases)} cases"))
    for case in cases + test_cases:
        case.channel_names = list(channel_names)
    dataset = Dataset(
        root=root, name=str(data.get("name", root.name)), channel_names=channel_names, labels=labels,
        regions=regions, ignore_label=ignore, file_ending=ending, cases=cases, test_cases=test_cases,
        splits_path=_find_splits(root), raw=data,
    )
    return dataset, problems


def _case_name(path: Path) -> str:
    from medseg.io.cases import case_name

    return case_name(path)


def load_dataset(path: str | os.PathLike) -> Dataset:
    """Read a dataset folder (nnU-Net v2 or Medical Segmentation Decathlon layout).

    Parameters
    ----------
    path : path
        The dataset folder (or its dataset.json).

    Returns
    -------
    Dataset

    Raises
    ------
    DatasetError
        dataset.json missing, malformed or missing fields, a file it names is missing, a case lacks
        its label, or numTraining disagrees with the files. The message names the file.

    Examples
    --------
    >>> import tempfile
    >>> from medseg.datasets.synthetic import make_vessels2d
    >>> root = make_vessels2d(tempfile.mkdtemp() + "/v", cases=2, seed=0, size=64)
    >>> ds = load_dataset(root)
    >>> len(ds.cases), ds.channel_names, ds.labels
    (2, ['R', 'G', 'B'], {'background': 0, 'vessel': 1})
    """
    dataset, problems = _load(path)
    if problems:
        case, file, problem = problems[0]
        more = f" (and {len(problems) - 1} more problem(s); run `medseg check`)" if len(problems) > 1 else ""
        raise DatasetError(f"{problem}{more}", file)
    if not dataset.cases and not dataset.test_cases:
        raise DatasetError("dataset has no cases", dataset.root)
    return dataset


def write_dataset_json(
    root: str | os.PathLike,
    *,
    name: str,
    channel_names: Sequence[str] | Mapping[str, str],
    labels: Mapping[str, int],
    file_ending: str,
    num_training: int,
    regions: Mapping[str, Sequence[int]] | None = None,
    **extra: Any,
) -> Path:
    """Write an nnU-Net v2 style dataset.json (atomically) and return its path.

    Parameters
    ----------
    root : path
        Dataset folder.
    name : str
        Dataset name.
    channel_names : sequence or mapping
        Channel names in order (``["R", "G", "B"]``) or ``{"0": "CT"}``.
    labels : mapping
        Name -> value, including ``background``: 0.
    file_ending : str
        E.g. ``".nii.gz"`` or ``".png"``.
    num_training : int
        Number of training cases.
    regions : mapping, optional
        Region name -> label values it unites (region-based tasks, e.g. BraTS). Unless
        ``regions_class_order`` is given in ``extra``, each region paints the smallest of its values
        not claimed by a later region.
    **extra
        Further fields (description, reference, licence, ...).

    Examples
    --------
    >>> import tempfile, json
    >>> p = write_dataset_json(tempfile.mkdtemp(), name="x", channel_names=["CT"],
    ...                        labels={"background": 0, "liver": 1}, file_ending=".nii.gz", num_training=3)
    >>> json.loads(p.read_text(encoding="utf-8"))["channel_names"]
    {'0': 'CT'}
    """
    if not isinstance(channel_names, Mapping):
        channel_names = {str(i): str(n) for i, n in enumerate(channel_names)}
    data: dict[str, Any] = {"name": name, "channel_names": dict(channel_names)}
    all_labels: dict[str, Any] = {str(k): int(v) for k, v in labels.items()}
    if regions:
        names = list(regions)
        for region, members in regions.items():
            all_labels[region] = [int(v) for v in members]
        if "regions_class_order" not in extra:
            order = []
            for i, region in enumerate(names):
                later = {v for r in names[i + 1 :] for v in regions[r]}
                own = sorted(set(regions[region]) - later)
                if not own:
                    raise MedsegError(f"region '{region}' has no value of its own; give regions_class_order")
                order.append(own[0])
            extra["regions_class_order"] = order
    data["labels"] = all_labels
    data["numTraining"] = int(num_training)
    data["file_ending"] = file_ending
    data.update(extra)
    path = Path(root) / "dataset.json"
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")
    return path
