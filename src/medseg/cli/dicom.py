"""``medseg export-dicom-seg LABELS SOURCE_SERIES -o OUT``: a label map (NIfTI, MHA, NRRD) on a DICOM series'
grid as a DICOM Segmentation object referencing that series."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from medseg.cli import app
from medseg.cli._consoles import err
from medseg.errors import MedsegError

console = err


def parse_labels(text: str | None) -> dict[str, int] | None:
    """``name=value,name=value``, or a JSON file with ``labels`` (dataset.json, a model's config.json), or a
    model folder; region entries (lists of values) are skipped."""
    if not text:
        return None
    path = Path(text)
    if path.is_dir():
        from medseg.model_folder import CONFIG_NAME

        path = path / CONFIG_NAME
    if path.is_file():
        try:
            labels = json.loads(path.read_text(encoding="utf-8")).get("labels")
        except (OSError, ValueError, AttributeError) as exc:
            raise MedsegError(f"cannot read labels: {exc}", path) from None
        if not isinstance(labels, dict):
            raise MedsegError("no 'labels' object (name -> value) in this file", path)
        return {str(k): int(v) for k, v in labels.items() if isinstance(v, int)}
    labels = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        if not sep or not value.strip().isdigit() or not name.strip():
            raise MedsegError(f"--labels takes name=value,... or a dataset.json / model folder; got '{item}'")
        labels[name.strip()] = int(value)
    return labels


@app.command("export-dicom-seg")
def export_dicom_seg(
    label_map: Path = typer.Argument(..., help="Label map on the series' grid (NIfTI, MHA, NRRD...)."),
    source_series: Path = typer.Argument(..., help="The DICOM series folder the label map belongs to."),
    output: Path = typer.Option(..., "-o", "--output", help="Output DICOM SEG file (e.g. case.seg.dcm)."),
    labels: str = typer.Option(None, "--labels", help="Segment names: name=value,... or a dataset.json, a model's "
                               "config.json or model folder (default: 'label <value>')."),
    codes: Path = typer.Option(None, "--codes", help="JSON file of extra name -> SNOMED CT codes, searched before "
                               "medseg's (format of medseg/io/segment_codes.json)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
) -> None:
    """Write a label map as a DICOM Segmentation (one segment per label, coded category and type).

    The label map must lie on the series' voxel grid (as `medseg predict` writes it for that series).

    Example: medseg export-dicom-seg pred/case.nii.gz dicom/case/ -o case.seg.dcm --labels models/prostate
    """
    from medseg.io import read_image
    from medseg.io.dicom_seg import load_segment_codes, write_dicom_seg

    if output.exists() and not overwrite:
        raise MedsegError("output file exists; pass --overwrite to replace it", output)
    if output.resolve() == label_map.resolve() or source_series.resolve() in output.resolve().parents:
        raise MedsegError("output would overwrite or sit inside an input; choose another path", output)
    names = parse_labels(labels)
    table = load_segment_codes(codes)
    image = read_image(label_map)
    try:
        write_dicom_seg(image, source_series, output, labels=names, codes=table)
    except MedsegError as exc:
        if exc.path is not None:
            raise
        raise MedsegError(exc.message, label_map) from None  # name the label map the problem is about
    console.print(f"{label_map} -> {output}", highlight=False)
