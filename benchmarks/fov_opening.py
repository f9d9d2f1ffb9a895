"""The field-of-view finder's opening by a disc: two distance transforms (medseg) vs ``ndimage.binary_opening``
with the disc as structuring element (the earlier code), on real photographs.

    .venv/bin/python benchmarks/fov_opening.py --data ../shared/data

1. The FOV of each DRIVE (40) and STARE (18) photograph found both ways: the differing pixels (should be 0).
2. Seconds of `find_fov` both ways on a DRIVE image and on STARE's last image zoomed uniformly to 3504 pixels
   wide and cut to 3504 × 2336 (the size of one held-out camera; the aperture cut at top and bottom), and the
   aperture diameter found there against the native one × the zoom.
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

import medseg.preprocessing.fov as fov


def disc_opening(mask: np.ndarray, radius: int) -> np.ndarray:
    r = max(int(radius), 1)
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return ndimage.binary_opening(mask, yy ** 2 + xx ** 2 <= r ** 2)


def photographs(data: Path) -> list[tuple[str, np.ndarray]]:
    out = [(p.name, np.asarray(Image.open(p).convert("RGB"))) for p in sorted((data / "DRIVE").glob("*/images/*.tif"))]
    for p in sorted((data / "STARE" / "stare-images").glob("*.ppm.gz")):
        with gzip.open(p) as fh:
            out.append((p.name, np.asarray(Image.open(io.BytesIO(fh.read())).convert("RGB"))))
    return out


def find_with(opening, image: np.ndarray) -> tuple[np.ndarray, float]:
    ours = fov._open_with_disc
    fov._open_with_disc = opening
    try:
        start = time.perf_counter()
        roi = fov.find_fov(image.transpose(2, 0, 1))
        return roi, time.perf_counter() - start
    finally:
        fov._open_with_disc = ours


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    args = parser.parse_args()
    images = photographs(args.data)
    differing = [int((find_with(fov._open_with_disc, a)[0] != find_with(disc_opening, a)[0]).sum()) for _, a in images]
    print(f"{len(images)} photographs: differing FOV pixels total {sum(differing)}, worst {max(differing)}")
    name, native = images[-1]
    zoom = 3504 / native.shape[1]
    big = np.asarray(Image.fromarray(native).resize((3504, round(native.shape[0] * zoom)), Image.BILINEAR))
    top = (big.shape[0] - 2336) // 2
    big = big[top:top + 2336]
    for label, image in (("DRIVE " + images[0][0], images[0][1]), (f"{name} as 3504 × 2336", big)):
        roi, ours = find_with(fov._open_with_disc, image)
        _, earlier = find_with(disc_opening, image)
        print(f"{label}: find_fov {ours:.2f} s (distance transforms) vs {earlier:.2f} s (binary_opening)")
    expected = fov.fov_diameter(find_with(fov._open_with_disc, native)[0]) * zoom
    print(f"aperture diameter at 3504 × 2336: {fov.fov_diameter(roi):.1f} px (native × {zoom:.3f} = {expected:.1f})")


if __name__ == "__main__":
    main()
