"""Wide ResNet WRN-d-k with 1-bit weights (McDonnell, ICLR 2018) and its BN-free variant.

The network is built as an explicit list of ops (`WideResNet.ops`) and `forward` interprets
that list, so the layer graph exported into the deployment bundle is, by construction, the
graph that was trained. Tensor names are op names; the network input is called "image".
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

WEIGHT_MODES = ("1bit", "float")
VARIANTS = ("bn", "srelu")
BN_EPS = 1e-5
# The BN-free variant scales the head output by 1/T before pooling; 25 is the value in the
# authors' shifted-ReLU code.
DEFAULT_SRELU_TEMPERATURE = 25.0
SRELU_FLOOR = -1.0


def binary_sign(weight):
    """Deployed sign convention: w >= 0 -> +1, w < 0 -> -1 (a stored bit has no zero)."""
    return torch.where(weight >= 0, 1.0, -1.0).to(weight.dtype)


class SignConv2d(nn.Conv2d):
    """Bias-free conv; in 1-bit mode the forward weight is sqrt(2/(F^2 C_in)) * sign(W) (Eq. 1).

    The scale is the He-init standard deviation, a constant. The gradient with respect to the
    binary weight is passed unchanged to the full-precision W (straight-through estimator).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride, binary):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride,
                         padding=kernel_size // 2, bias=False)
        self.binary = binary
        self.scale = math.sqrt(2.0 / (kernel_size * kernel_size * in_channels))
        nn.init.normal_(self.weight, std=self.scale)  # He-normal

    def effective_weight(self):
        if not self.binary:
            return self.weight
        # Value exactly scale * sign (w - w.detach() is exactly 0); gradient 1 to w.
        target = self.scale * binary_sign(self.weight.detach())
        return target + (self.weight - self.weight.detach())

    def forward(self, x):
        return F.conv2d(x, self.effective_weight(), None, self.stride, self.padding)


def check_depth(depth):
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"depth must be 6n+2 with n >= 1 (8, 14, 20, 26, ...), got {depth}")
    return (depth - 2) // 6


class WideResNet(nn.Module):
    def __init__(self, depth=20, width=1, in_channels=1, num_classes=10, input_size=28,
                 weights="1bit", variant="bn", srelu_temperature=DEFAULT_SRELU_TEMPERATURE):
        super().__init__()
        if weights not in WEIGHT_MODES:
            raise ValueError(f"weights must be one of {WEIGHT_MODES}, got {weights!r}")
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        self.config = dict(depth=depth, width=width, in_channels=in_channels,
                           num_classes=num_classes, input_size=input_size, weights=weights,
                           variant=variant, srelu_temperature=float(srelu_temperature))
        self.layers = nn.ModuleDict()
        self.ops = []
        self._build(check_depth(depth))

    # -- graph construction -------------------------------------------------------------
    def _op(self, op, name, inputs, module=None, **attrs):
        self.ops.append(dict(op=op, name=name, inputs=list(inputs), **attrs))
        if module is not None:
            self.layers[name] = module
        return name

    def _conv(self, name, x, c_in, c_out, kernel, stride):
        conv = SignConv2d(c_in, c_out, kernel, stride, binary=self.config["weights"] == "1bit")
        return self._op("conv", name, [x], conv, in_channels=c_in, out_channels=c_out,
                        kernel=kernel, stride=stride, padding=kernel // 2, scale=conv.scale,
                        binary=conv.binary)

    def _activation(self, prefix, x, channels):
        """BN(no affine) + ReLU, or the shifted ReLU max(x, -1) that replaces both."""
        if self.config["variant"] == "srelu":
            return self._op("srelu", f"{prefix}_srelu", [x], floor=SRELU_FLOOR)
        x = self._op("batchnorm", f"{prefix}_bn", [x],
                     nn.BatchNorm2d(channels, eps=BN_EPS, affine=False), affine=False, eps=BN_EPS)
        return self._op("relu", f"{prefix}_relu", [x])

    def _build(self, blocks_per_stage):
        cfg = self.config
        c_in, k = cfg["in_channels"], cfg["width"]
        # Learned-affine BN on raw 0..255 pixels replaces any preprocessing.
        x = self._op("batchnorm", "input_bn", ["image"],
                     nn.BatchNorm2d(c_in, eps=BN_EPS, affine=True), affine=True, eps=BN_EPS)
        channels = 16 * k
        x = self._conv("conv0", x, c_in, channels, 3, 1)
        for stage in range(3):
            out_channels = 16 * k * 2 ** stage
            for block in range(blocks_per_stage):
                p = f"s{stage + 1}b{block + 1}"
                downsample = stage > 0 and block == 0
                y = self._activation(f"{p}_a1", x, channels)
                y = self._conv(f"{p}_conv1", y, channels, out_channels, 3, 2 if downsample else 1)
                y = self._activation(f"{p}_a2", y, out_channels)
                y = self._conv(f"{p}_conv2", y, out_channels, out_channels, 3, 1)
                shortcut = x
                if downsample:
                    # Avg-pool 3x3/2 (padding counted, so always /9) then zero channels on top.
                    shortcut = self._op("avgpool", f"{p}_pool", [shortcut], kernel=3, stride=2,
                                        padding=1, count_include_pad=True)
                    shortcut = self._op("zero_channels", f"{p}_pad", [shortcut],
                                        in_channels=channels, out_channels=out_channels)
                x = self._op("add", f"{p}_add", [y, shortcut])
                channels = out_channels
        y = self._activation("head_a", x, channels)
        y = self._conv("head_conv", y, channels, cfg["num_classes"], 1, 1)
        if cfg["variant"] == "srelu":
            y = self._op("scale", "head_temperature", [y], factor=1.0 / cfg["srelu_temperature"])
        else:
            y = self._op("batchnorm", "head_bn", [y],
                         nn.BatchNorm2d(cfg["num_classes"], eps=BN_EPS, affine=False),
                         affine=False, eps=BN_EPS)
        self._op("global_avgpool", "logits", [y])

    # -- execution ------------------------------------------------------------------------
    def forward(self, image):
        tensors = {"image": image}
        for op in self.ops:
            tensors[op["name"]] = self._run(op, [tensors[i] for i in op["inputs"]])
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
            return F.avg_pool2d(x, op["kernel"], op["stride"], op["padding"],
                                count_include_pad=op["count_include_pad"])
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
