"""The planned network section builds the registry's U-Net and accepts the planned patch."""

import pytest

torch = pytest.importorskip("torch")

from medseg.nets import create_network  # noqa: E402
from medseg.planning import make_plan  # noqa: E402


@pytest.mark.parametrize("shapes, spacings", [
    ([(10, 64, 56)] * 3, [(6.0, 1.5, 1.5)] * 3),   # thick slices: 2D chosen, 3D anisotropic alternative
    ([(24, 24, 24)] * 3, [(1.0, 1.0, 1.0)] * 3),   # isotropic: 3D
])
def test_planned_networks_build_and_run(synthetic_fingerprint, cpu, shapes, spacings, one_thread):
    plan = make_plan(synthetic_fingerprint(shapes, spacings), cpu)
    for cfg in (plan, *[plan.use_configuration(c) for c in plan.alternatives]):
        options = dict(cfg.network)
        net = create_network(options.pop("name"), in_channels=1, num_classes=plan.num_classes,
                             spatial_dims=cfg.spatial_dims, **options).eval()
        with torch.no_grad():
            out = net(torch.zeros(1, 1, *cfg.patch_size))
        assert tuple(out.shape) == (1, plan.num_classes, *cfg.patch_size)
