"""Case names and channel files: the one place that knows ``<case>_0000<ending>``.

nnU-Net v2 names the files of a case ``<case>_<channel:04d><ending>`` (one file per channel); labels,
predictions and ROIs are ``<case><ending>``. Every module that builds or parses such names calls these.
"""

from __future__ import annotations

import re
from pathlib import Path

from medseg.io.formats import strip_extension

#: Digits of the channel suffix (``_0000``).
CHANNEL_DIGITS = 4
_CHANNEL_SUFFIX = re.compile(rf"^(?P<case>.+)_(?P<channel>\d{{{CHANNEL_DIGITS}}})$")


def channel_file_name(case: str, channel: int, ending: str) -> str:
    """The file name of ``channel`` of ``case``.

    Examples
    --------
    >>> channel_file_name("liver_003", 0, ".nii.gz")
    'liver_003_0000.nii.gz'
    """
    return f"{case}_{channel:0{CHANNEL_DIGITS}d}{ending}"


def split_channel(stem: str) -> tuple[str, int | None]:
    """``("case", channel)`` for a name with a channel suffix, else ``(stem, None)``.

    Examples
    --------
    >>> split_channel("liver_003_0001"), split_channel("liver_003")
    (('liver_003', 1), ('liver_003', None))
    """
    match = _CHANNEL_SUFFIX.match(stem)
    if match is None:
        return stem, None
    return match.group("case"), int(match.group("channel"))


def channel_file_pattern(ending: str) -> re.Pattern:
    """A regular expression matching channel files with ``ending``: groups ``case`` and ``channel``.

    Examples
    --------
    >>> channel_file_pattern(".png").match("a_0002.png").group("case", "channel")
    ('a', '0002')
    """
    return re.compile(rf"^(?P<case>.+)_(?P<channel>\d{{{CHANNEL_DIGITS}}}){re.escape(ending)}$")


def case_name(path: str | Path) -> str:
    """The case a label, prediction, ROI or probability file belongs to: its name without the image
    (or ``.npz`` / ``.npy``) extension.

    Examples
    --------
    >>> case_name("labelsTr/liver_003.nii.gz"), case_name("p/liver_003.npz")
    ('liver_003', 'liver_003')
    """
    name = Path(path).name
    if name.lower().endswith((".npz", ".npy")):
        return name[:-4]
    return strip_extension(name)
