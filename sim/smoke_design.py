"""Tiny Amaranth design for the simulator-path smoke test.

A 1-bit-weight multiply-accumulate in its simplest form: each enabled cycle the accumulator adds
``x`` when the weight bit ``w`` is 1 and subtracts it when ``w`` is 0 (weights are +1/-1).
``clear`` zeroes the accumulator (and wins over ``en``); ``rst`` (default ``sync`` domain)
resets it. The accumulator wraps around at ``acc_width`` bits (two's complement).
"""

from amaranth.hdl import Module, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


class SmokeAccumulator(wiring.Component):
    def __init__(self, x_width: int = 8, acc_width: int = 16):
        self.x_width = x_width
        self.acc_width = acc_width
        super().__init__({
            "x": In(signed(x_width)),
            "w": In(1),
            "en": In(1),
            "clear": In(1),
            "acc": Out(signed(acc_width)),
        })

    def elaborate(self, platform):
        m = Module()
        with m.If(self.clear):
            m.d.sync += self.acc.eq(0)
        with m.Elif(self.en):
            with m.If(self.w):
                m.d.sync += self.acc.eq(self.acc + self.x)
            with m.Else():
                m.d.sync += self.acc.eq(self.acc - self.x)
        return m
