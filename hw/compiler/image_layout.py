"""How wide a conv lane is, and how an image wider than the lanes is spread over them.

The trees are as narrow as the tensors the convs read after the first one. The first conv reads
the image after the input BN (the input table), which may be wider: an 8-bit image with 4-bit
activations elsewhere. Rather than widen every tree for one layer, each image value x is spread
over k lanes as the parts floor((x + l) / k), l = 0..k-1, which sum to x exactly (Hermite's
identity). The first conv's weights repeat over those k lanes, so its sums, and everything
after them, are the golden model's. The layer keeps its cycles while C*k <= lanes (one channel
group); k is the smallest power of two whose parts fit a lane and a feature-map slot.

The first conv reads one channel (or three) in a word of `lanes`: its taps would leave most lanes
idle. When its kernel's three columns fit the word (3*C*k <= lanes), the image is stored as
columns instead: lane block t of pixel (y, x) holds the spread image at (y, x + t - 1), zero past
the edges, and the conv runs as a 3x1 kernel (its rows) over them, 3 taps per output instead of 9
(`columns_tensor`).

`image_layout(qmodel, lanes)` decides all of it once, as an `ImageLayout`, which the schedule
holds and everything after it reads.

>>> spread_tensor(np.array([[[-128, 127, 5]]]), 8)[:, 0, :].T.tolist()
[[-16, -16, -16, -16, -16, -16, -16, -16], [15, 16, 16, 16, 16, 16, 16, 16], [0, 0, 0, 1, 1, 1, 1, 1]]
"""
from dataclasses import dataclass

import numpy as np

from common.bits import ceil_div, int_range
from training.graph import pads


@dataclass(frozen=True)
class ImageLayout:
    """How a model's image is stored, for `lanes` channels per word."""
    tensor: str         # the tensor the input table writes (None: the model has no input table)
    lane_bits: int      # a conv lane's signed width (`lane_bits`)
    spread: int         # lanes per image channel
    columns: int        # the first conv's kernel columns stored as channels (3), or 1


def image_layout(qmodel, lanes, columns_allowed=True):
    """The ImageLayout of `qmodel` at `lanes` (`columns_allowed=False`: one pixel per word even
    where the columns would fit). ValueError where the spread image does not fit a word."""
    tensor = image_tensor(qmodel)
    bits = lane_bits(qmodel, tensor)
    spread = image_spread(qmodel, tensor, lanes, bits)
    columns = image_columns(qmodel, tensor, lanes, spread) if columns_allowed else 1
    return ImageLayout(tensor, bits, spread, columns)


def image_tensor(qmodel):
    """The name of the tensor the input table writes (the image as the first conv reads it)."""
    return next((op["name"] for op in qmodel.ops if op["op"] == "lut"), None)


def _lane_width(out):
    """The signed width that holds a tensor (an unsigned b-bit tensor takes b + 1)."""
    return out["bits"] + (0 if out["signed"] else 1)


def lane_bits(qmodel, image):
    """The signed width of a conv lane: the widest tensor a conv reads, the image (tensor
    `image`) aside (it is spread over lanes instead, see `image_spread`) unless no other tensor
    is read."""
    read = [op["inputs"][0] for op in qmodel.ops if op["op"] == "conv" and op["inputs"][0] != "image"]
    widths = [_lane_width(qmodel.op(i)["out"]) for i in read if i != image]
    if not widths and image in read:
        widths = [_lane_width(qmodel.op(image)["out"])]
    return max(widths + [2])


def image_spread(qmodel, image, lanes, lane_width):
    """k: the lanes each channel of tensor `image` is spread over (1: the image fits a lane as
    it is) for lanes `lane_width` bits wide."""
    if image is None:
        return 1
    out = qmodel.op(image)["out"]
    lane_lo, lane_hi = int_range(lane_width, True)
    slot_lo, slot_hi = int_range(qmodel.storage_bits, out["signed"])
    k = 1
    while not (max(lane_lo, slot_lo) <= out["lo"] // k and ceil_div(out["hi"], k) <= min(lane_hi, slot_hi)):
        k *= 2
    channels = qmodel.input_shape[0]
    if channels * k > lanes:
        raise ValueError(f"the {out['bits']}-bit image needs {k} lanes per channel to fit "
                         f"{lane_width}-bit lanes, and {channels} x {k} > {lanes} lanes: "
                         "use more lanes or quantize with a narrower --input-bits")
    return k


def image_columns(qmodel, image, lanes, spread):
    """3 when the image is stored as its first conv's kernel columns, else 1: every conv that
    reads the image has a 3x3 kernel, stride 1 and padding 1, and the columns fit a word."""
    readers = [op for op in qmodel.ops if image in op["inputs"]]
    fits = 3 * qmodel.input_shape[0] * spread <= lanes
    same_size = all(op["op"] == "conv" and op["kernel"] == 3 and op["stride"] == 1
                    and pads(op) == (1, 1, 1, 1) for op in readers)
    return 3 if image is not None and readers and same_size and fits else 1


def columns_tensor(t, columns):
    """(C, H, W) -> (columns*C, H, W): block i holds the map moved left by i - columns // 2
    (channel i*C + c at x is the map's channel c at x + i - columns // 2, zero past the edges)."""
    t = np.asarray(t, np.int64)
    if columns == 1:
        return t
    pad = columns // 2
    padded = np.pad(t, ((0, 0), (0, 0), (pad, pad)))
    width = t.shape[2]
    return np.concatenate([padded[:, :, i:i + width] for i in range(columns)], axis=0)


def spread_tensor(t, k):
    """(C, H, W) -> (C*k, H, W): channel c*k + l holds floor((t[c] + l) / k)."""
    t = np.asarray(t, np.int64)
    if k == 1:
        return t
    parts = np.stack([(t + l) // k for l in range(k)], axis=1)
    return parts.reshape((t.shape[0] * k,) + t.shape[1:])
