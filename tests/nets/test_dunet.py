import pytest
import torch
import torch.nn.functional as F

from medseg.errors import MedsegError
from medseg.nets import create_network
from medseg.nets.dunet import DUNet
from medseg.nets.layers.deformable_conv import DeformConv2d, deform_conv2d

from _netcheck import assert_gradient_flow, assert_onnx_matches, count_params


def _bilinear_reference(img, y, x):
    """Bilinear value of img (C, H, W) at real (y, x), zero outside: explicit, loop-based."""
    c, h, w = img.shape
    y0, x0 = int(torch.floor(torch.tensor(y))), int(torch.floor(torch.tensor(x)))
    out = torch.zeros(c, dtype=img.dtype)
    for yy in (y0, y0 + 1):
        for xx in (x0, x0 + 1):
            if 0 <= yy < h and 0 <= xx < w:
                out += (1 - abs(y - yy)) * (1 - abs(x - xx)) * img[:, yy, xx]
    return out


def _deform_reference(x, offset, weight, bias, stride, padding, dilation, mask):
    """Textbook deformable convolution, one output value at a time (DCNv2 equation 1)."""
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    ho, wo = offset.shape[2:]
    out = torch.zeros(n, o, ho, wo, dtype=x.dtype)
    for b in range(n):
        for i in range(ho):
            for j in range(wo):
                acc = bias.clone()
                for k in range(kh * kw):
                    ky, kx = divmod(k, kw)
                    py = i * stride - padding + ky * dilation + float(offset[b, 2 * k, i, j])
                    px = j * stride - padding + kx * dilation + float(offset[b, 2 * k + 1, i, j])
                    value = _bilinear_reference(x[b], py, px) * float(mask[b, k, i, j])
                    acc += weight[:, :, ky, kx] @ value
                out[b, :, i, j] = acc
    return out


@pytest.mark.parametrize("stride,padding,dilation", [(1, 1, 1), (2, 1, 1), (1, 2, 2), (2, 0, 1)])
def test_zero_offsets_unit_mask_reproduce_conv2d(stride, padding, dilation):
    torch.manual_seed(0)
    x = torch.randn(2, 4, 9, 8, dtype=torch.float64)
    w = torch.randn(5, 4, 3, 3, dtype=torch.float64)
    b = torch.randn(5, dtype=torch.float64)
    ref = F.conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation)
    ho, wo = ref.shape[2:]
    for groups in (1, 2):
        offset = torch.zeros(2, 2 * 9 * groups, ho, wo, dtype=torch.float64)
        mask = torch.ones(2, 9 * groups, ho, wo, dtype=torch.float64)
        torch.testing.assert_close(deform_conv2d(x, offset, w, b, stride, padding, dilation, mask), ref,
                                   rtol=0, atol=1e-12)
        torch.testing.assert_close(deform_conv2d(x, offset, w, b, stride, padding, dilation), ref, rtol=0, atol=1e-12)


def test_fractional_offsets_match_textbook_definition():
    torch.manual_seed(1)
    x = torch.randn(1, 2, 6, 5, dtype=torch.float64)
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64)
    b = torch.randn(3, dtype=torch.float64)
    offset = torch.randn(1, 18, 3, 3, dtype=torch.float64) * 1.5  # some points fall outside the image
    mask = torch.rand(1, 9, 3, 3, dtype=torch.float64)
    got = deform_conv2d(x, offset, w, b, stride=2, padding=1, dilation=1, mask=mask)
    torch.testing.assert_close(got, _deform_reference(x, offset, w, b, 2, 1, 1, mask), rtol=0, atol=1e-12)


def test_module_at_initialisation_is_an_ordinary_convolution():
    torch.manual_seed(0)
    for modulation in (True, False):
        dcn = DeformConv2d(3, 4, 3, padding=1, modulation=modulation)
        conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        conv.load_state_dict({"weight": dcn.weight, "bias": dcn.bias})
        x = torch.randn(2, 3, 11, 10)
        torch.testing.assert_close(dcn(x), conv(x), rtol=1e-5, atol=1e-5)


def _off_grid_offsets(shape):
    # offsets away from integers: bilinear interpolation is not differentiable on the integer grid lines
    return (torch.randint(-2, 3, shape) + 0.2 + 0.6 * torch.rand(shape)).double().requires_grad_()


def test_gradcheck_input_and_offsets():
    torch.manual_seed(0)
    x = torch.randn(1, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    offset = _off_grid_offsets((1, 18, 3, 3))  # some sampling points fall outside the image
    mask = torch.rand(1, 9, 3, 3, dtype=torch.float64)
    w = torch.randn(2, 1, 3, 3, dtype=torch.float64)
    fn = lambda x, offset: deform_conv2d(x, offset, w, None, 1, 1, 1, mask)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, offset), eps=1e-6, atol=1e-6, check_batched_grad=False)


def test_gradcheck_all_arguments_fast_mode():
    # Fast mode checks a random projection of the full Jacobian: mask, weights and bias too, 2 channels.
    torch.manual_seed(1)
    x = torch.randn(1, 2, 4, 3, dtype=torch.float64, requires_grad=True)
    offset = _off_grid_offsets((1, 18, 2, 2))
    mask = torch.rand(1, 9, 2, 2, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, dtype=torch.float64, requires_grad=True)
    fn = lambda x, offset, mask, w, b: deform_conv2d(x, offset, w, b, 2, 1, 1, mask)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, offset, mask, w, b), eps=1e-6, atol=1e-6, fast_mode=True)


def test_shape_errors():
    with pytest.raises(MedsegError):
        deform_conv2d(torch.zeros(1, 2, 5, 5), torch.zeros(1, 17, 5, 5), torch.zeros(1, 2, 3, 3), padding=1)
    with pytest.raises(MedsegError):
        deform_conv2d(torch.zeros(1, 2, 5, 5), torch.zeros(1, 18, 4, 5), torch.zeros(1, 2, 3, 3), padding=1)


@pytest.mark.parametrize("shape", [(2, 1, 48, 48), (1, 1, 37, 21), (1, 3, 16, 16)])
def test_dunet_output_shape(shape):
    net = create_network("dunet", shape[1], 2, 2, features=4).eval()
    with torch.no_grad():
        assert net(torch.randn(shape)).shape == (shape[0], 2, *shape[2:])


def test_dunet_is_2d_only():
    with pytest.raises(MedsegError):
        create_network("dunet", 1, 2, 3)


def test_dunet_layout_follows_the_release():
    net = DUNet(1, 2)
    assert net.channels == [16, 32, 64, 128, 128]
    deformable = lambda m: any(isinstance(x, DeformConv2d) for x in m.modules())  # noqa: E731
    assert [deformable(m) for m in net.encoder] == [False, True, True, False, False]
    assert [deformable(m) for m in net.decoder] == [True, True, False, False]
    assert net.head.in_channels == 16 + 1  # the input image joins the last features


def test_dunet_parameter_count_of_the_release_configuration():
    # Jin et al. 2019 / authors' release (models/deform_unet.py, downsize factor 4): computed layer by layer.
    # 3x3 conv without bias (batch norm follows, 2 parameters per channel); a deformable conv adds its
    # offset conv (3x3, with bias) to 2*9 offsets (+9 modulation scalars for DCNv2).
    def block(ci, co, deform, modulation):
        total = 9 * ci * co + 9 * co * co + 2 * 2 * co
        if deform:
            extra = 27 if modulation else 18
            total += (9 * ci + 1) * extra + (9 * co + 1) * extra
        return total

    for modulation in (False, True):
        total = block(1, 16, False, modulation) + block(16, 32, True, modulation) + block(32, 64, True, modulation)
        total += block(64, 128, False, modulation) + block(128, 128, False, modulation)
        total += block(256, 64, False, modulation) + block(128, 32, False, modulation)
        total += block(64, 16, True, modulation) + block(32, 16, True, modulation)
        total += 17 * 2 + 2
        assert count_params(DUNet(1, 2, modulation=modulation)) == total
    assert count_params(DUNet(1, 2, modulation=False)) == 882_724


def test_dunet_gradient_flow_reaches_offsets():
    net = DUNet(1, 2, features=4, depth=2, deformable_encoder=(0, 1), deformable_decoder=(0,))
    # move off the zero-offset start so that every offset/modulation weight is exercised
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, DeformConv2d):
                m.offset_conv.weight.normal_(0, 0.1)
    assert_gradient_flow(net, torch.randn(2, 1, 16, 16))


def test_dunet_onnx(tmp_path):
    torch.manual_seed(0)
    net = DUNet(1, 2, features=2, depth=1, deformable_encoder=(1,), deformable_decoder=())
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, DeformConv2d):
                m.offset_conv.weight.normal_(0, 0.2)
    net.eval()
    for m in net.modules():  # give batch norm non-trivial statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    assert_onnx_matches(net, tmp_path, (1, 1, 16, 16), [(2, 1, 13, 19)])
