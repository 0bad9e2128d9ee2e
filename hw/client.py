"""Host client for the board: send images over the Arty's USB-UART, read back class and logits.

    python -m hw.client --port /dev/ttyUSB1 [--baud 115200] IMAGE.png
    python -m hw.client --port /dev/ttyUSB1 --dataset fashion-mnist --count 100

The framing is hw/framing.py's (docs/board.md): 0xA5, length (2 bytes LE), pixels, checksum
(sum of pixels mod 256) out; 0x5A, classes, logits (4 bytes LE each), class back, or 0xEE and
an error code.
"""
import argparse
import sys
import time
from dataclasses import dataclass

import numpy as np

from hw.framing import (ANSWER, ERR_CHECKSUM, ERR_LENGTH, ERR_START, ERR_TIMEOUT, ERROR,
                        LOGIT_BYTES, START)

ERROR_NAMES = {ERR_START: "bad start byte", ERR_LENGTH: "bad length", ERR_CHECKSUM: "bad checksum",
               ERR_TIMEOUT: "frame timed out"}


class FrameError(Exception):
    """The board answered with an error code (or something that is not a reply)."""

    def __init__(self, message, code=None):
        super().__init__(message)
        self.code = code


@dataclass
class Reply:
    logits: list
    cls: int


def encode_frame(image):
    """(C, H, W) uint8 -> request bytes: pixels in raster order, channels innermost."""
    pixels = np.asarray(image, np.uint8).transpose(1, 2, 0).reshape(-1)
    n = len(pixels)
    if n >= 1 << 16:
        raise ValueError(f"{n} pixels do not fit the 16-bit frame length")
    return bytes([START, n & 0xFF, n >> 8]) + pixels.tobytes() + bytes([int(pixels.sum()) & 0xFF])


def read_reply(read):
    """Parse one reply; `read(n)` returns exactly n bytes (or fewer on a timeout)."""
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
    classes = take(1)[0]
    raw = take(LOGIT_BYTES * classes)
    logits = [int.from_bytes(raw[LOGIT_BYTES * i:LOGIT_BYTES * (i + 1)], "little", signed=True)
              for i in range(classes)]
    return Reply(logits, take(1)[0])


def frame_bytes(input_shape, num_classes):
    """Bytes per image on the link: `in` = start, length (2), pixels, checksum;
    `out` = answer, class count, the logits, class.

    >>> frame_bytes((1, 28, 28), 10)
    {'in': 788, 'out': 43}
    """
    c, h, w = input_shape
    return {"in": 1 + 2 + c * h * w + 1, "out": 1 + 1 + LOGIT_BYTES * num_classes + 1}


def link_images_per_s(frames, baud):
    """Images/s the UART allows: 10 bits per byte (8N1), the host waits for each answer.

    >>> round(link_images_per_s(frame_bytes((1, 28, 28), 10), 115200), 1)
    13.9
    """
    return baud / (10 * (frames["in"] + frames["out"]))


def classify(port, image):
    port.write(encode_frame(image))
    return read_reply(port.read)


def load_png(path, channels=None):
    """A PNG as (C, H, W) uint8; `channels` 1 averages colour images to gray."""
    import matplotlib.image
    img = matplotlib.image.imread(path)
    if img.dtype != np.uint8:
        img = np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)
    if img.ndim == 2:
        img = img[:, :, None]
    img = img[:, :, :3]
    if channels == 1 and img.shape[2] == 3:
        img = np.rint(img.mean(axis=2, keepdims=True)).astype(np.uint8)
    return img.transpose(2, 0, 1)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m hw.client", description=__doc__.split("\n")[0])
    p.add_argument("image", nargs="?", help="a PNG to classify")
    p.add_argument("--port", required=True)
    p.add_argument("--baud", type=int, default=115200)
    p.add_argument("--channels", type=int, default=None, help="1: convert colour PNGs to gray")
    p.add_argument("--dataset", default=None, help="stream this dataset's test images instead")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--timeout", type=float, default=5.0)
    args = p.parse_args(argv)
    prog = "python -m hw.client"
    if (args.image is None) == (args.dataset is None):
        print(f"{prog}: error: give either IMAGE.png or --dataset NAME", file=sys.stderr)
        return 2
    try:
        import serial
    except ImportError:
        print(f"{prog}: error: pyserial is missing: pip install pyserial", file=sys.stderr)
        return 2
    try:
        port = serial.Serial(args.port, args.baud, timeout=args.timeout)
    except (serial.SerialException, OSError) as e:
        print(f"{prog}: error: cannot open {args.port} ({e}); check the cable and --port", file=sys.stderr)
        return 2
    with port:
        if args.image:
            reply = classify(port, load_png(args.image, args.channels))
            print(f"class {reply.cls}, logits {reply.logits}")
            return 0
        from training.data import DatasetError, load_dataset
        try:
            data = load_dataset(args.dataset, args.data_dir)
        except DatasetError as e:
            print(f"{prog}: error: {e}", file=sys.stderr)
            return 2
        n = min(args.count, len(data.test_x))
        t0 = time.perf_counter()
        right = sum(classify(port, data.test_x[i]).cls == data.test_y[i] for i in range(n))
        seconds = time.perf_counter() - t0
        print(f"{n} images: accuracy {right / n:.2%}, {n / seconds:.1f} images/s over the link")
    return 0


if __name__ == "__main__":
    sys.exit(main())
