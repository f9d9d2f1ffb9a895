"""Apertures stretched to ellipses: STARE's 18 photographs resized non-uniformly, their aperture found again.

    .venv/bin/python benchmarks/fov_stretched.py --data ../shared/data

Each photograph is zoomed by (rows, columns) = (0.7, 1), (1, 0.8), (1.3, 1) and (1, 1) (bilinear); on each,
`find_fov` then `fit_aperture`. Reported per stretch: which fit was taken (circle / ellipse), the radii found
against the native circle's radius × the zoom (relative error, mean and worst over the 18), the match (Dice of
the fitted aperture with the found FOV, lowest), and seconds per image. Beside it, the circle alone
(`fit_fov_circle`): the diameter it gives a stretched aperture (the rescaling the predictor made before).
"""

from __future__ import annotations

import argparse
import gzip
import io
import time
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from medseg.preprocessing.fov import find_fov, fit_aperture, fit_fov_circle

STRETCHES = ((1.0, 1.0), (0.7, 1.0), (1.0, 0.8), (1.3, 1.0))


def stare(data: Path) -> list[tuple[str, np.ndarray]]:
    out = []
    for p in sorted((data / "STARE" / "stare-images").glob("*.ppm.gz")):
        with gzip.open(p) as fh:
            out.append((p.name, np.moveaxis(np.asarray(Image.open(io.BytesIO(fh.read())).convert("RGB")), -1, 0)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    args = parser.parse_args()
    images = stare(args.data)
    native = {name: fit_fov_circle(find_fov(rgb))[2] for name, rgb in images}
    print("| stretch (rows × columns) | fit taken | radius error, mean / worst | lowest match | s per image "
          "| circle alone: diameter (median) |")
    print("|---|---|---|---|---|---|")
    for fy, fx in STRETCHES:
        errors, matches, seconds, kinds, circles = [], [], [], [], []
        for name, rgb in images:
            roi = find_fov(ndimage.zoom(rgb.astype(np.float32), (1, fy, fx), order=1))
            started = time.perf_counter()
            _, _, ry, rx, match = fit_aperture(roi, name)
            seconds.append(time.perf_counter() - started)
            expected = (native[name] * fy, native[name] * fx)
            errors += [abs(ry / expected[0] - 1), abs(rx / expected[1] - 1)]
            matches.append(match)
            kinds.append("circle" if ry == rx else "ellipse")
            circles.append(2 * fit_fov_circle(roi)[2])
        taken = ", ".join(f"{k} {kinds.count(k)}" for k in sorted(set(kinds)))
        print(f"| {fy:g} × {fx:g} | {taken} | {np.mean(errors):.2%} / {np.max(errors):.2%} | {min(matches):.3f} "
              f"| {np.mean(seconds):.2f} | {np.median(circles):,.0f} px |")


if __name__ == "__main__":
    main()
