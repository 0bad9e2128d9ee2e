"""The bit-exact golden model: integer inference over a quantized model. The hardware's spec.

Every op follows docs/quantized-model.md to the bit. Tensors are int64 (C x N x H x W inside,
N x C x H x W outside, like PyTorch). Convolutions run as a matmul of the +-1 weights with
im2col columns in floating point: every product and partial sum is an integer below 2^24
(float32) or 2^53 (float64), chosen per layer from its worst-case accumulator width, so the
result is exact; it is cast straight back to int64.
"""
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from quantize.fixed_point import requantize, shift_round
from quantize.float_reference import pool_divisors, window_sum, windows
from quantize.qmodel import QModel, pool_constants, read_qmodel

FLOAT32_EXACT_BITS = 24
IM2COL_BYTES = 32 << 20


@dataclass
class GoldenResult:
    classes: np.ndarray                          # N, int64
    logits: np.ndarray                           # N x classes, int64
    tensors: dict = field(default_factory=dict)  # op name -> int64 N x C x H x W (keep=True)


class _Prepared:
    """Per-op constants unpacked once per run (weight matrices, tables)."""

    def __init__(self, qmodel):
        self.weights, self.dtype = {}, {}
        for op in qmodel.ops:
            if op["op"] == "conv":
                dtype = np.float32 if op["out"]["bits"] <= FLOAT32_EXACT_BITS else np.float64
                self.weights[op["name"]] = qmodel.conv_signs(op).reshape(op["out_channels"], -1).astype(dtype)
                self.dtype[op["name"]] = dtype


def _conv(x, op, weights, dtype):
    win = windows(x.astype(dtype), op)
    _, n, ho, wo = win.shape[:4]
    cols = win.transpose(0, 4, 5, 1, 2, 3).reshape(-1, n * ho * wo)  # rows (in, kh, kw)
    return (weights @ cols).reshape(-1, n, ho, wo).astype(np.int64)


def pool_mean(total, op, size):
    """The avgpool's window sums divided exactly by a multiply and shift (qmodel.pool_constants):
    all by k*k's where the padding counts, else each by its pixels inside the input."""
    table, pixels = pool_constants(op), pool_divisors(op, size)
    if np.ndim(pixels) == 0:
        m, bias, shift = table[pixels]
        return (total * m + bias) >> shift
    mean = np.zeros_like(total)
    for n, (m, bias, shift) in table.items():
        mean = np.where(pixels == n, (total * m + bias) >> shift, mean)
    return mean


def run_op(qmodel, op, xs, prepared):
    """One integer op on C x N x ... int64 inputs."""
    kind, x = op["op"], xs[0]
    t = qmodel.tensors
    if kind == "lut":
        table = t[op["table"]].astype(np.int64)
        return np.stack([table[c][x[c]] for c in range(x.shape[0])])
    if kind == "conv":
        return _conv(x, op, prepared.weights[op["name"]], prepared.dtype[op["name"]])
    if kind == "requant":
        # Channels are axis 0 here; requantize() takes them on axis 1.
        y = requantize(np.moveaxis(x, 0, 1), t[op["multiplier"]], t[op["bias"]], op["shift"],
                       op["lo"], op["hi"])
        return np.moveaxis(y, 1, 0)
    if kind == "avgpool":
        return pool_mean(window_sum(x, op), op, x.shape[2:])
    if kind == "zero_channels":
        zeros = np.zeros((op["out_channels"] - op["in_channels"],) + x.shape[1:], np.int64)
        return np.concatenate([x, zeros])
    if kind == "add":
        (sa, sb), b = op["shifts"], xs[1]
        return np.clip(shift_round(x, sa) + shift_round(b, sb), op["lo"], op["hi"])
    if kind == "global_sum":
        return x.sum(axis=(2, 3))
    raise ValueError(f"unknown integer op {kind!r}")


def _chunk(qmodel):
    per_image = max((op["in_channels"] * op["kernel"] ** 2 * 8
                     * int(np.prod(qmodel.shapes[op["name"]][1:]))
                     for op in qmodel.ops if op["op"] == "conv"), default=1)
    return max(1, IM2COL_BYTES // per_image)


def _nchw(a):
    return np.ascontiguousarray(np.moveaxis(a, 0, 1))


def check_range(op, y):
    """An op's output must fit its declared width: no silent overflow anywhere."""
    out = op["out"]
    lo, hi = (-(1 << (out["bits"] - 1)), (1 << (out["bits"] - 1)) - 1) if out["signed"] \
        else (0, (1 << out["bits"]) - 1)
    if y.size and (y.min() < lo or y.max() > hi):
        raise OverflowError(f"{op['name']}: values {y.min()}..{y.max()} exceed its "
                            f"{out['bits']}-bit {'signed' if out['signed'] else 'unsigned'} width")


def _run_chunk(qmodel, images, prepared, keep):
    t = {"image": np.moveaxis(images.astype(np.int64), 0, 1)}
    for op in qmodel.ops:
        y = run_op(qmodel, op, [t[i] for i in op["inputs"]], prepared)
        check_range(op, y)
        t[op["name"]] = y
    kept = {name: _nchw(y) for name, y in t.items() if name != "image"} if keep else {}
    return t[qmodel.manifest["logits"]].T, kept


def run(qmodel, images, keep=False, chunk=None, workers=None):
    """Integer inference of uint8 `images` (N x C x H x W): classes, logits, intermediates.

    keep=True returns every op's output tensor by name (int64, N first). Chunks of images run
    on `workers` threads (default: one per core; numpy releases the GIL in its copies and BLAS).
    """
    if not isinstance(qmodel, QModel):
        qmodel = read_qmodel(qmodel)
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1:] != qmodel.input_shape:
        raise ValueError(f"images must be N x {' x '.join(map(str, qmodel.input_shape))}, "
                         f"got {images.shape}")
    if images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 pixels, got {images.dtype}")
    prepared, chunk = _Prepared(qmodel), chunk or _chunk(qmodel)
    starts = range(0, len(images), chunk)
    with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
        parts = list(pool.map(lambda s: _run_chunk(qmodel, images[s:s + chunk], prepared, keep),
                              starts))
    if not parts:
        return GoldenResult(np.zeros(0, np.int64), np.zeros((0, qmodel.num_classes), np.int64))
    logits = np.concatenate([p[0] for p in parts])
    tensors = {k: np.concatenate([p[1][k] for p in parts]) for k in parts[0][1]}
    return GoldenResult(np.argmax(logits, axis=1), logits, tensors)
