"""Planning commands: ``medseg plan``, ``medseg sparsify``, ``medseg splits``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from medseg.cli import app
from medseg.cli._consoles import out
from medseg.errors import MedsegError


def _fmt(values) -> str:
    return " × ".join(str(int(v)) if float(v).is_integer() else f"{float(v):.3g}" for v in values)


def print_plan(plan) -> None:
    """Render a Plan in words: the rules that fired, then the chosen and the alternative configuration."""
    from medseg.planning.describe import (CONFIGURATION_WORDS, describe_decision, describe_kernels, describe_strides,
                                          rule_title)
    from medseg.planning.plan import CONFIGURATION_FIELDS

    rules = Table(title=f"decisions for {plan.dataset or 'the dataset'} (each a named rule, recorded in plan.json)",
                  title_justify="left")
    rules.add_column("decision", style="bold", overflow="fold")
    rules.add_column("choice", overflow="fold")
    rules.add_column("why", overflow="fold")
    for r in plan.rules_fired:
        rules.add_row(rule_title(r["rule"], plan.channel_names), describe_decision(r["rule"], r["decision"]),
                      r["reason"])
    out.print(rules)
    table = Table(title="the two ways to train (configurations)", show_header=True, title_justify="left")
    table.add_column("", style="bold")
    configs = {plan.configuration: {k: getattr(plan, k) for k in CONFIGURATION_FIELDS}}
    configs.update(plan.alternatives)
    for name in configs:
        table.add_column(f"{name.upper()}{' (chosen)' if name == plan.configuration else ''}", overflow="fold")
    rows = [
        ("voxel size", lambda c: _fmt(c.get("target_spacing", plan.target_spacing)) + " mm"),
        ("training patch", lambda c: _fmt(c["patch_size"]) + " voxels"),
        ("patches per step", lambda c: str(c["batch_size"])),
        ("network width", lambda c: f"{c['network']['features']} filters in the first layer"),
        ("down-sampling", lambda c: describe_strides(c["network"]["strides"])),
        ("convolutions", lambda c: describe_kernels(c["network"]["kernel_sizes"])),
        ("time per step", lambda c: f"about {c['training']['estimated_step_seconds']:.1f} s (estimated)"),
        ("memory per step", lambda c: f"{c['training']['estimated_memory_gib']:.2f} GiB"),
        ("steps in the budget", lambda c: f"about {c['training']['iterations']:,}"),
    ]
    for label, get in rows:
        table.add_row(label, *[get(c) for c in configs.values()])
    out.print(table)
    for name in configs:
        out.print(CONFIGURATION_WORDS[name][0].upper() + CONFIGURATION_WORDS[name][1:], highlight=False)
    if len(configs) > 1:
        other = next(n for n in configs if n != plan.configuration)
        out.print(f"`medseg train --plan` trains the chosen {plan.configuration.upper()} configuration; add "
                  f"`--configuration {other}` for the other.", highlight=False)
    m = plan.machine
    out.print(f"{len(plan.channel_names)} channel(s) ({', '.join(plan.channel_names)}) · {plan.num_classes} network "
              f"outputs · planned for this machine: {m.get('cpu_cores')} {m.get('device', '').upper()} cores, "
              f"{m.get('ram_gib')} GiB RAM, {m.get('flops', 0) / 1e9:.0f} billion operations per second "
              f"({'measured' if m.get('flops_measured') else 'assumed; --measure times it'})"
              f"{', bfloat16 in hardware' if m.get('bfloat16') else ''}", highlight=False)


@app.command(no_args_is_help=True)
def plan(
    dataset: Path = typer.Argument(..., help="Dataset folder (with dataset.json)."),
    out_path: Path = typer.Option(Path("plan.json"), "--out", "-o", help="Where to write plan.json."),
    time_budget: str = typer.Option("60m", "--time-budget", help="Training wall-clock budget, e.g. 30m, 1.5h."),
    step_time: Optional[float] = typer.Option(None, "--step-time",
                                              help="Target seconds per training step (default 1.5 in 2D, 4 in 3D; "
                                                   "2 for a short stack in 3D on a machine without bfloat16 units)."),
    configuration: Optional[str] = typer.Option(None, "--config", help="Force '2d' or '3d' instead of the rule."),
    measure: bool = typer.Option(False, "--measure", help="Time a small forward/backward to measure this CPU/GPU."),
    workers: int = typer.Option(2, "--workers", help="Threads reading cases for the fingerprint."),
    cpu: bool = typer.Option(False, "--cpu", help="Plan for the CPU even when a GPU is present."),
) -> None:
    """Fingerprint a dataset and plan preprocessing, network, patch and batch for THIS machine.

    Writes plan.json (edit it freely; it is validated when read) and fingerprint.json beside it.

    Example: medseg plan ../shared/data/ACDC --out runs/acdc/plan.json --time-budget 60m
    """
    from medseg.datasets import load_dataset
    from medseg.fileutil import write_text_atomic
    from medseg.planning.automatic import plan_dataset
    from medseg.training.config import parse_duration

    from medseg.fileutil import check_outputs

    check_outputs([out_path, out_path.with_name("fingerprint.json")], [dataset], "--out")
    if configuration is not None and configuration.lower() not in ("2d", "3d"):
        raise MedsegError(f"--config must be 2d or 3d; got '{configuration}'")
    limit = parse_duration(time_budget)
    ds = load_dataset(dataset)
    with out.status(f"fingerprinting {len(ds.cases)} cases" + (" and measuring throughput" if measure else "")
                    + " ..."):
        result, fingerprint = plan_dataset(ds, time_limit=limit, step_seconds=step_time, configuration=configuration,
                                           measure=measure, use_gpu=not cpu, workers=workers)
    for warning in fingerprint["warnings"][:10]:
        out.print(f"[yellow]warning:[/] {warning}")
    print_plan(result)
    result.save(out_path)
    write_text_atomic(out_path.with_name("fingerprint.json"), json.dumps(fingerprint, indent=1) + "\n")
    out.print(f"wrote [bold]{out_path}[/] and {out_path.with_name('fingerprint.json')}")
    out.print("`medseg train --plan` decides the rest by rule from the prepared cases (validation cases, the shape "
              "of the structures, foreground share, augmentation, normalisation layer, inference tile; after "
              "training the decision threshold and postprocessing), prints them and records them in "
              "MODEL/rules.json", highlight=False)


@app.command(no_args_is_help=True)
def sparsify(
    dataset: Path = typer.Argument(..., help="Dense dataset folder."),
    dst: Path = typer.Argument(..., help="New sparse dataset folder."),
    slices_per_volume: int = typer.Option(3, "--slices-per-volume", help="Annotated slices kept per volume."),
    axis: int = typer.Option(0, "--axis", help="Spatial array axis the slices are taken across."),
    seed: int = typer.Option(0, "--seed", help="Same seed, same slices."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace DST if it exists."),
) -> None:
    """Copy a dataset keeping only a few labelled slices per training volume (the rest: 'ignore').

    Example: medseg sparsify ../shared/data/ACDC /tmp/acdc_sparse --slices-per-volume 3
    """
    from medseg.datasets import load_dataset
    from medseg.datasets.sparsify import sparsify_dataset

    ds = load_dataset(dataset)
    with out.status(f"sparsifying {len(ds.cases)} cases ..."):
        path = sparsify_dataset(ds, dst, slices_per_volume, axis, seed, overwrite=overwrite)
    from medseg.io.jsonfile import read_json

    ignore = read_json(path / "dataset.json", "dataset description")["sparse_annotation"]["ignore_label"]
    out.print(f"wrote [bold]{path}[/]: {slices_per_volume} slice(s) per volume along axis {axis}, "
              f"other voxels = ignore ({ignore})")


@app.command(no_args_is_help=True)
def splits(
    dataset: Path = typer.Argument(..., help="Dataset folder."),
    folds: int = typer.Option(5, "--folds", help="Number of folds for new splits."),
    seed: int = typer.Option(0, "--seed", help="Shuffling seed for new splits."),
    out_path: Optional[Path] = typer.Option(None, "--out", "-o",
                                            help="Write the splits here (default: DATASET/splits.json if it has none)."),
) -> None:
    """Show a dataset's cross-validation splits, creating grouped k-fold splits when it has none.

    A dataset's own splits file is honoured (nnU-Net list of folds, or one {"train", "val"} split).
    Without --out, new splits are written to DATASET/splits.json; an existing file is never replaced.

    Example: medseg splits /tmp/drive --folds 5 --seed 0 --out /tmp/drive_splits.json
    """
    from medseg.datasets import load_dataset
    from medseg.datasets.splits import load_or_create_splits, save_splits

    ds = load_dataset(dataset)
    existing = ds.splits_path
    result = load_or_create_splits(ds, folds=folds, seed=seed)
    table = Table(title=f"splits of {ds.name}" + (f" (from {existing})" if existing else " (new)"), title_justify="left")
    for column in ("fold", "train", "val", "first val cases"):
        table.add_column(column)
    for i, fold in enumerate(result):
        table.add_row(str(i), str(len(fold["train"])), str(len(fold["val"])), ", ".join(fold["val"][:4]))
    out.print(table)
    target = out_path if out_path is not None else (None if existing else Path(dataset) / "splits.json")
    if target is not None:
        if out_path is None and target.exists():
            raise MedsegError("exists already; not replaced", target)
        save_splits(result, target)
        out.print(f"wrote [bold]{target}[/]")
