"""Framing between a byte link (UART) and the accelerator's streams (docs/board.md).

Host -> board:  0xA5, length (2 bytes, little-endian, must equal C*H*W), the pixels (uint8,
                raster order, channels innermost), checksum (sum of the pixels mod 256).
Board -> host:  0x5A, num_classes, the logits (4 bytes each, little-endian two's complement),
                the class byte.
On an error:    0xEE, code: 1 bad start byte, 2 bad length, 3 bad checksum, 4 frame timed out
                (no byte for `timeout` cycles in the middle of a frame).
After a bad start byte or length the rest of the frame is skipped: bytes are dropped until the
line has been quiet for `timeout` cycles. After a bad checksum (the frame is complete) the next
frame may follow at once. The pixels are held in a frame buffer until the checksum is checked,
so a bad frame never reaches the accelerator. One frame at a time: bytes sent before the answer
is complete are lost.

`Framer` is the protocol alone; `FramedAccelerator` = UART receiver + Framer + Accelerator + UART
transmitter, with `rx`/`tx` pins and the last class for LEDs.
"""
from amaranth import Module, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.accelerator import Accelerator
from hw.uart import UARTRx, UARTTx

START, ANSWER, ERROR = 0xA5, 0x5A, 0xEE
ERR_START, ERR_LENGTH, ERR_CHECKSUM, ERR_TIMEOUT = 1, 2, 3, 4
LOGIT_BYTES = 4


class Framer(wiring.Component):
    def __init__(self, num_pixels, num_classes, out_bits, timeout):
        if not 0 < num_pixels < 1 << 16:
            raise ValueError(f"a frame holds 1..65535 pixels, got {num_pixels}")
        if not 0 < num_classes < 256:
            raise ValueError(f"the answer's class count is one byte, got {num_classes}")
        self.num_pixels, self.num_classes, self.timeout = num_pixels, num_classes, int(timeout)
        self.out_bits = out_bits
        super().__init__({
            "rx": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
            "pix": Out(stream.Signature(unsigned(8))),
            "res": In(stream.Signature(data.StructLayout({"data": unsigned(out_bits), "last": 1}))),
            "last_class": Out(8),
            "error": Out(range(8)),      # the last error code sent (0: none yet)
        })

    def elaborate(self, platform):
        m = Module()
        n = self.num_pixels
        buf = memory.Memory(shape=unsigned(8), depth=max(2, n), init=[])
        m.submodules.frame = buf
        wr, rd = buf.write_port(), buf.read_port()

        count = Signal(range(max(2, n) + 1))
        length = Signal(16)
        csum = Signal(8)
        code = Signal(range(8))
        quiet = Signal(range(self.timeout + 1))
        byte_k = Signal(range(LOGIT_BYTES))
        logit = Signal(signed(32))
        m.d.comb += logit.eq(self.res.payload.data.as_signed())
        got = self.rx.valid & self.rx.ready

        with m.If(got):
            m.d.sync += quiet.eq(0)
        with m.Elif(quiet != self.timeout):
            m.d.sync += quiet.eq(quiet + 1)
        timed_out = quiet == self.timeout

        # The frame buffer's read port looks one pixel ahead while pixels are taken.
        feeding = Signal()
        advance = feeding & self.pix.ready
        m.d.comb += [rd.addr.eq(count + advance), self.pix.payload.eq(rd.data),
                     wr.addr.eq(count), wr.data.eq(self.rx.payload)]

        def send(byte, then):
            m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(byte)]
            with m.If(self.tx.ready):
                m.next = then

        def fail(c, then):
            m.d.sync += code.eq(c)
            m.next = then

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.rx.ready.eq(1)
                m.d.sync += [count.eq(0), csum.eq(0)]
                with m.If(got):
                    with m.If(self.rx.payload == START):
                        m.next = "LEN0"
                    with m.Else():
                        fail(ERR_START, "ERR_SKIP")
            with m.State("LEN0"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(got):
                    m.d.sync += length[:8].eq(self.rx.payload)
                    m.next = "LEN1"
                with m.Elif(timed_out):
                    fail(ERR_TIMEOUT, "ERR")
            with m.State("LEN1"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(got):
                    with m.If((self.rx.payload == n >> 8) & (length[:8] == n & 0xFF)):
                        m.next = "PIXELS"
                    with m.Else():
                        fail(ERR_LENGTH, "ERR_SKIP")
                with m.Elif(timed_out):
                    fail(ERR_TIMEOUT, "ERR")
            with m.State("PIXELS"):
                m.d.comb += [self.rx.ready.eq(1), wr.en.eq(got)]
                with m.If(got):
                    m.d.sync += [count.eq(count + 1), csum.eq(csum + self.rx.payload)]
                    with m.If(count == n - 1):
                        m.next = "CHECKSUM"
                with m.Elif(timed_out):
                    fail(ERR_TIMEOUT, "ERR")
            with m.State("CHECKSUM"):
                m.d.comb += self.rx.ready.eq(1)
                m.d.sync += count.eq(0)           # the read port starts on pixel 0
                with m.If(got):
                    with m.If(self.rx.payload == csum):
                        m.next = "ANSWER"
                    with m.Else():
                        fail(ERR_CHECKSUM, "ERR")
                with m.Elif(timed_out):
                    fail(ERR_TIMEOUT, "ERR")
            with m.State("ANSWER"):
                send(ANSWER, "CLASSES")
            with m.State("CLASSES"):
                send(self.num_classes, "FEED")
            with m.State("FEED"):
                m.d.comb += [feeding.eq(1), self.pix.valid.eq(1)]
                with m.If(self.pix.ready):
                    m.d.sync += count.eq(count + 1)
                    with m.If(count == n - 1):
                        m.next = "RESULT"
            with m.State("RESULT"):
                m.d.comb += self.tx.valid.eq(self.res.valid)
                with m.If(self.res.payload.last):
                    m.d.comb += self.tx.payload.eq(self.res.payload.data[:8])
                    with m.If(self.res.valid & self.tx.ready):
                        m.d.comb += self.res.ready.eq(1)
                        m.d.sync += self.last_class.eq(self.res.payload.data[:8])
                        m.next = "IDLE"
                with m.Else():
                    m.d.comb += self.tx.payload.eq(logit.as_unsigned().word_select(byte_k, 8))
                    with m.If(self.res.valid & self.tx.ready):
                        m.d.sync += byte_k.eq(byte_k + 1)
                        with m.If(byte_k == LOGIT_BYTES - 1):
                            m.d.comb += self.res.ready.eq(1)
            with m.State("ERR_SKIP"):
                # Drop the rest of the bad frame, answer once the line has gone quiet.
                m.d.comb += self.rx.ready.eq(1)
                with m.If(~got & timed_out):
                    m.next = "ERR"
            with m.State("ERR"):
                m.d.sync += self.error.eq(code)
                send(ERROR, "ERR_CODE")
            with m.State("ERR_CODE"):
                send(code, "IDLE")
        return m


class FramedAccelerator(wiring.Component):
    """UART pins in and out, the accelerator behind the framing; `last_class` for LEDs."""
    rx: In(1, init=1)
    tx: Out(1, init=1)
    last_class: Out(8)
    error: Out(range(8))

    def __init__(self, plan, divisor, timeout_bytes=4):
        self.divisor = int(divisor)
        if plan.logit_bits > 8 * LOGIT_BYTES:
            raise ValueError(f"logits are {plan.logit_bits} bits wide; the link sends {8 * LOGIT_BYTES}")
        self.accel = Accelerator(plan)
        c, h, w = plan.qmodel.input_shape
        self.framer = Framer(c * h * w, plan.num_classes, plan.out_bits,
                             timeout=timeout_bytes * 10 * self.divisor)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.uart_rx = urx = UARTRx(self.divisor)
        m.submodules.uart_tx = utx = UARTTx(self.divisor)
        m.submodules.framer = fr = self.framer
        m.submodules.accel = acc = self.accel
        wiring.connect(m, urx.data, fr.rx)
        wiring.connect(m, fr.tx, utx.data)
        wiring.connect(m, fr.pix, acc.pixels)
        wiring.connect(m, acc.out, fr.res)
        m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx),
                     self.last_class.eq(fr.last_class), self.error.eq(fr.error)]
        return m
