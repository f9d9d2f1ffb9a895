"""Running the service with uvicorn on an address the caller chooses (loopback by default)."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
from typing import Callable, Sequence

from medseg.constants import DEFAULT_BACKEND
from medseg.errors import MedsegError
from medseg.serve.limits import ServeLimits

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``.

    Examples
    --------
    >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("0.0.0.0")
    (True, True, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: a free port chosen by the system)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, int(port)))
    except OSError as exc:
        sock.close()
        raise MedsegError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --port") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def serve(model_folders: Sequence[str | Path], host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          limits: ServeLimits | None = None, *, backend: str = DEFAULT_BACKEND, work_dir: str | Path | None = None,
          predictor_options: dict | None = None, announce: Callable[[str], None] = print, log_level: str = "warning") -> None:
    """Serve the models until interrupted; ``announce`` receives the address line once listening.

    Examples
    --------
    >>> serve(["demo_output/model"], port=8000)      # doctest: +SKIP
    medseg serve: viewer at http://127.0.0.1:8000/ - API docs at http://127.0.0.1:8000/docs (Ctrl+C stops)
    """
    import uvicorn

    from medseg.serve.app import create_app

    app = create_app(model_folders, limits, backend=backend, work_dir=work_dir, predictor_options=predictor_options)
    sock = bind(host, port)
    url = url_of(sock)
    if not is_loopback(host):
        announce(f"warning: {host} is reachable from other machines and the service has no authentication")
    announce(f"medseg serve: viewer at {url} - API docs at {url}docs (Ctrl+C stops)")
    config = uvicorn.Config(app, log_level=log_level, access_log=False, timeout_graceful_shutdown=10)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
