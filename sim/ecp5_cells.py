"""Simulation models of the ECP5 MULT18X18D in the two configurations the core's netlists hold.

yosys ships the MULT18X18D as a black box and no open simulation model of its registers exists,
so this one is written from Lattice's ECP5 sysDSP usage guide: A and B,
each signed when SIGNEDA / SIGNEDB is high, multiplied into the 36-bit P, through an input
register, a pipeline register and an output register, all clocked by CLK0, enabled by CE0 and
reset to zero by RST0 on a clock edge (RESETMODE "SYNC"). It is generated as Verilog with the
primitive's name and port names, so the core's own Verilog runs against it unchanged but for the
parameter list, which the caller checks is that configuration and then removes
(`strip_parameters`): the model has no parameters to take. The second configuration is the
one yosys's synth_ecp5 infers from a product (no parameters: no register, `registered=False`),
which a synthesized netlist holds beside the core's own.

It is written apart from `hw.blocks.registered_multiplier`'s Amaranth twin on purpose: a test of the
instance's wiring against this model does not reuse the code it checks.
"""
import re

from amaranth import Cat, ClockDomain, Module, Mux, Signal, signed
from amaranth.back import verilog
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

# The registers' clock enable and reset keep their defaults (CE0, RST0; RESETMODE "SYNC").
MULT18X18D_CONFIGURATION = {f"REG_{reg}_CLK": "CLK0" for reg in ("INPUTA", "INPUTB", "PIPELINE", "OUTPUT")}


class Mult18x18dModel(wiring.Component):
    def __init__(self, registered=True):
        self.registered = registered
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
        if self.registered:
            with m.If(self.CE0):
                m.d.sync += [a.eq(operand("A", self.SIGNEDA)), b.eq(operand("B", self.SIGNEDB)),
                             pipeline.eq(a * b), output.eq(pipeline)]
        else:
            m.d.comb += [a.eq(operand("A", self.SIGNEDA)), b.eq(operand("B", self.SIGNEDB)),
                         output.eq(a * b)]
        m.d.comb += [getattr(self, f"P{i}").eq(output[i]) for i in range(36)]
        return m


def model_verilog(registered=True, name="MULT18X18D"):
    return verilog.convert(Mult18x18dModel(registered), name=name)


# yosys's write_verilog, in Amaranth's Verilog and in a netlist alike (an escaped name ends in a space)
INSTANCE = re.compile(r"MULT18X18D #\((?P<params>.*?)\n  \) (?P<name>\S+) +\(", re.S)
PARAMETER = re.compile(r'\.(\w+)\("([^"]*)"\)')


def instance_parameters(design_verilog):
    """[{parameter: value}], one for every MULT18X18D in Amaranth's Verilog."""
    return [dict(PARAMETER.findall(match["params"])) for match in INSTANCE.finditer(design_verilog)]


def strip_parameters(design_verilog):
    """The Verilog with every MULT18X18D's parameter list removed, for the parameterless model."""
    return INSTANCE.sub(lambda match: f"MULT18X18D {match['name']} (", design_verilog)


# -- DP16KD ---------------------------------------------------------------------------------
# yosys's cells_sim.v declares the DP16KD's parameters and no behaviour, so a netlist's block
# RAMs read zero there. This model is written from Lattice's ECP5 memory usage guide (TN1264):
# 1,024 words of 18 bits (two 9-bit bytes), initialised from INITVAL_00 .. _3F (16 words per
# row, one every 20 bits); a port of 18 bits addresses a word with AD[13:4] and takes AD[1:0]
# as its byte enables; a port of 9 addresses a byte with AD[13:3]; DATA_WIDTH 36 on both ports
# is the pseudo-dual-port mode: writes through port A (AD[13:5], byte enables AD[3:0], data
# DIA then DIB), reads through port B (data DOA then DOB). Outputs unregistered (REGMODE
# NOREG), updated on the port's clock edge while CE; a sync RST clears it; a port that writes
# in WRITEMODE NORMAL keeps its output. One model is generated per instance (its contents and
# configuration), named DP16KD_<n>, since an Amaranth module takes no Verilog parameters.
DP16KD_WORDS, DP16KD_BITS = 1024, 18
DP16KD_WIDTHS = (9, 18, 36)


def dp16kd_contents(params):
    """The 1,024 18-bit words of an instance's INITVAL_xx parameters (Verilog numbers)."""
    words = []
    for row in range(64):
        value = params.get(f"INITVAL_{row:02X}", "0")
        bits = int(value.split("'h")[-1], 16) if "'h" in value else int(value.split("'d")[-1] or 0)
        words += [(bits >> (20 * k)) & ((1 << DP16KD_BITS) - 1) for k in range(16)]
    return words


def dp16kd_configuration(params):
    """(width A, width B, write mode A, write mode B, CS decode A, CS decode B, reset mode) of
    an instance; ValueError for a configuration the model does not cover."""
    def number(name, default):
        value = params.get(name, str(default))
        return int(value.split("'d")[-1]) if "'d" in value else int(value.strip('"'))
    widths = number("DATA_WIDTH_A", 18), number("DATA_WIDTH_B", 18)
    for side, w in zip("AB", widths):
        if w not in DP16KD_WIDTHS:
            raise ValueError(f"DP16KD: no model of DATA_WIDTH_{side} {w}")
    if (36 in widths) and widths != (36, 36):
        raise ValueError(f"DP16KD: no model of widths {widths}")
    for side in "AB":
        if params.get(f"REGMODE_{side}", '"NOREG"').strip('"') != "NOREG":
            raise ValueError(f"DP16KD: no model of REGMODE_{side} {params[f'REGMODE_{side}']}")
        for pin in (f"CLK{side}MUX",):
            if params.get(pin, f'"CLK{side}"').strip('"') != f"CLK{side}":
                raise ValueError(f"DP16KD: no model of {pin} {params[pin]}")
    modes = tuple(params.get(f"WRITEMODE_{s}", '"NORMAL"').strip('"') for s in "AB")
    decodes = tuple(int(params.get(f"CSDECODE_{s}", '"0b000"').strip('"')[2:], 2) for s in "AB")
    return widths + modes + decodes + (params.get("RESETMODE", '"SYNC"').strip('"'),)


class Dp16kdModel(wiring.Component):
    def __init__(self, configuration, contents):
        self.configuration, self.contents = configuration, contents
        super().__init__({
            **{f"{pin}{s}{i}": In(1) for s in "AB" for pin, n in (("DI", 18), ("AD", 14)) for i in range(n)},
            **{f"{pin}{s}": In(1) for s in "AB" for pin in ("CE", "OCE", "CLK", "WE", "RST")},
            **{f"CS{s}{i}": In(1) for s in "AB" for i in range(3)},
            **{f"DO{s}{i}": Out(1) for s in "AB" for i in range(18)},
        })

    def bus(self, pin, side, n):
        return Cat(*(getattr(self, f"{pin}{side}{i}") for i in range(n)))

    def elaborate(self, platform):
        m = Module()
        width_a, width_b, mode_a, mode_b, decode_a, decode_b, _ = self.configuration
        for side in "AB":
            cd = ClockDomain(side.lower(), reset_less=True)
            m.domains += cd
            m.d.comb += cd.clk.eq(getattr(self, f"CLK{side}"))
        selected = {s: self.bus("CS", s, 3) == d for s, d in (("A", decode_a), ("B", decode_b))}
        if width_a == 36:
            self.wide(m, selected)
        else:
            mem = memory.Memory(shape=DP16KD_BITS, depth=DP16KD_WORDS, init=self.contents)
            m.submodules.mem = mem
            for side, width, mode in (("A", width_a, mode_a), ("B", width_b, mode_b)):
                self.port(m, mem, side, width, mode, selected[side])
        return m

    def output(self, m, side, enable, data):
        """What `side`'s DO shows: `data` read at the clock edge while `enable`, zero after an
        edge with RST."""
        domain = side.lower()
        cleared = Signal(name=f"cleared_{domain}")
        with m.If(getattr(self, f"RST{side}")):
            m.d[domain] += cleared.eq(1)
        with m.Elif(enable):
            m.d[domain] += cleared.eq(0)
        return Mux(cleared, 0, data)

    def port(self, m, mem, side, width, mode, selected):
        domain, address = side.lower(), self.bus("AD", side, 14)
        clocked = getattr(self, f"CE{side}") & selected
        write = clocked & getattr(self, f"WE{side}")
        word = address[4:]
        wport = mem.write_port(domain=domain, granularity=9)
        if width == 18:
            m.d.comb += [wport.addr.eq(word), wport.data.eq(self.bus("DI", side, 18)),
                         wport.en.eq(Mux(write, address[:2], 0))]
        else:
            byte = address[3]
            m.d.comb += [wport.addr.eq(word), wport.data.eq(self.bus("DI", side, 9).replicate(2)),
                         wport.en.eq(Mux(write, Mux(byte, 0b10, 0b01), 0))]
        enable = clocked & ~(write & (mode == "NORMAL"))
        transparent = (wport,) if mode == "WRITETHROUGH" else ()
        rport = mem.read_port(domain=domain, transparent_for=transparent)
        m.d.comb += [rport.addr.eq(word), rport.en.eq(enable)]
        if width == 18:
            m.d.comb += self.bus("DO", side, 18).eq(self.output(m, side, enable, rport.data))
        else:
            byte_read = Signal(name=f"byte_{domain}")
            with m.If(enable):
                m.d[domain] += byte_read.eq(address[3])
            data = Mux(byte_read, rport.data[9:], rport.data[:9])
            m.d.comb += self.bus("DO", side, 9).eq(self.output(m, side, enable, data))

    def wide(self, m, selected):
        """The pseudo-dual-port mode: 512 words of 36 bits, written on A, read on B."""
        pairs = [self.contents[2 * k] | (self.contents[2 * k + 1] << 18) for k in range(DP16KD_WORDS // 2)]
        m.submodules.mem = mem = memory.Memory(shape=36, depth=DP16KD_WORDS // 2, init=pairs)
        write_address = self.bus("AD", "A", 14)
        wport = mem.write_port(domain="a", granularity=9)
        write = self.CEA & selected["A"] & self.WEA
        m.d.comb += [wport.addr.eq(write_address[5:]),
                     wport.data.eq(Cat(self.bus("DI", "A", 18), self.bus("DI", "B", 18))),
                     wport.en.eq(Mux(write, write_address[:4], 0))]
        rport = mem.read_port(domain="b")
        enable = self.CEB & selected["B"]
        m.d.comb += [rport.addr.eq(self.bus("AD", "B", 14)[5:]), rport.en.eq(enable)]
        data = self.output(m, "B", enable, rport.data)
        m.d.comb += [self.bus("DO", "A", 18).eq(data[:18]), self.bus("DO", "B", 18).eq(data[18:])]


def dp16kd_verilog(configuration, contents, name):
    return verilog.convert(Dp16kdModel(configuration, contents), name=name)
