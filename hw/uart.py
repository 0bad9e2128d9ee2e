"""A plain 8N1 UART: one start bit (low), 8 data bits LSB first, one stop bit (high).

`divisor` = clock cycles per bit (clock_hz // baud), at least 4. Both sides are streams of bytes:
- UARTTx takes `data` beats and drives `tx` (idle high); it is ready between bytes.
- UARTRx samples `rx` (two-flop synchronized) in the middle of each bit and offers each byte
  on `data` until it is taken. A byte that arrives while the previous one is still waiting
  replaces it and sets `overrun` for one cycle; a low stop bit drops the byte and pulses
  `frame_error`.
"""
from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out


def _check(divisor):
    if int(divisor) != divisor or divisor < 4:
        raise ValueError(f"UART divisor (clock cycles per bit) must be an integer >= 4, got {divisor}")
    return int(divisor)


class UARTTx(wiring.Component):
    data: In(stream.Signature(8))
    tx: Out(1, init=1)

    def __init__(self, divisor):
        self.divisor = _check(divisor)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        timer = Signal(range(self.divisor))
        shreg = Signal(10, init=0x3FF)     # stop, 8 data bits, start (LSB goes out first)
        bits = Signal(range(11))
        m.d.comb += self.data.ready.eq(bits == 0)
        m.d.comb += self.tx.eq(shreg[0])
        with m.If(bits == 0):
            with m.If(self.data.valid):
                m.d.sync += [shreg.eq((1 << 9) | (self.data.payload << 1)), bits.eq(10),
                             timer.eq(self.divisor - 1)]
        with m.Elif(timer == 0):
            m.d.sync += [shreg.eq((1 << 9) | (shreg >> 1)), bits.eq(bits - 1),
                         timer.eq(self.divisor - 1)]
        with m.Else():
            m.d.sync += timer.eq(timer - 1)
        return m


class UARTRx(wiring.Component):
    rx: In(1, init=1)
    data: Out(stream.Signature(8))
    overrun: Out(1)
    frame_error: Out(1)

    def __init__(self, divisor):
        self.divisor = _check(divisor)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        d = self.divisor
        rx = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, rx, init=1)
        timer = Signal(range(d + d // 2 + 1))
        shreg = Signal(8)
        bits = Signal(range(10))
        busy = Signal()
        m.d.sync += [self.overrun.eq(0), self.frame_error.eq(0)]
        with m.If(self.data.valid & self.data.ready):
            m.d.sync += self.data.valid.eq(0)
        with m.If(~busy):
            with m.If(~rx):
                # Start bit seen: the first data bit's middle is 1.5 bits away.
                m.d.sync += [busy.eq(1), bits.eq(9), timer.eq(d + d // 2 - 2)]
        with m.Elif(timer == 0):
            m.d.sync += [timer.eq(d - 1), bits.eq(bits - 1)]
            with m.If(bits == 1):        # the stop bit
                m.d.sync += busy.eq(0)
                with m.If(rx):
                    m.d.sync += [self.data.payload.eq(shreg), self.data.valid.eq(1),
                                 self.overrun.eq(self.data.valid & ~self.data.ready)]
                with m.Else():
                    m.d.sync += self.frame_error.eq(1)
            with m.Else():
                m.d.sync += shreg.eq((rx << 7) | (shreg >> 1))
        with m.Else():
            m.d.sync += timer.eq(timer - 1)
        return m
