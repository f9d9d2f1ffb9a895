"""Fine-tuning a trained model folder on a new dataset (``medseg train NEW_DATA --init-from MODEL``).

The run keeps what the weights were trained with — network and its options, preprocessing, grid
(spacing, crop, field-of-view normalisation), labels, patch and batch size — and starts from the source's
final weights (safetensors; a ``.pt`` checkpoint only with ``weights_only=True``). What is left to decide
(validation cases, budget, learning rate) follows the fine-tuning rules of
:mod:`medseg.planning.device_rules`. The lineage (source folder relative to the new one, SHA-256 of its
weights and of its config.json, its dataset and its own lineage) goes into config.json and rules.json.

Examples
--------
>>> from medseg.training import TrainingConfig, train                                        # doctest: +SKIP
>>> train("data/stare", "models/stare", TrainingConfig(init_from="models/drive", time_limit=300))  # doctest: +SKIP
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

from medseg.errors import MedsegError
from medseg.model_folder import ModelConfig, config_sha256, load_config, weights_path, weights_sha256
from medseg.planning import device_rules
from medseg.planning.training_rules import DEFAULT_LOSS, Rule, _steps, user_rule
from medseg.training.config import TrainingConfig
from medseg.training.layout import DataLayout
from medseg.training.spec import RunStart


@dataclass(frozen=True)
class Source:
    """The model a fine-tuning run starts from."""

    folder: Path
    config: ModelConfig
    lineage: dict[str, Any]


def load_source(folder: str | Path, dataset: Any, first_image: Any, out: str | Path) -> Source:
    """The source model folder, checked against the new dataset (labels, channels, dimensions).

    Raises
    ------
    MedsegError
        One line naming the file: labels that differ, another channel count or dimensionality, no weights.
    """
    folder = Path(folder)
    config = load_config(folder)
    weights_path(folder)  # no trained weights: an error naming the folder, before any work
    labels = {str(k): int(v) for k, v in dataset.labels.items()}
    if labels != {str(k): int(v) for k, v in config.labels.items()}:
        raise MedsegError(f"the dataset's labels {labels} differ from those of the model to fine-tune "
                          f"({folder}: {config.labels}); fine-tuning keeps the model's labels",
                          Path(dataset.root) / "dataset.json")
    if (dataset.regions or None) != (config.regions or None):
        raise MedsegError(f"the dataset's regions differ from those of the model to fine-tune ({folder})",
                          Path(dataset.root) / "dataset.json")
    if first_image.spatial_dims != config.data_dims or first_image.num_channels != config.input_channels:
        raise MedsegError(f"the model to fine-tune ({folder}) takes {config.data_dims}D images of "
                          f"{config.input_channels} channel(s); this dataset's are {first_image.spatial_dims}D with "
                          f"{first_image.num_channels}", dataset.root)
    lineage = {"path": os.path.relpath(folder.resolve(), Path(out).resolve()), "weights_sha256": weights_sha256(folder),
               "config_sha256": config_sha256(folder), "dataset": config.dataset, "source_lineage": config.lineage}
    return Source(folder, config, lineage)


def start_finetuning(dataset: Any, options: TrainingConfig, source: Source, *, plan: Any = None,
                     preprocessing: list[dict[str, Any]] | None = None, fold: int | str | None = None,
                     val_cases: Sequence[str] | None = None) -> RunStart:
    """The start of a fine-tuning run (:class:`~medseg.training.spec.RunStart`): the source's layout and
    network, the fine-tuning rules for cases, budget and learning rate."""
    from medseg.training.cases import select_cases

    if plan is not None or preprocessing is not None:
        raise MedsegError("--init-from keeps the source model's plan and preprocessing (its weights were trained "
                          "with them); leave out --plan / --preprocessing", source.folder)
    if options.network is not None or options.network_options:
        raise MedsegError("--init-from keeps the source model's network; leave out --net / --features / --depth / "
                          "--net-option", source.folder)
    if options.encoder_weights:
        raise MedsegError("give --init-from or --encoder-weights, not both", source.folder)
    cfg = source.config
    where = str(source.folder)
    fired: list[Rule] = [device_rules.rule_init_from(source.lineage)]
    validation = device_rules.rule_finetune_validation([c.name for c in dataset.cases], fold, val_cases)
    fired.append(validation)
    train_names, val_names = select_cases(dataset, validation.value.get("fold"), validation.value.get("val_cases"),
                                          options.seed)
    if not train_names:
        raise MedsegError("no training cases left after holding out the validation cases", dataset.root)
    budget = device_rules.rule_finetune_budget(options.iterations, options.time_limit)
    lr = device_rules.rule_finetune_learning_rate(options.optimizer, options.learning_rate)
    fired += [budget, lr,
              device_rules.rule_source_setting("preprocessing", "Intensity preprocessing", list(cfg.preprocessing),
                                               _steps(cfg.preprocessing), where)]
    layout = DataLayout.from_model_config(cfg)
    if options.fov_diameter is not None:
        fov = device_rules.rule_field_of_view(options.fov_diameter, True, [])
        layout = replace(layout, fov_diameter=fov.value)
    elif cfg.fov_diameter:
        fov = device_rules.rule_source_setting("fov_diameter", "Field-of-view normalisation", cfg.fov_diameter,
                                               f"FOV rescaled to {cfg.fov_diameter:.1f} px (found automatically "
                                               "where the new cases have no ROI)", where)
    else:
        fov = None
    fired += [fov] if fov is not None else []
    if options.field_extent is not None:
        raise MedsegError("--init-from keeps the source model's field-extent normalisation (its weights were trained "
                          "with it); leave out --field-extent", source.folder)
    if cfg.field_extent:
        fired.append(device_rules.rule_source_setting("field_extent", "Field-of-view normalisation (spacing lost)",
                                                      cfg.field_extent, f"in-plane side "
                                                      f"{cfg.field_extent['side']:.0f} voxels", where))
    source_loss = (cfg.training or {}).get("loss") or DEFAULT_LOSS
    loss = (user_rule("loss", "Loss", options.loss, options.loss, "--loss") if options.loss else
            device_rules.rule_source_setting("loss", "Loss", source_loss, source_loss, where))
    fired.append(loss)
    config = replace(options, network=cfg.network, network_options=dict(cfg.network_options),
                     iterations=budget.value["iterations"], time_limit=budget.value["time_limit"],
                     learning_rate=lr.value, init_from=str(source.folder), loss=loss.value)
    batch = (cfg.training or {}).get("batch_size")
    return RunStart(config, layout, tuple(train_names), tuple(val_names), dict(cfg.network_options),
                    tuple(int(p) for p in cfg.patch_size), int(batch) if batch else None, tuple(fired), source=where)


def inherited_choices(options: TrainingConfig, model_config: ModelConfig) -> tuple[ModelConfig, list[Rule]]:
    """Without validation cases: the source model's decision threshold, postprocessing and test-time mirroring (see
    :func:`~medseg.planning.device_rules.rule_inherited_threshold`)."""
    source = load_config(options.init_from)
    fired = []
    if model_config.num_classes == 2 and not model_config.regions:
        threshold = device_rules.rule_inherited_threshold(options.decision_threshold, source.decision_threshold)
        fired.append(threshold)
        model_config = replace(model_config, decision_threshold=threshold.value)
    post = device_rules.rule_inherited_postprocessing(options.postprocessing, source.postprocessing or [])
    tta = device_rules.rule_inherited_mirroring(source.tta_axes, str(options.init_from))
    fired += [post, tta]
    return replace(model_config, postprocessing=list(post.value), tta_axes=list(tta.value)), fired


def keep_if_better(model: Any, val_cases: Sequence[Any], model_config: ModelConfig, options: TrainingConfig,
                   finetuned_dice: float) -> Rule:
    """The fine-tuned ``model`` against its source on the run's validation cases (same grid, same scoring);
    when the source scores higher, its weights are loaded into ``model`` (see
    :func:`~medseg.planning.device_rules.rule_finetune_outcome`)."""
    from medseg.model_folder import load_model
    from medseg.training.validation import validate

    _, source = load_model(options.init_from)
    source_dice = validate(source, val_cases, model_config, options.val_overlap)["val_dice"]
    outcome = device_rules.rule_finetune_outcome(source_dice, finetuned_dice)
    if outcome.value == "source":
        model.load_state_dict(source.state_dict())
    return outcome
