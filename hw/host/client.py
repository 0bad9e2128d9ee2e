"""Host client for the board: send images over the Arty's USB-UART, read back class and logits.

    python -m hw.client --port /dev/ttyUSB1 [--board arty_a7] [--baud B] [--timeout 5]
                        [--retries 3] [--frame-timeout-ms 20]
                        [--model RUN_DIR/quant | --shape CxHxW] [--channels 1|3] IMAGE.png
    python -m hw.client --port /dev/ttyUSB1 [--model RUN_DIR/quant | --shape CxHxW]
                        --dataset fashion-mnist [--data-dir DIR] [--count 100]

The image (or the dataset's test images) must have the input shape C x H x W of the model the
board was built from: `--model` (default runs/default/quant, as python -m hw.build) or `--shape`.
`--baud` defaults to the rate python -m hw.build gives `--board`. With `--dataset` the client
keeps one frame ahead (frame n + 1 goes out before reply n is read) and prints the images/s it
measured and the board's mean cycles per image.
The command line, the image and the dataset are checked before the port is opened. Exit status:
0 done, 1 the board or the link failed (no reply, an error code), 2 a bad command line or input.

The frames are hw/link/protocol.py's (docs/board.md), the only part of hw/ this program imports:
it runs where neither Amaranth nor the core is installed.
"""
import argparse
import math
import os
import sys
import time
import warnings
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from common.cli import OneLineParser, UsageError, integer, number, path_arg, run_main
from hw.link.protocol import (FRAME_TIMEOUT_MS, LINK_RATES, MAX_FRAME_TIMEOUT_MS, MAX_PIXELS, MIN_BAUD,
                              FrameError, encode_frame, read_reply)

PROG = "python -m hw.client"
DEFAULT_MODEL = os.path.join("runs", "default", "quant")     # python -m hw.build's default
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RETRIES = 3                   # tries after the first, per frame (--retries)
MAX_RETRIES = 100             # past it a line that fails is better reported than tried again
MAX_TIMEOUT_S = 3600.0
MAX_COUNT = 10 ** 7           # more than any test set here has


def quiet_s(frame_timeout_ms):
    """The silence after a failed frame: twice the board's frame timeout (it drops the rest of a
    bad frame until the line has been quiet that long) and 10 ms for the replies still to come."""
    return 2 * frame_timeout_ms / 1000 + 0.01


@dataclass(frozen=True)
class Retry:
    """What the client does when a frame fails (an error code, a byte that starts no reply, a
    reply that times out or fails its CRC): it sends the frame again, up to `retries` more
    times, after `quiet_s` of silence, in which the board's framer drops what is left of a bad
    frame (it waits for the line to be quiet for its frame timeout) and the replies to frames
    already sent come in; those are dropped, and the frames sent again."""
    retries: int = RETRIES
    quiet_s: float = quiet_s(FRAME_TIMEOUT_MS)
    sleep: Callable = time.sleep         # the simulated board's bench passes simulated time

    def resync(self, port):
        self.sleep(self.quiet_s)
        port.reset_input_buffer()


def classify(port, image, retry=Retry(), num_classes=None):
    """The board's reply to `image`; FrameError once `retry.retries` more tries have failed."""
    reply = next(classify_stream(port, [image], retry, num_classes))
    if isinstance(reply, FrameError):
        raise reply
    return reply


def classify_stream(port, images, retry=Retry(), num_classes=None):
    """For each of `images` (any iterable, read as it goes), in order, its Reply or the
    FrameError of its last try, keeping one frame ahead: frame n + 1 is sent before reply n is
    read, so the link brings the next image while the board computes this one (the board
    refuses a second frame ahead: error 5). After a failure the frames whose replies are still
    to come are sent again (`Retry`). `num_classes`: the model's, to check the replies against
    (protocol.check_answer)."""
    images = iter(images)
    pending = deque()            # [frame, its failed tries]: sent, reply not read, oldest first

    def send_next():
        image = next(images, None)
        if image is not None:
            pending.append([encode_frame(image), 0])
            port.write(pending[-1][0])

    send_next()
    send_next()
    while pending:
        try:
            reply = read_reply(port.read, num_classes)
        except FrameError as e:
            retry.resync(port)
            pending[0][1] += 1
            given_up = pending[0][1] > retry.retries
            if given_up:
                pending.popleft()
            for frame, _ in pending:
                port.write(frame)
            if given_up:
                send_next()
                yield e
            continue
        pending.popleft()
        send_next()
        yield reply


# -- checking the command line and the input, before the port is opened ------------------------
def parse_shape(text):
    """argparse type: `CxHxW` -> (C, H, W), each >= 1, at most 65535 pixels (the frame length).

    >>> parse_shape("1x28x28")
    (1, 28, 28)
    """
    try:
        shape = tuple(int(part) for part in text.lower().split("x"))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"must be CxHxW, three integers >= 1 such as 1x28x28, "
                                         f"got {text!r}")
    if math.prod(shape) > MAX_PIXELS:
        raise argparse.ArgumentTypeError(f"{text} is {math.prod(shape)} pixels, more than the "
                                         f"{MAX_PIXELS} a frame's 16-bit length allows")
    return shape


def shape_text(shape):
    return "x".join(map(str, shape))


def expected_model(args):
    """The model's input shape (C, H, W) and class count: --shape (the count then unknown: None),
    else --model's, else the default model's."""
    if args.shape is not None:
        return args.shape, None
    if args.model is None and not os.path.exists(DEFAULT_MODEL):
        raise UsageError(f"no model at {DEFAULT_MODEL} to take the input shape from: give --model "
                         f"RUN_DIR/quant (the model the board was built from) or --shape CxHxW "
                         f"(e.g. 1x28x28)")
    from quantize.qmodel import read_qmodel
    qmodel = read_qmodel(args.model or DEFAULT_MODEL)
    shape = qmodel.input_shape
    if math.prod(shape) > MAX_PIXELS:
        raise UsageError(f"{qmodel.path}: the input {shape_text(shape)} is {math.prod(shape)} pixels, "
                         f"more than the {MAX_PIXELS} a frame's 16-bit length allows")
    return shape, qmodel.num_classes


# PNG modes (as Pillow opens them) -> colour channels; an alpha channel is ignored.
GRAY_MODES = {"1": "1-bit gray", "L": "gray", "LA": "gray + alpha", "I": "16-bit gray",
              "I;16": "16-bit gray", "I;16B": "16-bit gray", "I;16L": "16-bit gray"}
COLOUR_MODES = {"RGB": "RGB", "RGBA": "RGBA", "P": "palette colour"}


def load_png(path, shape, channels=None):
    """A PNG as (C, H, W) uint8, checked against the model's input `shape` (C, H, W).

    Alpha is ignored; `channels` (None or C) converts: 1 averages colour to gray, 3 repeats gray
    into RGB. Raises
    UsageError (one line: what was expected, what was found, the fix) for a missing file, a file
    that is not a PNG, or a PNG of another size or channel count; the size and the channels are
    checked from the header, before the pixels are decoded.
    """
    from PIL import Image
    c, h, w = shape
    if not os.path.isfile(path):
        what = "is a folder" if os.path.isdir(path) else "does not exist"
        raise UsageError(f"IMAGE {path} {what}; give a {h}x{w} PNG")
    with open(path, "rb") as f:
        signature = f.read(len(PNG_SIGNATURE))
    if signature != PNG_SIGNATURE:
        raise UsageError(f"IMAGE {path} is not a PNG (no PNG signature); give a {h}x{w} PNG "
                         f"with {c} channel(s)")
    try:
        with warnings.catch_warnings():     # a huge PNG: the size check below says it in one line
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
        with img:
            found_w, found_h = img.size
            mode = img.mode
            kind = GRAY_MODES.get(mode) or COLOUR_MODES.get(mode)
            found_c = 1 if mode in GRAY_MODES else 3
            found = f"{found_h}x{found_w} {kind or mode} ({found_c} channel{'s' * (found_c > 1)}" + \
                (", alpha ignored)" if "A" in mode else ")")
            expected = f"the model takes {shape_text(shape)} (C x H x W)"
            if kind is None:
                raise UsageError(f"IMAGE {path}: PNG mode {mode} is not supported; save it as "
                                 f"8-bit gray or RGB")
            if (found_h, found_w) != (h, w):
                raise UsageError(f"IMAGE {path} is {found}, {expected}: resize it to {h}x{w}")
            if channels is None and found_c != c:
                raise UsageError(f"IMAGE {path} is {found}, {expected}: give --channels {c} to "
                                 f"convert it")
            if mode in GRAY_MODES and mode.startswith("I"):
                pixels = np.rint(np.asarray(img, np.float64) / 257)[:, :, None]
            elif mode in GRAY_MODES:
                pixels = np.asarray(img.convert("L"))[:, :, None]
            else:
                pixels = np.asarray(img.convert("RGBA"))[:, :, :3]
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise UsageError(f"IMAGE {path}: cannot read the PNG ({e}); give a valid {h}x{w} PNG") from e
    pixels = np.clip(pixels, 0, 255).astype(np.uint8)
    if c == 1 and pixels.shape[2] == 3:
        pixels = np.rint(pixels.mean(axis=2, keepdims=True)).astype(np.uint8)
    elif c == 3 and pixels.shape[2] == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    return pixels.transpose(2, 0, 1)


def load_test_images(args, shape):
    """The dataset's first --count test images and labels, checked against `shape`."""
    from training.data import load_dataset
    data = load_dataset(args.dataset, args.data_dir)
    found = tuple(data.test_x.shape[1:])
    if found != tuple(shape):
        raise UsageError(f"{args.dataset} test images are {shape_text(found)}, the model takes "
                         f"{shape_text(shape)} (C x H x W): give the dataset the board's model "
                         f"was trained on")
    if args.count > len(data.test_x):
        raise UsageError(f"--count {args.count}: the {args.dataset} test set has "
                         f"{len(data.test_x)} images; give --count {len(data.test_x)} or fewer")
    return data.test_x[:args.count], data.test_y[:args.count]


def check_arguments(args):
    if (args.image is None) == (args.dataset is None):
        raise UsageError("give either IMAGE.png or --dataset NAME")
    if args.image is not None:
        for option, value in (("--count", args.count), ("--data-dir", args.data_dir)):
            if value is not None:
                raise UsageError(f"{option} goes with --dataset, not with IMAGE.png")
    elif args.channels is not None:
        raise UsageError("--channels converts IMAGE.png, not --dataset images")


def build_parser():
    p = OneLineParser(prog=PROG, description=__doc__.split("\n")[0])
    p.add_argument("image", type=path_arg, nargs="?",
                   help="a PNG to classify, of the model's input shape")
    p.add_argument("--port", required=True, help="serial port (or a pyserial URL such as loop://)")
    p.add_argument("--board", default="arty_a7", choices=list(LINK_RATES),
                   help="the board, for the default --baud (python -m hw.build's)")
    p.add_argument("--baud", type=integer(MIN_BAUD, max(LINK_RATES.values()), "the USB-UARTs' range"),
                   default=None, help="UART rate (default the board's: " +
                        ", ".join(f"{name} {baud}" for name, baud in LINK_RATES.items()) + ")")
    p.add_argument("--timeout", type=number(0, MAX_TIMEOUT_S, "an hour: a reply takes "
                                                  "milliseconds", above=True), default=5.0,
                   help="seconds to wait for the board's reply bytes")
    p.add_argument("--retries", type=integer(0, MAX_RETRIES), default=RETRIES,
                   help=f"tries after the first for a frame that fails (0..{MAX_RETRIES})")
    p.add_argument("--frame-timeout-ms", type=number(0, MAX_FRAME_TIMEOUT_MS, "python -m hw.build's",
                                                      above=True), default=FRAME_TIMEOUT_MS,
                   metavar="MS", help="the board's frame timeout (python -m hw.build "
                                      "--frame-timeout-ms): the silence before a retry")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--model", type=path_arg, default=None,
                        help=f"the quantized model the board runs, for its input shape "
                             f"(default {DEFAULT_MODEL})")
    source.add_argument("--shape", type=parse_shape, default=None, metavar="CxHxW",
                        help="the model's input shape, when the model is not at hand (e.g. 1x28x28)")
    p.add_argument("--channels", type=int, choices=(1, 3), default=None,
                   help="convert the PNG: 1 averages colour to gray, 3 repeats gray into RGB")
    p.add_argument("--dataset", default=None, help="stream this dataset's test images instead")
    p.add_argument("--data-dir", type=path_arg, default=None)
    p.add_argument("--count", type=integer(1, MAX_COUNT, "a test set's size is checked too"),
                   default=None, help="test images to stream with --dataset (default 100)")
    return p


def link_failed(e, what):
    print(f"{PROG}: error: {what}: {' '.join(str(e).split())}; check the board (programmed, "
          f"reset), --port and --baud", file=sys.stderr)
    return 1


def work(args):
    check_arguments(args)
    shape, num_classes = expected_model(args)
    if args.channels not in (None, shape[0]):
        raise UsageError(f"--channels {args.channels} does not match the model's input "
                         f"{shape_text(shape)} (C x H x W): give --channels {shape[0]} or leave it out")
    if args.image is not None:
        image = load_png(args.image, shape, args.channels)
    else:
        args.count = 100 if args.count is None else args.count
        images, labels = load_test_images(args, shape)
    baud = LINK_RATES[args.board] if args.baud is None else args.baud
    try:
        import serial
    except ImportError:
        raise UsageError("pyserial is missing: pip install pyserial") from None
    retry = Retry(args.retries, quiet_s(args.frame_timeout_ms))
    try:
        port = serial.serial_for_url(args.port, baud, timeout=args.timeout)
    except (serial.SerialException, OSError, ValueError) as e:
        raise UsageError(f"cannot open {args.port} ({e}); check the cable and --port") from e
    with port:
        if args.image is not None:
            try:
                reply = classify(port, image, retry, num_classes)
            except (FrameError, serial.SerialException, OSError) as e:
                return link_failed(e, f"{args.image} (after {args.retries} retries)")
            print(f"class {reply.cls}, logits {reply.logits}, {reply.cycles} cycles")
            return 0
        t0 = time.perf_counter()
        right, cycles, failed = 0, [], 0
        replies = classify_stream(port, images, retry, num_classes)
        for i, y in enumerate(labels):
            try:
                reply = next(replies)
            except (serial.SerialException, OSError) as e:
                return link_failed(e, f"test image {i} (after {i} answered)")
            if isinstance(reply, FrameError):
                failed += 1
                print(f"test image {i}: failed after {args.retries} retries: {reply}", file=sys.stderr)
                continue
            right += reply.cls == y
            cycles.append(reply.cycles)
        seconds = time.perf_counter() - t0
        n, answered = len(images), len(cycles)
        print(f"{n} images: accuracy {right / max(answered, 1):.2%} of the {answered} answered, "
              f"{failed} failed; {n / seconds:.1f} images/s over the link (one frame ahead, "
              f"{baud} baud); the board: {sum(cycles) / max(answered, 1):,.0f} cycles per image (mean)")
    return 1 if failed else 0


def main(argv=None):
    from quantize.qmodel import QModelError
    from training.data import DatasetError
    args = build_parser().parse_args(argv)
    return run_main(PROG, lambda: work(args), errors=(QModelError, DatasetError))


if __name__ == "__main__":
    sys.exit(main())
