"""A simulation model of the ECP5 MULT18X18D in the one configuration the core instantiates.

yosys ships the MULT18X18D as a black box and no open simulation model of its registers exists,
so this one is written from Lattice's ECP5 sysDSP usage guide: A and B,
each signed when SIGNEDA / SIGNEDB is high, multiplied into the 36-bit P, through an input
register, a pipeline register and an output register, all clocked by CLK0, enabled by CE0 and
reset to zero by RST0 on a clock edge (RESETMODE "SYNC"). It is generated as Verilog with the
primitive's name and port names, so the core's own Verilog runs against it unchanged but for the
parameter list, which the caller checks is that configuration and then removes
(`strip_parameters`): the model has no parameters to take.

It is written apart from `hw.blocks.registered_multiplier`'s Amaranth twin on purpose: a test of the
instance's wiring against this model does not reuse the code it checks.
"""
import re

from amaranth import Cat, ClockDomain, Module, Signal, signed
from amaranth.back import verilog
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

# The registers' clock enable and reset keep their defaults (CE0, RST0; RESETMODE "SYNC").
MULT18X18D_CONFIGURATION = {f"REG_{reg}_CLK": "CLK0" for reg in ("INPUTA", "INPUTB", "PIPELINE", "OUTPUT")}


class Mult18x18dModel(wiring.Component):
    def __init__(self):
        super().__init__({
            **{f"{port}{i}": In(1) for port in "ABC" for i in range(18)},
            **{name: In(1) for name in ("SIGNEDA", "SIGNEDB", "SOURCEA", "SOURCEB",
                                        "CLK0", "CE0", "RST0")},
            **{f"P{i}": Out(1) for i in range(36)},
        })

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = cd = ClockDomain("sync")
        m.d.comb += [cd.clk.eq(self.CLK0), cd.rst.eq(self.RST0)]

        def operand(port, signed_in):     # 19 bits: the 18 and, when signed, the sign again
            bits = Cat(*(getattr(self, f"{port}{i}") for i in range(18)))
            return Cat(bits, bits[17] & signed_in).as_signed()

        a, b = Signal(signed(19)), Signal(signed(19))
        pipeline, output = Signal(signed(36)), Signal(signed(36))
        with m.If(self.CE0):
            m.d.sync += [a.eq(operand("A", self.SIGNEDA)), b.eq(operand("B", self.SIGNEDB)),
                         pipeline.eq(a * b), output.eq(pipeline)]
        m.d.comb += [getattr(self, f"P{i}").eq(output[i]) for i in range(36)]
        return m


def model_verilog():
    return verilog.convert(Mult18x18dModel(), name="MULT18X18D")


INSTANCE = re.compile(r"MULT18X18D #\((?P<params>.*?)\n  \) (?P<name>\S+) \(", re.S)
PARAMETER = re.compile(r'\.(\w+)\("([^"]*)"\)')


def instance_parameters(design_verilog):
    """[{parameter: value}], one for every MULT18X18D in Amaranth's Verilog."""
    return [dict(PARAMETER.findall(match["params"])) for match in INSTANCE.finditer(design_verilog)]


def strip_parameters(design_verilog):
    """The Verilog with every MULT18X18D's parameter list removed, for the parameterless model."""
    return INSTANCE.sub(lambda match: f"MULT18X18D {match['name']} (", design_verilog)
