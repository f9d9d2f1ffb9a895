"""Encoders: torchvision parameter counts and names, feature strides, channel adaptation, weight loading."""

import pytest
import torch

from medseg.errors import MedsegError
from medseg.nets.meta import build_on_meta, count_parameters
from medseg.nets.encoders import (ENCODERS, adapt_first_conv_weight, create_encoder, load_encoder_weights,
                                  read_state_dict)

# Parameter counts of the full ImageNet classifiers as published by torchvision
# (https://pytorch.org/vision/stable/models.html, the "Params" column of the classification table):
# vgg16 138.4M, vgg16_bn 138.4M, resnet18 11.7M, resnet34 21.8M, resnet50 25.6M, densenet121 8.0M; exact
# values from `sum(p.numel() for p in torchvision.models.X().parameters())` (torchvision 0.17).
TORCHVISION_PARAMS = {
    "vgg16": 138_357_544,
    "vgg16_bn": 138_365_992,
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "densenet121": 7_978_856,
}

# Convolution indices of torchvision's VGG `features` Sequential (keys `features.N.weight` in
# vgg16-397923af.pth / vgg16_bn-6c64b313.pth) and the BN indices of vgg16_bn.
VGG16_CONV = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
VGG16_BN_CONV = [0, 3, 7, 10, 14, 17, 20, 24, 27, 30, 34, 37, 40]


pytestmark = pytest.mark.usefixtures("one_thread")


def _params(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", sorted(TORCHVISION_PARAMS))
def test_classifier_parameter_count_equals_torchvision(name):
    # built on the meta device: counts only, no memory, no initialisation cost
    assert count_parameters(create_encoder, name, 3, num_classes=1000) == TORCHVISION_PARAMS[name]


def test_vgg_state_dict_keys_are_torchvision_indices():
    keys = set(build_on_meta(create_encoder, "vgg16").state_dict())
    keys_bn = set(build_on_meta(create_encoder, "vgg16_bn").state_dict())
    assert {f"features.{i}.weight" for i in VGG16_CONV} | {f"features.{i}.bias" for i in VGG16_CONV} == keys
    assert {f"features.{i}.weight" for i in VGG16_BN_CONV} <= keys_bn
    assert {f"features.{i + 1}.running_var" for i in VGG16_BN_CONV} <= keys_bn
    assert "features.41.running_var" in keys_bn


def test_resnet_and_densenet_key_examples():
    r50 = build_on_meta(create_encoder, "resnet50").state_dict()
    d121 = build_on_meta(create_encoder, "densenet121").state_dict()
    for key in ("conv1.weight", "bn1.running_mean", "layer1.0.downsample.0.weight", "layer4.2.conv3.weight",
                "layer4.2.bn3.num_batches_tracked"):
        assert key in r50
    for key in ("features.conv0.weight", "features.denseblock4.denselayer16.conv2.weight",
                "features.transition3.conv.weight", "features.norm5.running_var"):
        assert key in d121


EXPECTED_FEATURES = {  # (strides, channels) of the feature list
    "vgg16": ((1, 2, 4, 8, 16, 32), (64, 64, 128, 256, 512, 512)),
    "resnet18": ((2, 4, 8, 16, 32), (64, 64, 128, 256, 512)),
    "resnet34": ((2, 4, 8, 16, 32), (64, 64, 128, 256, 512)),
    "resnet50": ((2, 4, 8, 16, 32), (64, 256, 512, 1024, 2048)),
    "densenet121": ((2, 4, 8, 16, 32), (64, 256, 512, 1024, 1024)),
}


@pytest.mark.parametrize("name, in_channels", [
    ("vgg16", 1), ("resnet18", 4), ("resnet34", 1), ("resnet50", 4), ("densenet121", 1)])
def test_feature_strides_and_channels(name, in_channels):
    enc = create_encoder(name, in_channels).eval()
    strides, channels = EXPECTED_FEATURES[name]
    assert enc.strides == strides and enc.out_channels == channels
    with torch.no_grad():
        feats = enc(torch.randn(1, in_channels, 64, 96))
    assert [f.shape[1] for f in feats] == list(channels)
    assert [tuple(f.shape[2:]) for f in feats] == [(64 // s, 96 // s) for s in strides]


@pytest.mark.parametrize("name, output_stride, strides", [
    ("resnet18", 16, (2, 4, 8, 16, 16)), ("resnet18", 8, (2, 4, 8, 8, 8)), ("resnet50", 8, (2, 4, 8, 8, 8))])
def test_resnet_output_stride_by_dilation(name, output_stride, strides):
    plain = create_encoder(name)
    enc = create_encoder(name, output_stride=output_stride).eval()
    assert enc.strides == strides
    assert _params(enc) == _params(plain)  # dilation replaces stride, no new parameters
    assert enc.load_state_dict(plain.state_dict())  # same names and shapes
    # torchvision's rule: the first block of a dilated stage keeps the previous dilation
    assert enc.layer4[-1].conv2.dilation[0] == 32 // output_stride
    assert enc.layer4[0].conv2.dilation[0] == (1 if output_stride == 16 else 2)
    with torch.no_grad():
        feats = enc(torch.randn(1, 3, 32, 32))
    assert [f.shape[-1] for f in feats] == [32 // s for s in strides]


def test_bad_options_are_medseg_errors():
    with pytest.raises(MedsegError, match="output_stride"):
        create_encoder("resnet18", output_stride=4)
    with pytest.raises(MedsegError, match="no option"):
        create_encoder("vgg16", output_stride=16)
    with pytest.raises(MedsegError, match="unknown encoder"):
        create_encoder("resnet101")
    with pytest.raises(MedsegError, match="in_channels"):
        create_encoder("resnet18", in_channels=0)
    assert set(ENCODERS.names()) >= set(TORCHVISION_PARAMS)


def test_adapt_first_conv_weight_rule():
    w = torch.randn(8, 3, 3, 3)
    assert torch.allclose(adapt_first_conv_weight(w, 1), w.sum(1, keepdim=True))
    w4 = adapt_first_conv_weight(w, 4)
    assert torch.allclose(w4[:, :3], w * 0.75) and torch.allclose(w4[:, 3], w[:, 0] * 0.75)
    assert adapt_first_conv_weight(w, 3) is w


# --- weight loading: torchvision-format files written from our from-scratch classifiers -----------

def _classifier_file(tmp_path, name, filename, **kw):
    torch.manual_seed(0)
    clf = create_encoder(name, 3, num_classes=10, **kw).eval()
    path = tmp_path / filename
    torch.save(clf.state_dict(), path)
    return clf, path


@pytest.mark.parametrize("name", ["resnet18"])  # densenet121: see the legacy-names test
def test_load_torchvision_state_dict_drops_classifier(tmp_path, name):
    clf, path = _classifier_file(tmp_path, name, f"{name}-0000.pth")
    assert any(k.startswith(("fc.", "classifier.")) for k in torch.load(path, weights_only=True))
    enc = load_encoder_weights(create_encoder(name, 3), path).eval()
    for key, value in enc.state_dict().items():
        assert torch.equal(value, clf.state_dict()[key]), key
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(enc(x), clf(x)):
            assert torch.equal(a, b)


def test_load_vgg_features_indices(tmp_path):
    # A vgg16 file under torchvision names; classifier keys (here small stand-ins, the real ones are
    # 120M parameters) must be dropped.
    torch.manual_seed(0)
    src = create_encoder("vgg16_bn", 3).eval()
    state = dict(src.state_dict())
    state.update({"classifier.0.weight": torch.zeros(4, 2), "classifier.6.bias": torch.zeros(4)})
    path = tmp_path / "vgg16_bn-6c64b313.pth"
    torch.save(state, path)
    enc = load_encoder_weights(create_encoder("vgg16_bn", 3), path)
    assert torch.equal(enc.state_dict()["features.41.running_var"], src.state_dict()["features.41.running_var"])


def test_load_3_channel_weights_into_grey_and_multimodal(tmp_path):
    clf, path = _classifier_file(tmp_path, "resnet18", "r18.pth")
    grey = load_encoder_weights(create_encoder("resnet18", 1), path).eval()
    four = load_encoder_weights(create_encoder("resnet18", 4), path).eval()
    w = clf.conv1.weight
    assert torch.allclose(grey.conv1.weight, w.sum(1, keepdim=True))
    assert torch.allclose(four.conv1.weight[:, 3], w[:, 0] * 0.75)
    # a grey image through the summed kernel = the same grey image as RGB through the original
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.allclose(grey(x)[-1], clf(x.repeat(1, 3, 1, 1))[-1], atol=1e-5)


def test_load_legacy_densenet_names_and_wrapped_checkpoints(tmp_path):
    clf, _ = _classifier_file(tmp_path, "densenet121", "d.pth")
    legacy = {}
    for k, v in clf.state_dict().items():
        k = k.replace(".norm1.", ".norm.1.").replace(".conv2.", ".conv.2.")
        legacy["module." + k] = v
    assert "module.features.denseblock1.denselayer1.norm.1.weight" in legacy
    path = tmp_path / "densenet121-legacy.pth"
    torch.save({"state_dict": legacy, "epoch": 3}, path)
    enc = load_encoder_weights(create_encoder("densenet121", 3), path)
    key = "features.denseblock2.denselayer5.conv2.weight"
    assert torch.equal(enc.state_dict()[key], clf.state_dict()[key])


def test_load_safetensors(tmp_path):
    from safetensors.torch import save_file

    clf, _ = _classifier_file(tmp_path, "resnet18", "x.pth")
    path = tmp_path / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in clf.state_dict().items()}, str(path))
    enc = create_encoder("resnet18", 3, weights=str(path))
    assert torch.equal(enc.layer3[1].conv2.weight, clf.layer3[1].conv2.weight)


def test_wrong_keys_are_clear_errors(tmp_path):
    clf, _ = _classifier_file(tmp_path, "resnet18", "x.pth")
    state = dict(clf.state_dict())
    state["layer1.0.conv9.weight"] = state.pop("layer1.0.conv1.weight")
    bad = tmp_path / "renamed.pth"
    torch.save(state, bad)
    with pytest.raises(MedsegError, match=r"renamed\.pth.*missing keys: layer1\.0\.conv1\.weight.*"
                                          r"unexpected keys: layer1\.0\.conv9\.weight"):
        load_encoder_weights(create_encoder("resnet18", 3), bad)
    # resnet18 file into resnet34: many missing keys, counted (keys are checked before any data is
    # copied, so shape-only meta-device encoders suffice)
    with pytest.raises(MedsegError, match=r"missing keys: .*in all\)"):
        load_encoder_weights(build_on_meta(create_encoder, "resnet34", 3), tmp_path / "x.pth")
    # resnet18 file into resnet50: shapes differ as well
    with pytest.raises(MedsegError, match="shape mismatches"):
        load_encoder_weights(build_on_meta(create_encoder, "resnet50", 3), tmp_path / "x.pth")
    with pytest.raises(MedsegError, match="not found"):
        load_encoder_weights(create_encoder("resnet18", 3), tmp_path / "absent.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(MedsegError, match="junk.pth"):
        read_state_dict(junk)
    torch.save({"weights": [1, 2]}, tmp_path / "list.pth")
    with pytest.raises(MedsegError, match="not a state dict"):
        read_state_dict(tmp_path / "list.pth")
