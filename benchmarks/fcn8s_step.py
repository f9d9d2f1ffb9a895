"""FCN-8s training step on CPU: forward / backward / AdamW seconds (batch 4 × 128², random data), and
fc6's backward with and without oneDNN (the reason fc6 trains as im2col + matmul, see medseg/nets/fcn.py).

    .venv/bin/python -W ignore benchmarks/fcn8s_step.py
"""

from __future__ import annotations

import time

import torch

from medseg.nets import create_network


def main() -> None:
    torch.manual_seed(0)
    net = create_network("fcn8s", 1, 2, 2)
    optimizer = torch.optim.AdamW(net.parameters(), lr=2e-3)
    x, y = torch.randn(4, 1, 128, 128), torch.randint(0, 2, (4, 128, 128))
    for step in range(2):
        t0 = time.perf_counter()
        optimizer.zero_grad()
        out = net(x)
        out = out[0] if isinstance(out, (list, tuple)) else out
        t1 = time.perf_counter()
        torch.nn.functional.cross_entropy(out, y).backward()
        t2 = time.perf_counter()
        optimizer.step()
        t3 = time.perf_counter()
        print(f"step {step}: forward {t1 - t0:.2f} s, backward {t2 - t1:.2f} s, AdamW {t3 - t2:.2f} s")
    fc6 = torch.nn.Conv2d(512, 4096, 7, padding=3)
    features = torch.randn(4, 512, 4, 4, requires_grad=True)
    for onednn in (True, False):
        with torch.backends.mkldnn.flags(enabled=onednn):
            out = fc6(features)
            t0 = time.perf_counter()
            out.sum().backward()
            print(f"plain fc6 conv backward, oneDNN {'on' if onednn else 'off'}: {time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    main()
