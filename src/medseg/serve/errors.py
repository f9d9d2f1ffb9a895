"""The service's request errors: a one-line reason and the HTTP status that goes with it."""

from __future__ import annotations

from medseg.errors import MedsegError


class RequestError(MedsegError):
    """A request the service refuses; the app answers ``status`` with ``{"detail": message}``.

    Messages never contain the server's own file paths: they name what the client sent.
    """

    def __init__(self, status: int, message: str):
        self.status = int(status)
        super().__init__(message)
