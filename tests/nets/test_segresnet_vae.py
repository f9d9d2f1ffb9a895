import math

import pytest
import torch

from medseg.errors import MedsegError
from medseg.nets import create_network
from medseg.nets.segresnet_vae import SegResNetVAE

from _netcheck import assert_gradient_flow, assert_onnx_matches, count_params

TINY = dict(features=8, blocks_down=(1, 1, 1, 1), blocks_up=(1, 1, 1), latent_dim=8)


def test_train_outputs_3d_four_modalities():
    net = create_network("segresnet_vae", 4, 3, 3, input_size=(16, 32, 16), **TINY).train()
    out = net(torch.randn(2, 4, 16, 32, 16))
    assert out["logits"].shape == (2, 3, 16, 32, 16)
    assert out["reconstruction"].shape == (2, 4, 16, 32, 16)
    assert out["mu"].shape == out["logvar"].shape == (2, 8)


@pytest.mark.parametrize("dims,shape", [(3, (1, 4, 16, 16, 16)), (3, (1, 4, 9, 13, 11)), (2, (2, 4, 32, 32)),
                                        (2, (1, 4, 17, 30))])
def test_eval_returns_logits_only_any_size(dims, shape):
    net = create_network("segresnet_vae", 4, 3, dims, input_size=(16,) * dims, **TINY).eval()
    with torch.no_grad():
        out = net(torch.randn(shape))
    assert isinstance(out, torch.Tensor) and out.shape == (shape[0], 3, *shape[2:])


def test_vae_branch_unused_in_eval():
    net = SegResNetVAE(1, 2, 2, input_size=(16, 16), **TINY).eval()
    called = []
    net.vae_dense.register_forward_hook(lambda *a: called.append(1))
    with torch.no_grad():
        net(torch.randn(1, 1, 16, 16))
    assert not called


def test_size_divisor_covers_the_vae():
    assert SegResNetVAE(1, 2, 3, input_size=(16, 16, 16), **TINY).size_divisor == 16
    assert SegResNetVAE(1, 2, 3, vae=False, **TINY).size_divisor == 8


def test_input_size_checks():
    with pytest.raises(MedsegError, match="divisible by 16"):
        SegResNetVAE(1, 2, 3, input_size=(24, 16, 16), **TINY)
    net = SegResNetVAE(1, 2, 3, input_size=(16, 16, 16), **TINY).train()
    with pytest.raises(MedsegError, match="input_size"):
        net(torch.randn(1, 1, 32, 16, 16))


def test_parameter_count_of_the_paper_configuration():
    # Myronenko 2018, Tables 1-2 (the paper states no total): 4 modalities, 160x192x128 crop, 3 outputs.
    # Convolutions feeding a GroupNorm have no bias; GroupNorm has 2 parameters per channel.
    conv3 = lambda ci, co: 27 * ci * co  # noqa: E731
    block = lambda c: 2 * conv3(c, c) + 2 * 2 * c  # noqa: E731  GN-ReLU-conv-GN-ReLU-conv
    total = conv3(4, 32)  # initial conv (followed by dropout, then blocks with GN)
    for c, n in ((32, 1), (64, 2), (128, 2), (256, 4)):
        total += (conv3(c // 2, c) if c > 32 else 0) + n * block(c)
    for c in (128, 64, 32):  # decoder: 1x1x1 conv halving, upsample, add, one block
        total += 2 * c * c + block(c)
    total += 32 * 3 + 3  # final 1x1x1 conv with bias
    decoder_total = total
    flat = 16 * (160 // 16) * (192 // 16) * (128 // 16)
    total += 2 * 256 + conv3(256, 16) + 16  # VD: GN(256), ReLU, conv to 16 (stride 2, bias)
    total += flat * 256 + 256  # dense to 128 means + 128 log-variances
    total += 128 * flat + flat  # VU: dense back
    total += 16 * 256  # VU: 1x1x1 conv to 256 (up-sampling is parameter-free)
    for c in (128, 64, 32):  # VUp + VBlock
        total += 2 * c * c + block(c)
    total += 32 * 4 + 4  # Vend: 1x1x1 conv back to the 4 modalities
    with torch.device("meta"):
        net = SegResNetVAE(4, 3, 3, input_size=(160, 192, 128))
        plain = SegResNetVAE(4, 3, 3, vae=False)
    assert count_params(net) == total
    assert count_params(plain) == decoder_total
    assert math.isclose(total / 1e6, 26.03, abs_tol=0.01)


@pytest.mark.parametrize("dims", [2, 3])
def test_gradient_flow_including_vae(dims):
    net = SegResNetVAE(2, 3, dims, input_size=(16,) * dims, dropout=0.0, **TINY)
    assert_gradient_flow(net, torch.randn(2, 2, *(16,) * dims))


def test_onnx_eval_path_only(tmp_path):
    torch.manual_seed(0)
    net = SegResNetVAE(4, 3, 3, input_size=(16, 16, 16), **TINY)
    assert_onnx_matches(net, tmp_path, (1, 4, 16, 16, 16), [(1, 4, 11, 16, 9)])
    import onnx

    graph = onnx.load(str(tmp_path / "net.onnx")).graph
    assert not any(node.op_type == "Gemm" or node.op_type == "MatMul" for node in graph.node)  # no VAE dense


def _nested_regions_case(gen, size=16):
    """4 'MRI modalities' and 3 nested BraTS-like regions (whole tumour ⊃ tumour core ⊃ enhancing)."""
    z, y, x = torch.meshgrid(*(torch.arange(size, dtype=torch.float32),) * 3, indexing="ij")
    centre = 5.5 + 5 * torch.rand(3, generator=gen)
    r = ((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2).sqrt()
    regions = torch.stack([r < 6.0, r < 4.0, r < 2.5]).float()  # WT, TC, ET
    image = torch.stack([regions[0] + regions[2], regions[1], regions[0] - regions[1], regions[2]])
    return image + 0.3 * torch.randn(image.shape, generator=gen), regions


@pytest.mark.slow  # ~10 s of CPU: 40 training steps
def test_learns_nested_regions_with_sigmoid_heads_and_vae_terms(one_thread):
    # The whole network path on a synthetic 4-channel set: sigmoid region heads, Dice + 0.1 L2 + 0.1 KL
    # (the paper's loss, written inline here; medseg.losses owns the real one).
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    net = SegResNetVAE(4, 3, 3, input_size=(16, 16, 16), features=8, blocks_down=(1, 1, 1, 1), latent_dim=16,
                       dropout=0.0)
    optimiser = torch.optim.Adam(net.parameters(), lr=3e-3)
    cases = [_nested_regions_case(gen) for _ in range(6)]
    images, targets = torch.stack([c[0] for c in cases]), torch.stack([c[1] for c in cases])
    net.train()
    for _ in range(40):
        out = net(images)
        prob = torch.sigmoid(out["logits"])
        dice = (2 * (prob * targets).sum((2, 3, 4)) + 1) / (prob.sum((2, 3, 4)) + targets.sum((2, 3, 4)) + 1)
        kl = 0.5 * (out["mu"] ** 2 + out["logvar"].exp() - out["logvar"] - 1).mean()
        loss = (1 - dice).mean() + 0.1 * ((out["reconstruction"] - images) ** 2).mean() + 0.1 * kl
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    test_image, test_regions = _nested_regions_case(gen)
    net.eval()
    with torch.no_grad():
        predicted = torch.sigmoid(net(test_image[None]))[0] > 0.5
    dice = [(2 * (p & t.bool()).sum() / (p.sum() + t.sum())).item() for p, t in zip(predicted, test_regions)]
    assert min(dice) > 0.8, dice
    # nested output regions, as the targets
    assert (predicted[1] & ~predicted[0]).float().mean() < 0.01
