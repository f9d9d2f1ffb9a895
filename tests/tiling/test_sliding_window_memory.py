"""Streaming sliding window: memory stays far below C × volume × 4 bytes and the result equals the naive one.

The big buffers (accumulator, weight sum, outputs) are numpy-owned, so tracemalloc sees them; torch
temporaries are tile- or chunk-sized and bounded separately (finalisation chunk test below).
"""

import tracemalloc

import numpy as np
import pytest
import torch

import medseg.tiling.sliding_window as sw
from medseg.tiling.sliding_window import sliding_window_inference

pytestmark = pytest.mark.usefixtures("one_thread")  # one thread is faster on the shared 2-core machines

K = 8  # many classes make the C × volume float32 accumulator dominate


class _TinyConv(torch.nn.Module):
    def __init__(self, channels=K):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv3d(1, channels, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


@pytest.fixture(scope="module")
def case():
    image = np.random.default_rng(0).normal(size=(1, 160, 40, 40)).astype(np.float32)
    return image, _TinyConv().eval()


def _traced_peak(fn):
    tracemalloc.start()
    try:
        result = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


def test_streaming_allocates_far_less_than_class_volume_and_equals_naive(case):
    image, net = case
    full = K * image[0].size * 4  # one float32 value per class and voxel
    kw = {"overlap": 0.5, "batch_size": 4}
    naive, naive_peak = _traced_peak(lambda: sliding_window_inference(image, net, (8, 16, 16), streaming=False, **kw))
    stream, stream_peak = _traced_peak(lambda: sliding_window_inference(image, net, (8, 16, 16), streaming=True, **kw))
    # the measurement sees the accumulator: the naive path holds C × volume float32
    assert naive_peak >= full
    # streaming: a window of ~one tile batch along axis 0 (12 of 160 rows) plus the uint8 labels
    assert stream_peak < 0.2 * full, (stream_peak, full)
    assert stream.labels.dtype == np.uint8
    np.testing.assert_array_equal(stream.labels, naive.labels)


def test_finalisation_is_chunked_and_unchanged(case, monkeypatch):
    image, net = case
    kw = {"overlap": 0.5, "batch_size": 4, "return_probabilities": True}
    reference = sliding_window_inference(image, net, (8, 16, 16), **kw)
    row_bytes = 4 * K * 40 * 40
    monkeypatch.setattr(sw, "FINALISE_BYTES", 3 * row_bytes)  # at most 3 rows finalised at once
    seen = []
    original = sw._finalise

    def recording(summed, weights, activation, label_fn):
        seen.append(summed.numel() * 4)
        return original(summed, weights, activation, label_fn)

    monkeypatch.setattr(sw, "_finalise", recording)
    chunked = sliding_window_inference(image, net, (8, 16, 16), **kw)
    assert seen and max(seen) <= 3 * row_bytes
    assert sum(seen) == 4 * K * image[0].size  # every row finalised exactly once
    np.testing.assert_array_equal(chunked.probabilities, reference.probabilities)
    np.testing.assert_array_equal(chunked.labels, reference.labels)


def test_any_predict_fn_returning_numpy_is_accepted(case):
    # e.g. an ONNX Runtime session: float32 tensor in, numpy logits out
    image, net = case

    def fn(batch):  # called under the sliding window's no_grad
        return net(batch).numpy()

    a = sliding_window_inference(image[:, :40], fn, (8, 16, 16), return_probabilities=True)
    b = sliding_window_inference(image[:, :40], net, (8, 16, 16), return_probabilities=True)
    np.testing.assert_array_equal(a.probabilities, b.probabilities)
    np.testing.assert_array_equal(a.labels, b.labels)
