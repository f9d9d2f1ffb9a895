"""Where a result came from: software versions, machine and date, recorded in every model folder and
report so that a number can be traced to what produced it."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import sys

#: Packages whose versions change results (numerics, I/O); looked up without importing them.
_PACKAGES = ("medseg", "torch", "numpy", "scipy", "SimpleITK", "nibabel", "scikit-image", "onnxruntime")


def _version(package: str) -> str | None:
    if package == "medseg":
        from medseg import __version__

        return __version__
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def provenance() -> dict:
    """Versions of medseg, Python and the numerical packages, the machine and the date (UTC).

    Cheap: no package is imported (versions come from the installed metadata).

    Returns
    -------
    dict
        ``{"medseg": ..., "python": ..., "packages": {name: version}, "machine": {...}, "date": ISO 8601}``;
        a package that is not installed is left out.

    Examples
    --------
    >>> info = provenance()
    >>> sorted(info)
    ['date', 'machine', 'medseg', 'packages', 'python']
    """
    packages = {name: v for name in _PACKAGES[1:] if (v := _version(name)) is not None}
    return {
        "medseg": _version("medseg"),
        "python": platform.python_version(),
        "packages": packages,
        "machine": {
            "system": platform.system(), "release": platform.release(), "architecture": platform.machine(),
            "processor": platform.processor() or None, "cpu_count": os.cpu_count(), "hostname": platform.node(),
            "python_implementation": sys.implementation.name,
        },
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def version_line() -> str:
    """One line for ``medseg --version``: medseg, torch and Python versions.

    Examples
    --------
    >>> version_line().startswith("medseg ")
    True
    """
    torch = _version("torch") or "not installed"
    return f"medseg {_version('medseg')} (torch {torch}, Python {platform.python_version()}, {platform.machine()})"
