"""The ``medseg`` command: one sub-command per stage.

Each sub-command lives in its own module here and registers itself on :data:`app`.
Errors derived from :class:`medseg.MedsegError` print one line and exit 1; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import importlib
import sys

import typer
from rich.console import Console
from rich.markup import escape
from typer.exceptions import TyperException

from medseg.errors import MedsegError

app = typer.Typer(
    name="medseg",
    help="Medical image segmentation: convert, check, plan, train, predict, evaluate, segment.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)

# Modules that add commands to `app`; each owns one stage.
COMMAND_MODULES = ("data", "evaluate", "segment", "train", "predict", "threshold", "plan", "nets", "serve")


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    """medseg — medical image segmentation on CPU and GPU."""


def _load_commands() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(f"medseg.cli.{name}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    _load_commands()
    try:
        rc = app(args=argv, standalone_mode=False)
    except MedsegError as exc:
        if debug:
            raise
        # escape: messages quote user text (paths, option values) that may contain [brackets]
        console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        return 1
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        return 130
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except SystemExit as exc:
        return int(exc.code or 0) if isinstance(exc.code, int) else 1
    except typer.Abort:
        return 1
    except TyperException as exc:  # usage errors (unknown option, missing argument): usage line + message
        # typer >= 0.26 vendors click, so its exceptions come from typer, not from a `click` package.
        show = getattr(exc, "show", None)
        if show is not None:
            show()
        else:
            console.print(f"[bold red]error:[/] {escape(exc.format_message())}", highlight=False)
        return int(exc.exit_code)
    except Exception as exc:  # unexpected failures: one line, not a traceback
        if debug:
            raise
        console.print(
            f"[bold red]error:[/] {type(exc).__name__}: {escape(str(exc))} (run with --debug for the traceback)",
            highlight=False,
        )
        return 1
    # In non-standalone mode click returns the exit code of `typer.Exit(code)` instead of raising it.
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":
    sys.exit(main())
