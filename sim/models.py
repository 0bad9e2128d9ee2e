"""Reference models of the hardware blocks (no cocotb, no HDL): what each block must compute.

The cocotb benches (sim/benches/addsub_tree.py, sim/benches/requant.py) drive the blocks and compare
against these; tests/test_hw_blocks.py checks that they agree with the golden model
(quantize.golden's conv, quantize.fixed_point.requantize), the hardware's spec.
"""
import math

import numpy as np

from common.bits import int_range
from quantize.fixed_point import requantize


# -- add/sub tree (hw.blocks.addsub_tree.AddSubTree) --------------------------------------------------

def tree_latency(lanes):
    """Cycles from input to `sum`: one register for the +-x select, one per tree level."""
    return 1 + (math.ceil(math.log2(lanes)) if lanes > 1 else 0)


def tree_out_width(lanes, width):
    """Smallest signed width holding every sum of `lanes` values +-x, x a signed `width` int."""
    lo, _ = int_range(width, True)
    return (lanes * -lo).bit_length() + 1   # the extreme is lanes * -(min): |x| <= -min


def addsub_dot(x, w):
    """sum_j (w_j ? +x_j : -x_j) over the last axis: the 1-bit-weight dot product, int64.

    x: signed ints (..., lanes); w: weight bits (..., lanes), 1 = +1 and 0 = -1 (the packing of
    training.bundle.pack_signs and of the accelerator's weight words).
    """
    x = np.asarray(x, dtype=np.int64)
    w = np.asarray(w, dtype=np.int64)
    return np.where(w != 0, x, -x).sum(axis=-1, dtype=np.int64)


# -- requantizer (hw.blocks.requant.Requantizer) ------------------------------------------------------

REQUANT_LATENCY = 8


def requant_golden(x, multiplier, bias, shift, lo, hi):
    """Elementwise quantize.fixed_point.requantize over 1-D int arrays (one vector per entry).

    requantize() takes one shift (and lo, hi) per call with per-channel M and B, so the
    vectors are grouped by shift and passed as the channels of a 1 x N tensor.
    """
    x, m, b, s, lo, hi = (np.asarray(a, dtype=np.int64).reshape(-1)
                          for a in (x, multiplier, bias, shift, lo, hi))
    out = np.empty(x.shape, np.int64)
    for sh in np.unique(s):
        i = np.flatnonzero(s == sh)
        out[i] = requantize(x[i][None, :], m[i], b[i], int(sh), lo[i][None, :], hi[i][None, :])[0]
    return out
