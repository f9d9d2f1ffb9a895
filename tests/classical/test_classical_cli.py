"""`medseg segment` end to end on tiny PNG / NIfTI files."""

from __future__ import annotations

import numpy as np

from conftest import dice
from medseg.cli import main
from medseg.image import Image
from medseg.io import read_image, write_image


def _disc_png(path, rgb=False):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:40, :40]
    truth = (yy - 20) ** 2 + (xx - 20) ** 2 < 100
    x = (np.where(truth, 160, 40) + rng.normal(0, 10, truth.shape)).clip(0, 255).astype(np.uint8)
    if rgb:  # the disc is dark in G
        write_image(Image(np.stack([x, 255 - x, x // 2]), channel_names=("R", "G", "B")), path)
    else:
        write_image(Image(x[None]), path)
    return truth


def test_list(capsys):
    assert main(["segment", "--list"]) == 0
    out = capsys.readouterr().out
    assert "connected_threshold" in out and "fuzzy_cmeans" in out and "graph_cut" in out


def test_segment_png_with_postprocess_reports_time(tmp_path, capsys):
    truth = _disc_png(tmp_path / "disc.png")
    out = tmp_path / "seg.png"
    assert main(["segment", "otsu", str(tmp_path / "disc.png"), "-o", str(out), "--postprocess", "fill_holes,largest"]) == 0
    assert " s on (40, 40)" in capsys.readouterr().out
    lab = read_image(out)
    assert lab.array.shape == (1, 40, 40) and dice(lab.array[0], truth) > 0.95


def test_colour_needs_channel_except_vesselness(tmp_path, capsys):
    truth = _disc_png(tmp_path / "rgb.png", rgb=True)
    out = tmp_path / "seg.png"
    assert main(["segment", "kmeans", str(tmp_path / "rgb.png"), "-o", str(out), "--classes", "2"]) == 1
    assert "--channel" in capsys.readouterr().err and not out.exists()
    assert main(["segment", "kmeans", str(tmp_path / "rgb.png"), "-o", str(out), "--classes", "2", "--channel", "R"]) == 0
    assert dice(read_image(out).array[0] == 1, truth) > 0.95
    assert main(["segment", "otsu", str(tmp_path / "rgb.png"), "-o", str(out), "--channel", "G", "--polarity", "dark", "--overwrite"]) == 0
    assert dice(read_image(out).array[0], truth) > 0.95
    assert main(["segment", "sato", str(tmp_path / "rgb.png"), "-o", str(tmp_path / "v.png")]) == 0
    assert "channel 1 (G)" in capsys.readouterr().out
    assert main(["segment", "otsu", str(tmp_path / "rgb.png"), "-o", str(out), "--channel", "7", "--overwrite"]) == 1
    assert "no such channel" in capsys.readouterr().err


def test_nifti_geometry_kept_and_physical_seeds(tmp_path, capsys):
    vol = np.full((10, 24, 24), 10.0, np.float32)
    vol[2:8, 6:18, 6:18] = 90.0
    img = Image(vol[None], spacing=(3.0, 0.8, 0.8), origin=(-20.0, 5.0, 7.0))
    src, out = tmp_path / "v.nii.gz", tmp_path / "s.nii.gz"
    write_image(img, src)
    z, y, x = img.index_to_physical((5, 12, 12))
    assert main(["segment", "connected_threshold", str(src), "-o", str(out), "--seed", f"{z},{y},{x}",
                 "--physical-seeds", "-O", "lower=50", "-O", "upper=200"]) == 0
    lab = read_image(out)
    assert lab.same_geometry(img) and int(lab.array.sum()) == 6 * 12 * 12


def test_bad_cli_input(tmp_path, capsys):
    _disc_png(tmp_path / "d.png")
    src, out = str(tmp_path / "d.png"), str(tmp_path / "o.png")
    assert main(["segment", "region_grow", src, "-o", out]) == 1
    assert "unknown classical method" in capsys.readouterr().err
    assert main(["segment", "connected_threshold", src, "-o", out, "--seed", "50,3"]) == 1
    assert "seeds" in capsys.readouterr().err
    assert main(["segment", "otsu", src, "-o", out, "--classes", "3"]) == 1
    assert "--classes" in capsys.readouterr().err
    assert main(["segment", "threshold", src, "-o", out]) == 1
    assert "threshold" in capsys.readouterr().err
    assert main(["segment", "otsu", src]) == 1
    assert "--output" in capsys.readouterr().err
    assert main(["segment", "random_walker", src, "-o", out, "--seed", "20,20:1", "--seed", "1,1:2",
                 "-O", "beta=50"]) == 0
