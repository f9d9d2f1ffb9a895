"""V-Net's paper augmentation: B-spline deformation and histogram matching between training cases, and the
rule that adds them for V-Net."""

import numpy as np
import pytest
import torch

from medseg.augmentation import BatchCases, RandomBSplineDeformation, RandomHistogramMatching, build_augmentation
from medseg.augmentation.bspline import bspline_deform
from medseg.augmentation.histogram import intensity_quantiles, match_quantiles
from medseg.errors import MedsegError


def gen(seed):
    return torch.Generator().manual_seed(seed)


def ramp_batch(n=2, shape=(12, 20, 24)):
    """Channel k = the voxel coordinate along axis k; label 0/1/2/4 by depth along axis 1 (BraTS values)."""
    coords = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij"))
    image = torch.from_numpy(np.repeat(coords[None], n, axis=0))
    label = np.digitize(coords[1], [5, 9, 14]).astype(np.int64)
    label = np.choose(label, [0, 1, 2, 4])
    return image, torch.from_numpy(np.repeat(label[None, None], n, axis=0))


# --- B-spline deformation ---------------------------------------------------------------------------------
def test_bspline_labels_keep_their_values_and_follow_the_image():
    image, label = ramp_batch()
    label = label.clone()
    label[:, :, :2] = -1  # ignore index survives too
    out, out_lab = RandomBSplineDeformation(max_displacement=3.0, p=1.0)(image, label, gen(0))
    assert out_lab.dtype == label.dtype and set(out_lab.unique().tolist()) <= {-1, 0, 1, 2, 4}
    assert not torch.equal(out, image)
    # the label moved with the image: recompute it from the warped coordinate channel (nearest vs linear
    # sampling may differ by one voxel at a boundary)
    expected = np.choose(np.digitize(out[:, 1].round().numpy(), [5, 9, 14]), [0, 1, 2, 4])
    keep = (out_lab[:, 0] != -1).numpy()
    assert (expected[keep] == out_lab[:, 0].numpy()[keep]).mean() > 0.97


def test_bspline_is_seeded_and_smooth():
    image, label = ramp_batch()
    t = RandomBSplineDeformation(control_points=2, max_displacement=[2.0, 3.0, 3.0], p=1.0)
    a, la = t(image, label, gen(3))
    b, lb = t(image, label, gen(3))
    c, _ = t(image, label, gen(4))
    assert torch.equal(a, b) and torch.equal(la, lb) and not torch.equal(a, c)
    # channel k holds coordinate k, so output - input is the displacement along k (inside, where no
    # point was clamped to the edge); a cubic spline on a 4-point grid bends gently: its second
    # differences are a small fraction of its size
    disp = (a - image)[:, :, 2:-2, 2:-2, 2:-2].numpy()
    assert 0.2 < np.abs(disp).max() <= 3.0 * 1.01
    for axis in (2, 3, 4):
        second = np.abs(np.diff(disp, n=2, axis=axis)).max()
        assert second < 0.1 * np.abs(disp).max()


def test_bspline_zero_displacement_and_selected_axes():
    image, label = ramp_batch(n=1)
    still, same = RandomBSplineDeformation(max_displacement=0.0, p=1.0)(image, label, gen(0))
    assert torch.allclose(still, image, atol=1e-4) and torch.equal(same, label)
    moved, _ = RandomBSplineDeformation(max_displacement=3.0, axes=[1, 2], p=1.0)(image, label, gen(1))
    assert torch.allclose(moved[:, 0], image[:, 0], atol=1e-4)  # nothing moves along axis 0
    assert not torch.allclose(moved[:, 1], image[:, 1], atol=1e-2)


def test_bspline_twin_shifts_by_a_constant_field_and_works_in_2d():
    img = np.arange(10 * 12, dtype=np.float32).reshape(1, 10, 12)
    coefficients = np.zeros((2, 5, 5))
    coefficients[1] = 2.0  # two voxels along the last axis everywhere
    out, _ = bspline_deform(img, None, coefficients)
    assert np.allclose(out[0, :, :-2], img[0, :, 2:])
    with pytest.raises(MedsegError, match="at least 2"):
        RandomBSplineDeformation(control_points=1)
    with pytest.raises(MedsegError, match="max_displacement"):
        RandomBSplineDeformation(max_displacement=-1)


# --- histogram matching -------------------------------------------------------------------------------------
def two_cases():
    rng = np.random.default_rng(0)
    a = rng.gamma(2.0, 1.0, size=(1, 10, 16, 16)).astype(np.float32)
    b = (50 + 10 * rng.standard_normal((1, 12, 16, 16))).astype(np.float32)
    return a, b


def test_matching_moves_the_quantiles_to_the_reference_case():
    a, b = two_cases()
    qa, qb = intensity_quantiles(a), intensity_quantiles(b)
    matched = match_quantiles(a, qa, qb)
    levels = [0.05, 0.25, 0.5, 0.75, 0.95]
    assert np.allclose(np.quantile(matched, levels), np.quantile(b, levels), atol=0.5)
    assert not np.allclose(np.quantile(a, levels), np.quantile(b, levels), atol=5)
    # the same map as scikit-image's exact histogram matching, up to the match points' resolution
    from skimage.exposure import match_histograms

    exact = match_histograms(a, b, channel_axis=0)
    assert np.mean(np.abs(matched - exact)) < 0.02 * float(b.std())
    # monotone: the order of intensities (the anatomy's contrast) is kept
    order = np.argsort(a.ravel())
    assert np.all(np.diff(matched.ravel()[order]) >= -1e-4)


def test_a_patch_is_matched_with_its_case_quantiles():
    """A patch gets exactly the values its voxels have in the matched whole case."""
    a, b = two_cases()
    qa, qb = intensity_quantiles(a), intensity_quantiles(b)
    whole = match_quantiles(a, qa, qb)
    patch = torch.from_numpy(a[None, :, 2:8, 4:12, 4:12].copy())
    cases = BatchCases(np.array([0]), np.stack([qa, qb]))
    out, _ = RandomHistogramMatching(p=1.0)(patch, None, gen(0), cases=cases)
    assert np.allclose(out[0].numpy(), whole[:, 2:8, 4:12, 4:12], atol=1e-5)


def test_histogram_matching_is_seeded_never_matches_a_case_to_itself_and_keeps_labels():
    rng = np.random.default_rng(1)
    quantiles = np.stack([intensity_quantiles((10 * k + rng.random((1, 6, 6, 6))).astype(np.float32))
                          for k in range(5)])
    image = torch.from_numpy(np.stack([(10 * k + rng.random((1, 6, 6, 6))).astype(np.float32) for k in (0, 3, 3)]))
    label = torch.randint(0, 3, (3, 1, 6, 6, 6))
    cases = BatchCases(np.array([0, 3, 3]), quantiles)
    t = RandomHistogramMatching(p=1.0)
    a, la = t(image, label, gen(5), cases=cases)
    b, _ = t(image, label, gen(5), cases=cases)
    assert torch.equal(a, b) and la is label
    for i, own in enumerate([0, 3, 3]):
        level = int(a[i].mean().item() // 10)
        assert 0 <= level < 5 and level != own  # moved to another case's range
    # without case information: another sample of the batch is the reference; a batch of one is unchanged
    two, _ = t(image[:2], None, gen(0))
    assert two[0].mean() > 20 and two[1].mean() < 10
    assert torch.equal(t(image[:1], None, gen(0))[0], image[:1])


# --- the rule and the config ---------------------------------------------------------------------------------
def test_vnet_gets_its_paper_augmentation_by_a_recorded_rule():
    from medseg.planning.training_rules import describe, rule_augmentation
    from medseg.training.networks import network_needs

    declared = network_needs("vnet").paper_augmentation
    assert [t["name"] for t in declared] == ["histogram_matching", "bspline"]
    rule = rule_augmentation("compact", 3, None, paper=("vnet", declared), patch_size=[16, 96, 128], train_cases=12)
    assert [t["name"] for t in rule.value["leading_transforms"]] == ["histogram_matching", "bspline"]
    assert rule.value["leading_transforms"][1]["max_displacement"] == [0.8, 4.8, 6.4]
    assert "vnet paper" in describe(rule) and rule.to_dict()["inputs"]["network"] == "vnet"
    aug = build_augmentation(rule.value, 3)
    names = [t["name"] for t in aug.to_config()["transforms"]]
    assert names[:2] == ["histogram_matching", "bspline"] and "affine" in names and aug.uses_cases
    assert build_augmentation(aug.to_config(), 3).to_config() == aug.to_config()  # recorded = repeatable
    # one training case: nothing to match to; the user's config wins; other networks: the defaults
    single = rule_augmentation("compact", 3, None, paper=("vnet", declared), patch_size=[16, 96, 128], train_cases=1)
    assert [t["name"] for t in single.value["leading_transforms"]] == ["bspline"] and "left out" in single.reason
    user = rule_augmentation("compact", 3, {"transforms": []}, paper=("vnet", declared), patch_size=[8, 8, 8])
    assert user.overridden_by_user and user.value == {"transforms": []}
    assert rule_augmentation("compact", 3, None, paper=("unet", ()), patch_size=[8, 8, 8]).value is None


def test_make_batch_hands_each_sample_its_case(one_thread):
    from medseg.training.data import PreparedCase, make_batch
    from medseg.training.sampling import build_sampling_index

    rng = np.random.default_rng(0)
    cases = []
    for k in range(3):
        label = np.zeros((1, 8, 12, 12), np.int16)
        label[0, 2:6, 3:9, 3:9] = 1
        image = (100 * k + rng.random((1, 8, 12, 12))).astype(np.float32)
        cases.append(PreparedCase(f"c{k}", image, label, None, (1.0, 1.0, 1.0), build_sampling_index(label[0])))
    aug = build_augmentation({"transforms": [{"name": "histogram_matching", "p": 1.0}]}, 3)
    img, lab = make_batch(cases, 0, seed=0, patch_size=(4, 8, 8), batch_size=4, foreground_share=0.5, augment=aug)
    plain, _ = make_batch(cases, 0, seed=0, patch_size=(4, 8, 8), batch_size=4, foreground_share=0.5)
    assert all(c.quantiles is not None and c.quantiles.shape == (1, 257) for c in cases)
    source = (plain.flatten(1).mean(1) // 100).long()
    target = (img.flatten(1).mean(1) // 100).long()
    assert torch.all(source != target) and set(target.tolist()) <= {0, 1, 2}
    assert lab.dtype == torch.int64


def test_bspline_coarse_field_matches_the_exact_spline():
    """The spline is evaluated every FIELD_STEP voxels and interpolated: within 0.05 voxel of SimpleITK's
    exact B-spline displacement at every voxel."""
    import SimpleITK as sitk

    rng = np.random.default_rng(0)
    coefficients = np.zeros((3, 4, 4, 4))
    coefficients[:, 1:3, 1:3, 1:3] = rng.uniform(-6, 6, (3, 2, 2, 2))
    shape = (20, 33, 41)
    ramp = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij"))
    out, _ = bspline_deform(ramp, None, coefficients)
    reference = sitk.Image(list(reversed(shape)), sitk.sitkFloat32)
    spline = sitk.BSplineTransformInitializer(reference, [1, 1, 1], 3)
    spline.SetParameters([float(v) for k in range(3) for v in coefficients[2 - k].ravel()])
    field = sitk.TransformToDisplacementField(spline, sitk.sitkVectorFloat64, list(reversed(shape)), [0.0] * 3,
                                              [1.0] * 3)
    exact = sitk.GetArrayFromImage(field)[..., ::-1].transpose(3, 0, 1, 2)
    inside = np.all((ramp + exact >= 0) & (ramp + exact <= np.reshape(shape, (3, 1, 1, 1)) - 1), axis=0)
    assert np.abs(exact).max() > 1.0
    assert np.abs((out - ramp) - exact)[:, inside].max() < 0.05
