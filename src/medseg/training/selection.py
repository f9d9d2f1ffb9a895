"""After training, on the validation cases: test-time mirroring, the decision threshold (binary models) and
the postprocessing.

The held-out cases are predicted on the network grid (the trained weights, the recorded tile), plainly and,
where affordable, with mirroring; the rules of :mod:`medseg.planning.training_rules` choose on them (the
decision threshold on the input's grid, where it is applied); the choices go into config.json, where every
predictor path applies them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np
import torch

from medseg.losses import IGNORE_INDEX
from medseg.model_folder import ModelConfig, load_config
from medseg.planning import device_rules
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
    """The validation cases predicted one way: label maps in the dataset's values (argmax, or the regions
    painted as every prediction paints them), binary foreground probabilities, seconds."""

    labels: list[np.ndarray] = field(default_factory=list)
    foreground: list[np.ndarray] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def add(self, probs: np.ndarray, seconds: float, config: ModelConfig, mapping: LabelMapping) -> None:
        from medseg.model_folder import paint_regions

        if config.regions:
            self.labels.append(paint_regions(probs, config))
        else:
            self.labels.append(mapping.decode(np.argmax(probs, 0).astype(np.int16)))
            if config.num_classes == 2:
                self.foreground.append(probs[1].astype(np.float32))
        self.seconds.append(seconds)

    def dice(self, references: Sequence[np.ndarray], valid: Sequence[np.ndarray],
             structures: Sequence[Sequence[int]]) -> list[float]:
        """Per case, the mean Dice over the structures (labels, or regions: sets of values) present in
        prediction or reference."""
        from medseg.metrics.overlap import dice

        out = []
        for prediction, reference, mask in zip(self.labels, references, valid):
            scores = []
            for values in structures:
                p, r = np.isin(prediction, values), np.isin(reference, values)
                if (p & mask).any() or (r & mask).any():  # a structure absent from both says nothing
                    scores.append(dice(p, r, roi=mask))
            out.append(float(np.mean(scores)) if scores else 1.0)
        return out


def _predict_all(model: torch.nn.Module, cases: Sequence[PreparedCase], model_config: ModelConfig, overlap: float,
                 mapping: LabelMapping, mirror_axes: Sequence[int] = ()) -> _Predicted:
    predicted = _Predicted()
    for case in cases:
        probs, seconds = _probabilities(model, case, model_config, overlap, mirror_axes)
        predicted.add(probs, seconds, model_config, mapping)
    return predicted


def _structures(config: ModelConfig) -> list[list[int]]:
    """What a validation Dice averages over: each region's values, else each foreground label."""
    if config.regions:
        return [[int(v) for v in values] for values in config.regions.values()]
    return [[int(v)] for v in config.label_values[1:]]


def choose_after_training(model: torch.nn.Module, cases: Sequence[PreparedCase], model_config: ModelConfig,
                          options: TrainingConfig, structure: str, overlap: float = 0.5,
                          one_piece: Sequence[int | str] = (),
                          timing_cases: Sequence[PreparedCase] = ()) -> tuple[ModelConfig, list[Rule]]:
    """The test-time mirroring, decision threshold (binary models) and postprocessing rules on ``cases`` (the
    latter two on the predictions the first chose); returns the updated configuration and the rules that
    fired. ``timing_cases``: training cases that time a prediction when there are no validation cases. Region
    models are scored by region (sigmoid heads: no threshold to choose) and choose
    postprocessing per region (``one_piece``: the labels / regions whose largest component is kept on a tie).
    A fine-tuned model (``options.init_from``) with fewer validation cases than the
    mirroring and threshold rules need keeps its source's two choices."""
    mapping = LabelMapping(model_config.label_values)
    binary = not model_config.regions and model_config.num_classes == 2
    references, valid_masks, spacings = [], [], []
    for case in cases:
        target = np.asarray(case.label[0])
        valid = target != IGNORE_INDEX
        if case.roi is not None:
            valid &= np.asarray(case.roi)
        references.append(mapping.decode(np.where(valid, target, 0)))
        valid_masks.append(valid)
        spacings.append(case.spacing)
    # fine-tuning with too few validation cases to choose on: the source's mirroring and threshold, together
    source = (load_config(options.init_from) if options.init_from and
              len(cases) < max(rules.TTA_MIN_CASES, rules.THRESHOLD_MIN_CASES) else None)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            if source is None:
                predicted, tta = _test_time_mirroring(model, cases, model_config, overlap, mapping, references,
                                                      valid_masks, timing_cases)
            else:
                tta = device_rules.rule_inherited_mirroring(source.tta_axes, str(options.init_from), len(cases))
                predicted = _predict_all(model, cases, model_config, overlap, mapping, tta.value)
    finally:
        model.train(was_training)
    fired: list[Rule] = [tta]
    model_config = replace(model_config, tta_axes=list(tta.value))
    if binary and source is not None:
        threshold = device_rules.rule_inherited_threshold(options.decision_threshold, source.decision_threshold,
                                                          len(cases))
    else:
        foreground, truths, rois = _on_input_grid(cases, predicted.foreground,
                                                  [r != model_config.label_values[0] for r in references], valid_masks)
        threshold = rules.rule_decision_threshold(options.decision_threshold, binary, structure, foreground, truths,
                                                  rois, one_piece=binary and model_config.label_values[1] in one_piece)
    if threshold is not None:
        fired.append(threshold)
        model_config = replace(model_config, decision_threshold=threshold.value)
    predictions = []
    for i, labels in enumerate(predicted.labels):
        if binary and model_config.decision_threshold is not None:
            labels = mapping.decode((predicted.foreground[i] >= model_config.decision_threshold).astype(np.int16))
        predictions.append(np.where(valid_masks[i], labels, 0).astype(references[i].dtype))
    post = rules.rule_postprocessing(options.postprocessing, predictions, references, spacings,
                                     model_config.label_values, valid_masks, regions=model_config.regions,
                                     one_piece=one_piece)
    fired.append(post)
    return replace(model_config, postprocessing=list(post.value)), fired


def _on_input_grid(cases: Sequence[PreparedCase], foreground: Sequence[np.ndarray], truths: Sequence[np.ndarray],
                   valid_masks: Sequence[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Foreground probabilities, reference and valid mask of each case on its input's grid, where the predictor
    thresholds them: a case resampled to the network grid (spacing, field of view) is brought back as every
    prediction is, and scored against its own label — the interpolated probabilities have another optimum."""
    out: tuple[list, list, list] = ([], [], [])
    for case, probs, truth, valid in zip(cases, foreground, truths, valid_masks):
        reference = case.input_reference
        if reference is not None:
            probs = reference.grid.channel_to_input(probs)
            valid = reference.label != IGNORE_INDEX
            if reference.roi is not None:
                valid &= reference.roi
            truth = (reference.label == 1) & valid
        for collected, value in zip(out, (probs, truth, valid)):
            collected.append(value)
    return out


def _test_time_mirroring(model: torch.nn.Module, cases: Sequence[PreparedCase], model_config: ModelConfig,
                         overlap: float, mapping: LabelMapping, references: Sequence[np.ndarray],
                         valid_masks: Sequence[np.ndarray], timing_cases: Sequence[PreparedCase] = (),
                         ) -> tuple[_Predicted, Rule]:
    """The validation cases predicted plainly and, where the rule may keep it, mirrored; the predictions the
    rule chose and the rule. Without validation cases the first of ``timing_cases`` (a training case) times a
    plain prediction, so that the rule can tell whether mirroring stays within its time per case."""
    axes = list(model_config.mirror_axes)
    structures = _structures(model_config)
    plain = _predict_all(model, cases, model_config, overlap, mapping)
    plain_dice = plain.dice(references, valid_masks, structures)
    if plain.seconds:
        seconds = float(np.mean(plain.seconds))
    else:
        seconds = _probabilities(model, timing_cases[0], model_config, overlap)[1] if timing_cases and axes else 0.0
    if not rules.mirroring_measurable(axes, len(cases), seconds):
        return plain, rules.rule_test_time_mirroring(axes, plain_dice, seconds)
    mirrored = _predict_all(model, cases, model_config, overlap, mapping, axes)
    rule = rules.rule_test_time_mirroring(axes, plain_dice, seconds, mirrored.dice(references, valid_masks, structures),
                                          float(np.mean(mirrored.seconds)))
    return (mirrored if rule.value else plain), rule
