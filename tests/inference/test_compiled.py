"""Compiled backend (AOTInductor package in the model folder): same probabilities as eager PyTorch, partial
batches padded, one package per tile shape whatever the image's tile count, reused by a new predictor and
stale once the weights change, and a failing compiler falls back to eager PyTorch with a warning."""

import gc
import os
import tempfile

import numpy as np
import pytest
import torch

from medseg.image import Image
from medseg.inference.compiled import CompiledNetwork
from medseg.inference.predictor import Predictor
from medseg.nets import create_network
from tests.inference.test_predictor import make_model_folder

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_compiled_predictor_matches_torch_and_reuses_its_package(tmp_path):
    folder = make_model_folder(tmp_path / "m", spatial_dims=3, num_classes=3, label_values=(0, 1, 2))
    rng = np.random.default_rng(5)
    one_tile = Image(rng.normal(size=(1, 16, 16, 16)).astype(np.float32))
    # 3 tiles per axis at overlap 0.5: 27 tiles in batches of 4, so the last batch (3 tiles) is padded
    image = Image(rng.normal(size=(1, 32, 32, 32)).astype(np.float32))
    Predictor.from_folder(folder, backend="compile").warm_up()  # what `medseg train` does after a long run
    packages = sorted(folder.glob("*.pt2"))
    assert len(packages) == 1 and packages[0].name.startswith("model_4x1x16x16x16_"), packages
    stamp = packages[0].stat().st_mtime_ns
    for case in (one_tile, image):  # one tile: padded to the package's 4, not a package of its own
        ref = Predictor.from_folder(folder, backend="torch").predict_probabilities(case).array
        compiled = Predictor.from_folder(folder, backend="compile").predict_probabilities(case).array
        np.testing.assert_allclose(compiled, ref, atol=1e-4)
    assert sorted(folder.glob("*.pt2")) == packages and packages[0].stat().st_mtime_ns == stamp

    again = Predictor.from_folder(folder, backend="auto").predict_probabilities(image).array  # auto: compile in 3D
    np.testing.assert_allclose(again, ref, atol=1e-4)
    assert packages[0].stat().st_mtime_ns == stamp  # loaded, not recompiled

    weights = folder / "model.safetensors"
    os.utime(weights, ns=(stamp + 10**9, stamp + 10**9))  # newer weights: the package is stale
    assert not CompiledNetwork(torch.nn.Identity(), folder, weights=weights)._is_current(packages[0])


def test_packages_of_a_read_only_model_go_with_the_network(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the scratch folder is made
    network = CompiledNetwork(torch.nn.Conv3d(1, 2, 3, padding=1).eval(), folder=None, batch_size=1)
    with torch.no_grad():
        network(torch.zeros(1, 1, 4, 8, 8))
    if network._failed:
        pytest.skip("no compiler here: nothing was written")
    scratch = [p for p in tmp_path.iterdir() if p.name.startswith("medseg-compiled-")]
    assert len(scratch) == 1 and list(scratch[0].glob("*.pt2"))
    del network
    gc.collect()
    assert not scratch[0].exists()


def test_compile_failure_falls_back_to_eager(tmp_path, monkeypatch):
    import medseg.inference.compiled as compiled

    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(compiled, "compile_package", broken)
    net = create_network("unet", 1, 2, 3, features=4, depth=2).eval()
    run = CompiledNetwork(net, tmp_path)
    x = torch.randn(2, 1, 16, 16, 16)
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler"), torch.no_grad():
        out = run(x)
    with torch.no_grad():
        torch.testing.assert_close(out, net(x))
    assert not list(tmp_path.glob("*.pt2"))


@pytest.mark.data
def test_compiled_backend_on_a_real_volume(shared_data, tmp_path):
    """An LA volume (0.625 mm, resampled to a coarser model grid and back): the same labels."""
    from medseg.io import read_image
    from medseg.model_folder import load_config, save_config

    folder = make_model_folder(tmp_path / "m", spatial_dims=3, patch=(32, 32, 32),
                               preprocessing=[{"name": "zscore"}])
    config = load_config(folder)
    config.target_spacing = [1.25, 1.25, 1.25]
    save_config(folder, config)
    image = read_image(sorted((shared_data / "LA" / "imagesTr").glob("*.nii.gz"))[0])
    eager = Predictor.from_folder(folder, backend="torch").predict(image)
    compiled = Predictor.from_folder(folder, backend="compile").predict(image)
    assert compiled.same_geometry(image)
    # fused kernels round differently: an untrained network's near-ties may flip (2 of 2.25M voxels here)
    assert np.mean(compiled.array != eager.array) < 1e-4
