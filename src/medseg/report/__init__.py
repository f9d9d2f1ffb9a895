"""Reports for people: a per-case clinical HTML report and overlay figures (``medseg predict --report``)."""

from medseg.report.clinical import NOT_FOR_CLINICAL_USE, CaseReport, model_summary, value_names, write_case_report
from medseg.report.figures import OKABE_ITO, orthogonal_overlay, thumbnail

__all__ = ["NOT_FOR_CLINICAL_USE", "CaseReport", "model_summary", "value_names", "write_case_report",
           "OKABE_ITO", "orthogonal_overlay", "thumbnail"]
