"""The command line's rich consoles, built in one place (every CLI module imports them from here).

``err``: messages, progress bars and errors on stderr, with ``soft_wrap`` so that a line is never split
at the terminal width (an error stays one line, whatever the length of the paths in it). ``out``: results
(tables, summaries) on stdout. A console looks up ``sys.stdout`` / ``sys.stderr`` when it prints, so
captured or redirected streams work as with a console built on the spot.
"""

from __future__ import annotations

from rich.console import Console

err = Console(stderr=True, soft_wrap=True)
out = Console()
