"""Segmentation → measurements → classifier (the survey's diagnosis cascade, e.g. OCT referral).

- :mod:`~medseg.cascade.features`: per-label measurements of a tissue map (size, count, extent,
  position, probability statistics);
- :mod:`~medseg.cascade.classifier`: calibrated logistic vs gradient-boosted classifier, chosen by
  patient-grouped cross-validated log loss; decision threshold by a stated criterion;
- :mod:`~medseg.cascade.model`: the cascade folder (bound to its segmentation model by the SHA-256 of
  its weights) and :class:`CascadeModel` that applies it;
- :mod:`~medseg.cascade.train`: measure a dataset with a segmentation model and fit the classifier.
"""

from medseg.cascade.classifier import CANDIDATES, FittedClassifier, fit_classifier
from medseg.cascade.features import feature_names, segmentation_features
from medseg.cascade.model import CascadeModel, CascadeResult, read_cascade, read_classes
from medseg.cascade.train import fit_and_save, train_cascade

__all__ = ["CANDIDATES", "CascadeModel", "CascadeResult", "FittedClassifier", "feature_names", "fit_and_save",
           "fit_classifier", "read_cascade", "read_classes", "segmentation_features", "train_cascade"]
