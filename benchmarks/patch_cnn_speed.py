"""Sliding-patch CNN: the naive patch-by-patch prediction against its exactly equivalent dense form.

Default network (25² window, 0.16M parameters), random weights and images, inference only: the dense
form is timed best of 3 after a warm-up, the naive form once (it is the slow one); the two maps are checked
equal before the times are printed.

    .venv/bin/python -W ignore benchmarks/patch_cnn_speed.py
"""

from __future__ import annotations

import time

import torch

from _timing import best_of
from medseg.nets import create_network


def main() -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    torch.manual_seed(0)
    net = create_network("patch_cnn", 1, 2, 2).eval()
    for size in (64, 128, 256):
        image = torch.randn(1, 1, size, size)
        with torch.inference_mode():
            dense = net(image)  # also the warm-up
            t_dense = best_of(lambda: net(image), repeats=3, warmup=0)
            start = time.perf_counter()
            naive = net.predict_naive(image)
            t_naive = time.perf_counter() - start
        torch.testing.assert_close(dense, naive, rtol=1e-4, atol=1e-5)
        print(f"{size}² image, {size * size:,} patches: naive {t_naive:.3f} s, dense {t_dense:.4f} s, "
              f"dense is {t_naive / t_dense:.0f}× faster")


if __name__ == "__main__":
    main()
