"""After training, on the validation cases: the decision threshold (binary models) and the postprocessing.

The held-out cases are predicted once on the network grid (the trained weights, the recorded tile), and
the two rules of :mod:`medseg.planning.training_rules` choose on them; the choices go into config.json,
where every predictor path applies them.
"""

from __future__ import annotations

from dataclasses import replace
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


def _probabilities(model: torch.nn.Module, case: PreparedCase, config: ModelConfig, overlap: float) -> np.ndarray:
    from medseg.tiling.slices import slice_network
    from medseg.tiling.sliding_window import sliding_window_inference

    network = slice_network(model, config.slice_axis)
    result = sliding_window_inference(
        np.asarray(case.image, dtype=np.float32), network, config.data_tile_size, overlap=overlap,
        activation=config.activation, return_probabilities=True, return_labels=False, batch_size=4,
        probabilities_dtype=np.float16 if config.data_dims == 3 else np.float32)
    return result.probabilities


def choose_after_training(model: torch.nn.Module, cases: Sequence[PreparedCase], model_config: ModelConfig,
                          options: TrainingConfig, structure: str, overlap: float = 0.5,
                          ) -> tuple[ModelConfig, list[Rule]]:
    """The decision threshold and postprocessing rules on ``cases``; returns the updated configuration and
    the rules that fired (region models: sigmoid heads have neither)."""
    if model_config.regions:
        return model_config, []
    mapping = LabelMapping(model_config.label_values)
    binary = model_config.num_classes == 2
    foreground, scores, references, valid_masks, spacings = [], [], [], [], []
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for case in cases:
                probs = _probabilities(model, case, model_config, overlap)
                target = np.asarray(case.label[0])
                valid = target != IGNORE_INDEX
                if case.roi is not None:
                    valid &= np.asarray(case.roi)
                scores.append(np.argmax(probs, 0).astype(np.int16))
                if binary:
                    foreground.append(probs[1].astype(np.float32))
                references.append(mapping.decode(np.where(valid, target, 0)))
                valid_masks.append(valid)
                spacings.append(case.spacing)
    finally:
        model.train(was_training)
    fired: list[Rule] = []
    threshold = rules.rule_decision_threshold(
        options.decision_threshold, binary, structure, foreground,
        [r != model_config.label_values[0] for r in references], valid_masks)
    if threshold is not None:
        fired.append(threshold)
        model_config = replace(model_config, decision_threshold=threshold.value)
    predictions = []
    for i, index in enumerate(scores):
        if binary and model_config.decision_threshold is not None:
            index = (foreground[i] >= model_config.decision_threshold).astype(np.int16)
        predictions.append(np.where(valid_masks[i], mapping.decode(index), 0).astype(references[i].dtype))
    post = rules.rule_postprocessing(options.postprocessing, predictions, references, spacings,
                                     model_config.label_values, valid_masks)
    fired.append(post)
    return replace(model_config, postprocessing=list(post.value)), fired
