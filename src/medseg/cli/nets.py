"""``medseg nets``: list the registered networks with their dimensions, size and paper."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from medseg.cli import app
from medseg.cli._consoles import out


def network_table(in_channels: int = 1, num_classes: int = 2) -> list[dict]:
    """One row per registered network: name, dims, parameters per supported dimensionality, citation.

    Parameters
    ----------
    in_channels, num_classes : int
        The default configuration whose parameters are counted.

    Returns
    -------
    list of dict
        ``{"name", "dims", "parameters": {dims: count or None}, "input", "citation", "summary", "error"}``.

    Examples
    --------
    >>> rows = network_table()
    >>> any(r["name"] == "unet" for r in rows)
    True
    """
    from medseg.nets import NETWORKS
    from medseg.nets.meta import build_on_meta

    rows = []
    for entry in NETWORKS:
        dims = tuple(entry.metadata.get("dims", (2, 3)))
        params: dict[int, int | None] = {}
        divisors: dict[int, object] = {}
        error = None
        for d in dims:
            try:
                net = build_on_meta(entry.factory, in_channels=in_channels, num_classes=num_classes, spatial_dims=d)
                params[d] = sum(p.numel() for p in net.parameters())
                divisors[d] = getattr(net, "size_divisor", None)
            except Exception as exc:  # a network needing options still gets listed
                params[d] = None
                error = f"{type(exc).__name__}: {exc}"
        rows.append({
            "name": entry.name, "dims": list(dims), "parameters": params, "input": _input_size(entry.metadata, divisors),
            "citation": entry.metadata.get("citation", ""), "summary": entry.metadata.get("summary", ""),
            "error": error,
        })
    return rows


def _input_size(metadata: dict, divisors: dict) -> str:
    """What input a network takes: a fixed size it resizes to, or any size (multiples of its divisor pad nothing)."""
    if metadata.get("input_size"):
        n = metadata["input_size"]
        return f"{n}×{n} (resized)"
    if metadata.get("needs_input_size"):
        return "fixed at build (patch size)"
    text = {d: "×".join(map(str, v)) if isinstance(v, (tuple, list)) else str(v) for d, v in divisors.items()
            if v not in (None, 1)}
    if not text:
        return "any"
    if len(set(text.values())) == 1:
        return f"any (multiple of {next(iter(text.values()))} pads nothing)"
    return "any (multiple of " + ", ".join(f"{v} in {d}D" for d, v in text.items()) + " pads nothing)"


def _human(n: int | None) -> str:
    if n is None:
        return "?"
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.1f}k"


@app.command("nets")
def nets_command(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    in_channels: int = typer.Option(1, "--in-channels", help="Input channels of the counted configuration."),
    num_classes: int = typer.Option(2, "--num-classes", help="Classes of the counted configuration."),
) -> None:
    """List the networks: name, dimensions, parameters (default configuration), input size, citation.

    Example: medseg nets --in-channels 4 --num-classes 4 --json
    """
    rows = network_table(in_channels, num_classes)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"medseg networks (parameters for {in_channels} input channel(s), {num_classes} classes)")
    for column in ("name", "dims", "parameters", "input", "citation"):
        table.add_column(column, overflow="fold")
    for row in rows:
        counts = ", ".join(f"{d}D {_human(n)}" for d, n in row["parameters"].items())
        table.add_row(row["name"], "/".join(f"{d}D" for d in row["dims"]), counts, row["input"], row["citation"])
    out.print(table)


__all__ = ["network_table", "nets_command"]
