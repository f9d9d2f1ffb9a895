"""``medseg threshold MODEL DATASET``: (re-)choose a binary model's decision threshold on held-out cases.

`medseg train` already chooses it on the validation cases (the decision-threshold rule); this command
re-chooses it, e.g. with test-time augmentation or another metric."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from medseg.constants import DEFAULT_BACKEND
from medseg.cli import app
from medseg.cli._consoles import err
from medseg.cli._options import TTA_AXES_HELP, tta_choice
from medseg.errors import MedsegError

console = err


@app.command("threshold")
def threshold_command(
    model: Path = typer.Argument(..., help="Model folder (binary softmax model)."),
    dataset: Path = typer.Argument(..., help="Dataset with the cases to choose on (never the test set)."),
    cases: str = typer.Option(None, "--cases", help="Comma-separated case names (default: the model's "
                              "validation cases, else its training cases)."),
    metric: str = typer.Option("accuracy", "--metric", help="accuracy or f1 (pixels inside each case's ROI)."),
    tile_size: str = typer.Option(None, "--tile-size", help="Sliding-window tile, as for `medseg predict`."),
    backend: str = typer.Option(DEFAULT_BACKEND, "--backend", help="auto (default), torch, onnx or compile, as for `medseg predict`."),
    tta: bool = typer.Option(None, "--tta/--no-tta", help="Mirroring test-time augmentation, as for `medseg predict` "
                             "(default: the model's recorded choice, which predict uses too — averaging flips "
                             "changes the probabilities)."),
    tta_axes: str = typer.Option(None, "--tta-axes", help=TTA_AXES_HELP),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the choice without writing it."),
) -> None:
    """Choose the foreground probability threshold that maximises pixel accuracy (or F1) on given cases,
    and record it in MODEL/config.json; `medseg predict` then labels foreground where p ≥ threshold.

    The search is exact (every distinct probability value) — except for a model whose postprocessing keeps
    the foreground's largest component: its threshold is chosen on that component, as `medseg predict` outputs
    it (every 0.05, then 0.01 around the best). Pick the threshold on cases the model did not
    train on when there are any; choosing it on the test set would make the test score optimistic.

    Example: medseg threshold model/ dataset/ --metric accuracy
    """
    from dataclasses import replace

    from medseg.datasets import load_dataset
    from medseg.inference.predictor import Predictor
    from medseg.planning.threshold import choose_threshold
    from medseg.planning.training_rules import THRESHOLD_MIN_CASES
    from medseg.model_folder import load_config, save_config
    from medseg.training.config import parse_size

    config = load_config(model)
    if config.regions or config.num_classes != 2:
        raise MedsegError("a decision threshold needs a binary (2-class softmax) model", model)
    data = load_dataset(dataset)
    names = [c for c in cases.split(",") if c] if cases else (config.val_cases or config.train_cases)
    if not names:
        raise MedsegError("no cases to choose the threshold on: pass --cases", model)
    if not cases and not config.val_cases:
        console.print("[yellow]warning:[/] the model has no validation cases: choosing on its training cases, "
                      "which makes the threshold optimistic (pass --cases with held-out cases)", highlight=False)
    if len(names) < THRESHOLD_MIN_CASES:
        console.print(f"[yellow]warning:[/] {len(names)} case(s): a threshold chosen on fewer than "
                      f"{THRESHOLD_MIN_CASES} is noise (one image's optimum is far from another's; training chooses "
                      "none on so few)", highlight=False)
    foreground = config.label_values[1]
    predictor = Predictor.from_folder(model, backend=backend, tile_size=parse_size(tile_size) or None,
                                     tta=tta_choice(tta, tta_axes))
    probabilities, references, rois = [], [], []
    for name in names:
        case = data.case(name)
        label = case.read_label()
        if label is None:
            raise MedsegError(f"case '{name}' has no label", dataset)
        roi = case.read_roi()
        probabilities.append(predictor.predict_probabilities(case.read_image(), roi).array[1])
        references.append(label.array[0] == foreground)
        rois.append(None if roi is None else roi.array[0])
    largest = any(s.get("step") == "largest" and s.get("label") == foreground for s in config.postprocessing or [])
    chosen, score, at_half = choose_threshold(probabilities, references, rois, metric, largest_component=largest)

    table = Table(title=f"decision threshold on {len(names)} case(s) ({', '.join(names[:4])}"
                        f"{', …' if len(names) > 4 else ''}){', largest component' if largest else ''}")
    table.add_column("threshold")
    table.add_column(metric)
    table.add_row("0.5 (argmax)", f"{at_half:.4f}")
    table.add_row(f"{chosen:.4f} (best)", f"{score:.4f}")
    console.print(table)
    if dry_run:
        return
    save_config(model, replace(config, decision_threshold=chosen))
    console.print(f"wrote decision_threshold {chosen:.4f} to {Path(model) / 'config.json'}", highlight=False)
