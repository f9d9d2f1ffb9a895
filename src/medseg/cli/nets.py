"""``medseg nets``: list the registered networks with their dimensions, size and paper."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from medseg.cli import app


def network_table(in_channels: int = 1, num_classes: int = 2) -> list[dict]:
    """One row per registered network: name, dims, parameters per supported dimensionality, citation.

    Parameters
    ----------
    in_channels, num_classes : int
        The default configuration whose parameters are counted.

    Returns
    -------
    list of dict
        ``{"name", "dims", "parameters": {dims: count or None}, "citation", "summary", "error"}``.

    Examples
    --------
    >>> rows = network_table()
    >>> any(r["name"] == "unet" for r in rows)
    True
    """
    from medseg.nets import NETWORKS
    from medseg.nets.meta import count_parameters

    rows = []
    for entry in NETWORKS:
        dims = tuple(entry.metadata.get("dims", (2, 3)))
        params: dict[int, int | None] = {}
        error = None
        for d in dims:
            try:
                params[d] = count_parameters(
                    entry.factory, in_channels=in_channels, num_classes=num_classes, spatial_dims=d
                )
            except Exception as exc:  # a network needing options still gets listed
                params[d] = None
                error = f"{type(exc).__name__}: {exc}"
        rows.append({
            "name": entry.name, "dims": list(dims), "parameters": params,
            "citation": entry.metadata.get("citation", ""), "summary": entry.metadata.get("summary", ""),
            "error": error,
        })
    return rows


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
    """List the networks: name, dimensions, parameters (default configuration), citation.

    Example: medseg nets --in-channels 4 --num-classes 4 --json
    """
    rows = network_table(in_channels, num_classes)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"medseg networks (parameters for {in_channels} input channel(s), {num_classes} classes)")
    for column in ("name", "dims", "parameters", "citation"):
        table.add_column(column, overflow="fold")
    for row in rows:
        counts = ", ".join(f"{d}D {_human(n)}" for d, n in row["parameters"].items())
        table.add_row(row["name"], "/".join(f"{d}D" for d in row["dims"]), counts, row["citation"])
    Console().print(table)


__all__ = ["network_table", "nets_command"]
