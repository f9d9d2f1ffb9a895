"""DICOM Segmentation objects (DICOM PS3.3 A.51): a label map on a DICOM series' grid written as one SEG
instance with highdicom, and read back onto that grid.

Each label value becomes one segment with the label's name and a coded category / type looked up in
``segment_codes.json`` beside this module (SNOMED CT where the name maps to a concept, the generic
"Tissue" otherwise). The lookup is data: a user file in the same format is searched first.

Segment numbers are 1..K in increasing label value (DICOM requires consecutive numbers); reading back
maps them to label values through the label names, or returns the segment numbers.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from medseg.errors import GeometryError, ImageReadError, ImageWriteError, MedsegError
from medseg.fileutil import atomic_path
from medseg.image import Image
from medseg.io.dicom_series import SeriesGrid, read_series_grid

CODES_FILE = "segment_codes.json"
#: File name ending of a predicted DICOM SEG (``CASE.seg.dcm``).
DICOM_SEG_SUFFIX = ".seg.dcm"
#: ``medseg predict --format`` choices.
OUTPUT_FORMATS = ("auto", "image", "dicom-seg")
_SPELLINGS = {"tumour": "tumor", "oedema": "edema", "haemorrhage": "hemorrhage", "oesophagus": "esophagus"}


@dataclass(frozen=True)
class Concept:
    """A coded concept: coding scheme (e.g. ``SCT``), code value and meaning."""

    scheme: str
    value: str
    meaning: str


@dataclass(frozen=True)
class SegmentCode:
    """What a segment is: its category, its type and, optionally, the anatomic region it lies in."""

    category: Concept
    type: Concept
    region: Concept | None = None


@dataclass
class SegmentCodes:
    """Label names -> :class:`SegmentCode`, with a default for names that match no concept.

    Build it with :func:`load_segment_codes`; look names up with :meth:`lookup`.
    """

    by_name: dict[str, SegmentCode]
    default: SegmentCode

    def lookup(self, name: str) -> SegmentCode:
        """The code of label ``name`` (case, ``_``/``-`` and British spellings do not matter).

        Examples
        --------
        >>> codes = load_segment_codes()
        >>> codes.lookup("Left_Atrium").type.value, codes.lookup("oedema").type.meaning
        ('82471001', 'Edema')
        >>> codes.lookup("something else").type.meaning
        'Tissue'
        """
        return self.by_name.get(normalise_label_name(name), self.default)


def normalise_label_name(name: str) -> str:
    """Lower case, ``_`` and ``-`` as spaces, British spellings folded (``"Brain_Tumour"`` -> ``"brain tumor"``)."""
    words = re.sub(r"[\s_\-]+", " ", str(name).strip().lower()).split(" ")
    return " ".join(_SPELLINGS.get(w, w) for w in words if w)


def _concept(data: Any, where: str, path: Path | None) -> Concept:
    try:
        return Concept(str(data["scheme"]), str(data["value"]), str(data["meaning"]))
    except (TypeError, KeyError):
        raise MedsegError(f"{where} must be an object with scheme, value and meaning", path) from None


def _parse_codes(data: Any, path: Path | None, categories: dict[str, Concept]
                 ) -> tuple[list[tuple[list[str], SegmentCode]], SegmentCode | None]:
    if not isinstance(data, dict):
        raise MedsegError("a segment code file is a JSON object with 'concepts' (and 'categories', 'default')", path)
    for key, value in (data.get("categories") or {}).items():
        categories[normalise_label_name(key)] = _concept(value, f"category '{key}'", path)

    def code(entry: Any, where: str) -> SegmentCode:
        if not isinstance(entry, dict) or "category" not in entry or "type" not in entry:
            raise MedsegError(f"{where} needs 'category' and 'type'", path)
        category = entry["category"]
        if isinstance(category, str):
            if normalise_label_name(category) not in categories:
                known = ", ".join(sorted(categories))
                raise MedsegError(f"{where}: unknown category '{category}' (known: {known})", path)
            category = categories[normalise_label_name(category)]
        else:
            category = _concept(category, f"{where} category", path)
        region = _concept(entry["region"], f"{where} region", path) if entry.get("region") else None
        return SegmentCode(category, _concept(entry["type"], f"{where} type", path), region)

    concepts = []
    for i, entry in enumerate(data.get("concepts") or []):
        names = entry.get("names") if isinstance(entry, dict) else None
        if not names or not all(isinstance(n, str) for n in names):
            raise MedsegError(f"concept {i + 1} needs a list of 'names'", path)
        concepts.append((list(names), code(entry, f"concept {i + 1} ({names[0]})")))
    default = code(data["default"], "'default'") if data.get("default") else None
    return concepts, default


def load_segment_codes(user_file: str | Path | None = None) -> SegmentCodes:
    """The label-name -> code table: ``user_file`` (searched first) over medseg's ``segment_codes.json``.

    Parameters
    ----------
    user_file : path, optional
        A JSON file in the format of medseg's own: ``{"categories": {name: concept},
        "concepts": [{"names": [...], "category": name or concept, "type": concept, "region": concept}],
        "default": {...}}`` where a concept is ``{"scheme": "SCT", "value": "...", "meaning": "..."}``.

    Returns
    -------
    SegmentCodes

    Examples
    --------
    >>> load_segment_codes().lookup("prostate").type.value
    '41216001'
    """
    categories: dict[str, Concept] = {}
    text = resources.files("medseg.io").joinpath(CODES_FILE).read_text(encoding="utf-8")
    concepts, default = _parse_codes(json.loads(text), None, categories)
    if user_file is not None:
        path = Path(user_file)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise MedsegError("segment code file not found", path) from None
        except (OSError, ValueError) as exc:
            raise MedsegError(f"cannot read the segment code file: {exc}", path) from None
        user_concepts, user_default = _parse_codes(data, path, categories)
        concepts = user_concepts + concepts
        default = user_default or default
    by_name: dict[str, SegmentCode] = {}
    for names, code in concepts:
        for name in names:
            by_name.setdefault(normalise_label_name(name), code)  # the first file to name it wins
    assert default is not None, "medseg's segment_codes.json has a default"
    return SegmentCodes(by_name, default)


def _coded(concept: Concept):
    from highdicom.sr import CodedConcept

    return CodedConcept(value=concept.value, scheme_designator=concept.scheme, meaning=concept.meaning)


def _label_names(values: Sequence[int], labels: Mapping[str, int] | None) -> dict[int, str]:
    names = {int(v): n for n, v in (labels or {}).items() if isinstance(v, (int, np.integer)) and int(v) != 0}
    return {v: names.get(v, f"label {v}") for v in values}


def _series(source: str | Path | SeriesGrid) -> SeriesGrid:
    return source if isinstance(source, SeriesGrid) else read_series_grid(source)


def align_to_series(label_map: Image, series: SeriesGrid) -> np.ndarray:
    """The label map's ``(Z, Y, X)`` array with slice ``k`` on ``series.headers[k]``.

    The label map must lie on the series' grid; a grid listed in the opposite slice order (origin at the
    last slice, slice axis reversed) is accepted and flipped.

    Raises
    ------
    GeometryError
        The label map lies on another grid (the difference is named).
    """
    grid = series.grid
    if label_map.spatial_dims != 3 or label_map.num_channels != 1:
        raise GeometryError(f"a DICOM SEG is written from a single-channel 3D label map; got shape "
                            f"{label_map.array.shape}")
    if grid.spatial_shape[0] == 1 and label_map.spatial_shape[0] == 1:  # one slice has no defined step
        grid = Image(grid.array, (label_map.spacing[0], *grid.spacing[1:]), grid.origin, grid.direction)
    difference = label_map.geometry_difference(grid)
    if difference is None:
        return label_map.array[0]
    flipped_direction = np.asarray(grid.direction).copy()
    flipped_direction[:, 0] *= -1
    last = grid.index_to_physical((grid.spatial_shape[0] - 1, 0, 0))
    flipped = Image(grid.array, grid.spacing, tuple(last), flipped_direction)
    if label_map.geometry_difference(flipped) is None:
        return label_map.array[0, ::-1]
    raise GeometryError(f"label map is not on the grid of DICOM series {series.series_uid} in {series.folder}: "
                        f"{difference}")


def _label_values(array: np.ndarray, path: Path) -> np.ndarray:
    """``array`` as unsigned integers (a float or signed label map, e.g. a scaled NIfTI, is converted
    slice by slice into the smallest unsigned type: no float64 / int64 copy of the volume)."""
    if array.dtype.kind in "ub":
        return array
    if array.dtype.kind not in "iuf":
        raise ImageWriteError(f"label map of type {array.dtype} cannot hold label values", path)
    lower, upper = (array.min(), array.max()) if array.size else (0, 0)
    if not (np.isfinite(lower) and np.isfinite(upper)) or lower < 0 or upper > np.iinfo(np.uint16).max:
        raise ImageWriteError(f"label map values must be integers in 0..65535; found {lower}..{upper}", path)
    out = np.empty(array.shape, np.min_scalar_type(int(upper)))
    for k, plane in enumerate(array):
        out[k] = plane
        if np.any(out[k] != plane):
            raise ImageWriteError("label map holds non-integer values; a DICOM SEG takes label values", path)
    return out


def _values_present(array: np.ndarray) -> np.ndarray:
    """The distinct values of a label map, slice by slice: no sorted copy (np.unique) or int64 copy
    (np.bincount) of the whole volume."""
    if array.dtype.kind == "u" and array.dtype.itemsize <= 2:
        counts = np.zeros(int(array.max(initial=0)) + 1, np.int64)
        for plane in array:
            plane_counts = np.bincount(plane.ravel())
            counts[: len(plane_counts)] += plane_counts
        return np.flatnonzero(counts)
    return np.unique(array)


def _segment_array(array: np.ndarray, values: list[int]) -> np.ndarray:
    """Label values -> segment numbers 1..K (0 stays background), in the smallest unsigned type."""
    lut = np.zeros(max(values) + 1, np.uint8 if len(values) < 256 else np.uint16)
    lut[values] = np.arange(1, len(values) + 1)
    return lut[array]


def _segment_descriptions(names: dict[int, str], codes: SegmentCodes, algorithm) -> list:
    """One highdicom SegmentDescription per label value (in increasing value: segment numbers 1..K)."""
    import highdicom as hd

    descriptions = []
    for number, value in enumerate(sorted(names), start=1):
        code = codes.lookup(names[value])
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=number, segment_label=names[value][:64],  # LO: 64 characters at most
            segmented_property_category=_coded(code.category), segmented_property_type=_coded(code.type),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algorithm,
            anatomic_regions=[_coded(code.region)] if code.region else None))
    return descriptions


def write_dicom_seg(label_map: Image, source: str | Path | SeriesGrid, path: str | Path, *,
                    labels: Mapping[str, int] | None = None, codes: SegmentCodes | None = None,
                    series_description: str = "medseg segmentation", series_number: int = 300,
                    algorithm_name: str = "medseg", algorithm_version: str | None = None) -> Path:
    """Write a label map on a DICOM series' grid as a binary DICOM Segmentation object.

    Parameters
    ----------
    label_map : Image
        ``(1, Z, Y, X)`` integer label values on the series' grid (as :func:`medseg.io.read_image` reads
        the series, or any NIfTI/MHA label map on that grid).
    source : path or SeriesGrid
        The DICOM series folder the label map was made from: the SEG references its instances, its
        series, study, patient and frame of reference.
    path : path
        Output file (e.g. ``case.seg.dcm``); written under a temporary name, then renamed.
    labels : mapping, optional
        Label name -> value (a model's or dataset.json's ``labels``); background (0) is not a segment.
        Values without a name are called ``label <value>``.
    codes : SegmentCodes, optional
        Name -> coded concept table (default: :func:`load_segment_codes`).
    series_description, series_number, algorithm_name, algorithm_version :
        Written into the SEG.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    GeometryError
        The label map is not on the series' grid.
    ImageWriteError
        Label values that are not integers in 0..65535.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np
    >>> from medseg.io.dicom_series import write_dicom_series
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> series = write_dicom_series(Image(np.zeros((1, 2, 4, 4), np.int16)), folder / "mr")
    >>> label_map = np.zeros((1, 2, 4, 4), np.uint8); label_map[0, 1, 1:3, 1:3] = 1
    >>> seg = write_dicom_seg(Image(label_map), series, folder / "seg.dcm", labels={"prostate": 1})
    >>> read_dicom_seg(seg, series).segments[0].name
    'prostate'
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes as dicom_codes

    import medseg

    path = Path(path)
    series = _series(source)
    array = _label_values(align_to_series(label_map, series), path)
    values = [int(v) for v in _values_present(array) if v != 0]
    declared = [int(v) for v in (labels or {}).values() if isinstance(v, (int, np.integer)) and int(v) != 0]
    values = sorted(set(values) | set(declared))  # declared but absent labels still get their segment
    if not values:
        raise ImageWriteError("label map is empty and no labels are declared: nothing to segment", path)
    algorithm = hd.AlgorithmIdentificationSequence(
        name=algorithm_name, version=algorithm_version or medseg.__version__,
        family=dicom_codes.cid7162.ArtificialIntelligence)
    descriptions = _segment_descriptions(_label_names(values, labels), codes or load_segment_codes(), algorithm)
    segments = _segment_array(array, values)
    seg = hd.seg.Segmentation(
        source_images=series.headers, pixel_array=segments,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=descriptions,
        series_instance_uid=hd.UID(), series_number=series_number, sop_instance_uid=hd.UID(),
        instance_number=1, manufacturer="medseg", manufacturer_model_name=algorithm_name,
        software_versions=medseg.__version__, device_serial_number="none",
        series_description=series_description[:64],
        omit_empty_frames=bool(segments.any()))  # highdicom needs one frame at least
    with atomic_path(path) as tmp:
        seg.save_as(tmp)
    return path


@dataclass
class SegmentInfo:
    """One segment of a DICOM SEG: its number, name, coded category / type, anatomic regions, and the
    value its voxels have in :attr:`DicomSeg.label_map`."""

    number: int
    name: str
    category: Concept
    type: Concept
    regions: tuple[Concept, ...] = ()
    value: int = 0


@dataclass
class DicomSeg:
    """A DICOM SEG read back: the label map on the source grid and what the object says about itself."""

    label_map: Image
    segments: list[SegmentInfo]
    referenced_series_uid: str
    frame_of_reference_uid: str
    series_uid: str

    @property
    def labels(self) -> dict[str, int]:
        """Segment name -> value in :attr:`label_map`."""
        return {s.name: s.value for s in self.segments}


def _concept_of(item: Any) -> Concept:
    return Concept(str(item.scheme_designator), str(item.value), str(item.meaning))


def read_dicom_seg(path: str | Path, source: str | Path | SeriesGrid, *,
                   labels: Mapping[str, int] | None = None) -> DicomSeg:
    """Read a DICOM SEG onto the grid of its source series.

    Parameters
    ----------
    path : path
        The SEG file.
    source : path or SeriesGrid
        The series it segments; every frame is placed on the source instance it was derived from.
    labels : mapping, optional
        Label name -> value: segments with these names get these values in the label map (e.g. to get
        BraTS's value 4 back); otherwise a segment's value is its number.

    Returns
    -------
    DicomSeg

    Raises
    ------
    ImageReadError
        Not a SEG, overlapping segments, or a SEG of another series / frame of reference.
    """
    import highdicom as hd

    path = Path(path)
    series = _series(source)
    try:
        seg = hd.seg.segread(path)
    except Exception as exc:  # pydicom/highdicom raise many types for a file that is not a SEG
        raise ImageReadError(f"cannot read as a DICOM Segmentation: {exc}", path) from None
    referenced = [str(item.SeriesInstanceUID) for item in seg.get("ReferencedSeriesSequence", [])]
    if series.series_uid not in referenced:
        raise ImageReadError(f"segmentation references series {', '.join(referenced) or '(none)'}, not "
                             f"{series.series_uid} in {series.folder}", path)
    frame_uid = str(seg.get("FrameOfReferenceUID", ""))
    if series.frame_of_reference_uid and frame_uid != series.frame_of_reference_uid:
        raise ImageReadError(f"frame of reference {frame_uid} differs from the series' "
                             f"{series.frame_of_reference_uid}", path)
    segments = []
    for number in seg.segment_numbers:
        d = seg.get_segment_description(number)
        regions = tuple(_concept_of(r) for r in (d.anatomic_regions or ()))
        segments.append(SegmentInfo(number, str(d.segment_label), _concept_of(d.segmented_property_category),
                                    _concept_of(d.segmented_property_type), regions))
    by_name = {normalise_label_name(n): int(v) for n, v in (labels or {}).items()}
    for s in segments:
        s.value = by_name.get(normalise_label_name(s.name), s.number)
    top = max([s.number for s in segments] + [s.value for s in segments] + [1])
    dtype = np.min_scalar_type(top)  # uint8 for < 256 labels: the full volume is allocated in it
    try:
        numbers = seg.get_pixels_by_source_instance(
            [str(h.SOPInstanceUID) for h in series.headers], combine_segments=True, relabel=False, dtype=dtype)
    except (RuntimeError, ValueError, KeyError) as exc:
        raise ImageReadError(f"cannot place the segmentation on series {series.series_uid}: {exc}", path) from None
    lut = np.arange(max(seg.segment_numbers, default=0) + 1).astype(dtype)
    for s in segments:
        lut[s.number] = s.value
    if np.any(lut != np.arange(len(lut))):
        numbers = lut[numbers]
    return DicomSeg(series.grid.with_array(numbers[None]), segments, series.series_uid, frame_uid,
                    str(seg.SeriesInstanceUID))


def writes_dicom_seg(output_format: str, source: str | Path) -> bool:
    """Whether a prediction for input ``source`` is written as a DICOM SEG.

    ``"auto"``: yes for a DICOM series (a folder), no otherwise; ``"image"``: never; ``"dicom-seg"``:
    always, and an input that is not a DICOM series is an error (a SEG needs source instances).

    Examples
    --------
    >>> writes_dicom_seg("auto", "case.nii.gz"), writes_dicom_seg("image", "case.nii.gz")
    (False, False)
    """
    if output_format not in OUTPUT_FORMATS:
        raise MedsegError(f"--format must be one of {', '.join(OUTPUT_FORMATS)}; got '{output_format}'")
    is_series = Path(source).is_dir()
    if output_format == "dicom-seg" and not is_series:
        raise MedsegError("--format dicom-seg needs a DICOM series folder as input (a SEG references the "
                          "source slices)", source)
    return output_format != "image" and is_series
