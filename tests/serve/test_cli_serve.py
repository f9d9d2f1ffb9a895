"""`medseg serve` on the command line: help, one-line errors (the running server is tested in test_browser)."""

from __future__ import annotations

from medseg.cli import main
from medseg.serve.server import bind, is_loopback


def test_serve_help_and_errors(tmp_path, capsys):
    assert main(["serve", "--help"]) == 0
    assert "--host" in capsys.readouterr().out
    assert main(["serve", str(tmp_path / "missing")]) == 1
    err = " ".join(capsys.readouterr().err.split())  # rich wraps long lines at the console width
    assert err.startswith("error:") and "missing: no such model folder" in err and "Traceback" not in err


def test_busy_port_is_a_clear_error(tmp_path):
    import pytest

    from medseg.errors import MedsegError

    first = bind("127.0.0.1", 0)
    try:
        port = first.getsockname()[1]
        with pytest.raises(MedsegError, match="choose another --port"):
            bind("127.0.0.1", port).close()
    finally:
        first.close()
    assert is_loopback("::1") and not is_loopback("192.168.1.10")
