"""The board top: UART pins -> framing -> accelerator -> UART, and the last class on the LEDs.

The design runs from the board's 100 MHz oscillator (the platform's default clock and reset
button). The four green LEDs (LD4..LD7) show the last answered class as a binary number, LED 0
the least significant bit; classes above 15 show their low four bits.
"""
from fractions import Fraction

from amaranth import Elaboratable, Module
from amaranth.lib import io

from hw.link.framing import FramedAccelerator
from hw.link.protocol import FRAME_TIMEOUT_MS
from hw.link.uart import bit_timing

NUM_LEDS = 4


class BoardTop(Elaboratable):
    def __init__(self, plan, clock_hz, baud, frame_timeout_ms=FRAME_TIMEOUT_MS):
        """`clock_hz`: the design's clock, exact (an int or a Fraction); the UART's bit time is
        clock_hz / baud cycles as an exact fraction (hw/link/uart.py). ValueError below 4 cycles.
        `frame_timeout_ms`: the quiet line that ends a frame (hw/link/protocol.py)."""
        self.bit_timing = bit_timing(clock_hz, baud)
        self.core = FramedAccelerator(plan, self.bit_timing, frame_timeout_ms)

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self.core
        uart = platform.request("uart", 0, dir={"rx": "-", "tx": "-"})
        m.submodules.uart_rx_pin = rx = io.Buffer("i", uart.rx)
        m.submodules.uart_tx_pin = tx = io.Buffer("o", uart.tx)
        m.d.comb += [core.rx.eq(rx.i), tx.o.eq(core.tx)]
        for i in range(NUM_LEDS):
            m.submodules[f"led{i}"] = led = io.Buffer("o", platform.request("led", i, dir="-"))
            m.d.comb += led.o.eq(core.last_class[i])
        return m


class PllBoardTop(Elaboratable):
    """A board top clocked by an ECP5 PLL from the board's oscillator (`platform.default_clk`)."""

    def __init__(self, plan, pll_params, baud, frame_timeout_ms=FRAME_TIMEOUT_MS):
        self.pll_params = pll_params
        # The PLL's clock exactly: the oscillator x CLKFB_DIV / CLKI_DIV.
        clock_hz = Fraction(pll_params.f_in_mhz) * 1_000_000 * pll_params.clkfb_div / pll_params.clki_div
        self.board = BoardTop(plan, clock_hz, baud, frame_timeout_ms)
        self.core, self.bit_timing = self.board.core, self.board.bit_timing

    def elaborate(self, platform):
        from hw.board.ecp5_pll import Ecp5Pll
        m = Module()
        m.submodules.clk_pin = clk = io.Buffer("i", platform.request(platform.default_clk, dir="-"))
        m.submodules.pll = Ecp5Pll(self.pll_params, clk.i)
        m.submodules.board = self.board
        return m
