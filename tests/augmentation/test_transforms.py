import math

import pytest
import torch

from medseg.augmentation import (
    RandomAffine,
    RandomBiasField,
    RandomBrightness,
    RandomContrast,
    RandomElastic,
    RandomFlip,
    RandomGamma,
    RandomGaussianBlur,
    RandomGaussianNoise,
    RandomLowResolution,
    build_augmentation,
    default_augmentation_config,
)
from medseg.augmentation import functional as Fn
from medseg.errors import MedsegError

SHAPES = {2: (3, 1, 40, 48), 3: (2, 1, 16, 20, 24)}


def gen(seed):
    return torch.Generator().manual_seed(seed)


def blob_batch(dims, n=None, shape=None):
    """A large ellipsoid (label 1) plus a small box (label 2); the image channel equals the label map."""
    shape = list(shape or SHAPES[dims])
    if n is not None:
        shape[0] = n
    spatial = shape[2:]
    coords = torch.meshgrid(*[torch.linspace(-1, 1, s) for s in spatial], indexing="ij")
    r2 = sum((c / 0.55) ** 2 for c in coords)
    lab = (r2 < 1).long()
    box = tuple(slice(s // 6, s // 6 + max(3, s // 5)) for s in spatial)
    lab[box] = 2
    lab = lab.expand(shape[0], 1, *spatial).clone()
    return lab.float(), lab


def all_transforms():
    return [
        RandomFlip(p=0.5),
        RandomAffine(rotation=(-40, 40), scale=(0.8, 1.2), translation=0.1, p=1.0),
        RandomElastic(magnitude=(1, 3), p=1.0),
        RandomBrightness(p=1.0),
        RandomContrast(p=1.0),
        RandomGamma(p=1.0),
        RandomGaussianNoise(p=1.0),
        RandomGaussianBlur(p=1.0, per_axis=True),
        RandomLowResolution(p=1.0),
        RandomBiasField(p=1.0),
    ]


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("transform", all_transforms(), ids=lambda t: t.name)
def test_deterministic_given_seed(transform, dims):
    torch.manual_seed(123)
    img = torch.rand(SHAPES[dims])
    lab = torch.randint(0, 3, (SHAPES[dims][0], 1, *SHAPES[dims][2:]))
    img0, lab0 = img.clone(), lab.clone()
    a_img, a_lab = transform(img, lab, gen(7))
    torch.manual_seed(999)  # the global RNG must not matter
    b_img, b_lab = transform(img, lab, gen(7))
    assert torch.equal(a_img, b_img) and torch.equal(a_lab, b_lab)
    c_img, c_lab = transform(img, lab, gen(8))
    assert not torch.equal(a_img, c_img)
    assert a_img.shape == img.shape and a_lab.shape == lab.shape and a_lab.dtype == lab.dtype
    assert torch.equal(img, img0) and torch.equal(lab, lab0)  # inputs are never modified in place


SPATIAL = [
    RandomFlip(p=0.7),
    RandomAffine(rotation=(-180, 180), scale=(0.8, 1.25), per_axis_scale=True, translation=0.05, p=1.0),
    RandomElastic(magnitude=(2, 3), p=1.0),
]


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("transform", SPATIAL, ids=lambda t: t.name)
def test_label_equals_interpolated_label_map_where_interpolation_is_exact(transform, dims):
    """The image holds the one-hot label map; the label the label map itself.

    Where one-hot channel k interpolates to exactly 1, every voxel used by the linear interpolation
    has label k, so the nearest-neighbour label must be k too (also off by one voxel is caught).
    """
    _, lab = blob_batch(dims)
    img = torch.cat([(lab == k).float() for k in range(3)], dim=1)
    out_img, out_lab = transform(img, lab, gen(3))
    assert set(out_lab.unique().tolist()) <= {0, 1, 2}
    tested = 0
    for k in range(3):
        exact = out_img[:, k : k + 1] > 1 - 1e-5
        assert (out_lab[exact] == k).all(), k
        tested += int(exact.sum())
        if k == 1:
            assert exact.sum() > 100  # the blob is tested, not only background
    assert tested > 0.3 * out_lab.numel()


@pytest.mark.parametrize("transform", SPATIAL, ids=lambda t: t.name)
def test_large_blob_overlap_after_spatial_transform(transform):
    img, lab = blob_batch(2, shape=(2, 1, 96, 96))
    out_img, out_lab = transform(img, lab, gen(3))
    a, b = out_lab == 1, (out_img - 1).abs() < 0.5
    dice = 2 * (a & b).sum() / (a.sum() + b.sum())
    assert dice > 0.98, float(dice)


def test_affine_rotation_90_equals_rot90_exactly():
    img = torch.rand(2, 3, 9, 9)
    lab = torch.randint(0, 5, (2, 1, 9, 9))
    m = Fn.rotation_scale_matrix(torch.full((2, 1), math.pi / 2), torch.ones(2, 2), [0, 1], 2)
    m = torch.cat([m, torch.zeros(2, 2, 1)], dim=2)
    out_img, out_lab = Fn.affine(img, lab, m)
    assert torch.allclose(out_img, torch.rot90(img, 1, (2, 3)), atol=1e-5)
    assert torch.equal(out_lab, torch.rot90(lab, 1, (2, 3)))


def test_affine_translation_and_fill_values():
    lab = torch.arange(8, dtype=torch.uint8).reshape(1, 1, 8, 1).expand(1, 1, 8, 4).clone()
    lab[0, 0, 4, 0] = 255  # an ignore value inside is preserved
    img = lab.float()
    m = torch.tensor([[[1.0, 0.0, 3.0], [0.0, 1.0, 0.0]]])  # out[y] = in[y + 3]
    out_img, out_lab = Fn.affine(img, lab, m, ignore_index=255)
    assert out_lab.dtype == torch.uint8
    assert torch.equal(out_lab[0, 0, :5], lab[0, 0, 3:])
    assert (out_lab[0, 0, 5:] == 255).all()  # moved in from outside: the ignore value
    assert (out_img[0, 0, 5:] == 0).all()
    _, out_bg = Fn.affine(img, lab, m)
    assert (out_bg[0, 0, 5:] == 0).all()  # default fill is background
    border, _ = Fn.affine(img, None, m, image_padding="border")
    assert torch.equal(border[0, 0, 5:], img[0, 0, 7:8].expand(3, 4))


def test_elastic_twin_with_constant_displacement_is_a_shift():
    img = torch.rand(1, 2, 6, 10, 8)
    lab = torch.randint(0, 4, (1, 1, 6, 10, 8))
    disp = torch.zeros(1, 3, 6, 10, 8)
    disp[:, 2] = 2.0  # input x = output x + 2
    out_img, out_lab = Fn.elastic(img, lab, disp)
    assert torch.allclose(out_img[..., :6], img[..., 2:], atol=1e-5)
    assert torch.equal(out_lab[..., :6], lab[..., 2:])


def test_flip_twin_per_sample_mask_and_axes():
    img = torch.arange(2 * 2 * 3, dtype=torch.float32).reshape(2, 1, 2, 3)
    mask = torch.tensor([[False, True], [True, False]])
    out, _ = Fn.flip(img, None, mask)
    assert torch.equal(out[0], img[0].flip(2)) and torch.equal(out[1], img[1].flip(1))
    assert torch.equal(Fn.flip(img, None, [0, 1])[0], img.flip((2, 3)))
    with pytest.raises(MedsegError):
        Fn.flip(img, None, [2])


def test_samples_get_their_own_parameters():
    img, lab = blob_batch(2, n=4)
    out, _ = RandomAffine(rotation=(-90, 90), p=1.0)(img, lab, gen(0))
    assert not torch.equal(out[0], out[1])
    out, _ = RandomAffine(p=0.0)(img, lab, gen(0))
    assert torch.equal(out, img)


def test_in_plane_affine_leaves_slice_axis_alone():
    img, lab = blob_batch(3)
    t = RandomAffine(rotation=(-180, 180), scale=(0.7, 1.4), per_axis_scale=True, axes=[1, 2], p=1.0)
    m = t.sample_matrix(5, (16, 20, 24), gen(1))
    assert torch.allclose(m[:, 0], torch.tensor([1.0, 0, 0, 0]).expand(5, 4), atol=1e-6)
    assert torch.allclose(m[:, 1:, 0], torch.zeros(5, 2), atol=1e-6)
    # each slice is transformed independently: an all-zero slice stays zero
    img[:, :, 3] = 0
    out, _ = t(img, lab, gen(2))
    assert out[:, :, 3].abs().max() < 1e-5


def test_intensity_twins():
    x = torch.rand(2, 2, 8, 8) * 10 - 3
    f = torch.tensor([0.5, 2.0])
    assert torch.allclose(Fn.brightness(x, f), x * f[:, None, None, None])
    c = Fn.contrast(x, f)
    dims = (2, 3)
    assert (c.amin(dims) >= x.amin(dims) - 1e-5).all() and (c.amax(dims) <= x.amax(dims) + 1e-5).all()
    assert torch.allclose(Fn.contrast(x, f, preserve_range=False).mean(dims), x.mean(dims), atol=1e-4)
    g = Fn.gamma(x, torch.tensor([0.5, 2.0]))
    assert torch.allclose(g.amin(dims), x.amin(dims), atol=1e-5) and torch.allclose(g.amax(dims), x.amax(dims), atol=1e-5)
    assert torch.allclose(Fn.gamma(x, torch.ones(2)), x, atol=1e-5)
    const = torch.full((2, 1, 6, 7, 8), 3.0)
    assert torch.allclose(Fn.gaussian_blur(const, torch.tensor([0.8, 1.5])), const)
    assert torch.allclose(Fn.gaussian_blur(x, torch.zeros(2)), x)
    assert torch.allclose(Fn.low_resolution(const, torch.tensor([0.5, 0.7])), const)


def test_bias_field_scales_signal_above_the_minimum_smoothly_and_leaves_the_label():
    x = torch.rand(2, 2, 6, 7) * 4 - 1
    lo = x.amin(dim=(2, 3), keepdim=True)
    constant = Fn.bias_field(x, torch.tensor([[0.3], [-0.2]]), order=0)
    assert torch.allclose(constant, lo + (x - lo) * torch.tensor([0.3, -0.2]).exp()[:, None, None, None], atol=1e-6)
    flat = torch.full((1, 1, 5, 6, 7), 2.0)
    assert torch.equal(Fn.bias_field(flat, torch.rand(1, 10), order=2), flat)  # nothing above the minimum
    assert torch.allclose(Fn.bias_field(x, torch.zeros(2, 3), order=1), x)
    # the exponent (0, 1) multiplies the second axis only: a monotone field along it, constant along the first
    one = torch.zeros(1, 1, 9, 9)
    one[..., 0, 0] = -1.0  # the minimum, so that the field acts on the zeros' height above it
    out = Fn.bias_field(one, torch.tensor([[0.0, 0.5, 0.0]]), order=1)[0, 0, 1:]
    assert (out[:, 1:] > out[:, :-1]).all() and torch.allclose(out, out[:1].expand_as(out))
    assert torch.allclose(out[0, -1] + 1, (out[0, 0] + 1) * math.exp(1.0), atol=1e-5)
    img, lab = blob_batch(3)
    out_img, out_lab = RandomBiasField(p=1.0)(img + 1, lab, gen(0))
    assert torch.equal(out_lab, lab) and (out_img > 0).all() and not torch.allclose(out_img, img + 1)
    with pytest.raises(MedsegError, match="order"):
        RandomBiasField(order=7)
    with pytest.raises(MedsegError, match="monomials"):
        Fn.bias_field(x, torch.zeros(2, 2), order=1)


def test_blur_and_noise_statistics():
    g = gen(0)
    x = torch.zeros(4, 1, 64, 64)
    noisy, _ = RandomGaussianNoise(std=(0.5, 0.5), p=1.0)(x, None, g)
    assert abs(float(noisy.std()) - 0.5) < 0.02
    delta = torch.zeros(1, 1, 31, 31)
    delta[0, 0, 15, 15] = 1.0
    out = Fn.gaussian_blur(delta, torch.tensor([2.0]))
    assert abs(float(out.sum()) - 1) < 1e-5
    yy = torch.arange(31.0) - 15
    var_y = float((out[0, 0].sum(1) * yy**2).sum())
    assert abs(var_y - 4.0) < 0.05
    aniso = Fn.gaussian_blur(delta, torch.tensor([[0.0, 2.0]]))
    assert torch.allclose(aniso[0, 0].sum(1), delta[0, 0].sum(1), atol=1e-6)  # axis 0 untouched


def test_labels_keep_values_and_ignore_index_through_default_pipeline():
    torch.manual_seed(0)
    lab = torch.randint(0, 3, (4, 1, 32, 32)).to(torch.int16)
    lab[:, :, :4] = -1
    aug = build_augmentation({"transforms": default_augmentation_config(2)["transforms"], "ignore_index": -1}, 2)
    for t in aug.transforms:
        t.p = 1.0
    _, out = aug(torch.rand(4, 1, 32, 32), lab, gen(5))
    assert out.dtype == torch.int16 and set(out.unique().tolist()) <= {-1, 0, 1, 2}


def test_rejects_bad_shapes():
    with pytest.raises(MedsegError, match="does not match image"):
        RandomFlip()(torch.rand(2, 1, 8, 8), torch.zeros(2, 1, 8, 9), gen(0))
    with pytest.raises(MedsegError, match="augmentation expects"):
        RandomFlip()(torch.rand(8, 8), None, gen(0))
