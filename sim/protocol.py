"""How tensors, pixels and results travel over the accelerator's streams (host side).

- Feature-map words: `lanes` channels of one pixel, lane j in bits [j*act_bits, (j+1)*act_bits),
  two's complement; words in (group, y, x) order, like the on-chip layout.
- Pixels: one channel value (uint8) per beat, raster order, channels innermost.
- Results: the logits (two's complement, sign-extended over the data field) in class order,
  then the class index, with `last` set on the class beat.
"""
import numpy as np

from common.bits import ceil_div


def encode_tensor(t, lanes, act_bits):
    """(C, H, W) integers -> words, zero channels padding the last group."""
    c, h, w = t.shape
    groups = ceil_div(c, lanes)
    padded = np.zeros((groups * lanes, h, w), np.int64)
    padded[:c] = t
    mask = (1 << act_bits) - 1
    words = []
    for g in range(groups):
        block = padded[g * lanes:(g + 1) * lanes] & mask
        for y in range(h):
            for x in range(w):
                words.append(sum(int(v) << (j * act_bits) for j, v in enumerate(block[:, y, x])))
    return words


def decode_tensor(words, shape, lanes, act_bits, signed):
    """Words -> (C, H, W) int64 (lanes past C are dropped)."""
    c, h, w = shape
    groups = ceil_div(c, lanes)
    if len(words) != groups * h * w:
        raise ValueError(f"expected {groups * h * w} words for {shape}, got {len(words)}")
    out = np.zeros((groups * lanes, h, w), np.int64)
    mask = (1 << act_bits) - 1
    i = 0
    for g in range(groups):
        for y in range(h):
            for x in range(w):
                word = int(words[i])
                i += 1
                for j in range(lanes):
                    v = (word >> (j * act_bits)) & mask
                    if signed and v >> (act_bits - 1):
                        v -= 1 << act_bits
                    out[g * lanes + j, y, x] = v
    return out[:c]


def encode_pixels(image):
    """(C, H, W) uint8 -> one beat per channel value, channels innermost."""
    return [int(v) for v in np.asarray(image, np.uint8).transpose(1, 2, 0).reshape(-1)]


def to_signed(value, bits):
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def decode_result(beats, num_classes, data_bits):
    """Logits and class of one image from its num_classes + 1 result beats."""
    if len(beats) != num_classes + 1:
        raise ValueError(f"expected {num_classes + 1} result beats, got {len(beats)}")
    return [to_signed(b, data_bits) for b in beats[:-1]], int(beats[-1])
