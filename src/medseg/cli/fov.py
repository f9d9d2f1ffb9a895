"""``medseg fov-record MODEL DATASET``: record the field-of-view rule in a model trained before medseg
recorded it (models trained now on fundus photographs with FOV ROIs record it themselves); ``medseg
predict`` then rescales every photograph to that FOV diameter (see
:func:`medseg.planning.device_rules.rule_field_of_view`)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer

from medseg.cli import app
from medseg.cli._consoles import err
from medseg.errors import MedsegError

console = err


@app.command("fov-record")
def fov_record(
    model: Path = typer.Argument(..., help="Model folder trained on fundus photographs."),
    dataset: Path = typer.Argument(..., help="Its training dataset (with field-of-view ROIs)."),
    fov_diameter: Optional[str] = typer.Option(None, "--fov-diameter", help="Record this diameter (pixels) or "
                                               "'none' instead of measuring it on the training ROIs."),
) -> None:
    """Record the field-of-view rule (the median aperture diameter of the model's training ROIs) in
    MODEL/config.json and rules.json.

    Example: medseg fov-record models/drive data/drive
    """
    from medseg.datasets import load_dataset
    from medseg.model_folder import load_config, load_rules, save_config, save_rules
    from medseg.planning.training_rules import describe
    from medseg.training.config import TrainingConfig
    from medseg.training.spec import field_of_view_rule

    config = load_config(model)
    ds = load_dataset(dataset)
    names = [c.name for c in ds.cases if c.name in set(config.train_cases)] if config.train_cases else \
        [c.name for c in ds.cases]
    if not names:
        raise MedsegError("none of the model's training cases is in this dataset", dataset)
    user = TrainingConfig(fov_diameter=fov_diameter).fov_diameter  # checked like `medseg train --fov-diameter`
    rule = field_of_view_rule(ds, user, names, config.data_dims)
    if rule is None or (rule.value is None and user is None):
        raise MedsegError("no field of view to record: the model's training cases are not colour photographs with "
                          "circular field-of-view ROIs (pass --fov-diameter PX)", dataset)
    save_config(model, replace(config, fov_diameter=rule.value))
    save_rules(model, [r for r in load_rules(model) if r.get("name") != rule.name] + [rule.to_dict()])
    console.print(describe(rule), highlight=False, markup=False)
