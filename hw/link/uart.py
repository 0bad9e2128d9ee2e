"""A plain 8N1 UART: one start bit (low), 8 data bits LSB first, one stop bit (high).

The bit time is an exact fraction of clock cycles, `BitTiming.cycles` = clock_hz / baud (e.g.
100 MHz / 12 Mbaud = 25/3 cycles), at least 4. Bits are whole cycles, so their edges fall at
floor(k * cycles) cycles from the first start bit (bits of 8, 8 and 9 cycles at 25/3): no bit
is off by a cycle or more and the average rate is the requested one. Both sides are streams of
bytes:
- UARTTx takes `data` beats and drives `tx` (idle high). A byte offered by the end of the
  previous one's stop bit follows it at once, the edges running on at the exact average rate;
  after an idle line the count starts again at the next start bit.
- UARTRx samples `rx` (two-flop synchronized) in the middle of each bit: bit k (0 the start
  bit) at floor((k + 1/2) * cycles) cycles after the cycle it saw the start bit's falling edge
  in, which is (k + 1/2) * cycles rounded from the edge's mean time, half a cycle before it was
  seen. It offers each byte on `data` until it is taken. A byte that arrives while the previous one is still waiting replaces it
  and sets `overrun` for one cycle; a low stop bit drops the byte and pulses `frame_error`.
"""
import math
from dataclasses import dataclass
from fractions import Fraction

from amaranth import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

from hw.link.protocol import BITS_PER_BYTE

MIN_CYCLES_PER_BIT = 4
# The bit time's denominator bounds the remainder register (12 bits); a finer one costs logic
# for a rate error of a few ppm at most (`rate_error_ppm`).
MAX_DENOMINATOR = 4096


@dataclass(frozen=True)
class BitTiming:
    """Clock cycles per bit as the hardware counts them, and how close that is to the request.

    >>> t = bit_timing(100_000_000, 12_000_000)
    >>> t.cycles, t.bit_lengths(6), t.rate_error_ppm, round(t.jitter_cycles, 3)
    (Fraction(25, 3), [8, 8, 9, 8, 8, 9], 0.0, 0.667)
    """
    clock_hz: Fraction
    baud: int
    cycles: Fraction

    def edges(self, count):
        """Cycles from the first start bit to each of the first `count` + 1 bit edges."""
        return [math.floor(k * self.cycles) for k in range(count + 1)]

    def bit_lengths(self, count):
        edges = self.edges(count)
        return [b - a for a, b in zip(edges, edges[1:])]

    @property
    def rate_error_ppm(self):
        """The hardware's average rate against the requested one, in ppm (0: exact)."""
        return float((self.clock_hz / self.cycles / self.baud - 1) * 1_000_000)

    @property
    def jitter_cycles(self):
        """The worst distance of a bit edge from its ideal time, in clock cycles: whole cycles
        fall up to (q - 1) / q early at a bit time of p / q cycles."""
        q = self.cycles.denominator
        return float(Fraction(q - 1, q))


def bit_timing(clock_hz, baud):
    """The bit time of `baud` at `clock_hz` (an int, a Fraction, or a float of whole Hz).

    >>> bit_timing(100_000_000, 30_000_000)
    Traceback (most recent call last):
    ValueError: 30000000 baud at 100 MHz is 10/3 clock cycles per bit; the UART needs at least 4: lower the baud rate or raise the clock
    """
    clock = Fraction(clock_hz)
    if baud < 1 or clock <= 0:
        raise ValueError(f"the UART needs a positive clock and baud rate, got {clock_hz} Hz, "
                         f"{baud} baud")
    exact = clock / baud
    if exact < MIN_CYCLES_PER_BIT:
        raise ValueError(f"{baud} baud at {float(clock) / 1e6:g} MHz is {exact} clock cycles per "
                         f"bit; the UART needs at least {MIN_CYCLES_PER_BIT}: lower the baud rate "
                         "or raise the clock")
    return BitTiming(clock, int(baud), exact.limit_denominator(MAX_DENOMINATOR))


class _Ticks:
    """Events at floor(phase + k * period) cycles after a start, period >= 1 and phase exact
    fractions: a countdown to the next event, and the fraction of a cycle its exact time lies
    past it (in units of 1/den), which decides whether the next interval is one cycle longer.
    No error accumulates however many events follow.

    `begin(m)` in cycle t sets up event 1 at cycle t + floor(phase + period); `advance(m)`, in
    the cycle of an event (`due`), the next one; `count_down(m)` in every other cycle.
    """

    def __init__(self, period, phase=Fraction(0)):
        self.first = Fraction(phase) + Fraction(period)
        self.den = math.lcm(Fraction(period).denominator, Fraction(phase).denominator)
        self.base, self.extra = divmod(int(period * self.den), self.den)
        self.timer = Signal(range(max(math.floor(self.first), self.base + 1)))
        self.frac = Signal(range(self.den))
        # timer == 0, kept as a register beside the timer: `due` reaches the FIFO feeding the
        # transmitter across the chip (a routed 11.8 ns path through the timer's compare).
        self.due = Signal(init=1)

    def _load(self, m, timer):
        m.d.sync += [self.timer.eq(timer), self.due.eq(timer == 0)]

    def begin(self, m):
        whole = math.floor(self.first)
        self._load(m, whole - 1)
        m.d.sync += self.frac.eq(int((self.first - whole) * self.den))

    def advance(self, m):
        carry = self.frac + self.extra >= self.den
        self._load(m, self.base - 1 + carry)
        m.d.sync += self.frac.eq(Mux(carry, self.frac + self.extra - self.den, self.frac + self.extra))

    def count_down(self, m):
        self._load(m, self.timer - 1)


def _check(timing):
    if not isinstance(timing, BitTiming):
        raise TypeError(f"a UART takes a BitTiming (hw.link.uart.bit_timing), got {timing!r}")
    return timing


class UARTTx(wiring.Component):
    data: In(stream.Signature(8))
    tx: Out(1, init=1)

    def __init__(self, timing):
        self.timing = _check(timing)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        ticks = _Ticks(self.timing.cycles)
        shreg = Signal(BITS_PER_BYTE, init=(1 << BITS_PER_BYTE) - 1)   # stop, data, start (LSB first)
        bits = Signal(range(BITS_PER_BYTE + 1))                        # left to send, this one included
        idle = bits == 0
        m.d.comb += [self.tx.eq(shreg[0]),
                     self.data.ready.eq(idle | ((bits == 1) & ticks.due))]
        with m.If(self.data.valid & self.data.ready):
            m.d.sync += [shreg.eq((1 << 9) | (self.data.payload << 1)), bits.eq(BITS_PER_BYTE)]
            with m.If(idle):
                ticks.begin(m)
            with m.Else():           # straight after a stop bit: the edges go on
                ticks.advance(m)
        with m.Elif(~idle):
            with m.If(ticks.due):
                m.d.sync += [shreg.eq((1 << 9) | (shreg >> 1)), bits.eq(bits - 1)]
                ticks.advance(m)
            with m.Else():
                ticks.count_down(m)
        return m


class UARTRx(wiring.Component):
    rx: In(1, init=1)
    data: Out(stream.Signature(8))
    overrun: Out(1)
    frame_error: Out(1)

    def __init__(self, timing):
        self.timing = _check(timing)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        cycles = self.timing.cycles
        rx = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, rx, init=1)
        # Bit k's middle: floor((k + 1/2) * cycles) cycles after the edge was seen.
        samples = _Ticks(cycles, phase=cycles / 2)
        shreg = Signal(8)
        bits = Signal(range(BITS_PER_BYTE))      # samples left: 8 data bits, then the stop bit
        busy = Signal()
        m.d.sync += [self.overrun.eq(0), self.frame_error.eq(0)]
        with m.If(self.data.valid & self.data.ready):
            m.d.sync += self.data.valid.eq(0)
        with m.If(~busy):
            with m.If(~rx):          # the start bit's edge: the first data bit's middle is next
                m.d.sync += [busy.eq(1), bits.eq(BITS_PER_BYTE - 1)]
                samples.begin(m)
        with m.Elif(samples.due):
            samples.advance(m)
            m.d.sync += bits.eq(bits - 1)
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
            samples.count_down(m)
        return m
