"""Requantizer: y = clamp((x * M' + C) >> S, lo, hi) with a shift S fixed at build time.

The golden model's recipe is clamp((x * M + B + 2^(s-1)) >> s, lo, hi) with a shift s per layer.
Scaling M and B by 2^(S-s) and folding the rounding term into the offset gives exactly the same
result for every s <= S (`fixed_shift_operands`), so the hardware needs neither a barrel
shifter nor a rounding adder: one DSP48 computes x * M' + C, the shift is wiring, and only the
saturation is logic. The memory images store M' and C.

Two registered stages: the product plus offset, then the saturation. Latency 2.
"""
from amaranth import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


def fixed_shift_operands(multiplier, bias, shift, fixed_shift):
    """(M', C) with (x*M' + C) >> fixed_shift == (x*M + B + 2^(shift-1)) >> shift for all x.

    Exact: the left side is floor((x*M + B + 2^(shift-1)) * 2^d / 2^(shift+d)), d = fixed_shift
    - shift >= 0 (for shift 0 the added 2^(d-1) stays below one output step).
    """
    d = fixed_shift - shift
    if d < 0:
        raise ValueError(f"shift {shift} is larger than the requantizer's fixed shift {fixed_shift}")
    rounding = (1 << (fixed_shift - 1)) if fixed_shift else 0
    return int(multiplier) << d, (int(bias) << d) + rounding


class Requantizer(wiring.Component):
    latency = 2

    def __init__(self, in_width, mult_width, offset_width, shift, out_width):
        self.shift = shift
        self.sum_width = max(in_width + mult_width, offset_width) + 1
        super().__init__({
            "x": In(signed(in_width)),
            "multiplier": In(signed(mult_width)),
            "offset": In(signed(offset_width)),
            "lo": In(signed(out_width)),
            "hi": In(signed(out_width)),
            "y": Out(signed(out_width)),
        })

    def elaborate(self, platform):
        m = Module()
        total = Signal(signed(self.sum_width))
        lo, hi = Signal.like(self.lo), Signal.like(self.hi)
        m.d.sync += [total.eq(self.x * self.multiplier + self.offset), lo.eq(self.lo), hi.eq(self.hi)]
        shifted = Signal(signed(max(2, self.sum_width - self.shift)))
        m.d.comb += shifted.eq(total >> self.shift)   # arithmetic: floor
        m.d.sync += self.y.eq(Mux(shifted < lo, lo, Mux(shifted > hi, hi, shifted)))
        return m
