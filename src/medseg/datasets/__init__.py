"""Datasets: folders with dataset.json (nnU-Net v2 or Medical Segmentation Decathlon layout),
converters from public layouts, checks, and synthetic phantoms."""

from medseg.datasets.check import CheckReport, Problem, check_dataset
from medseg.datasets.converters import Layout, Subset, convert_dataset, converters
from medseg.datasets.dataset import Case, Dataset, load_dataset, write_dataset_json
from medseg.datasets.synthetic import make_organs3d, make_tumour3d, make_vessels2d

__all__ = [
    "Case", "Dataset", "load_dataset", "write_dataset_json", "check_dataset", "CheckReport", "Problem",
    "convert_dataset", "converters", "Layout", "Subset", "make_vessels2d", "make_organs3d", "make_tumour3d",
]
