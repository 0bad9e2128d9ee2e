"""Framing between a byte link (UART) and the accelerator's streams: the gateware side of
hw/link/protocol.py (its frames, codes and the rule of one frame ahead; docs/board.md).

A frame times out after `timeout` cycles without a byte in its middle (error 4).
After a bad start byte, a bad length or a busy refusal the rest of the frame is skipped: bytes
are dropped until the line has been quiet for `timeout` cycles. After a bad checksum (the frame
is complete) the next frame may follow at once.

The host may keep one frame ahead: send frame n + 1 while the board computes image n. The
frame buffer has two slots, so one frame can be received while the other waits to be fed to
the accelerator (which takes the next image while it finishes one); a good frame holds its
slot until its answer has gone out, and a frame that starts while both are held is refused
(code 5). The pixels stay in the buffer until the checksum is checked, so a bad frame never
reaches the accelerator.

`FrameReceiver` (header, pixels, checksum, errors) and `Answerer` (the replies) are joined by a
FIFO of outcomes, so replies go out in the order the frames ended and an error reply never cuts
into an answer. `Framer` is the protocol: both sides, the frame buffer and its feeding.
`ImageCycles` stamps each image's result with its clock cycles. `FramedAccelerator` = UART
receiver + Framer + Accelerator + ImageCycles + result FIFO + UART transmitter, with `rx`/`tx`
pins and the last class for LEDs.
"""
import math
from fractions import Fraction

from amaranth import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.core.accelerator import Accelerator
from hw.link.protocol import (ANSWER, CRC_BYTES, CYCLE_BYTES, ERR_BUSY, ERR_CHECKSUM, ERR_LENGTH,
                              ERR_START, ERR_TIMEOUT, ERROR, FRAME_TIMEOUT_MS, LOGIT_BYTES, START)
from hw.link.uart import UARTRx, UARTTx

CRC_POLYNOMIAL = 0xEDB88320   # CRC-32 (zlib's), reflected: bit 0 is shifted out first
CRC_INIT = 0xFFFFFFFF         # the register before a frame's first byte; the CRC is its inverse
FRAME_GOOD = 0          # the outcome of a frame that gets an answer
CODE = unsigned(3)      # an outcome: FRAME_GOOD or an error code
SLOTS = 2               # frames in the buffer: the host may be one frame ahead
PIXEL_FIFO_DEPTH = 4    # between the framer and the accelerator: one pixel a cycle through it
OUTCOME_DEPTH = 4       # outcomes waiting: the answers of both slots and two error replies

# A result on its way to the answer: a logit (its low LOGIT_BYTES bytes), or, with `last`, the
# answer's tail as one little-endian number: the class, then the image's cycles.
RESULT = data.StructLayout({"data": unsigned(8 * max(LOGIT_BYTES, 1 + CYCLE_BYTES)), "last": 1})


def crc_next(m, crc, byte, name):
    """The CRC-32 register after `byte` (least significant bit first), as logic: eight shift and
    conditional-xor steps, each a signal of its own (an expression would repeat the previous
    step in each of its three uses: 3^8 copies), which synthesis flattens into one xor network.
    hw.link.protocol.crc_bytes is the same CRC: its bytes are the final register inverted."""
    for i in range(8):
        step = Signal(32, name=f"{name}{i}")
        m.d.comb += step.eq((crc >> 1) ^ Mux(crc[0] ^ byte[i], CRC_POLYNOMIAL, 0))
        crc = step
    return crc


class FrameReceiver(wiring.Component):
    """The receiving side: a frame's header, its pixels (`store`, indexed from 0 in the frame),
    its CRC (of the length and the pixels); one `outcome` per frame that ended (FRAME_GOOD or an error code). While
    `busy` a new frame is refused with ERR_BUSY. A full outcome FIFO holds this side: the bytes
    that arrive meanwhile are lost (the UART receiver keeps one)."""

    def __init__(self, num_pixels, timeout):
        self.num_pixels, self.timeout = num_pixels, int(timeout)
        super().__init__({
            "rx": In(stream.Signature(8)),
            "store": Out(data.StructLayout({"en": 1, "index": range(max(2, num_pixels)), "data": 8})),
            "outcome": Out(stream.Signature(CODE)),
            "busy": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        n = self.num_pixels
        count = Signal(range(max(2, n)))
        length_low = Signal(8)
        crc = Signal(32)
        crc_k = Signal(range(CRC_BYTES))
        crc_wrong = Signal()
        crc_with_byte = crc_next(m, crc, self.rx.payload, "crc_step")
        code = Signal(CODE)
        quiet = Signal(range(self.timeout + 1))
        got = self.rx.valid & self.rx.ready
        byte = self.rx.payload

        with m.If(got):
            m.d.sync += quiet.eq(0)
        with m.Elif(quiet != self.timeout):
            m.d.sync += quiet.eq(quiet + 1)
        timed_out = quiet == self.timeout
        m.d.comb += [self.store.index.eq(count), self.store.data.eq(byte),
                     self.outcome.payload.eq(code)]

        def end(outcome, then="REPORT"):
            m.d.sync += code.eq(outcome)
            m.next = then

        def take():
            """Inside a frame: rx is taken, and a quiet line ends the frame with ERR_TIMEOUT."""
            m.d.comb += self.rx.ready.eq(1)
            with m.If(~got & timed_out):
                end(ERR_TIMEOUT)

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.rx.ready.eq(1)
                m.d.sync += [count.eq(0), crc.eq(CRC_INIT), crc_k.eq(0), crc_wrong.eq(0)]
                with m.If(got):
                    with m.If(byte != START):
                        end(ERR_START, "SKIP")
                    with m.Elif(self.busy):
                        end(ERR_BUSY, "SKIP")
                    with m.Else():
                        m.next = "LEN0"
            with m.State("LEN0"):
                take()
                with m.If(got):
                    m.d.sync += [length_low.eq(byte), crc.eq(crc_with_byte)]
                    m.next = "LEN1"
            with m.State("LEN1"):
                take()
                with m.If(got):
                    m.d.sync += crc.eq(crc_with_byte)
                    with m.If((byte == n >> 8) & (length_low == n & 0xFF)):
                        m.next = "PIXELS"
                    with m.Else():
                        end(ERR_LENGTH, "SKIP")
            with m.State("PIXELS"):
                take()
                m.d.comb += self.store.en.eq(got)
                with m.If(got):
                    m.d.sync += [count.eq(count + 1), crc.eq(crc_with_byte)]
                    with m.If(count == n - 1):
                        m.next = "CHECKSUM"
            with m.State("CHECKSUM"):
                take()
                wrong = crc_wrong | (byte != (~crc).word_select(crc_k, 8))
                with m.If(got):
                    m.d.sync += [crc_k.eq(crc_k + 1), crc_wrong.eq(wrong)]
                    with m.If(crc_k == CRC_BYTES - 1):
                        end(Mux(wrong, ERR_CHECKSUM, FRAME_GOOD))
            with m.State("SKIP"):
                # Drop the rest of the frame; it ends once the line has gone quiet.
                m.d.comb += self.rx.ready.eq(1)
                with m.If(~got & timed_out):
                    m.next = "REPORT"
            with m.State("REPORT"):
                m.d.comb += self.outcome.valid.eq(1)
                with m.If(self.outcome.ready):
                    m.next = "IDLE"
        return m


class Answerer(wiring.Component):
    """The answering side: for each outcome, an answer (the header at once, then the results
    of the next image as they come, then the CRC of what followed the header) or an error
    reply. `answered` marks the cycle an answer's last byte is handed to the transmitter."""

    def __init__(self, num_classes):
        self.num_classes = num_classes
        super().__init__({
            "outcome": In(stream.Signature(CODE)),
            "results": In(stream.Signature(RESULT)),
            "tx": Out(stream.Signature(8)),
            "answered": Out(1),
            "last_class": Out(8),
            "error": Out(range(8)),      # the last error code sent (0: none yet)
        })

    def elaborate(self, platform):
        m = Module()
        code = Signal(CODE)
        res = self.results
        byte_k = Signal(range(RESULT["data"].shape.width // 8))
        entry_bytes = Mux(res.payload.last, 1 + CYCLE_BYTES, LOGIT_BYTES)
        crc = Signal(32)
        handed = self.tx.valid & self.tx.ready

        def send(byte, then):
            m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(byte)]
            with m.If(self.tx.ready):
                m.next = then

        crc_with_byte = crc_next(m, crc, self.tx.payload, "crc_step")

        def count_in_crc():
            with m.If(handed):
                m.d.sync += crc.eq(crc_with_byte)

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.outcome.ready.eq(1)
                m.d.sync += [crc.eq(CRC_INIT), byte_k.eq(0)]
                with m.If(self.outcome.valid):
                    m.d.sync += code.eq(self.outcome.payload)
                    with m.If(self.outcome.payload == FRAME_GOOD):
                        m.next = "HEADER"
                    with m.Else():
                        m.next = "ERR"
            with m.State("HEADER"):
                send(ANSWER, "CLASSES")
            with m.State("CLASSES"):
                count_in_crc()
                send(self.num_classes, "RESULTS")
            with m.State("RESULTS"):
                count_in_crc()
                m.d.comb += [self.tx.valid.eq(res.valid),
                             self.tx.payload.eq(res.payload.data.word_select(byte_k, 8))]
                with m.If(res.valid & self.tx.ready):
                    m.d.sync += byte_k.eq(byte_k + 1)
                    with m.If(byte_k == entry_bytes - 1):
                        m.d.comb += res.ready.eq(1)
                        m.d.sync += byte_k.eq(0)
                        with m.If(res.payload.last):
                            m.d.sync += self.last_class.eq(res.payload.data[:8])
                            m.next = "CRC"
            with m.State("CRC"):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq((~crc).word_select(byte_k, 8))]
                with m.If(self.tx.ready):
                    m.d.sync += byte_k.eq(byte_k + 1)
                    with m.If(byte_k == CRC_BYTES - 1):
                        m.d.comb += self.answered.eq(1)
                        m.next = "IDLE"
            with m.State("ERR"):
                m.d.sync += self.error.eq(code)
                send(ERROR, "ERR_CODE")
            with m.State("ERR_CODE"):
                send(code, "IDLE")
        return m


class Framer(wiring.Component):
    """The protocol: `rx` bytes in, `tx` bytes out, pixels to the accelerator (`pix`), its
    results (`res`, RESULT beats) back."""

    def __init__(self, num_pixels, num_classes, timeout):
        if not 0 < num_pixels < 1 << 16:
            raise ValueError(f"a frame holds 1..65535 pixels, got {num_pixels}")
        if not 0 < num_classes < 256:
            raise ValueError(f"the answer's class count is one byte, got {num_classes}")
        self.num_pixels, self.num_classes, self.timeout = num_pixels, num_classes, int(timeout)
        super().__init__({
            "rx": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
            "pix": Out(stream.Signature(unsigned(8))),
            "res": In(stream.Signature(RESULT)),
            "last_class": Out(8),
            "error": Out(range(8)),      # the last error code sent (0: none yet)
        })

    def elaborate(self, platform):
        m = Module()
        n = self.num_pixels
        m.submodules.receiver = receiver = FrameReceiver(n, self.timeout)
        m.submodules.answerer = answerer = Answerer(self.num_classes)
        m.submodules.outcomes = outcomes = fifo.SyncFIFO(width=CODE.width, depth=OUTCOME_DEPTH)
        m.submodules.frames = buf = memory.Memory(shape=unsigned(8), depth=SLOTS * n, init=[])
        wr, rd = buf.write_port(), buf.read_port()
        wiring.connect(m, wiring.flipped(self.rx), receiver.rx)
        wiring.connect(m, receiver.outcome, outcomes.w_stream)
        wiring.connect(m, outcomes.r_stream, answerer.outcome)
        wiring.connect(m, wiring.flipped(self.res), answerer.results)
        wiring.connect(m, answerer.tx, wiring.flipped(self.tx))
        m.d.comb += [self.last_class.eq(answerer.last_class), self.error.eq(answerer.error)]

        def slot_base(slot):
            return Mux(slot, n, 0)

        filling = Signal()                    # the slot frames are received into
        feeding = Signal()                    # the slot the accelerator is fed from next
        unfed = Signal(range(SLOTS + 1))      # good frames not yet fed
        held = Signal(range(SLOTS + 1))       # good frames not yet answered
        good = receiver.outcome.valid & receiver.outcome.ready & (receiver.outcome.payload == FRAME_GOOD)
        fed = Signal()
        m.d.comb += [receiver.busy.eq(held == SLOTS),
                     wr.en.eq(receiver.store.en), wr.data.eq(receiver.store.data),
                     wr.addr.eq(slot_base(filling) + receiver.store.index)]
        m.d.sync += [unfed.eq(unfed + good - fed), held.eq(held + good - answerer.answered)]
        with m.If(good):
            m.d.sync += filling.eq(~filling)
        with m.If(fed):
            m.d.sync += feeding.eq(~feeding)

        # The read port looks one pixel ahead while pixels are taken; between frames it reads
        # the next slot's first pixel, so feeding starts a cycle after that slot is chosen.
        index = Signal(range(max(2, n)))
        last = index == n - 1
        advance = Signal()
        index_next = Mux(advance, Mux(last, 0, index + 1), index)
        m.d.sync += index.eq(index_next)
        m.d.comb += [rd.addr.eq(slot_base(feeding) + index_next), self.pix.payload.eq(rd.data)]
        with m.FSM():
            with m.State("WAIT"):
                with m.If(unfed != 0):
                    m.next = "FEED"
            with m.State("FEED"):
                m.d.comb += [self.pix.valid.eq(1), advance.eq(self.pix.ready)]
                with m.If(advance & last):
                    m.d.comb += fed.eq(1)
                    m.next = "WAIT"
        return m


class ImageCycles(wiring.Component):
    """The accelerator's results (`beats`) as RESULT beats: each logit as it is, the class beat
    as the answer's tail, class | cycles << 8.

    cycles: the clock cycles since the previous class beat, less those in which the accelerator
    waited for its image (`starved`: the link had not brought the frame yet). That is
    hw.core.latency's cycles per image back to back, wherever the next image can come in while the
    last steps of one run (the model's INPUT step then costs its 3 cycles); a class beat held up by a full result FIFO
    (`beats` not ready) is counted, so such stalls show. The controller leaves reset at the
    INPUT step's START, which every later image reaches from the head's NEXT cycle: that one
    cycle is counted in advance (init=1).

    A RESULT beat leaves from a register (one beat of its own, so `beats` waits no more than
    the FIFO behind it makes it): the accelerator's out beat is combinational from its
    controller, and through the class compare, this counter's adder and the mux it ran on to
    the result FIFO's storage across the chip (a routed make-train model's worst path, 11.0 ns).
    The beats also come in through a FIFO of two and `starved` through a register, so that no
    path runs from the controller into the count or the beat it stamps (the next routed worst
    path, 10.8 ns, 8.5 of it routing): both arrive one cycle late, together, and every count is
    the same.
    """

    def __init__(self, plan):
        super().__init__({
            "beats": In(stream.Signature(plan.out_layout)),
            "starved": In(1),
            "results": Out(stream.Signature(RESULT)),
        })

    def elaborate(self, platform):
        m = Module()
        res = self.results
        m.submodules.incoming = incoming = fifo.SyncFIFO(width=len(self.beats.payload.as_value()), depth=2)
        beat = stream.Signature(self.beats.payload.shape()).create()
        starved = Signal(init=1)       # as if starved before the first cycle: counts alike
        m.d.sync += starved.eq(self.starved)
        m.d.comb += [incoming.w_data.eq(self.beats.payload), incoming.w_en.eq(self.beats.valid),
                     self.beats.ready.eq(incoming.w_rdy),
                     beat.payload.eq(incoming.r_data), beat.valid.eq(incoming.r_rdy),
                     incoming.r_en.eq(beat.ready)]
        elapsed = Signal(8 * CYCLE_BYTES, init=1)
        now = Signal(8 * CYCLE_BYTES)                # elapsed, this cycle included
        held = Signal(RESULT)
        full = Signal()
        m.d.comb += [now.eq(elapsed + 1), res.valid.eq(full), res.payload.eq(held),
                     beat.ready.eq(~full | res.ready)]
        with m.If(beat.valid & beat.ready):
            m.d.sync += [full.eq(1), held.last.eq(beat.payload.last),
                         held.data.eq(Mux(beat.payload.last, Cat(beat.payload.data[:8], now),
                                          beat.payload.data.as_signed()))]
        with m.Elif(res.ready):
            m.d.sync += full.eq(0)
        with m.If(beat.valid & beat.ready & beat.payload.last):
            m.d.sync += elapsed.eq(0)
        with m.Elif(~starved):
            m.d.sync += elapsed.eq(elapsed + 1)
        return m


class FramedAccelerator(wiring.Component):
    """UART pins in and out, the accelerator behind the framing; `last_class` for LEDs.

    `timing`: hw.link.uart.bit_timing(clock_hz, baud). A frame times out after `frame_timeout_ms`
    without a byte in its middle (counted in whole clock cycles, rounded up)."""
    rx: In(1, init=1)
    tx: Out(1, init=1)
    last_class: Out(8)
    error: Out(range(8))

    def __init__(self, plan, timing, frame_timeout_ms=FRAME_TIMEOUT_MS):
        if plan.logit_bits > 8 * LOGIT_BYTES:
            raise ValueError(f"logits are {plan.logit_bits} bits wide; the link sends {8 * LOGIT_BYTES}")
        self.plan, self.timing = plan, timing
        self.accel = Accelerator(plan)
        c, h, w = plan.qmodel.input_shape
        # Exact: the clock is a Fraction, and so is the timeout as written.
        self.timeout_cycles = math.ceil(Fraction(str(frame_timeout_ms)) * timing.clock_hz / 1000)
        self.framer = Framer(c * h * w, plan.num_classes, timeout=self.timeout_cycles)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.uart_rx = urx = UARTRx(self.timing)
        m.submodules.uart_tx = utx = UARTTx(self.timing)
        m.submodules.framer = fr = self.framer
        m.submodules.accel = acc = self.accel
        m.submodules.cycles = cycles = ImageCycles(self.plan)
        # One image's results: the accelerator's head never waits for the slow transmitter.
        m.submodules.results = results = fifo.SyncFIFOBuffered(width=RESULT.size,
                                                               depth=self.plan.num_classes + 1)
        wiring.connect(m, urx.data, fr.rx)
        wiring.connect(m, fr.tx, utx.data)
        # The pixels reach the accelerator through a FIFO whose ready is a register: the
        # controller's take no longer runs through the framer's read address to its block RAM
        # (the routed `make train` model's worst path, 11.9 ns). It fills while the accelerator
        # works on the image before, so the image comes in a pixel every cycle as before.
        m.submodules.pixel_fifo = pixel_fifo = fifo.SyncFIFOBuffered(width=8, depth=PIXEL_FIFO_DEPTH)
        wiring.connect(m, fr.pix, pixel_fifo.w_stream)
        wiring.connect(m, pixel_fifo.r_stream, acc.image)
        wiring.connect(m, acc.out, cycles.beats)
        m.d.comb += [cycles.starved.eq(acc.image_wait),
                     results.w_data.eq(cycles.results.payload), results.w_en.eq(cycles.results.valid),
                     cycles.results.ready.eq(results.w_rdy),
                     fr.res.payload.eq(results.r_data), fr.res.valid.eq(results.r_rdy),
                     results.r_en.eq(fr.res.ready)]
        m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx),
                     self.last_class.eq(fr.last_class), self.error.eq(fr.error)]
        return m
