"""After training, on the validation cases: test-time mirroring, the decision threshold (binary models) and
the postprocessing.

The held-out cases are predicted on the network grid (the trained weights, the recorded tile), plainly and,
where affordable, with mirroring; the rules of :mod:`medseg.planning.training_rules` choose on them; the
choices go into config.json, where every predictor path applies them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np
import torch

from medseg.losses import IGNORE_INDEX
from medseg.model_folder import ModelConfig
from medseg.planning import training_rules as rules
from medseg.planning.training_rules import Rule
from medseg.preprocessing.grid import LabelMapping
from medseg.training.config import TrainingConfig
from medseg.training.data import PreparedCase


def _probabilities(model: torch.nn.Module, case: PreparedCase, config: ModelConfig, overlap: float,
                   mirror_axes: Sequence[int] = ()) -> tuple[np.ndarray, float]:
    """The case's probabilities on the network grid and the seconds they took."""
    from medseg.tiling.slices import slice_network
    from medseg.tiling.sliding_window import sliding_window_inference

    network = slice_network(model, config.slice_axis)
    started = time.perf_counter()
    result = sliding_window_inference(
        np.asarray(case.image, dtype=np.float32), network, config.data_tile_size, overlap=overlap,
        mirror_axes=tuple(mirror_axes), activation=config.activation, return_probabilities=True,
        return_labels=False, batch_size=4, probabilities_dtype=np.float16 if config.data_dims == 3 else np.float32)
    return result.probabilities, time.perf_counter() - started


@dataclass
class _Predicted:
    """The validation cases predicted one way: argmax labels, binary foreground probabilities, seconds."""

    argmax: list[np.ndarray] = field(default_factory=list)
    foreground: list[np.ndarray] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def add(self, probs: np.ndarray, seconds: float, binary: bool) -> None:
        self.argmax.append(np.argmax(probs, 0).astype(np.int16))
        if binary:
            self.foreground.append(probs[1].astype(np.float32))
        self.seconds.append(seconds)

    def dice(self, mapping: LabelMapping, references: Sequence[np.ndarray], valid: Sequence[np.ndarray],
             label_values: Sequence[int]) -> list[float]:
        """Per case, the mean Dice of the argmax over the foreground labels present in prediction or reference."""
        from medseg.metrics.overlap import dice

        out = []
        for index, reference, mask in zip(self.argmax, references, valid):
            prediction = mapping.decode(index)
            scores = []
            for value in label_values[1:]:
                p, r = prediction == value, reference == value
                if (p & mask).any() or (r & mask).any():  # a label absent from both says nothing
                    scores.append(dice(p, r, roi=mask))
            out.append(float(np.mean(scores)) if scores else 1.0)
        return out


def _predict_all(model: torch.nn.Module, cases: Sequence[PreparedCase], model_config: ModelConfig, overlap: float,
                 mirror_axes: Sequence[int] = ()) -> _Predicted:
    predicted = _Predicted()
    for case in cases:
        probs, seconds = _probabilities(model, case, model_config, overlap, mirror_axes)
        predicted.add(probs, seconds, model_config.num_classes == 2)
    return predicted


def choose_after_training(model: torch.nn.Module, cases: Sequence[PreparedCase], model_config: ModelConfig,
                          options: TrainingConfig, structure: str, overlap: float = 0.5,
                          ) -> tuple[ModelConfig, list[Rule]]:
    """The test-time mirroring, decision threshold and postprocessing rules on ``cases`` (the latter two on
    the predictions the first chose); returns the updated configuration and the rules that fired (region
    models: the postprocessing of each region, see :func:`_region_postprocessing`)."""
    if model_config.regions:
        return _region_postprocessing(model, cases, model_config, options, overlap)
    mapping = LabelMapping(model_config.label_values)
    binary = model_config.num_classes == 2
    references, valid_masks, spacings = [], [], []
    for case in cases:
        target = np.asarray(case.label[0])
        valid = target != IGNORE_INDEX
        if case.roi is not None:
            valid &= np.asarray(case.roi)
        references.append(mapping.decode(np.where(valid, target, 0)))
        valid_masks.append(valid)
        spacings.append(case.spacing)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            predicted, tta = _test_time_mirroring(model, cases, model_config, overlap, mapping, references,
                                                  valid_masks)
    finally:
        model.train(was_training)
    fired: list[Rule] = [tta]
    model_config = replace(model_config, tta_axes=list(tta.value))
    threshold = rules.rule_decision_threshold(
        options.decision_threshold, binary, structure, predicted.foreground,
        [r != model_config.label_values[0] for r in references], valid_masks)
    if threshold is not None:
        fired.append(threshold)
        model_config = replace(model_config, decision_threshold=threshold.value)
    predictions = []
    for i, index in enumerate(predicted.argmax):
        if binary and model_config.decision_threshold is not None:
            index = (predicted.foreground[i] >= model_config.decision_threshold).astype(np.int16)
        predictions.append(np.where(valid_masks[i], mapping.decode(index), 0).astype(references[i].dtype))
    post = rules.rule_postprocessing(options.postprocessing, predictions, references, spacings,
                                     model_config.label_values, valid_masks)
    fired.append(post)
    return replace(model_config, postprocessing=list(post.value)), fired


def _region_postprocessing(model: torch.nn.Module, cases: Sequence[PreparedCase], model_config: ModelConfig,
                           options: TrainingConfig, overlap: float) -> tuple[ModelConfig, list[Rule]]:
    """A region model (sigmoid heads, no threshold to choose; mirroring not yet measured for it): the
    validation cases painted as every prediction paints them, then the postprocessing rule per region."""
    from medseg.model_folder import paint_regions

    mapping = LabelMapping(model_config.label_values)
    predictions, references, valid_masks, spacings = [], [], [], []
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for case in cases:
                probs, _ = _probabilities(model, case, model_config, overlap)
                target = np.asarray(case.label[0])
                valid = target != IGNORE_INDEX
                reference = mapping.decode(np.where(valid, target, 0))
                predictions.append(np.where(valid, paint_regions(probs, model_config), 0).astype(reference.dtype))
                references.append(reference)
                valid_masks.append(valid)
                spacings.append(case.spacing)
    finally:
        model.train(was_training)
    post = rules.rule_postprocessing(options.postprocessing, predictions, references, spacings,
                                     model_config.label_values, valid_masks, regions=model_config.regions)
    return replace(model_config, postprocessing=list(post.value)), [post]


def _test_time_mirroring(model: torch.nn.Module, cases: Sequence[PreparedCase], model_config: ModelConfig,
                         overlap: float, mapping: LabelMapping, references: Sequence[np.ndarray],
                         valid_masks: Sequence[np.ndarray]) -> tuple[_Predicted, Rule]:
    """The validation cases predicted plainly and, where the rule may keep it, mirrored; the predictions the
    rule chose and the rule."""
    axes = list(model_config.mirror_axes)
    plain = _predict_all(model, cases, model_config, overlap)
    plain_dice = plain.dice(mapping, references, valid_masks, model_config.label_values)
    seconds = float(np.mean(plain.seconds)) if plain.seconds else 0.0
    if not rules.mirroring_measurable(axes, len(cases), seconds):
        return plain, rules.rule_test_time_mirroring(axes, plain_dice, seconds)
    mirrored = _predict_all(model, cases, model_config, overlap, axes)
    rule = rules.rule_test_time_mirroring(axes, plain_dice, seconds,
                                          mirrored.dice(mapping, references, valid_masks, model_config.label_values),
                                          float(np.mean(mirrored.seconds)))
    return (mirrored if rule.value else plain), rule
