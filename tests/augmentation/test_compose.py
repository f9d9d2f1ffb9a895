import json

import pytest
import torch

from medseg.augmentation import Compose, RandomAffine, build_augmentation, default_augmentation_config
from medseg.errors import MedsegError


def gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("dims, aniso", [(2, None), (3, None), (3, 0)])
def test_default_config_json_round_trip_reproduces_output(dims, aniso):
    aug = build_augmentation(None, dims, anisotropic_axis=aniso)
    config = json.loads(json.dumps(aug.to_config()))
    again = build_augmentation(config, dims)
    assert again.to_config() == aug.to_config()
    shape = (2, 1, 24, 24) if dims == 2 else (2, 1, 8, 16, 16)
    img, lab = torch.rand(shape), torch.randint(0, 2, shape)
    a = aug(img, lab, gen(11))
    b = again(img, lab, gen(11))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_default_configs_follow_the_rules():
    two = {t["name"]: t for t in default_augmentation_config(2)["transforms"]}
    assert two["affine"]["rotation"] == [-180.0, 180.0] and "elastic" not in two
    three = {t["name"]: t for t in default_augmentation_config(3)["transforms"]}
    assert three["affine"]["rotation"] == [-30.0, 30.0] and three["affine"]["axes"] is None
    aniso = {t["name"]: t for t in default_augmentation_config(3, anisotropic_axis=0)["transforms"]}
    assert aniso["affine"]["axes"] == [1, 2] and aniso["blur"]["axes"] == [1, 2]


@pytest.mark.parametrize("name", ["brightness", "contrast", "gamma"])
def test_default_intensity_changes_draw_once_per_sample(name):
    config = next(t for t in default_augmentation_config(3)["transforms"] if t["name"] == name)
    shared = build_augmentation({"transforms": [{**config, "p": 1.0}]}, 3)
    own = build_augmentation({"transforms": [{**config, "per_channel": True, "p": 1.0}]}, 3)
    one = torch.rand(2, 1, 6, 6, 6)
    # one channel: the same draws, the same result
    assert torch.equal(shared(one, None, gen(3))[0], own(one, None, gen(3))[0])
    # two identical channels: changed alike by a shared draw, apart by one draw per channel
    two = one.repeat(1, 2, 1, 1, 1)
    same = shared(two, None, gen(3))[0]
    apart = own(two, None, gen(3))[0]
    assert torch.equal(same[:, 0], same[:, 1]) and not torch.allclose(apart[:, 0], apart[:, 1])


def test_ignore_index_propagates_to_spatial_transforms():
    aug = build_augmentation({"transforms": [{"name": "affine"}, {"name": "elastic", "ignore_index": 7}], "ignore_index": 255}, 2)
    assert aug.transforms[0].ignore_index == 255 and aug.transforms[1].ignore_index == 7


def test_config_without_transforms_uses_defaults():
    aug = build_augmentation({"ignore_index": -1, "anisotropic_axis": 0}, 3)
    expected = default_augmentation_config(3, anisotropic_axis=0, ignore_index=-1)
    assert [t["name"] for t in aug.to_config()["transforms"]] == [t["name"] for t in expected["transforms"]]
    affine = next(t for t in aug.transforms if t.name == "affine")
    assert affine.ignore_index == -1 and affine.axes == [1, 2]
    assert aug.to_config()["ignore_index"] == -1


def test_empty_config_is_identity_and_label_none():
    aug = build_augmentation({"transforms": []}, 2)
    img = torch.rand(1, 1, 8, 8)
    out, lab = aug(img, None, gen(0))
    assert torch.equal(out, img) and lab is None
    out, lab = build_augmentation(None, 2)(img, None, gen(0))
    assert lab is None and out.shape == img.shape


def test_integer_images_become_float():
    out, _ = Compose([RandomAffine(p=1.0)])(torch.randint(0, 255, (1, 1, 8, 8), dtype=torch.uint8), None, gen(0))
    assert out.dtype == torch.float32


@pytest.mark.parametrize(
    "config, message",
    [
        ([], "must be an object"),
        ({"transforms": {"name": "flip"}}, "'transforms' must be a list"),
        ({"anisotropic_axis": "z"}, "anisotropic_axis must be an integer"),
        ({"transforms": [{"p": 0.5}]}, "transform 0 must be an object with a 'name'"),
        ({"transforms": [{"name": "flip"}, {"name": "twist"}]}, "transform 1: unknown transform 'twist'"),
        ({"transforms": [{"name": "affine", "rotate": [0, 1]}]}, "transform 0 \\(affine: unknown field 'rotate'"),
        ({"transforms": [{"name": "affine", "scale": [1.2, 0.8]}]}, "affine.scale must be an increasing pair"),
        ({"transforms": [{"name": "gamma", "p": 1.5}]}, "gamma: p must be in"),
        ({"transforms": [{"name": "flip", "axes": [2]}]}, "flip: axes \\[2\\] invalid for 2D"),
        ({"transforms": [], "ignore": 1}, "unknown field 'ignore'"),
        ({"transforms": [], "ignore_index": 0.5}, "ignore_index must be an integer"),
    ],
)
def test_bad_config_names_transform_and_field(config, message):
    with pytest.raises(MedsegError, match=message):
        build_augmentation(config, 2)
