"""The conv engine's accumulators of one pixel: acc_o <- (first ? 0 : acc_o) + term_o, where term_o
is tree o's sum, or, in a depthwise (pool) step, lane o's input.

In the fabric an accumulator costs about two LUTs per bit (the term's mux, the add with the load
folded in), `lanes` of them per pixel. The 7-series DSP48E1 does both in its ALU: in SIMD mode
TWO24 one block holds two 24-bit accumulators in its P register, the tree sums on A:B and the
pool's terms on C, and the OPMODE picks per cycle which of them to add to P or to zero
(X = A:B or 0, Y = C or 0, Z = P or 0). So on a Xilinx 7-series platform, and where the
accumulators fit 24 bits, each pair of them is such a block (no register on A, B, C or the
controls: the tree's root and the step's controls are registered already; P is the
accumulator, enabled by `enable`); anywhere else, simulation included, it is the twin in the
fabric. Both wrap at the accumulator's width, so they agree bit for bit even past it: P's
lanes wrap at 24 bits and the twin's at `width`, and the low `width` bits are the same.
tests/test_hw_blocks.py runs the instance against yosys's own simulation model of the DSP48E1.
"""
from amaranth import ClockSignal, Const, Instance, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from common.bits import ceil_div
from hw.blocks.addsub_tree import add_or_subtract

SIMD_BITS = 24          # a DSP48E1 lane in USE_SIMD = "TWO24"
SIMD_LANES = 2
# OPMODE fields (UG479, table 2-7): X = A:B (0b11) or 0; Y = C (0b11) or 0; Z = P (0b010) or 0.
X_AB, Y_C, Z_P = 0b11, 0b11 << 2, 0b010 << 4
# The block as an accumulator: no register but P; no multiplier; two 24-bit adders.
DSP48E1_CONFIGURATION = dict(
    A_INPUT="DIRECT", B_INPUT="DIRECT", USE_DPORT="FALSE", USE_MULT="NONE", USE_SIMD="TWO24",
    USE_PATTERN_DETECT="NO_PATDET", AREG=0, ACASCREG=0, BREG=0, BCASCREG=0, CREG=0, DREG=0,
    ADREG=0, MREG=0, PREG=1, INMODEREG=0, OPMODEREG=0, ALUMODEREG=0, CARRYINREG=0,
    CARRYINSELREG=0)


def simd_blocks(count, width):
    """DSP48E1s that hold `count` accumulators of `width` bits: one per pair, none (the fabric)
    where they do not fit a SIMD lane."""
    return ceil_div(count, SIMD_LANES) if width <= SIMD_BITS else 0


def is_xilinx_7series(platform):
    from amaranth.vendor import XilinxPlatform
    return isinstance(platform, XilinxPlatform) and platform.family == "series7"


class Accumulators(wiring.Component):
    """`count` accumulators of `width` bits sharing their controls, one register each."""

    def __init__(self, count, width, sum_shape, term_shape):
        self.count, self.width = count, width
        super().__init__({
            "sums": In(data.ArrayLayout(sum_shape, count)),       # the trees' sums
            "terms": In(data.ArrayLayout(term_shape, count)),     # the depthwise terms
            "depthwise": In(1), "first": In(1), "enable": In(1),
            "acc": Out(data.ArrayLayout(signed(width), count)),
        })

    def elaborate(self, platform):
        m = Module()
        if is_xilinx_7series(platform) and simd_blocks(self.count, self.width):
            self.dsp_blocks(m)
            return m
        for o in range(self.count):
            term = Mux(self.depthwise, self.terms[o], self.sums[o])
            total = add_or_subtract(m, self.acc[o], term, Const(0), f"sum{o}")     # acc + term
            with m.If(self.enable):
                m.d.sync += self.acc[o].eq(Mux(self.first, term, total))
        return m

    def dsp_blocks(self, m):
        opmode = Signal(7)
        m.d.comb += opmode.eq(Mux(self.depthwise, Y_C, X_AB) | Mux(self.first, 0, Z_P))
        for block in range(simd_blocks(self.count, self.width)):
            lanes = range(block * SIMD_LANES, min((block + 1) * SIMD_LANES, self.count))
            ab, c, p = Signal(48, name=f"ab{block}"), Signal(48, name=f"c{block}"), Signal(48, name=f"p{block}")
            for k, o in enumerate(lanes):
                part = slice(k * SIMD_BITS, (k + 1) * SIMD_BITS)
                m.d.comb += [ab[part].eq(self.sums[o].as_signed()),
                             c[part].eq(self.terms[o].as_signed()),
                             self.acc[o].eq(p[part][:self.width].as_signed())]
            m.submodules[f"dsp{block}"] = Instance(
                "DSP48E1", **{f"p_{k}": v for k, v in DSP48E1_CONFIGURATION.items()},
                i_CLK=ClockSignal(), i_A=ab[18:], i_B=ab[:18], i_C=c, i_D=0,
                i_OPMODE=opmode, i_ALUMODE=0, i_INMODE=0, i_CARRYIN=0, i_CARRYINSEL=0,
                i_CEP=self.enable, **{f"i_CE{n}": 0 for n in (
                    "A1", "A2", "B1", "B2", "C", "D", "AD", "M", "CTRL", "INMODE", "ALUMODE",
                    "CARRYIN")},
                **{f"i_RST{n}": 0 for n in ("A", "B", "C", "D", "M", "P", "CTRL", "INMODE",
                                            "ALUMODE", "ALLCARRYIN")},
                i_ACIN=0, i_BCIN=0, i_PCIN=0, i_CARRYCASCIN=0, i_MULTSIGNIN=0,
                o_P=p)
