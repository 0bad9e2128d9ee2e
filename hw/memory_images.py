"""Contents of the accelerator's ROMs, generated from the quantized model and its schedule.

- weights: one word per (output group, input group, ky, kx) of every conv step, in that loop
  order; bit (o * lanes + j) is the sign of weight (out og*lanes+o, in ig*lanes+j) at (ky, kx),
  1 = +1. Padding channels get +1 (they meet zero inputs, or a zero multiplier).
- params: one word per output group of every requant: lane l holds (M', C) of channel
  g*lanes+l, M' in the low `mult_bits`, C above it, both two's complement: the operands of a
  requantizer with the ROM's fixed shift (hw.requant.fixed_shift_operands). `params` serves
  every step's first requant and the logits, `params2` the second requants; each has one shift,
  the largest of the requants it holds.
- lut: the input table, entry c*256 + pixel.
"""
from dataclasses import dataclass

import numpy as np

from hw.requant import fixed_shift_operands
from hw.schedule import CONV, HEAD


@dataclass
class MemoryImages:
    weights: list          # ints, lanes*lanes bits each
    weight_base: dict      # step index -> first word
    params: list           # ints, lanes*(mult_bits+offset_bits) bits each (requant)
    params2: list          # same for the second requant of a step
    param_base: dict       # step index -> first word in params
    param2_base: dict      # step index -> first word in params2
    lut: list              # ints (two's complement in act_bits)
    params_shift: int      # the fixed shift of the requantizers reading params
    params2_shift: int     # ... and params2
    mult_bits: int
    offset_bits: int


def _to_unsigned(v, bits):
    return int(v) & ((1 << bits) - 1)


def weight_words(qmodel, step, lanes):
    op = qmodel.op(step.weights)
    signs = qmodel.conv_signs(op)                           # out, in, k, k
    c_out, c_in, k, _ = signs.shape
    g_out, g_in = -(-c_out // lanes), -(-c_in // lanes)
    padded = np.ones((g_out * lanes, g_in * lanes, k, k), np.int8)
    padded[:c_out, :c_in] = signs
    words = []
    for og in range(g_out):
        for ig in range(g_in):
            for ky in range(k):
                for kx in range(k):
                    block = padded[og * lanes:(og + 1) * lanes, ig * lanes:(ig + 1) * lanes, ky, kx]
                    bits = (block.reshape(-1) > 0).astype(np.int64)   # index o*lanes + j
                    words.append(int(sum(int(b) << i for i, b in enumerate(bits))))
    return words


def operands(requant, fixed_shift):
    """(M', C) per channel of `requant` for a requantizer with shift `fixed_shift`."""
    return [fixed_shift_operands(m, b, requant.shift, fixed_shift)
            for m, b in zip(requant.multiplier, requant.bias)]


def param_words(requant, lanes, fixed_shift, mult_bits, offset_bits):
    pairs = operands(requant, fixed_shift)
    words = []
    for g in range(len(pairs) // lanes):
        word = 0
        for lane in range(lanes):
            m, c = pairs[g * lanes + lane]
            field = _to_unsigned(m, mult_bits) | (_to_unsigned(c, offset_bits) << mult_bits)
            word |= field << (lane * (mult_bits + offset_bits))
        words.append(word)
    return words


def _signed_width(values):
    return max([int(v).bit_length() + 1 for v in values] + [2])


def requant_banks(schedule):
    """(params_shift, params2_shift, mult_bits, offset_bits) of the schedule's requants."""
    first = [s.requant for s in schedule.steps if s.requant]
    second = [s.requant2 for s in schedule.steps if s.requant2]
    shifts = [max([rq.shift for rq in bank] + [0]) for bank in (first, second)]
    pairs = [p for bank, shift in zip((first, second), shifts) for rq in bank
             for p in operands(rq, shift)]
    return shifts[0], shifts[1], _signed_width([m for m, _ in pairs]), _signed_width([c for _, c in pairs])


def build_images(qmodel, schedule):
    lanes = schedule.lanes
    shift1, shift2, mult_bits, offset_bits = requant_banks(schedule)
    weights, weight_base, params, params2, param_base, param2_base = [], {}, [], [], {}, {}
    for i, step in enumerate(schedule.steps):
        if step.kind in (CONV, HEAD):
            weight_base[i] = len(weights)
            weights += weight_words(qmodel, step, lanes)
        if step.requant:
            param_base[i] = len(params)
            params += param_words(step.requant, lanes, shift1, mult_bits, offset_bits)
        if step.requant2:
            param2_base[i] = len(params2)
            params2 += param_words(step.requant2, lanes, shift2, mult_bits, offset_bits)
    lut_op = next((op for op in qmodel.ops if op["op"] == "lut"), None)
    lut = []
    if lut_op is not None:
        lut = [_to_unsigned(v, qmodel.act_bits) for v in qmodel.tensors[lut_op["table"]].reshape(-1)]
    return MemoryImages(weights or [0], weight_base, params or [0], params2 or [0], param_base,
                        param2_base, lut or [0], shift1, shift2, mult_bits, offset_bits)
