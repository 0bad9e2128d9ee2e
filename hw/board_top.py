"""The board top: UART pins -> framing -> accelerator -> UART, and the last class on the LEDs.

The design runs from the board's 100 MHz oscillator (the platform's default clock and reset
button). The four green LEDs (LD4..LD7) show the last answered class as a binary number, LED 0
the least significant bit; classes above 15 show their low four bits.
"""
from amaranth import Elaboratable, Module
from amaranth.lib import io

from hw.framing import FramedAccelerator

NUM_LEDS = 4


class BoardTop(Elaboratable):
    def __init__(self, plan, clock_hz, baud):
        divisor = round(clock_hz / baud)
        if divisor < 4:
            raise ValueError(f"baud {baud} is too fast for a {clock_hz / 1e6:g} MHz clock "
                             "(at least 4 clock cycles per bit)")
        self.divisor = divisor
        self.core = FramedAccelerator(plan, divisor)

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

    def __init__(self, plan, pll_params, baud):
        self.pll_params = pll_params
        self.board = BoardTop(plan, pll_params.f_out_mhz * 1e6, baud)
        self.core, self.divisor = self.board.core, self.board.divisor

    def elaborate(self, platform):
        from hw.ecp5_pll import Ecp5Pll
        m = Module()
        m.submodules.clk_pin = clk = io.Buffer("i", platform.request(platform.default_clk, dir="-"))
        m.submodules.pll = Ecp5Pll(self.pll_params, clk.i)
        m.submodules.board = self.board
        return m
