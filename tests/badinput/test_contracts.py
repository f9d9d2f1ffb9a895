"""The file contracts and the reliability machinery behind the bad-input corpus: lossless label outputs,
permissions, signals, stale temporaries, one-line errors, versions and provenance."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from medseg.cli import main
from medseg.errors import MedsegError
from medseg.fileutil import atomic_path, check_outputs, handle_signals, remove_stale_temporaries, temporary_prefix
from medseg.image import Image
from medseg.io import read_image, write_image

SRC = Path(__file__).resolve().parents[2] / "src"


def test_jpeg_input_gets_a_lossless_png_label_map(world, tmp_path, capsys):
    rgb = np.asarray(PILImage.open(world.test_image).convert("RGB"))
    PILImage.fromarray(rgb).save(tmp_path / "eye.jpg", quality=80)
    assert main(["predict", world.model, "-i", tmp_path / "eye.jpg", "-o", tmp_path / "out"]) == 0
    err = capsys.readouterr().err
    assert "written as .png" in err and ".jpg is lossy" in err
    # roi/: the field of view found in the photograph (a fundus model records its FOV)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["eye.png", "lesions.json", "roi", "volumes.csv"]
    assert [p.name for p in (tmp_path / "out" / "roi").iterdir()] == ["eye.png"]
    labels = read_image(tmp_path / "out" / "eye.png")
    assert set(np.unique(labels.array).tolist()) <= {0, 1}  # exact label values, no JPEG artefacts
    assert labels.spatial_shape == rgb.shape[:2]


@pytest.mark.parametrize("umask,file_mode,dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700),
                                                      (0o002, 0o664, 0o775)])
def test_written_files_follow_the_umask(world, tmp_path, umask, file_mode, dir_mode):
    old = os.umask(umask)
    try:
        assert main(["predict", world.model, "-i", world.test_image, "-o", tmp_path / "out", "--probabilities"]) == 0
        assert main(["synth", "vessels2d", tmp_path / "synth", "--cases", "1", "--size", "16"]) == 0
    finally:
        os.umask(old)
    files = [p for p in list((tmp_path / "out").rglob("*")) + list((tmp_path / "synth").rglob("*"))]
    assert files
    for path in files:
        mode = path.stat().st_mode & 0o777
        assert mode == (dir_mode if path.is_dir() else file_mode), f"{path}: {oct(mode)}"
    assert (tmp_path / "synth").stat().st_mode & 0o777 == dir_mode


def test_version(capsys):
    assert main(["--version"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("medseg ") and "torch" in line and "Python" in line


def test_error_is_one_line_at_any_width(tmp_path, capsys, monkeypatch):
    long = tmp_path / ("deep_" * 30) / "image.nii.gz"
    for columns in ("40", "80", "300"):
        monkeypatch.setenv("COLUMNS", columns)
        assert main(["segment", "otsu", long, "-o", tmp_path / "seg.nii.gz"]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error:") and str(long) in err


def test_native_library_noise_is_folded_into_one_line(tmp_path):
    # ITK's MetaIO prints to file descriptor 2 itself; only a subprocess sees that.
    write_image(Image(np.random.default_rng(0).random((1, 8, 16, 16)).astype(np.float32)), tmp_path / "full.mha")
    data = (tmp_path / "full.mha").read_bytes()
    (tmp_path / "cut.mha").write_bytes(data[: len(data) // 2])
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "medseg", "segment", "otsu", str(tmp_path / "cut.mha"), "-o",
                           str(tmp_path / "seg.nii.gz")], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "cut.mha" in proc.stderr and "truncated" in proc.stderr, proc.stderr


def test_sigterm_becomes_an_interrupt_and_handlers_are_restored():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        with handle_signals():
            os.kill(os.getpid(), signal.SIGTERM)
            signal.sigtimedwait([], 0) if hasattr(signal, "sigtimedwait") else None
            for _ in range(1000):
                pass
    assert signal.getsignal(signal.SIGTERM) is before


def test_interrupted_write_leaves_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(tmp_path / "a.nii.gz") as tmp:
            tmp.write_bytes(b"half")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_stale_temporaries_of_dead_runs_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    stale = tmp_path / f".case.png.medseg-{pid}.abc.tmp.png"
    stale.write_bytes(b"")
    stale_dir = tmp_path / f".dataset.medseg-{pid}.xyz.tmp"
    stale_dir.mkdir()
    live = tmp_path / f"{temporary_prefix('other.png')}def.tmp.png"
    live.write_bytes(b"")
    kept = tmp_path / ".hidden_but_not_ours"
    kept.write_bytes(b"")
    assert sorted(p.name for p in remove_stale_temporaries(tmp_path)) == sorted([stale.name, stale_dir.name])
    assert live.exists() and kept.exists()


def test_predict_rerun_removes_what_a_killed_run_left(world, tmp_path):
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)
    (tmp_path / "out" / "probabilities").mkdir(parents=True)
    left = [tmp_path / "out" / f".eye.png.medseg-{dead}.q.tmp.png",
            tmp_path / "out" / "probabilities" / f".eye.tif.medseg-{dead}.q.tmp.tif"]
    for path in left:
        path.write_bytes(b"")
    assert main(["predict", world.model, "-i", world.test_image, "-o", tmp_path / "out", "--probabilities"]) == 0
    hidden = [p for p in (tmp_path / "out").rglob(".*")]
    assert hidden == []


def test_outputs_never_touch_inputs(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(b"x")
    check_outputs([tmp_path / "pred"], [tmp_path / "images"])
    for bad in (tmp_path / "images", tmp_path / "images" / "sub", tmp_path / "images" / "a.png"):
        with pytest.raises(MedsegError):
            check_outputs([bad], [tmp_path / "images"])


def test_evaluation_records_provenance(tmp_path):
    for folder in ("gt", "pred"):
        array = np.zeros((1, 4, 8, 8), np.uint8)
        array[0, 1:3, 2:6, 2:6] = 1
        write_image(Image(array), tmp_path / folder / "c.nii.gz")
    assert main(["evaluate", tmp_path / "pred", tmp_path / "gt", "--out", tmp_path / "ev", "--workers", "1"]) == 0
    made = json.loads((tmp_path / "ev" / "summary.json").read_text(encoding="utf-8"))["provenance"]
    assert made["medseg"] and made["python"] and "torch" in made["packages"] and made["date"] and made["machine"]
    assert "made with: medseg" in (tmp_path / "ev" / "report.md").read_text(encoding="utf-8")


def test_one_label_policy_in_dataset_and_evaluator(tmp_path):
    from medseg.datasets.dataset import _read_mask
    from medseg.metrics.evaluator import _read_label_map

    whole = tmp_path / "whole.nii.gz"
    write_image(Image(np.array([[[[0.0, 2.0]]]], np.float32)), whole)
    assert _read_mask(whole, "label").array.tolist() == _read_label_map(whole, "prediction")[0].array.tolist()
    fraction = tmp_path / "fraction.nii.gz"
    write_image(Image(np.array([[[[0.0, 1.5]]]], np.float32)), fraction)
    for reader in (lambda: _read_mask(fraction, "label"), lambda: _read_label_map(fraction, "prediction")):
        with pytest.raises(MedsegError, match="whole numbers") as info:
            reader()
        assert str(fraction) in str(info.value)


def test_nifti2_is_read(tmp_path):
    import nibabel as nib

    affine = np.diag([0.5, 0.7, 2.0, 1.0])
    nib.save(nib.Nifti2Image(np.arange(60, dtype=np.int16).reshape(3, 4, 5), affine), tmp_path / "n2.nii.gz")
    nib.save(nib.Nifti1Image(np.arange(60, dtype=np.int16).reshape(3, 4, 5), affine), tmp_path / "n1.nii.gz")
    two, one = read_image(tmp_path / "n2.nii.gz"), read_image(tmp_path / "n1.nii.gz")
    assert np.array_equal(two.array, one.array) and two.geometry_difference(one) is None


def test_truncated_dicom_is_named(tmp_path):
    import SimpleITK as sitk

    sitk.WriteImage(sitk.GetImageFromArray(np.arange(64 * 64, dtype=np.int16).reshape(64, 64)), str(tmp_path / "a.dcm"))
    data = (tmp_path / "a.dcm").read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[: len(data) - 4000])
    with pytest.raises(MedsegError) as info:
        read_image(tmp_path / "cut.dcm")
    assert str(tmp_path / "cut.dcm") in str(info.value)


def test_sigterm_during_synth_leaves_no_hidden_folder(tmp_path):
    import time

    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "medseg", "synth", "organs3d", str(tmp_path / "d"), "--cases", "60",
                             "--size", "16,32,32"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and not any(tmp_path.iterdir()):
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("synth finished before the signal")
    assert proc.returncode == 130, err
    assert list(tmp_path.iterdir()) == [], "a hidden temporary folder was left"


def test_raster_sizes_are_reported_in_pixels(world, tmp_path):
    assert main(["predict", world.model, "-i", world.data / "imagesTs", "-o", tmp_path / "p"]) == 0
    volumes = (tmp_path / "p" / "volumes.csv").read_text(encoding="utf-8")
    assert "pixels" in volumes and "mm2" not in volumes
    assert main(["evaluate", tmp_path / "p", world.data / "labelsTs", "--out", tmp_path / "ev", "--workers", "1"]) == 0
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text(encoding="utf-8"))
    assert summary["settings"]["length_unit"] == "px"


def test_check_warns_when_every_volume_has_1mm_spacing(tmp_path):
    from medseg.datasets.check import check_dataset
    from medseg.datasets.synthetic import make_organs3d

    lost = check_dataset(make_organs3d(tmp_path / "a", cases=2, seed=0, shape=(4, 8, 8), spacing=(1.0, 1.0, 1.0)))
    assert lost.ok and any("1×1×1 mm" in w.problem for w in lost.warnings)
    kept = check_dataset(make_organs3d(tmp_path / "b", cases=2, seed=0, shape=(4, 8, 8), spacing=(3.0, 1.0, 1.0)))
    assert not any("1×1×1 mm" in w.problem for w in kept.warnings)


def test_model_folder_records_provenance(world):
    made = json.loads((world.model / "config.json").read_text(encoding="utf-8"))["provenance"]
    assert made["medseg"] and made["python"] and made["packages"]["torch"] and made["date"]
    assert made["machine"]["architecture"] and made["machine"]["cpu_count"]
