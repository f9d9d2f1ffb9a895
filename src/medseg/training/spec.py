"""The run specification: every value of a training run, decided once, before the first step.

:func:`start_run` resolves what needs only the dataset, the plan and the options (cases, budget, learning
rate, grid layout); the cases are then prepared on the network grid, and :func:`complete_run` resolves
what needs them (structure shape, network defaults, patch and batch size, inference tile, normalisation
layer, foreground share, augmentation). The result is a frozen :class:`RunSpec` holding a resolved copy
of the options and every :class:`~medseg.planning.training_rules.Rule` that fired: the caller's
:class:`TrainingConfig` is never changed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np

from medseg.errors import MedsegError
from medseg.planning import training_rules as rules
from medseg.planning.structure import boundary_share
from medseg.planning.training_rules import Rule
from medseg.preprocessing.grid import GridLayout
from medseg.training.config import TrainingConfig
from medseg.training.layout import DataLayout, plan_value, resolve_layout


@dataclass(frozen=True)
class RunStart:
    """What is known before the cases are prepared."""

    config: TrainingConfig
    layout: DataLayout
    train_names: tuple[str, ...]
    val_names: tuple[str, ...]
    plan_options: dict[str, Any]
    plan_patch: tuple[int, ...] | None
    plan_batch: int | None
    rules: tuple[Rule, ...]
    automatic_plan: bool = False
    source: str | None = None  # fine-tuning: the model folder whose network, patch and batch are kept
    planned_boundary_share: float | None = None  # how thin the plan's fingerprint found the structures

    @property
    def grid(self) -> GridLayout:
        return self.layout.grid


@dataclass(frozen=True)
class RunSpec:
    """A training run, fully decided (see the module docstring)."""

    config: TrainingConfig
    layout: DataLayout
    train_names: tuple[str, ...]
    val_names: tuple[str, ...]
    structure: str
    tile_size: tuple[int, ...] | None
    rules: tuple[Rule, ...]

    @property
    def grid(self) -> GridLayout:
        return self.layout.grid

    def rule(self, name: str) -> Rule | None:
        return next((r for r in self.rules if r.name == name), None)

    @property
    def one_piece(self) -> list[int | str]:
        """The labels (region names) in one piece (:func:`~medseg.planning.training_rules.rule_one_piece`)."""
        rule = self.rule("one_piece")
        return list(rule.value) if rule is not None else []


def start_run(dataset: Any, options: TrainingConfig, plan: dict[str, Any] | None, data_dims: int, has_roi: bool,
              preprocessing: list[dict[str, Any]] | None, fold: int | str | None,
              val_cases: Sequence[str] | None, automatic_plan: bool = False,
              planning_seconds: float | None = None, network_rule: Rule | None = None) -> RunStart:
    """Cases, budget, learning rate and grid layout (rules that need no prepared case).

    ``automatic_plan``: ``plan`` was made from the dataset because none was given (its budget is then
    not a choice: the default budget applies); ``network_rule``: how ``options.network`` was chosen."""
    from medseg.training.cases import select_cases

    fired: list[Rule] = [network_rule] if network_rule is not None else []
    fired += [rules.rule_plan(plan, automatic_plan, planning_seconds)] if plan else []
    names = [c.name for c in dataset.cases]
    validation = rules.rule_validation(names, fold, val_cases)
    fired.append(validation)
    train_names, val_names = select_cases(dataset, validation.value.get("fold"), validation.value.get("val_cases"),
                                          options.seed)
    if not train_names:
        raise MedsegError("no training cases left after holding out the validation cases", dataset.root)
    budget = rules.rule_budget(options.iterations, options.time_limit,
                               None if automatic_plan else (plan or {}).get("training"))
    fired.append(budget)
    init, lr = _initial_weights(options)
    fired += [r for r in (init, lr) if r is not None]
    plan_steps = plan_value(plan, "preprocessing", "normalization_steps")
    steps = rules.rule_preprocessing(plan_steps, preprocessing, dataset.channel_names, dataset.file_ending, has_roi,
                                     data_dims)
    steps = _promptable_preprocessing(options.network, steps, plan)
    fired.append(steps)
    layout, plan_options, plan_patch, plan_batch = resolve_layout(plan, options.network, data_dims, steps.value)
    fov = field_of_view_rule(dataset, options.fov_diameter, train_names, data_dims)
    if fov is not None:
        fired.append(fov)
        layout = replace(layout, fov_diameter=fov.value)
    layout, sliced = _slices_for_2d_network(options.network, layout)
    fired += [sliced] if sliced is not None else []
    extent = field_extent_rule(dataset, options.field_extent, train_names, data_dims, layout.spatial_dims)
    if extent is not None:
        fired.append(extent)
        layout = replace(layout, field_extent=extent.value)
    layout, context = _slice_context(options, layout)
    fired += [context] if context is not None else []
    config = replace(options, network_options=dict(options.network_options), iterations=budget.value["iterations"],
                     time_limit=budget.value["time_limit"], learning_rate=lr.value,
                     init_weights=init.value if init is not None else None)
    return RunStart(config, layout, tuple(train_names), tuple(val_names), plan_options, plan_patch, plan_batch,
                    tuple(fired), automatic_plan=automatic_plan,
                    planned_boundary_share=((plan or {}).get("fingerprint_summary") or {}).get("boundary_share"))


def field_of_view_rule(dataset: Any, user: float | str | None, train_names: Sequence[str],
                       data_dims: int) -> Rule | None:
    """:func:`~medseg.planning.device_rules.rule_field_of_view` on the training cases' ROIs (read only for
    colour photographs); None (nothing to record or print) for other data unless the user gave a value."""
    from medseg.planning.device_rules import rule_field_of_view
    from medseg.preprocessing.fov import aperture_diameter

    colour = rules.is_photograph(dataset.channel_names, dataset.file_ending, data_dims)
    diameters: list[float] = []
    if user is None and colour:
        for name in train_names:
            roi = dataset.case(name).read_roi()
            diameter = aperture_diameter(roi.array[0]) if roi is not None else None
            if diameter is None:  # a case without a circular aperture ROI: not a fundus set with FOV masks
                diameters = []
                break
            diameters.append(diameter)
    if user is None and not colour:
        return None
    return rule_field_of_view(user, colour, diameters)


def field_extent_rule(dataset: Any, user: float | str | None, train_names: Sequence[str],
                      data_dims: int, network_dims: int = 3) -> Rule | None:
    """:func:`~medseg.planning.device_rules.rule_field_extent` on the training volumes' shapes and spacings
    (from their headers) for a network of ``network_dims``; None (nothing to record or print) for 2D data
    unless the user gave a value."""
    from medseg.io.itk import read_geometry
    from medseg.planning.device_rules import rule_field_extent

    if data_dims != 3 and user is None:
        return None
    shapes, spacings = [], []
    for name in train_names:
        case = dataset.case(name)
        geometry = read_geometry(case.image_paths[0]) if data_dims == 3 else None
        if geometry is None and user is None:
            return None  # no header to read: the default only reports, not worth reading every image for
        if geometry is None:
            image = case.read_image()
            geometry = image.spatial_shape, image.spacing
        shapes.append(geometry[0])
        spacings.append(geometry[1])
    return rule_field_extent(user, shapes, spacings, network_dims)


def _initial_weights(options: TrainingConfig) -> tuple[Rule | None, Rule]:
    """The initial-weights rule and the learning rate (a network's declared fine-tuning rate when it starts
    from its released weights)."""
    from medseg.training.networks import network_needs

    needs = network_needs(options.network)
    if options.init_weights and needs.released_weights is None:
        raise MedsegError(f"network '{options.network}' ships no weights to start from (--init-from-weights); "
                          "--encoder-weights loads a torchvision encoder")
    init = rules.rule_initial_weights(options.network, options.init_weights, needs.released_weights is not None)
    if init is not None and needs.learning_rate is not None and options.optimizer == "adamw":
        return init, rules.rule_prompt_learning_rate(options.optimizer, options.learning_rate, needs.learning_rate)
    return init, rules.rule_learning_rate(options.optimizer, options.learning_rate)


def _promptable_preprocessing(network: str, steps: Rule, plan: dict[str, Any] | None) -> Rule:
    """A promptable network frames its own input (MedSAM's window): no intensity step unless the user asks.
    It is prompted on the files' own slices, so a plan's resampled grid would train it on another one."""
    from medseg.training.networks import network_needs

    if not network_needs(network).promptable:
        return steps
    if plan is not None:
        raise MedsegError(f"{network} is trained on the files' own slices, as medseg prompt segments them: "
                          "drop --plan")
    if steps.overridden_by_user:
        return steps
    return Rule("preprocessing", steps.title, [], "none", f"{network} frames each slice itself (MedSAM: 0.5-99.5 "
                "percentile window, min-max to [0, 1]), exactly as medseg prompt does", {"network": network})


def _slices_for_2d_network(network: str, layout: DataLayout) -> tuple[DataLayout, Rule | None]:
    """A 2D-only network on volumes without a plan's slice axis: the slices across the first array axis."""
    from medseg.nets import NETWORKS

    if layout.spatial_dims != 3 or network not in NETWORKS:
        return layout, None
    dims = tuple(NETWORKS.entry(network).metadata.get("dims", (2, 3)))
    if 3 in dims or 2 not in dims:
        return layout, None
    rule = rules.rule_slices_of_volumes(network, dims)
    return replace(layout, spatial_dims=2, slice_axis=rule.value), rule


def _slice_context(options: TrainingConfig, layout: DataLayout) -> tuple[DataLayout, Rule | None]:
    """The slice-context rule; its neighbouring slices become the last preprocessing step, so the model folder
    records them and prediction repeats them."""
    from medseg.training.networks import network_needs

    rule = rules.rule_slice_context(layout.slice_axis, network_needs(options.network).promptable,
                                    options.slice_context)
    if rule is None or not rule.value:
        return layout, rule
    step = {"name": "slice_context", "axis": int(layout.slice_axis), "neighbours": int(rule.value)}
    return replace(layout, preprocessing=[*layout.preprocessing, step]), rule


def _merge_network_options(plan_options: dict, user_options: dict) -> dict:
    """The plan's network options overridden by the user's; a user's depth drops the plan's per-level lists
    (strides, kernel sizes), which were sized for the plan's depth and would contradict it."""
    merged = {**plan_options, **user_options}
    if "depth" in user_options and user_options["depth"] != plan_options.get("depth"):
        for key in ("strides", "kernel_sizes"):
            if key not in user_options:
                merged.pop(key, None)
    return merged


def complete_run(start: RunStart, train_labels: Sequence[np.ndarray], train_spacings: Sequence[Sequence[float]],
                 train_shapes: Sequence[Sequence[int]], in_channels: int, num_classes: int, data_dims: int,
                 structures: Sequence[str] = (), regions: bool = False,
                 targets: dict[int | str, Sequence[int]] | None = None) -> RunSpec:
    """The rules that look at the prepared training cases (labels and shapes on the network grid).

    ``structures``: the names prompted per slice when the network is promptable (labels or regions);
    ``regions``: the dataset declares overlapping regions (one sigmoid output each); ``targets``: what the
    postprocessing acts on — each label value (region name) → the class indices of ``train_labels`` it covers.
    """
    from medseg.training.networks import network_needs, network_size_divisor

    config, layout = start.config, start.layout
    if network_needs(config.network).promptable:
        return _complete_promptable(start, structures)
    fired = list(start.rules)
    spatial_dims, slice_axis = layout.spatial_dims, layout.slice_axis
    # judged where the planner judged it: a grid the plan coarsened makes any structure look thinner
    if start.planned_boundary_share is not None:
        structure = rules.rule_structure(start.planned_boundary_share,
                                         "the dataset's own grid (the plan's fingerprint)")
    else:
        structure = rules.rule_structure(boundary_share(train_labels, train_spacings, slice_axis=slice_axis),
                                         "the training labels")
    fired.append(structure)
    if targets:
        fired.append(rules.rule_one_piece(train_labels, targets))

    # an automatic plan's patch, batch and topology are for organs' context, not for thin structures
    from_plan = rules.uses_plan_patch(start.automatic_plan, structure.value)
    plan_options, plan_patch, plan_batch = ((start.plan_options, start.plan_patch, start.plan_batch) if from_plan
                                            else ({}, None, None))
    needs = network_needs(config.network)
    given = _merge_network_options(plan_options, config.network_options)
    options = dict(given)
    loss = config.loss
    if start.source is None:
        for rule in rules.rule_network_defaults(config.network, needs.training_defaults, given,
                                                user=set(config.network_options),
                                                reasons=needs.training_default_reasons):
            fired.append(rule)
            options[rule.name.split(".", 1)[1]] = rule.value
        loss_rule = rules.rule_loss(config.loss, config.network, needs.paper_loss, regions)
        fired.append(loss_rule)
        loss = loss_rule.value
    divisor = network_size_divisor(config.network, in_channels, num_classes, spatial_dims, options)
    shapes = [[s for a, s in enumerate(shape) if a != slice_axis] for shape in train_shapes]
    user_patch = tuple(config.patch_size) * spatial_dims if len(config.patch_size) == 1 else tuple(config.patch_size)
    if user_patch and len(user_patch) != spatial_dims:
        raise MedsegError(f"patch size {user_patch} does not match a {spatial_dims}D network")
    if start.source is None:
        patch = rules.rule_patch_size(user_patch, plan_patch, shapes, spatial_dims, divisor,
                                      replaced=None if from_plan else start.plan_patch)
        batch = rules.rule_batch_size(config.batch_size, plan_batch, patch.value)
    else:
        patch, batch = _source_patch_and_batch(start, user_patch, config.batch_size, needs.needs_input_size, divisor)
    tile = rules.rule_inference_tile(data_dims, spatial_dims, shapes, divisor, patch.value)
    fired += [patch, batch, tile]
    norm = None if start.source is not None else rules.rule_normalisation_layer(
        config.network, needs.norm_option, given, tile.value is not None)
    if norm is not None:
        fired.append(norm)
        if norm.value is not None:
            options[needs.norm_option] = norm.value
    if start.source is not None:
        from medseg.planning.device_rules import rule_source_setting

        fired.append(rule_source_setting("network", "Network", {"name": config.network, "options": options},
                                         config.network, start.source))
    interval = rules.rule_validation_interval(config.val_every, len(start.val_names))
    fired.append(interval)
    share = rules.rule_foreground_share(structure.value, config.foreground_share)
    augmentation = rules.rule_augmentation(structure.value, spatial_dims, config.augmentation,
                                           paper=(config.network, needs.paper_augmentation), patch_size=patch.value,
                                           train_cases=len(start.train_names))
    fired += [share, augmentation]
    if needs.needs_input_size:
        options["input_size"] = list(patch.value)
    resolved = replace(config, network_options=options, loss=loss, patch_size=tuple(patch.value), batch_size=batch.value,
                       foreground_share=share.value, augmentation=augmentation.value,
                       val_every=interval.value["every"], val_time_share=interval.value["time_share"])
    return RunSpec(resolved, layout, start.train_names, start.val_names, structure.value,
                   tuple(tile.value) if tile.value else None, tuple(fired))


def _source_patch_and_batch(start: RunStart, user_patch: Sequence[int], user_batch: int, needs_input_size: bool,
                            divisor: Sequence[int]) -> tuple[Rule, Rule]:
    """Fine-tuning: the source model's patch and batch size unless given (a network built for its input
    size keeps the source's patch)."""
    from medseg.planning.device_rules import rule_source_setting

    if user_patch and needs_input_size and tuple(user_patch) != tuple(start.plan_patch or ()):
        raise MedsegError(f"the {start.config.network} network was built for {tuple(start.plan_patch or ())} "
                          f"patches; --patch-size cannot change that when fine-tuning", start.source)
    if user_patch:
        patch = rules.rule_patch_size(user_patch, None, [], len(user_patch), divisor)
    else:
        patch = rule_source_setting("patch_size", "Training patch", list(start.plan_patch or ()),
                                    " × ".join(map(str, start.plan_patch or ())), start.source or "")
    if user_batch or not start.plan_batch:
        batch = rules.rule_batch_size(user_batch, None, patch.value)
    else:
        batch = rule_source_setting("batch_size", "Batch size", int(start.plan_batch),
                                    f"{start.plan_batch} patches per step", start.source or "")
    return patch, batch


def _complete_promptable(start: RunStart, structures: Sequence[str]) -> RunSpec:
    """A promptable network: whole framed slices, one jittered box per structure, the encoder rule."""
    from medseg.preprocessing.prompt_frame import MEDSAM_JITTER
    from medseg.training.networks import network_needs

    config = start.config
    needs = network_needs(config.network)
    if config.patch_size:
        raise MedsegError(f"{config.network} trains on whole slices framed at {needs.input_size}²: drop --patch-size")
    if config.loss not in (None, "mask_prompt"):
        raise MedsegError(f"{config.network} is trained with the prompt loss (Dice + BCE + IoU); drop --loss")
    fired = list(start.rules)
    frame = rules.rule_prompt_frame(config.network, int(needs.input_size))
    batch = rules.rule_batch_size(config.batch_size, None, frame.value)
    freeze = (rules.user_rule("freeze_encoder", "Image encoder", False, "staged", "--unfreeze-schedule")
              if config.unfreeze_schedule else rules.rule_prompt_encoder(config.freeze_encoder, config.network))
    prompt = rules.rule_prompt_training(MEDSAM_JITTER, structures)
    interval = rules.rule_validation_interval(config.val_every, len(start.val_names))
    fired += [frame, batch, freeze, prompt, rules.rule_prompt_validation(), interval]
    resolved = replace(config, patch_size=tuple(frame.value), batch_size=batch.value,
                       freeze_encoder=bool(freeze.value) if not config.unfreeze_schedule else None,
                       loss="mask_prompt", augmentation={"enabled": False}, foreground_share=1.0,
                       decision_threshold="argmax", postprocessing=[], memory_format="contiguous", precision="float32",
                       val_every=interval.value["every"], val_time_share=interval.value["time_share"])
    return RunSpec(resolved, start.layout, start.train_names, start.val_names, "prompted", None, tuple(fired))
