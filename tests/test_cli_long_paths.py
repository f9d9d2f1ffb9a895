"""Errors are one line whatever the length of the paths in them (issue 15 item 7): ``make test`` once failed
because rich wrapped an error at 80 columns at a place that depended on the temporary folder's length.
Also: the public vocabulary is documented (the package docstring's glossary, issue 15 item 6)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import medseg
from medseg.cli import main

LONG = "x" * 150  # a temporary folder as long as some CI runners' (and longer than a terminal line)


def _errors(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize("command", [
    ["predict", "{long}/missing_model", "-i", "{long}/in", "-o", "{long}/out"],
    ["train", "{long}/missing_dataset", "--out", "{long}/model", "--iterations", "1"],
    ["evaluate", "{long}/pred", "{long}/labels", "--out", "{long}/eval"],
])
def test_error_is_one_line_with_the_whole_path(tmp_path, capsys, command):
    root = tmp_path / LONG / LONG
    root.mkdir(parents=True)
    args = [a.format(long=root) for a in command]
    assert main(args) == 1
    err = capsys.readouterr().err
    errors = _errors(err)
    assert len(errors) == 1, err
    assert str(root) in errors[0]  # the path is not cut by a wrap


def test_error_is_one_line_in_a_narrow_terminal_under_a_long_tmpdir(tmp_path):
    """The CLI in its own process, with TMPDIR 150+ characters long and a 40-column terminal."""
    tmp = tmp_path / LONG
    tmp.mkdir()
    src = Path(medseg.__file__).resolve().parents[1]
    env = {**os.environ, "TMPDIR": str(tmp), "COLUMNS": "40", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")])}
    model = tmp / "no_such_model"
    done = subprocess.run([sys.executable, "-m", "medseg", "predict", str(model), "-i", str(tmp), "-o",
                           str(tmp / "out")], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    errors = _errors(done.stderr)
    assert len(errors) == 1 and str(model) in errors[0], done.stderr


def test_the_vocabulary_is_documented():
    """DESIGN's vocabulary (one word per idea) is the package docstring's glossary."""
    doc = medseg.__doc__
    assert "Glossary" in doc
    for word in ("roi", "label_map", "labels", "regions", "num_classes", "spacing", "case", "seed",
                 "lower / upper", "tile / patch"):
        assert f"\n{word}\n" in doc or f"``{word}``" in doc, word
    assert "never ``random_state``" in doc and "never ``mask``" in doc
