"""Contents of the accelerator's ROMs, generated from the quantized model and its schedule.

- weights: one word per (output group, input group, ky, kx) of every conv step, in that loop
  order; bit (o * lanes + j) is the sign of weight (out og*lanes+o, in ig*lanes+j) at (ky, kx),
  1 = +1. Padding channels get +1 (they meet zero inputs, or a zero multiplier).
- params: one word per output group of every requant: lane l holds (M', C) of channel
  g*lanes+l, M' in the low `mult_bits`, C above it, both two's complement: the operands of a
  requantizer with the ROM's fixed shift (quantize.fixed_point.fixed_shift_operands). `params` serves
  every step's first requant and the logits, `params2` the second requants; each has its own
  shift (the largest of the requants it holds) and field widths. With shift-add requantizers
  the multiplier field holds a code instead: 0 for M' = 0, k for the bank's k-th distinct M'.
- weights of a conv that reads the spread image repeat each input channel's over its lanes;
  where the image is stored as its kernel's columns, column t's weights go to lane block t and
  the conv walks the kernel's rows only (one word per ky).
- lut: the input table, entry c*256 + pixel, two's complement in `table_bits` (the image's
  width, which may exceed a feature-map slot's: hw/compiler/image_layout.py).
"""
from dataclasses import dataclass

import numpy as np

from amaranth import signed, unsigned

from common.bits import ceil_div, signed_width

from hw.compiler.schedule import CONV, HEAD
from quantize.fixed_point import fixed_shift_operands

REQUANTIZERS = ("dsp", "shift-add")
MAX_SHIFT_ADD_MULTIPLIERS = 15   # distinct M' per bank: each costs a shift-add tree per lane


@dataclass
class ParamBank:
    """A requant parameter ROM: the operands of requantizers sharing one fixed shift."""
    words: list            # ints, lanes*(mult_bits+offset_bits) bits each
    base: dict             # step index -> first word
    shift: int             # the requantizers' fixed shift
    mult_bits: int
    offset_bits: int
    multipliers: tuple = None   # shift-add: the distinct nonzero M' the codes name; None: DSP

    @property
    def field_bits(self):
        return self.mult_bits + self.offset_bits

    @property
    def multiplier_shape(self):
        return signed(self.mult_bits) if self.multipliers is None else unsigned(self.mult_bits)


@dataclass
class MemoryImages:
    weights: list          # ints, lanes*lanes bits each
    weight_base: dict      # step index -> first word
    params: ParamBank      # every step's first requant and the logits
    params2: ParamBank     # the second requant of a step
    lut: list              # ints (two's complement in table_bits)
    table_bits: int


def _to_unsigned(v, bits):
    return int(v) & ((1 << bits) - 1)


def weight_words(qmodel, step, lanes):
    op = qmodel.op(step.weights)
    signs = np.repeat(qmodel.conv_signs(op), step.spread, axis=1)   # out, in, ky, kx
    if step.columns > 1:        # (out, in, ky, t) -> (out, t*in + in, ky, 1)
        c_out, c_in, rows, cols = signs.shape
        signs = signs.transpose(0, 3, 1, 2).reshape(c_out, cols * c_in, rows, 1)
    c_out, c_in, rows, cols = signs.shape
    g_out, g_in = ceil_div(c_out, lanes), ceil_div(c_in, lanes)
    padded = np.ones((g_out * lanes, g_in * lanes, rows, cols), np.int8)
    padded[:c_out, :c_in] = signs
    words = []
    for og in range(g_out):
        for ig in range(g_in):
            for ky in range(rows):
                for kx in range(cols):
                    block = padded[og * lanes:(og + 1) * lanes, ig * lanes:(ig + 1) * lanes, ky, kx]
                    bits = (block.reshape(-1) > 0).astype(np.int64)   # index o*lanes + j
                    words.append(int(sum(int(b) << i for i, b in enumerate(bits))))
    return words


def operands(requant, fixed_shift):
    """(M', C) per channel of `requant` for a requantizer with shift `fixed_shift`."""
    return [fixed_shift_operands(m, b, requant.shift, fixed_shift)
            for m, b in zip(requant.multiplier, requant.bias)]


def param_words(pairs, lanes, mult_bits, offset_bits):
    """ROM words of one requant's (multiplier field, C) pairs, `lanes` per word."""
    words = []
    for g in range(len(pairs) // lanes):
        word = 0
        for lane in range(lanes):
            m, c = pairs[g * lanes + lane]
            field = _to_unsigned(m, mult_bits) | (_to_unsigned(c, offset_bits) << mult_bits)
            word |= field << (lane * (mult_bits + offset_bits))
        words.append(word)
    return words


def param_bank(schedule, requant_of, requantizers="dsp"):
    """The ROM image of the requants `requant_of(step)` (None where a step has none)."""
    used = [(i, requant_of(s)) for i, s in enumerate(schedule.steps) if requant_of(s)]
    shift = max([rq.shift for _, rq in used] + [0])
    pairs = {i: operands(rq, shift) for i, rq in used}
    every = [p for i, _ in used for p in pairs[i]]
    offset_bits = signed_width([c for _, c in every])
    multipliers = None
    if requantizers == "shift-add":
        multipliers = tuple(sorted({m for m, _ in every if m}))
        if len(multipliers) > MAX_SHIFT_ADD_MULTIPLIERS:
            raise ValueError(f"shift-add requantizers need at most {MAX_SHIFT_ADD_MULTIPLIERS} distinct "
                             f"multipliers per bank, this model has {len(multipliers)} (per-channel "
                             "multipliers, as in a bn model): use --requantizers dsp")
        code = {m: k for k, m in enumerate(multipliers, start=1)} | {0: 0}
        pairs = {i: [(code[m], c) for m, c in p] for i, p in pairs.items()}
        mult_bits = max(1, len(multipliers).bit_length())
    else:
        mult_bits = signed_width([m for m, _ in every])
    words, base = [], {}
    for i, _ in used:
        base[i] = len(words)
        words += param_words(pairs[i], schedule.lanes, mult_bits, offset_bits)
    return ParamBank(words or [0], base, shift, mult_bits, offset_bits, multipliers)


def build_images(qmodel, schedule, requantizers="dsp"):
    lanes = schedule.lanes
    weights, weight_base = [], {}
    for i, step in enumerate(schedule.steps):
        if step.kind in (CONV, HEAD):
            weight_base[i] = len(weights)
            weights += weight_words(qmodel, step, lanes)
    lut_op = next((op for op in qmodel.ops if op["op"] == "lut"), None)
    lut, table_bits = [], qmodel.storage_bits
    if lut_op is not None:
        table_bits = lut_op["out"]["bits"]
        lut = [_to_unsigned(v, table_bits) for v in qmodel.tensors[lut_op["table"]].reshape(-1)]
    if requantizers not in REQUANTIZERS:
        raise ValueError(f"requantizers must be one of {', '.join(REQUANTIZERS)}, got {requantizers!r}")
    return MemoryImages(weights or [0], weight_base,
                        param_bank(schedule, lambda s: s.requant, requantizers),
                        param_bank(schedule, lambda s: s.requant2, requantizers), lut or [0],
                        table_bits)


def memory_bits(qmodel, schedule, images):
    """On-chip memory of the design in bits, next to what the model itself needs."""
    lanes = schedule.lanes
    word = lanes * qmodel.storage_bits
    params = sum(len(b.words) * lanes * b.field_bits for b in (images.params, images.params2))
    return dict(model_weight_bits=qmodel.weight_bits(),
                weight_rom_bits=len(images.weights) * lanes * lanes,
                param_rom_bits=params,
                input_lut_bits=len(images.lut) * images.table_bits,
                activation_buffers=schedule.buffers,
                activation_ram_bits=schedule.buffers * schedule.buffer_depth * word)
