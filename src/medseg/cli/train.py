"""``medseg train DATASET --out MODEL``: train a network into a model folder, with automatic defaults."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import typer

from medseg.cli import app
from medseg.cli._consoles import err
from medseg.cli._options import parse_key_values, parse_value
from medseg.errors import MedsegError

console = err


def _parse_preprocessing(text: str | None) -> list[dict] | None:
    """``green_channel,clahe,zscore:mask=roi`` or a JSON list, or a path to a JSON file."""
    if not text:
        return None
    if Path(text).is_file():
        from medseg.io.jsonfile import read_json

        return read_json(Path(text), "preprocessing steps", list)
    if text.strip().startswith("["):
        try:
            steps = json.loads(text)
        except json.JSONDecodeError as exc:
            raise MedsegError(f"--preprocessing is not valid JSON: {exc}") from None
        return steps
    if text.strip().lower() == "none":
        return []
    steps = []
    for part in text.split(","):
        name, _, params = part.strip().partition(":")
        step: dict = {"name": name.strip()}
        for kv in filter(None, params.split(";")):
            key, _, value = kv.partition("=")
            step[key.strip()] = parse_value(value)
        steps.append(step)
    return steps


def _parse_augmentation(text: str | None) -> dict | None:
    """``--augmentation``: a JSON object, or a path to a .json file holding one; None keeps the defaults."""
    if not text:
        return None
    source = Path(text) if Path(text).is_file() else None
    if source is not None:
        from medseg.io.jsonfile import read_json

        return read_json(source, "augmentation configuration", dict)
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MedsegError(f"--augmentation is neither a .json file nor valid JSON: {exc}", source) from None
    if not isinstance(config, dict):
        raise MedsegError(f"--augmentation must be a JSON object such as {{\"transforms\": [...]}}; got {config!r}",
                          source)
    return config


def _parse_threshold(text: str | None) -> float | str | None:
    if text is None or text.strip().lower() == "argmax":
        return None if text is None else "argmax"
    try:
        return float(text)
    except ValueError:
        raise MedsegError(f"--decision-threshold must be a number in (0, 1) or 'argmax', not '{text}'") from None


def _parse_postprocessing(text: str | None) -> list[dict] | None:
    """``none`` or ``largest:1,fill_holes:2,min_size=20:1`` (STEP:LABEL; min_size in mm² / mm³)."""
    if text is None:
        return None
    if text.strip().lower() == "none":
        return []
    steps = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        head, _, label = part.rpartition(":")
        name, _, size = head.partition("=")
        try:
            step: dict = {"step": name.strip(), "label": int(label)}
            if name.strip() == "min_size":
                step["min_size"] = float(size)
        except ValueError:
            raise MedsegError(f"cannot read the postprocessing step '{part}'; write STEP:LABEL, e.g. largest:1 "
                              "or min_size=20:1") from None
        if step["step"] not in ("largest", "fill_holes", "min_size"):
            raise MedsegError(f"unknown postprocessing step '{name}' (largest, fill_holes, min_size)")
        steps.append(step)
    return steps


def _semi_supervised(labeled: str | None, unlabeled: Path | None, method: str | None,
                     options: list[str] | None) -> dict | None:
    """The semi-supervised settings the options ask for, or None (supervised training)."""
    if labeled is None and unlabeled is None and method is None and not options:
        return None
    # what is not given here is decided by the rules of medseg.planning.semi_supervised_rules
    settings: dict = dict(parse_key_values(options, "--ssl-option"))
    if method is not None:
        settings["method"] = method
    if labeled is not None:
        text = labeled.strip()
        settings["labeled"] = int(text) if text.isdigit() else [n.strip() for n in text.split(",") if n.strip()]
    if unlabeled is not None:
        settings["unlabeled_folder"] = str(unlabeled)
    return settings


def prepare_backend(folder: Path, trained_seconds: float, console) -> None:
    """The prepare-backend rule, recorded in rules.json and printed; when it says so, the backend built now."""
    import time

    from medseg.inference import Predictor
    from medseg.inference.predictor import is_promptable
    from medseg.model_folder import load_rules, save_rules
    from medseg.planning.training_rules import describe, rule_prepare_backend

    rule = rule_prepare_backend(trained_seconds, is_promptable(folder))
    save_rules(folder, [r for r in load_rules(folder) if r["name"] != rule.name] + [rule.to_dict()])
    console.print("  " + describe(rule), highlight=False, soft_wrap=True)
    if rule.value:
        start = time.perf_counter()
        try:
            Predictor.from_folder(folder).warm_up()
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/] building the inference backend: the model is complete, its first "
                          "prediction builds it")
            raise typer.Exit(130) from None
        console.print(f"inference backend built in {time.perf_counter() - start:.0f} s", highlight=False)


def _sigterm_as_interrupt(signum, frame):  # noqa: ANN001
    raise KeyboardInterrupt


@app.command(no_args_is_help=True)
def train(
    dataset: Path = typer.Argument(..., help="Dataset folder (with dataset.json)."),
    out: Path = typer.Option(..., "--out", "-o", help="Model folder to write."),
    net: str = typer.Option(None, "--net", help="Registered network (see `medseg nets`); default: "
                         "the network rule (U-Net; SegResNet-VAE for region datasets trained in 3D)."),
    fold: str = typer.Option(None, "--fold", help="Cross-validation fold K (the dataset's splits file, else grouped 5-fold splits) or 'all'."),
    val_cases: str = typer.Option(None, "--val-cases", help="Comma-separated validation case names."),
    time_limit: str = typer.Option(None, "--time-limit", help="Wall-clock budget, e.g. 20m, 90s, 1.5h."),
    iterations: int = typer.Option(None, "--iterations", help="Iteration count."),
    patch_size: str = typer.Option(None, "--patch-size", help="e.g. 96,96 (default: automatic)."),
    batch_size: int = typer.Option(0, "--batch-size", help="Patches per iteration (default: automatic)."),
    plan: Path = typer.Option(None, "--plan", help="plan.json from `medseg plan` (default: the dataset is planned "
                              "automatically with the same rules; MODEL/plan.json)."),
    configuration: str = typer.Option(None, "--configuration", help="'2d' or '3d': the plan's (or the automatic "
                                      "plan's) other configuration."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out exactly where it stopped."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing model folder."),
    seed: int = typer.Option(0, "--seed"),
    threads: int = typer.Option(None, "--threads", help="CPU threads (default: all cores)."),
    preprocessing: str = typer.Option(None, "--preprocessing",
                                      help="Steps, e.g. 'green_channel,clahe,zscore:mask=\"roi\"', a JSON list or file; 'none'."),
    features: int = typer.Option(None, "--features", help="Network width (first level)."),
    depth: int = typer.Option(None, "--depth", help="Network depth (down-sampling steps)."),
    lr: float = typer.Option(None, "--lr", help="Learning rate (default: the rule, 2e-3 AdamW, 1e-2 SGD)."),
    optimizer: str = typer.Option("adamw", "--optimizer", help="adamw or sgd (Nesterov)."),
    schedule: str = typer.Option("poly", "--schedule", help="poly, cosine or constant."),
    loss: str = typer.Option(None, "--loss", help="dice_ce, tversky_ce, dice, ce, vnet_dice, region. Default: the "
                             "loss rule (Dice + cross-entropy; a paper's network: its paper's loss)."),
    foreground_share: float = typer.Option(None, "--foreground-share", help="Share of patches centred on foreground "
                                           "(default: the rule, 0.2 for thin structures, else 0.5)."),
    decision_threshold: str = typer.Option(None, "--decision-threshold", help="Binary models: a foreground "
                                           "probability threshold, or 'argmax' (default: chosen on the validation cases)."),
    postprocessing: str = typer.Option(None, "--postprocessing", help="Recorded postprocessing: 'none', or steps like "
                                       "'largest:1,fill_holes:1,min_size=20:1' (STEP:LABEL; default: chosen on the "
                                       "validation cases)."),
    val_every: int = typer.Option(None, "--val-every", help="Validate every N iterations (default: the rule, every "
                                  "200, more when validation would take over 10% of the time)."),
    checkpoint_every: int = typer.Option(100, "--checkpoint-every", help="Checkpoint every N iterations."),
    no_augmentation: bool = typer.Option(False, "--no-augmentation", help="Switch data augmentation off."),
    augmentation: str = typer.Option(
        None, "--augmentation", help="Augmentation config: a JSON object or a .json file "
        '(e.g. \'{"transforms": [{"name": "flip"}, {"name": "affine", "p": 0.3}]}\'); default: the augmentation rule.'
    ),
    cache: str = typer.Option("memory", "--cache", help="memory (RAM) or mmap (memory-mapped .npy in MODEL/cache)."),
    memory_format: str = typer.Option("auto", "--memory-format", help="auto (time both on the first batch, keep "
                                      "the faster), contiguous or channels_last."),
    precision: str = typer.Option("auto", "--precision", help="Precision of the training passes: auto (float32 "
                                  "without bfloat16 hardware, else time both on the first batch and keep bfloat16 when "
                                  "clearly faster), float32 or bfloat16 (autocast)."),
    weight_average: float = typer.Option(None, "--weight-average", help="Decay of an exponential moving average "
                                         "of the weights, e.g. 0.999 (~1,000 steps); the average is validated, saved "
                                         "and predicted with (off by default: level with the last weights on DRIVE, "
                                         "PROMISE12 and OCT fluid)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar."),
    net_option: list[str] = typer.Option(
        None, "--net-option", help="Network option KEY=VALUE (VALUE parsed as JSON when it can be), repeatable: "
        "--net-option norm=batch --net-option upsample=interp."
    ),
    encoder_weights: Path = typer.Option(None, "--encoder-weights", help="Local torchvision-format state dict "
                                         "(.pth/.safetensors) loaded into the network's encoder (transfer learning)."),
    freeze_encoder: bool = typer.Option(None, "--freeze-encoder/--train-encoder", help="Train only the decoder; "
                                        "the encoder (and its batch-norm statistics) stays fixed (default: not "
                                        "frozen; promptable networks: the encoder rule)."),
    init_from_weights: str = typer.Option(None, "--init-from-weights", help="Start from the weights the network "
                                          "ships: 'released' (LiteMedSAM's, SHA-256 checked) or a state-dict file "
                                          "(default: the released weights when the network has them)."),
    unfreeze_schedule: str = typer.Option(None, "--unfreeze-schedule", help="Staged unfreezing, ITERATION:TARGET "
                                          "pairs, e.g. '0:decoder,500:encoder.layer4,1000:all'."),
    init_from: Path = typer.Option(None, "--init-from", help="Fine-tune: start from this trained model folder "
                                   "(its network, weights, preprocessing, labels and field-of-view normalisation); "
                                   "the fine-tuning rules set the defaults (lower learning rate, 5 minutes, no "
                                   "validation below 6 cases) and the lineage is recorded."),
    fov_diameter: str = typer.Option(None, "--fov-diameter", help="Fundus photographs: the training camera's "
                                     "field-of-view diameter to record (pixels), or 'none' (default: measured on the "
                                     "training ROIs of colour photographs)."),
    field_extent: str = typer.Option(None, "--field-extent", help="Volumes whose spacing was lost: bring every scan's "
                                     "in-plane side to the training volumes' median ('auto'; 'outliers': only the "
                                     "scans 1.5× from it or more) or to PX voxels, in "
                                     "training and prediction, or 'none' (default: a 3D network predicts the scans "
                                     "1.5× from the median at it; measured in BENCHMARKS.md)."),
    slice_context: int = typer.Option(None, "--slice-context", help="A 2D network on volumes: the neighbouring "
                                      "slices on each side it sees as extra channels (default: 0, none; the "
                                      "slice-context rule, measured in BENCHMARKS.md)."),
    labeled: str = typer.Option(None, "--labeled", help="Semi-supervised: the labelled training cases, a number N "
                                "(drawn with --seed) or comma-separated names; the other training cases (and those "
                                "without a label file) are used without labels."),
    unlabeled: Path = typer.Option(None, "--unlabeled", help="Semi-supervised: a folder of extra unlabelled images."),
    semi_supervised: str = typer.Option(None, "--semi-supervised", help="Method: bcp (bidirectional copy-paste, "
                                        "the default for 2D networks), mean_teacher, cps, or none (the --labeled "
                                        "cases, supervised only: the default for 3D networks, measured in "
                                        "BENCHMARKS.md)."),
    ssl_option: list[str] = typer.Option(
        None, "--ssl-option", help="Semi-supervised setting KEY=VALUE, repeatable: unlabeled_batch_size, weight, "
        "rampup (share of the budget), ema_decay, confidence_threshold, teacher_noise, copy_paste_size, pretrain (BCP), "
        "predict_with."
    ),
    nproc: int = typer.Option(1, "--nproc", help="Train in N processes on this machine (PyTorch "
                              "DistributedDataParallel; --batch-size is then per process, the cores are shared "
                              "among them). Several machines: torchrun ... -m medseg train (see the README)."),
) -> None:
    """Train a segmentation network on a dataset.

    Without --plan the dataset is planned automatically (`medseg plan`'s rules: 2D or 3D, voxel size,
    cropping, intensity normalisation, patch and batch size; written to MODEL/plan.json). Every option
    left out is decided by a named rule (validation cases, budget — the plan's, else 20
    minutes —, normalisation layer, foreground share, augmentation, patch and batch size, and after
    training the decision threshold and postprocessing), printed and recorded in MODEL/rules.json.
    Stops before training when `medseg check` finds problems. Ctrl-C (or kill) keeps the finished
    iterations; --resume continues.

    Example: medseg train data/drive --out models/drive --time-limit 20m --val-cases drive_39,drive_40

    Fine-tuning on a new device: medseg train data/stare5 --out models/stare --init-from models/drive
    """
    from medseg.training.config import TrainingConfig, parse_duration, parse_size, parse_unfreeze_schedule
    from medseg.training.loop import train as run

    from medseg.cli.guards import check_train_inputs

    check_train_inputs(dataset, out, plan=plan, lr=lr, batch_size=batch_size, iterations=iterations, threads=threads,
                       foreground_share=foreground_share, patch_size=parse_size(patch_size), features=features,
                       resume=resume)
    seconds = parse_duration(time_limit)
    options: dict = {}
    if features is not None:
        options["features"] = features
    if depth is not None:
        options["depth"] = depth
    options.update(parse_key_values(net_option, "--net-option"))
    config = TrainingConfig(
        network=net, network_options=options, patch_size=parse_size(patch_size), batch_size=batch_size,
        iterations=iterations, time_limit=seconds, optimizer=optimizer,
        learning_rate=lr, schedule=schedule, loss=loss, foreground_share=foreground_share, val_every=val_every,
        decision_threshold=_parse_threshold(decision_threshold), postprocessing=_parse_postprocessing(postprocessing),
        checkpoint_every=checkpoint_every, seed=seed, threads=threads, cache=cache, memory_format=memory_format,
        precision=precision, weight_average=weight_average,
        augmentation={"enabled": False} if no_augmentation else _parse_augmentation(augmentation),
        encoder_weights=str(encoder_weights) if encoder_weights else None, freeze_encoder=freeze_encoder,
        unfreeze_schedule=parse_unfreeze_schedule(unfreeze_schedule), init_weights=init_from_weights,
        semi_supervised=_semi_supervised(labeled, unlabeled, semi_supervised, ssl_option),
        init_from=str(init_from) if init_from else None, fov_diameter=fov_diameter,
        field_extent=field_extent, slice_context=slice_context,
    )
    previous = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        result = run(
            dataset, out, config, plan=plan, configuration=configuration, preprocessing=_parse_preprocessing(preprocessing),
            fold=fold, val_cases=[v.strip() for v in val_cases.split(",") if v.strip()] if val_cases else None,
            resume=resume, overwrite=overwrite, progress=progress, console=console, nproc=nproc,
        )
    except KeyboardInterrupt:
        console.print(f"[yellow]interrupted[/]: the last checkpoint is in {out}; continue with --resume")
        raise typer.Exit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    if result.rank == 0:  # the other processes of a torchrun-launched run print nothing
        prepare_backend(result.folder, result.elapsed, console)
        console.print(f"model folder: [bold]{result.folder}[/]")
