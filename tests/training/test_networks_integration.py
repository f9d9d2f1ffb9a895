"""Every registered network trains (a few iterations) and predicts through the same trainer / predictor path.

Tiny synthetic datasets, tiny widths: this checks the plumbing (network contract, patch size vs size
divisor, input_size for SegResNet-VAE, deep-supervision and VAE losses, region heads), not accuracy.
Also: transfer learning (encoder weights, frozen encoder, staged unfreezing).
"""

import json

import numpy as np
import pytest
import torch

from medseg.datasets import make_organs3d, make_tumour3d, make_vessels2d
from medseg.inference.predictor import Predictor
from medseg.io import read_image
from medseg.losses import NetworkLoss, build_loss, deep_supervision_weights
from medseg.model_folder import load_config
from medseg.training.config import TrainingConfig, parse_unfreeze_schedule
from medseg.training.loop import train

slow = pytest.mark.slow

NETS_2D = [
    ("unet", {"features": 4, "depth": 2}),
    ("unet_plus_plus", {"features": 4, "depth": 2}),
    ("dunet", {"features": 4, "depth": 2}),
    ("patch_cnn", {"patch_size": 13, "kernel_size": 3, "features": [4, 8], "fc_features": 8}),
    ("encoder_unet", {"encoder": "resnet18", "decoder_channels": [16, 8, 8, 8, 4]}),
    ("deeplabv3plus", {"encoder": "resnet18"}),
    # the VGG-16 networks are heavy even at 64²: their light options, and only with -m slow
    pytest.param("fcn8s", {"fc_channels": 64, "fc_kernel": 1}, marks=slow),
    pytest.param("segnet", {}, marks=slow),
]

NETS_3D = [
    ("unet", {"features": 4, "depth": 2}),
    ("unet3d", {"features": 4, "depth": 2}),
    ("vnet", {"features": 4, "encoder_convs": [1, 1, 1], "decoder_convs": [1, 1], "kernel_size": 3}),
    ("unet_plus_plus", {"features": 4, "depth": 2}),
]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def vessels(tmp_path_factory):
    return make_vessels2d(tmp_path_factory.mktemp("d") / "vessels", cases=3, seed=0, size=64)


@pytest.fixture(scope="module")
def organs(tmp_path_factory):
    return make_organs3d(tmp_path_factory.mktemp("d") / "organs", cases=3, seed=0, shape=(16, 32, 32),
                         num_organs=2)


@pytest.fixture(scope="module")
def tumours(tmp_path_factory):
    return make_tumour3d(tmp_path_factory.mktemp("d") / "tumours", cases=3, seed=0, shape=(16, 32, 32))


def _config(net, options, **kw):
    base = dict(network=net, network_options=dict(options), batch_size=2, iterations=2, val_every=100,
                checkpoint_every=100, threads=1, seed=0, warmup_iterations=1, augmentation={"enabled": False},
                prefetch=1)
    base.update(kw)
    return TrainingConfig(**base)


def _train_and_predict(dataset, folder, config, case="case_002"):
    result = train(dataset, folder, config, val_cases=[case], progress=False, check=False)
    assert result.iterations == config.iterations
    assert np.isfinite(result.last_metrics["val_dice"])
    image = read_image(sorted((dataset / "imagesTr").glob(f"{case}_*"))
                       if load_config(folder).input_channels > 1 else
                       next((dataset / "imagesTr").glob(f"{case}_0000*")))
    labels = Predictor.from_folder(folder, backend="torch").predict(image)
    assert labels.spatial_shape == image.spatial_shape
    assert np.allclose(labels.spacing, image.spacing) and np.allclose(labels.origin, image.origin)
    return labels


@pytest.mark.parametrize("net,options", NETS_2D)
def test_every_2d_network_trains_and_predicts(vessels, tmp_path, net, options):
    labels = _train_and_predict(vessels, tmp_path / net, _config(net, options, patch_size=(64, 64)))
    assert set(np.unique(labels.array)) <= {0, 1}


@pytest.mark.parametrize("net,options", NETS_3D)
def test_every_3d_network_trains_and_predicts(organs, tmp_path, net, options):
    labels = _train_and_predict(organs, tmp_path / net, _config(net, options, patch_size=(16, 32, 32)))
    assert set(np.unique(labels.array)) <= {0, 1, 2}


def test_segresnet_vae_regions_automatic_patch_and_vae_loss(tumours, tmp_path):
    """SegResNet-VAE on the 4-channel nested-region phantom: sigmoid heads, input_size = the automatic
    patch size (divisible by the VAE's 16), Dice-type loss + 0.1 L2 + 0.1 KL."""
    options = {"features": 8, "blocks_down": [1, 1, 1, 1], "blocks_up": [1, 1, 1], "latent_dim": 8, "groups": 4}
    folder = tmp_path / "srv"
    labels = _train_and_predict(tumours, folder, _config("segresnet_vae", options))
    cfg = load_config(folder)
    assert cfg.regions and cfg.activation == "sigmoid" and cfg.num_classes == 3 and cfg.in_channels == 4
    assert all(p % 16 == 0 for p in cfg.patch_size)
    assert cfg.network_options["input_size"] == cfg.patch_size
    assert set(np.unique(labels.array)) <= {0, 1, 2, 3}

    # the loss the trainer builds adds exactly 0.1 * MSE(reconstruction) + 0.1 * KL to the region loss
    from medseg.model_folder import build_network

    net = build_network(cfg)
    net.train()
    x = torch.randn(1, 4, *cfg.patch_size)
    target = torch.randint(0, 4, (1, 1, *cfg.patch_size))
    out = net(x)
    assert set(out) == {"logits", "reconstruction", "mu", "logvar"}
    loss = build_loss("region", regions=[[1, 2, 3], [2, 3], [3]])
    base = loss.base(out["logits"], target)
    mse = torch.mean((out["reconstruction"] - x) ** 2)
    kl = torch.mean(out["mu"] ** 2 + out["logvar"].exp() - out["logvar"] - 1)
    assert torch.allclose(loss(out, target, x), base + 0.1 * mse + 0.1 * kl, atol=1e-6)


def test_deep_supervision_weighting_follows_the_network():
    assert deep_supervision_weights(2, "equal") == [0.5, 0.5]
    assert deep_supervision_weights(2) == pytest.approx([2 / 3, 1 / 3])

    class Base(torch.nn.Module):
        def forward(self, logits, target):
            return logits.mean()

    out = {"logits": torch.ones(1, 2, 4, 4), "deep_supervision": [torch.zeros(1, 2, 4, 4)]}
    target = torch.zeros(1, 1, 4, 4, dtype=torch.long)
    assert float(NetworkLoss(Base(), weighting="equal")(out, target)) == pytest.approx(0.5)
    assert float(NetworkLoss(Base())(out, target)) == pytest.approx(2 / 3)
    from medseg.errors import MedsegError

    with pytest.raises(MedsegError):
        NetworkLoss(Base(), weighting="bogus")


# --- transfer learning ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def resnet_weights(tmp_path_factory):
    from medseg.nets.encoders import create_encoder

    torch.manual_seed(123)
    encoder = create_encoder("resnet18", in_channels=3)
    path = tmp_path_factory.mktemp("w") / "resnet18.pth"
    torch.save(encoder.state_dict(), path)
    return path


def _encoder_state(folder):
    from safetensors.torch import load_file

    return {k[len("encoder."):]: v for k, v in load_file(folder / "model.safetensors").items()
            if k.startswith("encoder.")}


def _loaded_reference(resnet_weights):
    from medseg.nets import create_network
    from medseg.nets.encoders.weights import load_encoder_weights

    net = create_network("encoder_unet", 1, 2, 2, encoder="resnet18", decoder_channels=[16, 8, 8, 8, 4])
    load_encoder_weights(net, resnet_weights)
    return net.encoder.state_dict()


ENC_OPTIONS = {"encoder": "resnet18", "decoder_channels": [16, 8, 8, 8, 4]}


def test_encoder_weights_and_frozen_encoder(vessels, tmp_path, resnet_weights):
    folder = tmp_path / "frozen"
    config = _config("encoder_unet", ENC_OPTIONS, patch_size=(64, 64), iterations=2,
                     encoder_weights=str(resnet_weights), freeze_encoder=True)
    train(vessels, folder, config, progress=False, check=False)
    reference = _loaded_reference(resnet_weights)
    trained = _encoder_state(folder)
    # weights AND batch-norm running statistics of the frozen encoder are exactly the loaded ones
    for key in ("conv1.weight", "layer4.1.conv2.weight", "bn1.running_mean", "layer1.0.bn1.running_var"):
        assert torch.equal(trained[key], reference[key]), key
    saved = json.loads((folder / "config.json").read_text(encoding="utf-8"))["training"]
    assert saved["encoder_weights"] == str(resnet_weights) and saved["freeze_encoder"] is True
    assert "encoder_weights" not in load_config(folder).network_options  # prediction needs no weights file


def test_staged_unfreezing(vessels, tmp_path, resnet_weights):
    assert parse_unfreeze_schedule("0:decoder,2:encoder.layer4") == [[0, "decoder"], [2, "encoder.layer4"]]
    folder = tmp_path / "staged"
    config = _config("encoder_unet", ENC_OPTIONS, patch_size=(64, 64), iterations=3,
                     encoder_weights=str(resnet_weights), unfreeze_schedule="0:decoder,2:encoder.layer4")
    train(vessels, folder, config, progress=False, check=False)
    reference = _loaded_reference(resnet_weights)
    trained = _encoder_state(folder)
    assert torch.equal(trained["layer3.1.conv2.weight"], reference["layer3.1.conv2.weight"])  # never unfrozen
    assert not torch.equal(trained["layer4.1.conv2.weight"], reference["layer4.1.conv2.weight"])  # from it 2


def test_cli_fine_tuning_options(vessels, tmp_path, resnet_weights):
    from medseg.cli import main

    folder = tmp_path / "cli"
    args = ["train", str(vessels), "--out", str(folder), "--net", "encoder_unet", "--iterations", "1",
            "--patch-size", "64", "--batch-size", "2", "--threads", "1", "--no-progress", "--no-augmentation",
            "--net-option", "encoder=resnet18", "--net-option", "decoder_channels=[16,8,8,8,4]",
            "--encoder-weights", str(resnet_weights), "--unfreeze-schedule", "0:decoder,1:all"]
    assert main(args) == 0
    training = load_config(folder).training
    assert training["unfreeze_schedule"] == [[0, "decoder"], [1, "all"]]
    assert main(["train", str(vessels), "--out", str(tmp_path / "bad"), "--iterations", "1",
                 "--unfreeze-schedule", "decoder"]) == 1
