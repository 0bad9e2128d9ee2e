"""Wide ResNet WRN-d-k with 1-bit weights (McDonnell, ICLR 2018) and its BN-free variant.

The network is built as an explicit list of ops (`WideResNet.ops`) and `forward` interprets
that list, so the layer graph exported into the deployment bundle is, by construction, the
graph that was trained. Tensor names are op names; the network input is called "image".
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from training.fake_quant import ActivationQuantizer
from training.graph import build_ops, channels_of, conv_scale, model_config, pads


def binary_sign(weight):
    """Deployed sign convention: w >= 0 -> +1, w < 0 -> -1 (a stored bit has no zero)."""
    return torch.where(weight >= 0, 1.0, -1.0).to(weight.dtype)


class SignConv2d(nn.Conv2d):
    """Bias-free conv; in 1-bit mode the forward weight is sqrt(2/(F^2 C_in)) * sign(W) (Eq. 1).

    The scale is the He-init standard deviation, a constant. The gradient with respect to the
    binary weight is passed unchanged to the full-precision W (straight-through estimator).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride, binary, padding=None):
        """padding: (top, bottom, left, right); None: kernel_size // 2 on every side."""
        top, bottom, left, right = padding or (kernel_size // 2,) * 4
        symmetric = top == bottom and left == right
        super().__init__(in_channels, out_channels, kernel_size, stride=stride,
                         padding=(top, left) if symmetric else 0, bias=False)
        # conv2d pads alike on both sides; other padding is F.pad's, before the conv
        self.pad_first = None if symmetric else (left, right, top, bottom)
        self.binary = binary
        self.scale = conv_scale(kernel_size, in_channels)
        self.inverse_scale = math.sqrt(kernel_size * kernel_size * in_channels / 2.0)  # 12.0 exactly for 32 channels
        nn.init.normal_(self.weight, std=self.scale)  # He-normal

    def effective_weight(self):
        if not self.binary:
            return self.weight
        # Value exactly scale * sign (w - w.detach() is exactly 0); gradient 1 to w.
        target = self.scale * binary_sign(self.weight.detach())
        return target + (self.weight - self.weight.detach())

    def forward(self, x):
        if self.pad_first:
            x = F.pad(x, self.pad_first)
        if not self.binary:
            return F.conv2d(x, self.weight, None, self.stride, self.padding)
        # The +-1 sums first (effective_weight / scale is exactly +-1), then one division by
        # 1/scale: on inputs stored on a power-of-two grid the sums are exact, and where 1/scale
        # is an integer (12 for 32 input channels) a result exactly halfway between two steps
        # stays exactly halfway, so training rounds it as the integer model does (up).
        signs = self.effective_weight() / self.scale
        return F.conv2d(x, signs, None, self.stride, self.padding) / self.inverse_scale


def average_pool(x, op):
    """The avgpool op: its padding on each side, divided by k*k or, without count_include_pad,
    by the window's pixels inside the input."""
    top, bottom, left, right = pads(op)
    k, stride = op["kernel"], op["stride"]
    if top == bottom == left == right:
        return F.avg_pool2d(x, k, stride, top, count_include_pad=op["count_include_pad"])
    padded = F.pad(x, (left, right, top, bottom))
    total = F.avg_pool2d(padded, k, stride) * (k * k)
    if op["count_include_pad"]:
        return total / (k * k)
    inside = F.pad(torch.ones_like(x[:1, :1]), (left, right, top, bottom))
    return total / (F.avg_pool2d(inside, k, stride) * (k * k))


class WideResNet(nn.Module):
    def __init__(self, depth=20, width=1, in_channels=1, num_classes=10, input_size=28,
                 weights="1bit", variant="bn", srelu_temperature=None, act_bits=None,
                 act_scales="calibrated", residual_bits=None, input_bits=None, padding="torch",
                 input_relu=False):
        """act_bits: None trains float activations; B rounds them where the integer model stores
        them, at B bits, the residual stream at `residual_bits` and the image as the first conv
        reads it (after the input BN) at `input_bits` (both default B)
        (training/fake_quant.py; the scales found as `act_scales` says)."""
        super().__init__()
        self.config = model_config(depth, width, in_channels, num_classes, input_size, weights,
                                   variant, srelu_temperature, padding, input_relu)
        self.ops = build_ops(self.config)
        self.layers = nn.ModuleDict()
        channels = channels_of(self.ops, self.config)
        for op in self.ops:
            if op["op"] == "conv":
                self.layers[op["name"]] = SignConv2d(op["in_channels"], op["out_channels"],
                                                     op["kernel"], op["stride"], op["binary"],
                                                     pads(op))
            elif op["op"] == "batchnorm":
                self.layers[op["name"]] = nn.BatchNorm2d(channels[op["inputs"][0]], eps=op["eps"],
                                                         affine=op["affine"])
        self.act_quant = None if act_bits is None else ActivationQuantizer(
            self.ops, act_bits, act_scales, residual_bits, input_bits)

    # -- execution ------------------------------------------------------------------------
    def forward(self, image):
        tensors, quant = {"image": image}, self.act_quant
        if quant is not None:
            quant.begin_pass()
        for op in self.ops:
            name, xs = op["name"], [tensors[i] for i in op["inputs"]]
            if quant is None:
                tensors[name] = self._run(op, xs)
            elif op["op"] == "add":
                tensors[name] = quant.add(name, *xs)
            else:
                tensors[name] = quant.output(name, self._run(op, xs))
        return tensors["logits"]

    def _run(self, op, inputs):
        kind, x = op["op"], inputs[0]
        if kind in ("conv", "batchnorm"):
            return self.layers[op["name"]](x)
        if kind == "relu":
            return F.relu(x)
        if kind == "srelu":
            return torch.clamp(x, min=op["floor"])
        if kind == "avgpool":
            return average_pool(x, op)
        if kind == "zero_channels":
            return F.pad(x, (0, 0, 0, 0, 0, op["out_channels"] - op["in_channels"]))
        if kind == "add":
            return x + inputs[1]
        if kind == "scale":
            return x * op["factor"]
        if kind == "global_avgpool":
            return x.mean(dim=(2, 3))
        raise ValueError(f"unknown op {kind!r}")

    # -- bookkeeping ----------------------------------------------------------------------
    def convs(self):
        return [(name, m) for name, m in self.layers.items() if isinstance(m, SignConv2d)]

    def batchnorms(self):
        return [(name, m) for name, m in self.layers.items() if isinstance(m, nn.BatchNorm2d)]

    def weight_count(self):
        """Conv weights: the paper's parameter count (one bit each when deployed)."""
        return sum(m.weight.numel() for _, m in self.convs())
