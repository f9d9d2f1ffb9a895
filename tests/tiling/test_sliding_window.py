"""Sliding window: constant network reproduced exactly, full coverage, streaming == naive, padding, TTA."""

import numpy as np
import pytest
import torch

from medseg.tiling.sliding_window import (gaussian_importance, mirror_axes_combinations,
                                             sliding_window_inference, tile_starts)


def constant_net(values):
    v = torch.tensor(values, dtype=torch.float32)

    def net(x):
        return v.view(1, -1, *([1] * (x.ndim - 2))).expand(x.shape[0], -1, *x.shape[2:]).clone()

    return net


@pytest.mark.parametrize("shape,patch,overlap", [((1, 50, 70), (32, 32), 0.5), ((2, 33, 40), (16, 24), 0.25),
                                                  ((1, 9, 30, 21), (8, 16, 16), 0.5), ((1, 20, 20), (32, 32), 0.5)])
def test_constant_network_is_reproduced_exactly(shape, patch, overlap):
    # powers of two: weighted sums and the division by the weight sum are exact in float32
    values = [2.0, -0.5, 4.0]
    res = sliding_window_inference(np.random.rand(*shape), constant_net(values), patch, overlap=overlap,
                                   activation="none", return_probabilities=True, streaming=False)
    assert res.probabilities.shape == (3,) + shape[1:]
    for c, v in enumerate(values):
        assert np.all(res.probabilities[c] == v)
    # arbitrary constants: equal to float32 rounding
    res = sliding_window_inference(np.zeros(shape), constant_net([0.1234, 7.77]), patch, overlap=overlap,
                                   activation="none", return_probabilities=True)
    np.testing.assert_allclose(res.probabilities[0], 0.1234, rtol=1e-6)
    np.testing.assert_allclose(res.probabilities[1], 7.77, rtol=1e-6)


@pytest.mark.parametrize("shape,patch", [((1, 50, 70), (32, 32)), ((1, 13, 37, 29), (8, 16, 16))])
def test_every_voxel_is_covered(shape, patch):
    seen = []

    def recording_net(x):
        seen.append(x.shape[0])
        return torch.ones(x.shape[0], 1, *x.shape[2:])

    # the weight sum is positive everywhere exactly when every voxel lies in some tile: with activation
    # "none" an uncovered voxel would give 0/0 = nan
    res = sliding_window_inference(np.zeros(shape), recording_net, patch, activation="none",
                                   return_probabilities=True, batch_size=3)
    assert np.isfinite(res.probabilities).all() and np.all(res.probabilities == 1)
    starts = [tile_starts(s, p, 0.5) for s, p in zip(shape[1:], patch)]
    assert sum(seen) == int(np.prod([len(s) for s in starts]))
    for s, p, st in zip(shape[1:], patch, starts):
        covered = np.zeros(s, bool)
        for a in st:
            covered[a : a + p] = True
        assert covered.all() and st[-1] + p == s


def test_gaussian_has_no_zeros_and_peaks_at_centre():
    g = gaussian_importance((16, 17), 0.125)
    assert float(g.min()) > 0 and float(g.max()) == 1.0
    assert g.shape == (16, 17)


class _TinyConv(torch.nn.Module):
    def __init__(self, channels=3, dims=3):
        super().__init__()
        conv = torch.nn.Conv3d if dims == 3 else torch.nn.Conv2d
        torch.manual_seed(0)
        self.conv = conv(1, channels, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


def test_streaming_equals_naive_3d():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(1, 37, 30, 26)).astype(np.float32)
    net = _TinyConv().eval()
    kw = dict(overlap=0.5, return_probabilities=True, batch_size=2)
    naive = sliding_window_inference(image, net, (12, 16, 16), streaming=False, **kw)
    stream = sliding_window_inference(image, net, (12, 16, 16), streaming=True, **kw)
    np.testing.assert_allclose(stream.probabilities, naive.probabilities, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(stream.labels, naive.labels)
    # the compact output dtype halves the probability memory and stays close
    half = sliding_window_inference(image, net, (12, 16, 16), streaming=True, probabilities_dtype=np.float16, **kw)
    assert half.probabilities.dtype == np.float16
    np.testing.assert_allclose(half.probabilities, naive.probabilities, atol=1e-3)


def test_streaming_equals_naive_with_labels_only_and_custom_label_fn():
    rng = np.random.default_rng(1)
    image = rng.normal(size=(1, 21, 18, 18)).astype(np.float32)
    net = _TinyConv(2).eval()
    fn = lambda p: (p[0] > 0.5).to(torch.int16) * 3 + (p[1] > 0.5).to(torch.int16)  # noqa: E731
    a = sliding_window_inference(image, net, (8, 8, 8), activation="sigmoid", label_fn=fn, streaming=False)
    b = sliding_window_inference(image, net, (8, 8, 8), activation="sigmoid", label_fn=fn, streaming=True)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.probabilities is None and set(np.unique(a.labels)) <= {0, 1, 3, 4}


def test_mirroring_of_a_mirror_symmetric_network_changes_nothing():
    image = np.random.default_rng(2).normal(size=(1, 24, 24)).astype(np.float32)
    net = constant_net([1.0, 3.0])
    plain = sliding_window_inference(image, net, (16, 16), activation="none", return_probabilities=True)
    tta = sliding_window_inference(image, net, (16, 16), activation="none", return_probabilities=True,
                                   mirror_axes=(0, 1))
    np.testing.assert_array_equal(plain.probabilities, tta.probabilities)
    assert mirror_axes_combinations((0, 1)) == [(), (0,), (1,), (0, 1)]


def test_mirroring_averages_flipped_predictions():
    # a network that outputs its input: mirrored predictions, flipped back, equal the input again
    image = np.random.default_rng(3).normal(size=(1, 20, 20)).astype(np.float32)
    res = sliding_window_inference(image, lambda x: x.clone(), (20, 20), activation="none",
                                   return_probabilities=True, mirror_axes=(0, 1))
    np.testing.assert_allclose(res.probabilities, image, atol=1e-6)


def test_softmax_probabilities_sum_to_one():
    image = np.random.default_rng(4).normal(size=(1, 40, 40)).astype(np.float32)
    net = _TinyConv(3, dims=2).eval()
    res = sliding_window_inference(image, net, (16, 16), return_probabilities=True)
    np.testing.assert_allclose(res.probabilities.sum(0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(res.labels, res.probabilities.argmax(0))


@pytest.mark.parametrize("batch_size", [1, 3, 7])
def test_streaming_equals_naive_when_batches_span_slices(batch_size):
    image = np.random.default_rng(5).normal(size=(1, 23, 20, 18)).astype(np.float32)
    net = _TinyConv().eval()
    kw = dict(return_probabilities=True, batch_size=batch_size)
    naive = sliding_window_inference(image, net, (8, 12, 12), streaming=False, **kw)
    stream = sliding_window_inference(image, net, (8, 12, 12), streaming=True, **kw)
    np.testing.assert_allclose(stream.probabilities, naive.probabilities, rtol=0, atol=1e-6)


def test_2d_network_on_a_volume_slice_by_slice():
    from medseg.tiling.slices import slice_network, volume_patch_size

    net2d = _TinyConv(3, dims=2).eval()
    volume = np.random.default_rng(6).normal(size=(1, 5, 24, 20)).astype(np.float32)
    patch = volume_patch_size((24, 20), 0)
    assert patch == (1, 24, 20)
    res = sliding_window_inference(volume, slice_network(net2d, 0), patch, activation="none",
                                   return_probabilities=True, batch_size=2)
    with torch.no_grad():
        expected = net2d(torch.from_numpy(volume[0][:, None])).numpy()  # slices as a batch
    np.testing.assert_allclose(res.probabilities, np.moveaxis(expected, 1, 0), atol=1e-5)
