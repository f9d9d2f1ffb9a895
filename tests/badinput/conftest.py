"""The bad-input corpus: every input is generated here (no binary fixtures). One tiny dataset and one
tiny trained model are made once per session; each case then builds its bad input in its own folder.

Every case asserts what issue 16 asks of a refused run:
- the exit code (1 bad input, 2 usage);
- one line ``error: ...`` naming the file or option, and no traceback;
- nothing written: the case folder, the shared dataset and the model folder are byte-identical before
  and after (every file, hidden ones too, by SHA-256), so no output and no temporary is left and no
  input changed.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from medseg.cli import main


def snapshot(*roots: Path) -> dict[str, str]:
    """Every file and folder under ``roots`` (hidden included) with its SHA-256 (files) or 'dir'."""
    state: dict[str, str] = {}
    for root in roots:
        root = Path(root)
        if not root.exists():
            state[str(root)] = "absent"
            continue
        if root.is_file():
            state[str(root)] = hashlib.sha256(root.read_bytes()).hexdigest()
            continue
        for folder, dirs, files in os.walk(root):
            state[folder] = "dir"
            for name in files:
                path = os.path.join(folder, name)
                with open(path, "rb") as fh:
                    state[path] = hashlib.sha256(fh.read()).hexdigest()
    return state


class World:
    """The shared tiny dataset (2D vessels, RGB PNG) and a model trained on it for two iterations."""

    def __init__(self, root: Path):
        from medseg.datasets.synthetic import make_vessels2d

        self.root = root
        self.data = make_vessels2d(root / "data", cases=3, seed=0, size=32, test_cases=2)
        self.model = root / "model"
        code = main(["train", str(self.data), "--out", str(self.model), "--iterations", "2", "--patch-size", "32,32",
                     "--batch-size", "2", "--features", "4", "--depth", "2", "--no-progress", "--threads", "1"])
        assert code == 0, "the tiny model of the bad-input corpus did not train"
        # one good prediction first: `--backend auto` caches its export in the model folder on first use, which
        # a bad-input case must not be blamed for
        code = main(["predict", str(self.model), "-i", str(next((self.data / "imagesTs").iterdir())),
                     "-o", str(root / "first_prediction"), "--threads", "1"])
        assert code == 0, "the tiny model of the bad-input corpus did not predict"
        self.test_image = sorted((self.data / "imagesTs").iterdir())[0]
        self.test_label = self.data / "labelsTs" / self.test_image.name.replace("_0000", "")


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> World:
    return World(tmp_path_factory.mktemp("badinput_world"))


@pytest.fixture
def refused(world, tmp_path, capsys):
    """``refused(argv, names, code=1)``: run ``medseg argv`` in-process and check a clean refusal."""

    def run(argv: list, names: list | tuple = (), code: int = 1, error_line: bool = True) -> str:
        argv = [str(a) for a in argv]
        capsys.readouterr()
        before = snapshot(tmp_path, world.data, world.model)
        got = main(argv)
        out, err = capsys.readouterr()
        after = snapshot(tmp_path, world.data, world.model)
        text = out + err
        assert got == code, f"exit code {got}, expected {code}: {text}"
        assert "Traceback" not in text
        if error_line:
            lines = [line for line in err.splitlines() if line.startswith("error:")]
            assert len(lines) == 1, f"expected one error line, got: {err!r}"
            message = lines[0]
        else:
            message = text
        for name in names:
            assert str(name) in message, f"{name} not named in: {message}"
        added = sorted(set(after) - set(before))
        removed = sorted(set(before) - set(after))
        changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
        assert not added, f"output left behind: {added}"
        assert not removed and not changed, f"inputs changed: removed {removed}, changed {changed}"
        return message

    return run
