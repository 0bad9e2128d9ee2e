"""The board's wire protocol, in plain Python: what the host client, the reports and the gateware
(hw/link/framing.py) all take their bytes and codes from. It imports no HDL.

Host -> board:  0xA5, length (2 bytes, little-endian, must equal C*H*W), the pixels (uint8,
                raster order, channels innermost), CRC-32 of the length and the pixels (4 bytes
                LE).
Board -> host:  0x5A, num_classes, the logits (4 bytes each, little-endian two's complement),
                the class byte, the accelerator's clock cycles for the image (4 bytes LE),
                CRC-32 of everything after 0x5A (4 bytes LE).
On an error:    0xEE, code: 1 bad start byte, 2 bad length, 3 bad checksum, 4 frame timed out
                (no byte for the framer's timeout in the middle of a frame), 5 busy (a frame
                that starts while two good frames are waiting for their answers).
The host may keep one frame ahead: send frame n + 1 while the board computes image n.
The CRC is zlib's CRC-32 (IEEE 802.3, reflected, initial value and final xor 0xFFFFFFFF): any
burst of errors up to 32 bits, and any odd number of bit errors, changes it; other corruption
passes it with odds of 2^-32, so a host that takes only replies whose CRC holds takes a wrong
answer about once in 4 x 10^9 corrupted replies, not once in 256 as with a sum.
The line is 8N1 (`BITS_PER_BYTE`); each board's USB-UART sets the fastest rate (`LINK_RATES`).

A frame times out after the line has been quiet for the frame timeout in its middle, a time
(`FRAME_TIMEOUT_MS`), not a number of byte times: a USB-UART hands the host's bytes over in USB
packets (64 bytes at full speed, 512 at high speed), in 1 ms frames or 125 us microframes, with
pauses whenever the host's OS is busy, so gaps of 0.1 ms to several ms inside a frame are normal.
After a bad start byte, a bad length or a busy refusal the board drops bytes until the line has
been quiet that long, so a host that resends after an error waits a frame timeout first.
"""
import zlib
from dataclasses import dataclass

import numpy as np

START, ANSWER, ERROR = 0xA5, 0x5A, 0xEE
ERR_START, ERR_LENGTH, ERR_CHECKSUM, ERR_TIMEOUT, ERR_BUSY = 1, 2, 3, 4, 5
ERROR_NAMES = {ERR_START: "bad start byte", ERR_LENGTH: "bad length", ERR_CHECKSUM: "bad checksum",
               ERR_TIMEOUT: "frame timed out", ERR_BUSY: "busy: more than one frame ahead"}
LOGIT_BYTES = 4
CYCLE_BYTES = 4
CRC_BYTES = 4
MAX_PIXELS = (1 << 16) - 1       # the frame's 16-bit length
BITS_PER_BYTE = 10               # 8N1 on the line: start bit, 8 data bits, stop bit
FRAME_TIMEOUT_MS = 20.0          # the default: several times the longest pause of a busy host
MAX_FRAME_TIMEOUT_MS = 1000.0    # a second: past it a host error costs more than the frame
MIN_BAUD = 300                   # the slowest standard rate: below it a frame takes half a minute
MIN_TIMEOUT_BYTES = 4            # the shortest timeout, in byte times: a byte-paced host meets it

# The fastest rate each board's USB-UART carries: the default --baud of python -m hw.build and
# of the client, and hw.build's limit.
LINK_RATES = {
    "arty_a7": 12_000_000,       # FT2232H
    "arty_a7_100": 12_000_000,   # FT2232H
    "ulx3s_85f": 3_000_000,      # FT231X
}


class FrameError(Exception):
    """The board answered with an error code (or something that is not a reply)."""

    def __init__(self, message, code=None):
        super().__init__(message)
        self.code = code


@dataclass
class Reply:
    logits: list
    cls: int
    cycles: int         # the accelerator's clock cycles for the image (framing.ImageCycles)


def crc_bytes(data):
    """The CRC-32 of `data` as the frames carry it: 4 bytes, little-endian."""
    return zlib.crc32(bytes(data)).to_bytes(CRC_BYTES, "little")


def encode_frame(image):
    """(C, H, W) uint8 -> request bytes: pixels in raster order, channels innermost."""
    pixels = np.asarray(image, np.uint8).transpose(1, 2, 0).reshape(-1)
    n = len(pixels)
    if n > MAX_PIXELS:
        raise ValueError(f"{n} pixels do not fit the 16-bit frame length")
    body = bytes([n & 0xFF, n >> 8]) + pixels.tobytes()
    return bytes([START]) + body + crc_bytes(body)


def read_reply(read, num_classes=None):
    """Parse one reply; `read(n)` returns exactly n bytes (or fewer on a timeout). FrameError
    for an error reply, a byte that starts no reply, a timeout, an answer whose CRC fails, or
    one whose fields cannot be right (`check_answer`; `num_classes`: the model's, when known)."""
    def take(n):
        data = read(n)
        if len(data) != n:
            raise FrameError(f"timed out: expected {n} more byte(s) from the board")
        return data

    head = take(1)[0]
    if head == ERROR:
        code = take(1)[0]
        raise FrameError(f"board reported error {code} ({ERROR_NAMES.get(code, 'unknown')})", code)
    if head != ANSWER:
        raise FrameError(f"unexpected reply byte {head:#04x}")
    classes = take(1)
    raw = take(LOGIT_BYTES * classes[0])
    tail = take(1 + CYCLE_BYTES)
    if take(CRC_BYTES) != crc_bytes(classes + raw + tail):
        raise FrameError("the answer's CRC does not hold: corrupted on the line")
    logits = [int.from_bytes(raw[LOGIT_BYTES * i:LOGIT_BYTES * (i + 1)], "little", signed=True)
              for i in range(classes[0])]
    return check_answer(Reply(logits, tail[0], int.from_bytes(tail[1:], "little")), num_classes)


def check_answer(reply, num_classes=None):
    """The reply, if every field is what the board can send: at least 2 classes (the model's
    count when known), the class the first largest logit's (the core's argmax, as the golden
    model's), a cycle count of at least 1. A CRC that holds says the bytes are the board's, not
    that the board runs the model the host thinks it does; FrameError otherwise."""
    count = len(reply.logits)
    if count < 2 or (num_classes is not None and count != num_classes):
        want = f"the model's {num_classes}" if num_classes is not None else "at least 2"
        raise FrameError(f"the board answered with {count} classes, not {want}: is it built from "
                         "this model?")
    best = reply.logits.index(max(reply.logits))
    if reply.cls != best:
        raise FrameError(f"the board answered class {reply.cls}, but its logits' largest is class "
                         f"{best}: the answer cannot be right")
    if reply.cycles < 1:
        raise FrameError("the board answered in 0 cycles: the answer cannot be right")
    return reply


def frame_bytes(input_shape, num_classes):
    """Bytes per image on the link: `in` = start, length (2), pixels, CRC;
    `out` = answer, class count, the logits, class, cycles, CRC.

    >>> frame_bytes((1, 28, 28), 10)
    {'in': 791, 'out': 51}
    """
    c, h, w = input_shape
    return {"in": 1 + 2 + c * h * w + CRC_BYTES,
            "out": 1 + 1 + LOGIT_BYTES * num_classes + 1 + CYCLE_BYTES + CRC_BYTES}


def min_frame_timeout_ms(baud):
    """The shortest frame timeout at `baud`: `MIN_TIMEOUT_BYTES` byte times.

    >>> round(min_frame_timeout_ms(12_000_000), 6)
    0.003333
    """
    return 1000 * MIN_TIMEOUT_BYTES * BITS_PER_BYTE / baud


def link_images_per_s(frames, baud):
    """Images/s the UART carries with the host one frame ahead: the frames in and the replies
    out share no wire, so the longer of the two sets the pace.

    >>> round(link_images_per_s(frame_bytes((1, 28, 28), 10), 12_000_000), 1)
    1517.1
    """
    return baud / (BITS_PER_BYTE * max(frames["in"], frames["out"]))
