"""The WRN-d-k layer graph as an explicit op list, torch-free.

Both the PyTorch model (training/model.py, which interprets it) and the deployment bundle use
this list, so the exported graph is by construction the graph that was trained; quantize/
builds random models from it without torch. Tensor names are op names; the network input is
"image". Op kinds and attributes: docs/bundle.md.
"""
import math

WEIGHT_MODES = ("1bit", "float")
VARIANTS = ("bn", "srelu")
# Where the zero padding goes. "torch": k // 2 pixels on every side of a conv's input, and the
# shortcut's pool pads 1 on every side and divides by 9 (PyTorch). "keras": TensorFlow's
# 'same', the authors' Keras code: the output is ceil(size / stride), an odd pixel of padding
# goes to the bottom and right (so at stride 2 on an even size only those are padded), and the
# pool divides by the pixels that are not padding. "matconvnet": the authors' MatConvNet code,
# padded as "torch", its pool (vl_nnpool) dividing by the pixels that are not padding.
PADDINGS = ("torch", "keras", "matconvnet")
BN_EPS = 1e-5
SRELU_FLOOR = -1.0


def srelu_temperature_for(weights, num_classes):
    """The head temperature T of the BN-free variant (its head output is scaled by 1/T before
    pooling), as in the authors' shifted-ReLU code: 40 for 1-bit and 80 for float weights on
    10 classes, 25 on 100 classes. Between 10 and 100 classes T moves log-linearly from the
    10-class value to 25; below 10 it keeps the 10-class value, above 100 it stays 25.

    >>> srelu_temperature_for("1bit", 10), srelu_temperature_for("float", 10)
    (40.0, 80.0)
    >>> srelu_temperature_for("1bit", 100), round(srelu_temperature_for("1bit", 20), 1)
    (25.0, 34.7)
    """
    at_10 = 40.0 if weights == "1bit" else 80.0
    if num_classes <= 10:
        return at_10
    if num_classes >= 100:
        return 25.0
    return at_10 * (25.0 / at_10) ** math.log10(num_classes / 10)


def check_depth(depth):
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"depth must be 6n+2 with n >= 1 (8, 14, 20, 26, ...), got {depth}")
    return (depth - 2) // 6


def same_pads(size, kernel, stride):
    """(before, after): TensorFlow's 'same' padding of one axis.

    >>> same_pads(32, 3, 1), same_pads(32, 3, 2), same_pads(7, 3, 2), same_pads(8, 1, 1)
    ((1, 1), (0, 1), (1, 1), (0, 0))
    """
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def pads(op):
    """(top, bottom, left, right): the zero padding of a conv or avgpool op, whose `padding` is
    one integer for every side or the list of the four."""
    p = op["padding"]
    return (p,) * 4 if isinstance(p, int) else tuple(p)


def padding_sides(padding):
    """A `padding` attribute's sides as a list (one integer for every side, or the list of the
    four), or None when it is neither: for the validators to bound."""
    if type(padding) is int:
        return [padding]
    return padding if isinstance(padding, list) and len(padding) == 4 else None


def out_size(size, kernel, stride, before, after):
    """The output size of a window of `kernel` at `stride` over `size` padded by before/after."""
    return (size + before + after - kernel) // stride + 1


def window_out(op, shape):
    """(H, W) out of a conv or avgpool `op` over a C x H x W input."""
    top, bottom, left, right = pads(op)
    k, stride = op["kernel"], op["stride"]
    return out_size(shape[1], k, stride, top, bottom), out_size(shape[2], k, stride, left, right)


def conv_scale(kernel, in_channels):
    """Eq. 1: the constant 1-bit scale, the He-init standard deviation sqrt(2 / (F^2 C_in))."""
    return math.sqrt(2.0 / (kernel * kernel * in_channels))


def model_config(depth=20, width=1, in_channels=1, num_classes=10, input_size=28,
                 weights="1bit", variant="bn", srelu_temperature=None, padding="torch",
                 input_relu=False):
    """The config of a WRN-d-k; srelu_temperature None: `srelu_temperature_for` the weights and
    class count; padding: one of PADDINGS; input_relu: a ReLU between the input BN and the
    first conv (the authors' MatConvNet models have one)."""
    if weights not in WEIGHT_MODES:
        raise ValueError(f"weights must be one of {WEIGHT_MODES}, got {weights!r}")
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
    if type(input_relu) is not bool:
        raise ValueError(f"input_relu must be true or false, got {input_relu!r}")
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    check_depth(depth)
    if srelu_temperature is None:
        srelu_temperature = srelu_temperature_for(weights, num_classes)
    if not (math.isfinite(srelu_temperature) and srelu_temperature > 0):
        raise ValueError(f"the shifted-ReLU head temperature must be a positive number, got "
                         f"{srelu_temperature}")
    return dict(depth=depth, width=width, in_channels=in_channels, num_classes=num_classes,
                input_size=input_size, weights=weights, variant=variant,
                srelu_temperature=float(srelu_temperature), padding=padding,
                input_relu=input_relu)


def build_ops(config):
    """The op list of a model config (see model_config)."""
    ops = []
    binary = config["weights"] == "1bit"
    variant = config["variant"]
    keras = config.get("padding", "torch") == "keras"
    pool_counts_padding = config.get("padding", "torch") == "torch"
    size = config["input_size"]

    def padding(kernel, stride):
        """A window's padding at the current size, and the size after it."""
        if not keras:
            p = kernel // 2
            return p, out_size(size, kernel, stride, p, p)
        before, after = same_pads(size, kernel, stride)
        return [before, after, before, after], out_size(size, kernel, stride, before, after)

    def op(kind, name, inputs, **attrs):
        ops.append(dict(op=kind, name=name, inputs=list(inputs), **attrs))
        return name

    def conv(name, x, c_in, c_out, kernel, stride):
        nonlocal size
        pad, size = padding(kernel, stride)
        return op("conv", name, [x], in_channels=c_in, out_channels=c_out, kernel=kernel,
                  stride=stride, padding=pad, scale=conv_scale(kernel, c_in), binary=binary)

    def activation(prefix, x):
        """BN(no affine) + ReLU, or the shifted ReLU max(x, -1) that replaces both."""
        if variant == "srelu":
            return op("srelu", f"{prefix}_srelu", [x], floor=SRELU_FLOOR)
        x = op("batchnorm", f"{prefix}_bn", [x], affine=False, eps=BN_EPS)
        return op("relu", f"{prefix}_relu", [x])

    k = config["width"]
    # Learned-affine BN on raw 0..255 pixels replaces any preprocessing.
    x = op("batchnorm", "input_bn", ["image"], affine=True, eps=BN_EPS)
    if config.get("input_relu", False):
        x = op("relu", "input_relu", [x])
    channels = 16 * k
    x = conv("conv0", x, config["in_channels"], channels, 3, 1)
    for stage in range(3):
        out_channels = 16 * k * 2 ** stage
        for block in range(check_depth(config["depth"])):
            p = f"s{stage + 1}b{block + 1}"
            downsample = stage > 0 and block == 0
            pool_padding, _ = padding(3, 2)      # at the block's input size
            y = activation(f"{p}_a1", x)
            y = conv(f"{p}_conv1", y, channels, out_channels, 3, 2 if downsample else 1)
            y = activation(f"{p}_a2", y)
            y = conv(f"{p}_conv2", y, out_channels, out_channels, 3, 1)
            shortcut = x
            if downsample:
                # Avg-pool 3x3/2 then zero channels on top. "torch" counts the padding (always
                # /9), the others do not.
                shortcut = op("avgpool", f"{p}_pool", [shortcut], kernel=3, stride=2,
                              padding=pool_padding, count_include_pad=pool_counts_padding)
                shortcut = op("zero_channels", f"{p}_pad", [shortcut], in_channels=channels,
                              out_channels=out_channels)
            x = op("add", f"{p}_add", [y, shortcut])
            channels = out_channels
    y = activation("head_a", x)
    y = conv("head_conv", y, channels, config["num_classes"], 1, 1)
    if variant == "srelu":
        y = op("scale", "head_temperature", [y], factor=1.0 / config["srelu_temperature"])
    else:
        y = op("batchnorm", "head_bn", [y], affine=False, eps=BN_EPS)
    op("global_avgpool", "logits", [y])
    return ops


def channels_of(ops, config):
    """Output channel count of every tensor, keyed by name ("image" included)."""
    channels = {"image": config["in_channels"]}
    for o in ops:
        if o["op"] in ("conv", "zero_channels"):
            channels[o["name"]] = o["out_channels"]
        else:
            channels[o["name"]] = channels[o["inputs"][0]]
    return channels
