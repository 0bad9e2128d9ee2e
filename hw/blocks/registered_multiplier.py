"""An 18 x 18 signed multiplier with its input, pipeline and output registers inside the hard block.

On an ECP5 the requantizers' slowest routed paths ran from a fabric register through the
MULT18X18D to another fabric register, both registers placed far from the multiplier
(docs/history.md, "The 8-bit `make train` model on the ULX3S"). The MULT18X18D has registers of
its own on its inputs, after the multiply and on its output; using all three leaves only routes
between the fabric and the block, and makes the block what nextpnr's timing model of a
registered MULT18X18D describes.

On an ECP5 platform the component is that MULT18X18D instance: A and B signed (SIGNEDA/SIGNEDB
tied high), the three registers on the domain's clock, always enabled and never reset: a reset
pin on the block's registers takes the domain's reset off its global network in nextpnr (it
cannot reach the DSP), and the values in a pipeline's data registers after a reset do not
matter. They start at zero, as every register does after configuration. Anywhere else,
simulation included, it is its twin in Amaranth: the same three registers around a multiply,
without reset, starting at zero alike. yosys ships the MULT18X18D as a black box only, so
tests/test_hw_blocks.py checks the instance's parameters and simulates it against a model of
the primitive (sim/ecp5_cells.py); the ECP5 flow test places and routes it.
"""
from amaranth import ClockSignal, Instance, Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

OPERAND_BITS = 18
PRODUCT_BITS = 2 * OPERAND_BITS
REGISTERS = ("INPUTA", "INPUTB", "PIPELINE", "OUTPUT")   # the MULT18X18D registers used


def is_ecp5(platform):
    from amaranth.vendor import LatticeECP5Platform
    return isinstance(platform, LatticeECP5Platform)


class RegisteredMultiplier(wiring.Component):
    """p = a * b, `latency` cycles later."""
    a: In(signed(OPERAND_BITS))
    b: In(signed(OPERAND_BITS))
    p: Out(signed(PRODUCT_BITS))

    latency = 3            # input, pipeline and output registers

    def elaborate(self, platform):
        m = Module()
        if is_ecp5(platform):
            m.submodules.mult = Instance(
                "MULT18X18D",
                **{f"p_REG_{reg}_CLK": "CLK0" for reg in REGISTERS},
                i_CLK0=ClockSignal(), i_CE0=1, i_RST0=0,
                i_SIGNEDA=1, i_SIGNEDB=1, i_SOURCEA=0, i_SOURCEB=0,
                **{f"i_A{i}": self.a[i] for i in range(OPERAND_BITS)},
                **{f"i_B{i}": self.b[i] for i in range(OPERAND_BITS)},
                **{f"i_C{i}": 0 for i in range(OPERAND_BITS)},
                **{f"o_P{i}": self.p[i] for i in range(PRODUCT_BITS)})
            return m
        a, b = Signal.like(self.a, reset_less=True), Signal.like(self.b, reset_less=True)
        product = Signal.like(self.p, reset_less=True)
        m.d.sync += [a.eq(self.a), b.eq(self.b), product.eq(a * b), self.p.eq(product)]
        return m
