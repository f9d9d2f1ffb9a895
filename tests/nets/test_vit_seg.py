"""ViT segmenter: any input size in 2D and 3D, gradient flow, ONNX export, and it learns."""

import pytest
import torch

from medseg.errors import MedsegError
from medseg.nets import NETWORKS, create_network
from medseg.nets.meta import count_parameters

from _netcheck import assert_gradient_flow, assert_onnx_matches

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = {"dim": 32, "depth": 2, "heads": 2}


@pytest.mark.parametrize("dims, shape", [(2, (2, 1, 37, 50)), (2, (1, 1, 16, 16)), (3, (1, 2, 9, 20, 17))])
def test_output_shape_any_size(dims, shape):
    net = create_network("vit_seg", shape[1], 3, dims, **SMALL).eval()
    assert net.size_divisor == (16 if dims == 2 else 8)
    with torch.no_grad():
        assert net(torch.randn(shape)).shape == (shape[0], 3, *shape[2:])


def test_registered_with_citation_and_parameters():
    entry = NETWORKS.entry("vit_seg")
    assert entry.metadata["dims"] == (2, 3) and "SETR" in entry.metadata["citation"]
    # patch embedding 16·16·192 + 192, positions 192·8·8, 8 blocks of 12·192² + 13·192 (qkv, proj, MLP,
    # 2 LayerNorms), final LayerNorm, head: transposed convs 192→96→48→24→16 (+ instance norm), 1×1 to 2
    block = 12 * 192 * 192 + 13 * 192
    head = sum(4 * a * b + b + 2 * b for a, b in [(192, 96), (96, 48), (48, 24), (24, 16)]) + 16 * 2 + 2
    expected = 256 * 192 + 192 + 192 * 64 + 8 * block + 2 * 192 + head
    assert count_parameters(create_network, "vit_seg", 1, 2, 2) == expected
    with pytest.raises(MedsegError, match="power of 2"):
        create_network("vit_seg", 1, 2, 2, patch_size=12)
    with pytest.raises(MedsegError, match="unknown option"):
        create_network("vit_seg", 1, 2, 2, width=3)


def test_gradient_reaches_every_parameter():
    torch.manual_seed(0)
    assert_gradient_flow(create_network("vit_seg", 1, 2, 2, **SMALL), torch.randn(2, 1, 32, 48))


def test_onnx_export_matches_at_other_sizes(tmp_path):
    torch.manual_seed(0)
    net = create_network("vit_seg", 1, 2, 2, **SMALL)
    assert_onnx_matches(net, tmp_path, (1, 1, 64, 64), test_shapes=[(2, 1, 48, 80), (1, 1, 37, 41)])


def test_it_learns_a_bright_square():
    torch.manual_seed(0)
    net = create_network("vit_seg", 1, 2, 2, patch_size=8, **SMALL)
    x = torch.randn(4, 1, 32, 32) * 0.3
    y = torch.zeros(4, 32, 32, dtype=torch.long)
    for i in range(4):
        r, c = 4 + 4 * i, 20 - 4 * i
        x[i, 0, r:r + 8, c:c + 8] += 2.0
        y[i, r:r + 8, c:c + 8] = 1
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0], losses[::5]
    net.eval()
    with torch.no_grad():
        pred = net(x).argmax(1)
    assert ((pred == 1) & (y == 1)).sum() / (y == 1).sum() > 0.5
