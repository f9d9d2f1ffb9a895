"""Writing files so that nothing half-written is ever left behind, nothing unreadable to colleagues,
and nothing forgotten when a run is stopped.

- Every output is written under a temporary name in its own folder, then renamed (atomic on POSIX).
- Temporary names carry the writing process's id (``.NAME.medseg-PID.XXXX.tmp``), so a later run can
  remove what a killed run left (:func:`remove_stale_temporaries`) without touching a live run's files.
- Renamed files and folders get the permissions the umask allows (``mkstemp`` alone gives 0600/0700).
- :func:`handle_signals` turns SIGTERM (and SIGHUP) into :class:`KeyboardInterrupt`, so the clean-up in
  ``finally`` blocks runs for a stopped command exactly as for Ctrl-C.
- :func:`check_outputs` refuses an output that is, or lies inside, one of the command's inputs.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from typing import Iterable, Iterator

from medseg.errors import MedsegError

_TMP_MARK = ".medseg-"
# ".<name>.medseg-<pid>.<random>.tmp[<suffix>]" (file) or ".<name>.medseg-<pid>.<random>.tmp" (folder)
_TMP_PATTERN = re.compile(r"^\..+\.medseg-(?P<pid>\d+)\.[^.]+\.(tmp|old)")


def _full_suffix(path: Path) -> str:
    # Keep multi-part suffixes such as ".nii.gz" so writers that dispatch on the extension still work.
    return "".join(path.suffixes[-2:]) if path.name.endswith(".nii.gz") else path.suffix


def current_umask() -> int:
    """The process's umask, read without changing it where the system allows (Linux /proc)."""
    try:
        for line in Path("/proc/self/status").read_text(encoding="utf-8").splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: the classic read-by-setting, restored at once
    os.umask(mask)
    return mask


def share_like_umask(path: str | Path) -> None:
    """Give ``path`` (a file or a whole folder tree) the permissions a plain ``open``/``mkdir`` would."""
    path = Path(path)
    umask = current_umask()
    if path.is_dir():
        for root, dirs, files in os.walk(path):
            os.chmod(root, 0o777 & ~umask)
            for name in files:
                os.chmod(os.path.join(root, name), 0o666 & ~umask)
    elif path.exists():
        os.chmod(path, 0o666 & ~umask)


def temporary_prefix(name: str) -> str:
    """Prefix of a temporary name for the output ``name``, marked with this process's id."""
    return f".{name}{_TMP_MARK}{os.getpid()}."


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Remove temporary files and folders that a stopped or killed medseg run left in ``folder``.

    Only names written by :func:`atomic_path` / :func:`atomic_dir` whose process no longer runs are
    removed; a live run's temporaries are left alone.

    Returns
    -------
    list of Path
        What was removed.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / ".a.png.medseg-999999999.x1.tmp.png").write_bytes(b"")
    >>> [p.name for p in remove_stale_temporaries(folder)]
    ['.a.png.medseg-999999999.x1.tmp.png']
    """
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        match = _TMP_PATTERN.match(entry.name)
        if match is None or _pid_alive(int(match.group("pid"))):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def _temporary_name(path: Path, suffix: str) -> Path:
    # Named before it is created, inside the try whose finally removes it: with mkstemp/mkdtemp a SIGTERM
    # (raised as KeyboardInterrupt) that landed between creating the name and entering the try orphaned it
    # (seen in CI: test_sigterm_during_synth_leaves_no_hidden_folder).
    return path.parent / f"{temporary_prefix(path.name)}{secrets.token_hex(6)}{suffix}"


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The renamed file gets the permissions the umask allows.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "out.txt"
    >>> with atomic_path(target) as tmp:
    ...     _ = tmp.write_text("done", encoding="utf-8")
    >>> target.read_text(encoding="utf-8")
    'done'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_name(path, f".tmp{_full_suffix(path)}")
    try:
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except OSError as exc:
            raise MedsegError(f"cannot write in this folder: {exc.strerror}", path.parent) from None
        yield tmp
        if tmp.exists():
            share_like_umask(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; move it onto ``path`` only if the block succeeds.

    An existing ``path`` is replaced only after the new content is complete; the new tree gets the
    permissions the umask allows.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent)  # what a killed earlier run left beside it
    tmp = _temporary_name(path, ".tmp")
    try:
        try:
            tmp.mkdir(mode=0o700)
        except OSError as exc:
            raise MedsegError(f"cannot write in this folder: {exc.strerror}", path.parent) from None
        yield tmp
        share_like_umask(tmp)
        if path.exists():
            backup = Path(tempfile.mkdtemp(prefix=temporary_prefix(path.name), suffix=".old", dir=path.parent))
            os.replace(path, backup / path.name)
            os.replace(tmp, path)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def make_folder(path: str | Path) -> Path:
    """Create ``path`` (and parents) as ``mkdir -p`` does; a failure names the folder in one line."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise MedsegError("exists and is not a folder", path) from None
    except OSError as exc:
        raise MedsegError(f"cannot create folder: {exc.strerror}", path) from None
    return path


def _raise_interrupt(signum, frame):  # noqa: ARG001 - signal handler signature
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextlib.contextmanager
def handle_signals(signals: Iterable[int] = (signal.SIGTERM, signal.SIGHUP)) -> Iterator[None]:
    """Treat SIGTERM (and SIGHUP) like Ctrl-C inside the block, so every ``finally`` clean-up runs.

    The previous handlers are restored on exit. Outside the main thread (where Python cannot set
    handlers) the block runs unchanged.

    Examples
    --------
    >>> with handle_signals():
    ...     pass  # a long command: a SIGTERM here raises KeyboardInterrupt
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for signum in signals:
        try:
            previous[signum] = signal.signal(signum, _raise_interrupt)
        except (ValueError, OSError):  # not available on this platform
            pass
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _resolved(path: str | Path) -> Path:
    return Path(os.path.abspath(os.path.expanduser(str(path)))).resolve()


def check_outputs(outputs: Iterable[str | Path], inputs: Iterable[str | Path], option: str = "output") -> None:
    """Refuse an output that is one of the inputs, lies inside an input folder, or holds an input file.

    Parameters
    ----------
    outputs : paths
        Files or folders the command will write.
    inputs : paths
        Files or folders the command reads.
    option : str
        The option that names the outputs, for the message.

    Raises
    ------
    MedsegError
        Naming the output and the input it would touch.

    Examples
    --------
    >>> check_outputs(["pred"], ["images"])
    >>> check_outputs(["scan.nii.gz"], ["scan.nii.gz"], "-o")
    Traceback (most recent call last):
    ...
    medseg.errors.MedsegError: scan.nii.gz: -o is the input scan.nii.gz; outputs never replace inputs: choose another path
    """
    ins = [(Path(p), _resolved(p)) for p in inputs if p is not None]
    for out in outputs:
        if out is None:
            continue
        resolved = _resolved(out)
        for given, inp in ins:
            if resolved == inp:
                raise MedsegError(f"{option} is the input {given}; outputs never replace inputs: choose another path",
                                  out)
            if inp.is_dir() and resolved.is_relative_to(inp):
                raise MedsegError(f"{option} lies inside the input folder {given}; "
                                  "choose a folder outside the inputs", out)
            if resolved.is_dir() and inp.is_relative_to(resolved) and inp.is_file():
                raise MedsegError(f"{option} folder holds the input {given}; choose an empty or new folder", out)
