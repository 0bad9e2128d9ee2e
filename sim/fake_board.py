"""A fake board on a pseudo-terminal: the wire protocol (hw/link/protocol.py) answered in Python,
with faults, for soaking the host client (hw/host/client.py) through a real serial device.

    python -m sim.fake_board --pixels 64 [--classes 10] [--frame-timeout-ms 1] [--rx-flip 0]
                             [--tx-flip 0] [--rx-drop 0] [--seed 0]

It opens a pty, prints the path of its slave (the port the client opens) on the first line of
stdout, and serves until stdin closes. It takes frames as the framer does (hw/link/framing.py):
a bad start byte, length or CRC is answered with its error code, a frame quiet for the frame
timeout in its middle with error 4, and after a bad start or length the rest is dropped until
the line has been quiet that long. A good frame is answered at once with `answer_for(pixels)`, a
made-up answer the soak can check the client's replies against. Faults: each bit it receives is
flipped with probability `--rx-flip` and each byte dropped with `--rx-drop` (the host's line),
each bit it sends flipped with `--tx-flip`. It does not model the two frame slots: it answers
each frame before it reads the next, so a host one frame ahead never meets error 5.
"""
import argparse
import os
import pty
import random
import select
import sys
import time
import tty
import zlib

from hw.link.protocol import (ANSWER, CRC_BYTES, ERR_CHECKSUM, ERR_LENGTH, ERR_START, ERR_TIMEOUT,
                              ERROR, START, crc_bytes)

CYCLES = 12_345              # the cycle count every answer carries


def answer_for(pixels, classes):
    """The fake board's answer to a frame's pixels: logits from the pixels' CRC, the argmax."""
    seed = zlib.crc32(bytes(pixels))
    logits = [((seed >> (3 * k)) & 0xFFFF) - 0x8000 for k in range(classes)]
    return logits, max(range(classes), key=lambda k: (logits[k], -k))


def answer_bytes(logits, cls):
    body = bytes([len(logits)]) + b"".join(v.to_bytes(4, "little", signed=True) for v in logits) \
        + bytes([cls]) + CYCLES.to_bytes(4, "little")
    return bytes([ANSWER]) + body + crc_bytes(body)


class FakeBoard:
    def __init__(self, fd, pixels, classes, timeout_s, rx_flip, tx_flip, rx_drop, rng):
        self.fd, self.pixels, self.classes, self.timeout_s = fd, pixels, classes, timeout_s
        self.rx_flip, self.tx_flip, self.rx_drop, self.rng = rx_flip, tx_flip, rx_drop, rng
        self.pending = b""

    def noisy(self, data, flip):
        if not flip:
            return data
        return bytes(b ^ sum(1 << i for i in range(8) if self.rng.random() < flip) for b in data)

    def byte(self):
        """The next byte the board's UART takes, or None after the frame timeout of silence."""
        while not self.pending:
            ready, _, _ = select.select([self.fd], [], [], self.timeout_s)
            if not ready:
                return None
            data = os.read(self.fd, 4096)
            if not data:
                raise EOFError
            data = bytes(b for b in data if not (self.rx_drop and self.rng.random() < self.rx_drop))
            self.pending = self.noisy(data, self.rx_flip)
        b, self.pending = self.pending[0], self.pending[1:]
        return b

    def send(self, data):
        os.write(self.fd, self.noisy(data, self.tx_flip))

    def skip(self):
        while self.byte() is not None:
            pass

    def serve_one(self):
        first = self.byte()
        if first is None:
            return
        if first != START:
            self.skip()
            return self.send(bytes([ERROR, ERR_START]))
        body = []
        for _ in range(2 + self.pixels + CRC_BYTES):
            b = self.byte()
            if b is None:
                return self.send(bytes([ERROR, ERR_TIMEOUT]))
            body.append(b)
            if len(body) == 2 and body[0] | body[1] << 8 != self.pixels:
                self.skip()
                return self.send(bytes([ERROR, ERR_LENGTH]))
        if crc_bytes(body[:-CRC_BYTES]) != bytes(body[-CRC_BYTES:]):
            return self.send(bytes([ERROR, ERR_CHECKSUM]))
        self.send(answer_bytes(*answer_for(body[2:-CRC_BYTES], self.classes)))


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m sim.fake_board", description=__doc__.split("\n")[0])
    p.add_argument("--pixels", type=int, required=True)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--frame-timeout-ms", type=float, default=1.0)
    p.add_argument("--rx-flip", type=float, default=0.0)
    p.add_argument("--tx-flip", type=float, default=0.0)
    p.add_argument("--rx-drop", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    master, slave = pty.openpty()
    tty.setraw(slave)
    print(os.ttyname(slave), flush=True)
    board = FakeBoard(master, args.pixels, args.classes, args.frame_timeout_ms / 1000,
                      args.rx_flip, args.tx_flip, args.rx_drop, random.Random(args.seed))
    stdin_closed = lambda: select.select([sys.stdin], [], [], 0)[0] and not sys.stdin.read(1)
    while not stdin_closed():
        try:
            board.serve_one()
        except (EOFError, OSError):
            time.sleep(0.001)        # no client has the port open yet, or it closed it


if __name__ == "__main__":
    main()
