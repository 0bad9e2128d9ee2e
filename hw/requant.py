"""Requantizer: clamp((x * M + B + 2^(s-1)) >> s, lo, hi), the golden model's exact recipe.

Two registered stages: the product (one DSP48 where M varies), then bias, rounding, the
arithmetic shift (floor) and saturation. Latency 2.
"""
from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


class Requantizer(wiring.Component):
    latency = 2

    def __init__(self, in_width, mult_width, bias_width, shift_width, out_width):
        self.prod_width = in_width + mult_width
        self.sum_width = max(self.prod_width, bias_width) + 2
        super().__init__({
            "x": In(signed(in_width)),
            "multiplier": In(signed(mult_width)),
            "bias": In(signed(bias_width)),
            "shift": In(unsigned(shift_width)),
            "lo": In(signed(out_width)),
            "hi": In(signed(out_width)),
            "y": Out(signed(out_width)),
        })

    def elaborate(self, platform):
        m = Module()
        prod = Signal(signed(self.prod_width))
        bias, shift, lo, hi = (Signal.like(s) for s in (self.bias, self.shift, self.lo, self.hi))
        m.d.sync += [prod.eq(self.x * self.multiplier), bias.eq(self.bias), shift.eq(self.shift),
                     lo.eq(self.lo), hi.eq(self.hi)]
        # Any shift >= sum_width - 1 gives 0 (like the golden model): clamp it so the
        # rounding term still fits the sum.
        limited = Signal(range(self.sum_width))
        m.d.comb += limited.eq(Mux(shift >= self.sum_width - 1, self.sum_width - 1, shift))
        total = Signal(signed(self.sum_width))
        rounding = Mux(limited == 0, 0, (1 << limited) >> 1)
        m.d.comb += total.eq(prod + bias + rounding)
        shifted = Signal(signed(self.sum_width))
        m.d.comb += shifted.eq(total >> limited)   # arithmetic: floor
        m.d.sync += self.y.eq(Mux(shifted < lo, lo, Mux(shifted > hi, hi, shifted)))
        return m
