"""Cost of V-Net's paper augmentation per training batch (one thread): the B-spline deformation (SimpleITK)
and histogram matching between training cases, on random data of a given batch shape.

    PYTHONPATH=src .venv/bin/python benchmarks/vnet_augmentation.py --shape 2 1 32 64 80 --shape 2 1 32 128 128
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from _timing import best_of

from medseg.augmentation import BatchCases, RandomBSplineDeformation, RandomHistogramMatching
from medseg.augmentation.histogram import intensity_quantiles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs=5, action="append", help="N C Z Y X of the batch")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    for shape in args.shape or [[2, 1, 32, 64, 80]]:
        quantiles = np.stack([intensity_quantiles(rng.standard_normal((shape[1], 30, 256, 256)).astype(np.float32))
                              for _ in range(3)])  # three training cases
        image = torch.randn(*shape)
        label = (image[:, :1] > 0).long()
        deform = RandomBSplineDeformation(max_displacement=[1.6, 3.2, 4.0], p=1.0)
        match = RandomHistogramMatching(p=1.0)
        cases = BatchCases(np.arange(shape[0]) % 3, quantiles)
        gen = torch.Generator().manual_seed(0)
        deforming = best_of(lambda: deform(image, label, gen), args.repeats, 1)
        matching = best_of(lambda: match(image, None, gen, cases=cases), args.repeats, 1)
        print(f"batch {tuple(shape)}: B-spline deformation {deforming:.3f} s, histogram matching {matching:.3f} s "
              f"(every sample transformed, best of {args.repeats})", flush=True)


if __name__ == "__main__":
    main()
