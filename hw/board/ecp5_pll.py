"""The ECP5 PLL (EHXPLLL) that raises a board's oscillator to the design's clock.

`pll_parameters` chooses the dividers as prjtrellis's `ecppll` does (the tests compare the two):
the output closest to the request with the VCO at 400..800 MHz and the phase detector at
3.125..400 MHz, and among equally close ones the VCO nearest 600 MHz. The output is shifted
by half a period, as ecppll does (whose coarse phase differs by one step where its float
arithmetic rounds down; the phase does not matter to a design with no clocked I/O).
"""
from dataclasses import dataclass

from amaranth import Cat, ClockDomain, ClockSignal, Elaboratable, Instance, Module, ResetSignal, Signal

VCO_MHZ = (400.0, 800.0)
PFD_MHZ = (3.125, 400.0)
OUT_MHZ = (10.0, 400.0)
TOLERANCE = 0.01     # the largest relative error from the requested clock accepted


@dataclass(frozen=True)
class PllParameters:
    clki_div: int
    clkfb_div: int
    clkop_div: int
    f_in_mhz: float

    @property
    def f_out_mhz(self):
        return self.f_in_mhz * self.clkfb_div / self.clki_div

    @property
    def f_vco_mhz(self):
        return self.f_out_mhz * self.clkop_div

    @property
    def clkop_cphase(self):
        return self.clkop_div // 2


def pll_parameters(f_in_mhz, f_out_mhz):
    if not OUT_MHZ[0] <= f_out_mhz <= OUT_MHZ[1]:
        raise ValueError(f"the ECP5 PLL makes {OUT_MHZ[0]:g}..{OUT_MHZ[1]:g} MHz, not "
                         f"{f_out_mhz:g} MHz: choose a --clock-mhz in that range")
    best, best_key = None, None
    for clki_div in range(1, 129):
        pfd = f_in_mhz / clki_div
        if not PFD_MHZ[0] <= pfd <= PFD_MHZ[1]:
            continue
        for clkfb_div in range(1, 81):
            out = pfd * clkfb_div
            for clkop_div in range(1, 129):
                vco = out * clkop_div
                if not VCO_MHZ[0] <= vco <= VCO_MHZ[1]:
                    continue
                key = (abs(out - f_out_mhz), abs(vco - 600.0))
                if best_key is None or key < best_key:
                    best, best_key = PllParameters(clki_div, clkfb_div, clkop_div, f_in_mhz), key
    if best is None or abs(best.f_out_mhz - f_out_mhz) > TOLERANCE * f_out_mhz:
        raise ValueError(f"no ECP5 PLL setting makes {f_out_mhz:g} MHz from {f_in_mhz:g} MHz "
                         "within 1%: choose another --clock-mhz")
    return best


class Ecp5Pll(Elaboratable):
    """Domain `sync` at `params.f_out_mhz`, from the clock input `clk_in`; held in reset until
    the PLL locks and two cycles after.

    The reset reaches nearly every flip-flop of the design (25,619 of 26,724 in the 16 x 2 core),
    a net that on the fabric's wires takes routing from everything else; so it leaves a
    register (its fan-out from one driver) through a DCCA onto a global network, as the clock
    does. nextpnr promotes only clocks by itself.
    """

    def __init__(self, params, clk_in):
        self.params, self.clk_in = params, clk_in
        self.locked = Signal()

    def elaborate(self, platform):
        m = Module()
        p = self.params
        m.domains.sync = ClockDomain("sync")
        out = ClockSignal("sync")
        m.submodules.pll = Instance(
            "EHXPLLL",
            a_FREQUENCY_PIN_CLKI=f"{p.f_in_mhz:g}", a_FREQUENCY_PIN_CLKOP=f"{p.f_out_mhz:g}",
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
            a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
            p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
            p_CLKI_DIV=p.clki_div, p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=p.clkop_div,
            p_CLKOP_CPHASE=p.clkop_cphase, p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP",
            p_CLKFB_DIV=p.clkfb_div,
            i_RST=0, i_STDBY=0, i_CLKI=self.clk_in, o_CLKOP=out, i_CLKFB=out,
            i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1,
            i_PLLWAKESYNC=0, i_ENCLKOP=0, o_LOCK=self.locked)
        # ~LOCK through two registers: the reset leaves a flip-flop, synchronous to the clock.
        held = Signal(2, init=0b11, reset_less=True)
        m.d.sync += held.eq(Cat(~self.locked, held[0]))
        m.submodules.reset_buffer = Instance("DCCA", i_CLKI=held[1], i_CE=1, o_CLKO=ResetSignal("sync"))
        return m
