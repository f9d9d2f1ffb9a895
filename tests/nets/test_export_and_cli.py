import json

import pytest
import torch

from medseg.cli import main
from medseg.cli.nets import network_table
from medseg.errors import MedsegError
from medseg.nets import NETWORKS
from medseg.nets.export import export_onnx

MINE = {"unet": (2, 3), "unet3d": (3,), "unet_plus_plus": (2, 3), "dunet": (2,), "vnet": (3, 2),
        "segresnet_vae": (3, 2), "patch_cnn": (2,)}


class _Broken(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 1, 1)

    def forward(self, x):
        raise RuntimeError("boom")


def test_export_failure_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        export_onnx(_Broken(), tmp_path / "x.onnx", (1, 1, 8, 8))
    assert list(tmp_path.iterdir()) == []


def test_export_rejects_bad_shape(tmp_path):
    with pytest.raises(MedsegError):
        export_onnx(_Broken(), tmp_path / "x.onnx", (8, 8))


def test_export_restores_training_mode(tmp_path):
    net = NETWORKS.get("unet")(in_channels=1, num_classes=2, spatial_dims=2, features=2, depth=1).train()
    export_onnx(net, tmp_path / "u.onnx", (1, 1, 8, 8))
    assert net.training and (tmp_path / "u.onnx").is_file()


def test_registry_metadata():
    for name, dims in MINE.items():
        entry = NETWORKS.entry(name)
        assert tuple(entry.metadata["dims"]) == dims
        assert entry.metadata["citation"] and entry.metadata["summary"]


def test_network_table_counts_default_configs():
    rows = {r["name"]: r for r in network_table()}
    # 2D U-Net 32..512, 1 in / 2 out: the paper-style count 7,759,554 (7,759,521 + 33 for the second class,
    # see test_unet_plus_plus) + 2,944 (18 convs: bias c -> instance norm 2c) - 480 (no up-conv biases).
    assert rows["unet"]["parameters"][2] == 7_759_554 + 2_944 - 480
    assert rows["unet_plus_plus"]["parameters"][2] > rows["unet"]["parameters"][2]
    for name in MINE:
        assert rows[name]["error"] is None and all(v for v in rows[name]["parameters"].values())
    assert rows["litemedsam"]["parameters"] == {2: 9_791_300} and rows["litemedsam"]["input"] == "256×256 (resized)"
    assert rows["vit_seg"]["input"] == "any (multiple of 16 in 2D, 8 in 3D pads nothing)"
    assert rows["unet"]["input"] == "any (multiple of 16 pads nothing)"


def test_cli_nets_json(capsys):
    assert main(["nets", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in rows} >= set(MINE)


def test_cli_nets_table(capsys):
    assert main(["nets"]) == 0
    out = capsys.readouterr().out
    assert "Ronneberger" in out and "unet_plus_plus" in out
