"""Errors that medseg reports to users as one clear message (the CLI prints them without a traceback)."""

from __future__ import annotations

from pathlib import Path


class MedsegError(Exception):
    """A problem with the user's input or configuration, worded for the user.

    Parameters
    ----------
    message : str
        What is wrong and, where possible, what to do about it.
    path : path-like, optional
        The file or folder concerned; it is named first in the message.
    """

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = Path(path) if path is not None else None
        self.message = one_line(message)  # library messages (nibabel, ITK) may span lines; ours never do
        super().__init__(f"{self.path}: {self.message}" if self.path is not None else self.message)


class ImageReadError(MedsegError):
    """A file or folder could not be read as an image."""


class ImageWriteError(MedsegError):
    """An image could not be written."""


class DatasetError(MedsegError):
    """A dataset folder or its dataset.json is malformed."""


class GeometryError(MedsegError):
    """Images that must share a voxel grid do not."""


#: Exit codes of the ``medseg`` command (documented in the README's "Exit codes" section).
EXIT_OK = 0
#: Bad input: a file, folder or option value that medseg refused (one line names it and the problem).
EXIT_BAD_INPUT = 1
#: Usage error: unknown option, missing argument (click's convention).
EXIT_USAGE = 2
#: Interrupted by Ctrl-C (SIGINT) or SIGTERM; temporary files were removed (128 + SIGINT).
EXIT_INTERRUPTED = 130


def one_line(text: str) -> str:
    """``text`` with its line breaks folded, so an error prints as a single line.

    Examples
    --------
    >>> one_line("cannot read:\\n  truncated file\\n")
    'cannot read: truncated file'
    """
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())
