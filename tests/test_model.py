"""The 1-bit WRN matches the paper: Eq. 1 scale and sign, STE gradient, sizes, shortcut shapes."""
import math

import pytest
import torch
import torch.nn.functional as F

from training.model import SignConv2d, WideResNet, binary_sign


def test_binary_weight_is_constant_scale_times_sign_with_zero_mapped_to_plus_one():
    conv = SignConv2d(4, 3, 3, 1, binary=True)
    with torch.no_grad():
        conv.weight.normal_()
        conv.weight[0, 0, 0, 0] = 0.0
        conv.weight[0, 0, 0, 1] = -1e-12
    w = conv.effective_weight()
    assert conv.scale == pytest.approx(math.sqrt(2 / (3 * 3 * 4)))
    assert w[0, 0, 0, 0].item() == pytest.approx(conv.scale)     # sign(0) -> +1
    assert w[0, 0, 0, 1].item() == pytest.approx(-conv.scale)
    expected = torch.where(conv.weight >= 0, conv.scale, -conv.scale)
    assert torch.equal(w, expected)
    assert set(torch.unique(binary_sign(conv.weight)).tolist()) == {-1.0, 1.0}


def test_float_mode_uses_the_weights_unchanged():
    conv = SignConv2d(4, 3, 3, 1, binary=False)
    assert conv.effective_weight() is conv.weight


def test_straight_through_gradient_reaches_full_precision_weights_unchanged():
    torch.manual_seed(0)
    conv = SignConv2d(2, 2, 3, 1, binary=True)
    x = torch.randn(3, 2, 5, 5)
    g = torch.randn(3, 2, 5, 5)
    (conv(x) * g).sum().backward()
    # Gradient of the same conv w.r.t. its (binary) weight, computed independently.
    wb = (conv.scale * torch.where(conv.weight >= 0, 1.0, -1.0)).detach().requires_grad_()
    (F.conv2d(x, wb, padding=1) * g).sum().backward()
    assert torch.allclose(conv.weight.grad, wb.grad)
    assert conv.weight.grad.abs().sum() > 0


def test_he_normal_init():
    torch.manual_seed(0)
    conv = SignConv2d(64, 64, 3, 1, binary=True)
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (9 * 64)), rel=0.05)
    assert conv.bias is None


@pytest.mark.parametrize("depth,width,expected", [(20, 4, 4_280_512), (20, 10, 26_737_120)])
def test_parameter_counts_match_paper(depth, width, expected):
    # Paper: WRN-20-4 4.3M, WRN-20-10 26.8M weights (26,737,120 bits with a 10-class head).
    m = WideResNet(depth, width, in_channels=3, num_classes=10, input_size=32)
    assert m.weight_count() == expected
    assert len(m.convs()) == depth


def test_every_conv_is_binary_including_first_and_last():
    m = WideResNet(20, 1, 1, 10, 28, weights="1bit")
    assert all(c.binary for _, c in m.convs())
    assert m.convs()[0][0] == "conv0" and m.convs()[-1][0] == "head_conv"
    assert not any(c.binary for _, c in WideResNet(8, 1, weights="float").convs())


def test_batchnorms_non_affine_except_input():
    m = WideResNet(8, 2, 3, 7, 16)
    bns = dict(m.batchnorms())
    assert bns["input_bn"].affine
    assert all(not bn.affine and bn.eps == 1e-5 for n, bn in bns.items() if n != "input_bn")
    assert "head_bn" in bns  # BN after the 1x1 head conv, before global average pooling


def test_srelu_variant_has_no_bn_but_the_input_one():
    m = WideResNet(8, 1, variant="srelu")
    assert [n for n, _ in m.batchnorms()] == ["input_bn"]
    x = torch.linspace(-3, 3, 7)
    op = next(o for o in m.ops if o["op"] == "srelu")
    assert torch.equal(m._run(op, [x]), torch.tensor([-1.0, -1, -1, 0, 1, 2, 3]))


def test_shortcut_shapes_and_values_through_a_downsampling_block():
    m = WideResNet(8, 1, 1, 10, 28).eval()
    captured = {}
    orig = m._run

    def spy(op, inputs):
        out = orig(op, inputs)
        captured[op["name"]] = out
        return out

    m._run = spy
    x = torch.rand(2, 1, 28, 28) * 255
    logits = m(x)
    assert logits.shape == (2, 10)
    assert captured["s1b1_add"].shape == (2, 16, 28, 28)
    assert captured["s2b1_pool"].shape == (2, 16, 14, 14)
    assert captured["s2b1_pad"].shape == (2, 32, 14, 14)
    assert captured["s2b1_conv1"].shape == (2, 32, 14, 14)
    assert captured["s3b1_add"].shape == (2, 64, 7, 7)
    # Average over the 3x3 window, padding counted: the corner output is (sum of 2x2)/9.
    src = captured["s1b1_add"]
    assert torch.allclose(captured["s2b1_pool"][:, :, 0, 0], src[:, :, :2, :2].sum((2, 3)) / 9, atol=1e-5)
    assert torch.allclose(captured["s2b1_pool"][:, :, 1, 1], src[:, :, 1:4, 1:4].mean((2, 3)), atol=1e-5)
    # Zero channels are appended after the pooled ones.
    assert torch.equal(captured["s2b1_pad"][:, :16], captured["s2b1_pool"])
    assert captured["s2b1_pad"][:, 16:].abs().sum() == 0


def test_graph_is_consistent_and_feeds_forward_in_order():
    m = WideResNet(14, 1, 3, 100, 32, variant="srelu")
    seen = {"image"}
    for op in m.ops:
        assert all(i in seen for i in op["inputs"]), op
        seen.add(op["name"])
    assert m.ops[-1]["name"] == "logits"
    assert sum(o["op"] == "add" for o in m.ops) == 3 * 2
    assert m(torch.rand(2, 3, 32, 32) * 255).shape == (2, 100)


@pytest.mark.parametrize("depth", [7, 10, 2])
def test_bad_depth_rejected(depth):
    with pytest.raises(ValueError, match="6n\\+2"):
        WideResNet(depth)
