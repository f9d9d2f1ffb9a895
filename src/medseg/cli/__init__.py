"""The ``medseg`` command: one sub-command per stage.

Each sub-command lives in its own module here and registers itself on :data:`app`.
Errors derived from :class:`medseg.MedsegError` print one line and exit 1; ``--debug`` shows the traceback.

Exit codes (:mod:`medseg.errors`): 0 done, 1 bad input (one line names the file or option and the
problem), 2 usage (unknown option, missing argument), 130 interrupted (Ctrl-C or SIGTERM; temporary
files removed, no partial output).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
import warnings

import typer
from rich.markup import escape
from typer.exceptions import TyperException

from medseg.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, MedsegError, one_line
from medseg.fileutil import handle_signals

app = typer.Typer(
    name="medseg",
    help="Medical image segmentation: convert, check, plan, train, predict, evaluate, segment.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# soft_wrap: an error is one line whatever the terminal width (rich would otherwise wrap at 80 columns).
from medseg.cli._consoles import err as console  # noqa: E402

# Modules that add commands to `app`; each owns one stage.
COMMAND_MODULES = ("data", "evaluate", "segment", "train", "predict", "threshold", "plan", "nets", "dicom",
                   "prompt", "cascade", "fov", "serve", "fewlabels", "localise")


def _print_version(value: bool) -> None:
    if value:
        from medseg.provenance import version_line

        typer.echo(version_line())
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print the medseg, torch and Python versions and exit."),
) -> None:
    """medseg — medical image segmentation on CPU and GPU.

    Exit codes: 0 done, 1 bad input, 2 usage error, 130 interrupted (SIGINT/SIGTERM).
    """


def print_error(message: str) -> None:
    """Print ``message`` as medseg's one-line error on stderr (no wrapping, markup escaped)."""
    # escape: messages quote user text (paths, option values) that may contain [brackets]
    console.print(f"[bold red]error:[/] {escape(one_line(message))}", highlight=False, soft_wrap=True)


@contextlib.contextmanager
def _quiet_third_parties():
    """Third-party warnings (ITK's stderr notes, library UserWarnings) are not medseg's message: a
    problem they hint at surfaces as medseg's own one-line error instead."""
    itk = None
    if "SimpleITK" in sys.modules or importlib.util.find_spec("SimpleITK") is not None:
        import SimpleITK as itk

        shown = itk.ProcessObject.GetGlobalWarningDisplay()
        itk.ProcessObject.SetGlobalWarningDisplay(False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"^(?!medseg)")
        try:
            yield
        finally:
            if itk is not None:
                itk.ProcessObject.SetGlobalWarningDisplay(shown)


def _load_commands() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(f"medseg.cli.{name}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    argv = [str(a) for a in (sys.argv[1:] if argv is None else argv)]  # paths may be given as Path objects
    debug = "--debug" in argv
    _load_commands()
    try:
        with handle_signals(), _quiet_third_parties():
            rc = app(args=argv, standalone_mode=False)
    except MedsegError as exc:
        if debug:
            raise
        print_error(str(exc))
        return EXIT_BAD_INPUT
    except KeyboardInterrupt as exc:
        console.print(f"[yellow]interrupted{f' ({exc})' if str(exc) else ''}[/]: no partial output kept",
                      highlight=False)
        return EXIT_INTERRUPTED
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
            print_error(exc.format_message())
        return int(exc.exit_code)
    except Exception as exc:  # unexpected failures: one line, not a traceback
        if debug:
            raise
        print_error(f"{type(exc).__name__}: {exc} (run with --debug for the traceback)")
        return EXIT_BAD_INPUT
    # In non-standalone mode click returns the exit code of `typer.Exit(code)` instead of raising it.
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":
    sys.exit(main())
