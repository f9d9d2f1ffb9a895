"""``medseg serve``: the HTTP service (FastAPI) with a web viewer.

:func:`create_app` builds the application for some model folders under :class:`ServeLimits`; uploads are
checked and stored under server-chosen names (:mod:`medseg.serve.uploads`), predicted by worker processes
with a time limit (:mod:`medseg.serve.jobs`, :mod:`medseg.serve.worker`), and their results (label map,
volumes, lesion list, viewer slices) kept in a server-owned temporary folder (:mod:`medseg.serve.results`).
"""

from medseg.serve.limits import ServeLimits


def create_app(*args, **kwargs):
    """See :func:`medseg.serve.app.create_app` (imported lazily: FastAPI loads only when serving)."""
    from medseg.serve.app import create_app as _create_app

    return _create_app(*args, **kwargs)


__all__ = ["create_app", "ServeLimits"]
