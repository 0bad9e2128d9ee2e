"""The host client's framing, checked against the protocol of docs/board.md byte by byte.

The end-to-end path (client frames -> UART -> framing -> accelerator -> reply) runs in
Verilator in tests/test_hw_build.py; here a loopback port stands in for the serial cable.
"""
import gzip
import zlib

import numpy as np
import pytest

from hw.host.client import classify, classify_stream
from hw.link.protocol import FrameError, encode_frame, read_reply
from tests.cli_checks import one_stderr_line
from tests.formats import write_idx_set


def test_request_layout():
    image = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4) * 7
    data = encode_frame(image)
    assert data[0] == 0xA5
    assert data[1] | data[2] << 8 == 24
    # Raster order, channels innermost: pixel (y=0, x=1) channel 1 is the 4th byte.
    assert data[3:3 + 4] == bytes([image[0, 0, 0], image[1, 0, 0], image[0, 0, 1], image[1, 0, 1]])
    assert data[-4:] == zlib.crc32(data[1:-4]).to_bytes(4, "little") and len(data) == 3 + 24 + 4


def reply_bytes(logits, cls, cycles=66_638):
    body = bytes([len(logits)])
    for v in logits:
        body += int(v).to_bytes(4, "little", signed=True)
    body += bytes([cls]) + int(cycles).to_bytes(4, "little")
    return bytes([0x5A]) + body + zlib.crc32(body).to_bytes(4, "little")


class Loopback:
    """A serial port double: records what is written, replays a canned answer; `log` has the
    order of the calls, ("write", bytes) and ("read", n)."""

    def __init__(self, answer):
        self.written, self.answer, self.log = b"", answer, []

    def write(self, data):
        self.written += data
        self.log.append(("write", bytes(data)))

    def read(self, n):
        out, self.answer = self.answer[:n], self.answer[n:]
        self.log.append(("read", n))
        return out


def test_classify_sends_one_frame_and_decodes_the_reply():
    image = np.full((1, 4, 4), 200, np.uint8)
    port = Loopback(reply_bytes([-5, 70000, -2 ** 31, 3], 1, cycles=2 ** 32 - 1))
    reply = classify(port, image)
    assert reply.logits == [-5, 70000, -2 ** 31, 3] and reply.cls == 1
    assert reply.cycles == 2 ** 32 - 1             # unsigned
    body = bytes([16, 0]) + bytes([200] * 16)
    assert port.written == bytes([0xA5]) + body + zlib.crc32(body).to_bytes(4, "little")


def test_a_stream_keeps_one_frame_ahead():
    """Frame n + 1 goes out before reply n is read, frame n + 2 only after it."""
    images = [np.full((1, 2, 2), v, np.uint8) for v in (1, 2, 3)]
    answers = [reply_bytes([v, -v], 0, cycles=100 + v) for v in (1, 2, 3)]
    port = Loopback(b"".join(answers))
    replies = list(classify_stream(port, images))
    assert [(r.cls, r.logits, r.cycles) for r in replies] == [(0, [1, -1], 101), (0, [2, -2], 102),
                                                           (0, [3, -3], 103)]
    writes = [i for i, (kind, _) in enumerate(port.log) if kind == "write"]
    assert [port.log[i][1] for i in writes] == [encode_frame(x) for x in images]
    read_before = [sum(n for kind, n in port.log[:i] if kind == "read") for i in writes]
    assert read_before == [0, 0, len(answers[0])]


@pytest.mark.parametrize("answer,code,text", [
    (bytes([0xEE, 3]), 3, "checksum"),
    (bytes([0xEE, 2]), 2, "length"),
    (bytes([0xEE, 5]), 5, "busy: more than one frame ahead"),
    (bytes([0x5A, 2, 1, 0]), None, "timed out"),
    (reply_bytes([1, 2], 1)[:-1], None, "timed out"),
    (bytes([0x42]), None, "unexpected"),
    (reply_bytes([1, 2], 1)[:3] + bytes([reply_bytes([1, 2], 1)[3] ^ 4]) + reply_bytes([1, 2], 1)[4:],
     None, "CRC does not hold"),
])
def test_errors_and_truncated_replies(answer, code, text):
    with pytest.raises(FrameError, match=text) as info:
        read_reply(Loopback(answer).read)
    assert info.value.code == code


@pytest.mark.parametrize("answer,num_classes,text", [
    (reply_bytes([3, 9, 1], 2), None, "class 2, but its logits' largest is class 1"),
    (reply_bytes([3, 9, 1], 200), None, "class 200, but its logits' largest is class 1"),
    (reply_bytes([5, 5], 1), None, "class 1, but its logits' largest is class 0"),  # first max
    (reply_bytes([4], 0), None, "1 classes, not at least 2"),
    (reply_bytes([], 0), None, "0 classes, not at least 2"),
    (reply_bytes([1, 2, 3], 2), 10, "3 classes, not the model's 10"),
    (reply_bytes([1, 2], 1, cycles=0), None, "0 cycles"),
])
def test_a_reply_whose_crc_holds_but_whose_fields_cannot_be_right_is_an_error(answer, num_classes,
                                                                             text):
    """A CRC says the bytes are the board's, not that they can be an answer: a class past the
    class count, or not the argmax of the logits beside it, used to be printed with exit 0."""
    with pytest.raises(FrameError, match=text):
        read_reply(Loopback(answer).read, num_classes)
    assert read_reply(Loopback(reply_bytes([1, 2, 3], 2)).read, 3).cls == 2


# -- the command line: every bad input is one line on stderr, exit 2, before the port opens ----
def one_line(capsys, *words):
    """stderr is exactly one line, `python -m hw.client: error: ...`, holding every word."""
    return one_stderr_line(capsys.readouterr().err, *words, prefix="python -m hw.client: error: ")


@pytest.fixture
def no_port(monkeypatch):
    """Opening the serial port fails the test: every check must come before it."""
    import serial

    def refuse(*args, **kwargs):
        raise AssertionError("the serial port was opened")
    monkeypatch.setattr(serial, "serial_for_url", refuse)


@pytest.fixture
def pngs(tmp_path):
    """Images for a 1x8x8 model: a good one and the usual mistakes."""
    from PIL import Image
    files = {
        "gray8.png": (np.arange(64, dtype=np.uint8).reshape(8, 8) * 3, None),
        "gray32.png": (np.zeros((32, 32), np.uint8), None),
        "rgb300.png": (np.zeros((300, 300, 3), np.uint8), None),
        "rgba8.png": (np.full((8, 8, 4), 90, np.uint8), "RGBA"),
        "rgb8.png": (np.stack([np.full((8, 8), v, np.uint8) for v in (10, 20, 60)], axis=2), None),
    }
    for name, (array, mode) in files.items():
        Image.fromarray(array, mode).save(tmp_path / name)
    (tmp_path / "notes.png").write_text("not an image\n")
    (tmp_path / "gray8.png.gz").write_bytes(gzip.compress((tmp_path / "gray8.png").read_bytes()))
    (tmp_path / "cut.png").write_bytes((tmp_path / "gray8.png").read_bytes()[:45])
    return tmp_path


def snapshot(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def client(*args):
    """The exit status of `python -m hw.client --port loop:// ARGS` (argparse's errors exit)."""
    from hw.host.client import main
    try:
        return main(["--port", "loop://", *map(str, args)])
    except SystemExit as e:
        return e.code


@pytest.mark.parametrize("name,words", [
    ("missing.png", ["missing.png does not exist", "8x8 PNG"]),
    ("notes.png", ["notes.png is not a PNG", "8x8 PNG"]),
    ("gray8.png.gz", ["gray8.png.gz is not a PNG"]),
    ("cut.png", ["cut.png: cannot read the PNG", "truncated"]),
    ("gray32.png", ["gray32.png is 32x32 gray (1 channel)", "the model takes 1x8x8", "resize it to 8x8"]),
    ("rgb300.png", ["rgb300.png is 300x300 RGB (3 channels)", "the model takes 1x8x8", "resize it to 8x8"]),
    ("rgba8.png", ["rgba8.png is 8x8 RGBA (3 channels, alpha ignored)", "the model takes 1x8x8",
                   "give --channels 1"]),
    (".", ["is a folder"]),
])
def test_bad_images_are_one_line_before_the_port_opens(pngs, capsys, no_port, name, words):
    before = snapshot(pngs)
    assert client("--shape", "1x8x8", pngs / name) == 2
    one_line(capsys, "IMAGE", *words)
    assert snapshot(pngs) == before


@pytest.mark.parametrize("args,words", [
    (["--count", "0"], ["argument --count", "integer 1..10000000", "'0'"]),
    (["--count", "-5"], ["argument --count", "integer 1..", "'-5'"]),
    (["--count", "100000000"], ["argument --count", "integer 1..10000000", "test set"]),
    (["--baud", "0"], ["argument --baud", "300..12000000", "USB-UARTs' range"]),
    (["--baud", "-9600"], ["argument --baud", "300..12000000"]),
    (["--baud", "24000000"], ["argument --baud", "300..12000000"]),
    (["--timeout", "0"], ["argument --timeout", "> 0 and <= 3600"]),
    (["--timeout", "nan"], ["argument --timeout", "'nan'"]),
    (["--timeout", "inf"], ["argument --timeout", "'inf'"]),
    (["--timeout", "1e300"], ["argument --timeout", "an hour"]),
    (["--retries", "101"], ["argument --retries", "integer 0..100"]),
    (["--frame-timeout-ms", "5000"], ["argument --frame-timeout-ms", "<= 1000", "hw.build"]),
    (["--shape", "1x28"], ["argument --shape", "CxHxW"]),
    (["--shape", "0x8x8"], ["argument --shape", "CxHxW"]),
    (["--shape", "3x256x256"], ["argument --shape", "196608 pixels", "16-bit length"]),
    (["--shape", "1x8x8", "--model", "m"], ["--model"]),
    (["--channels", "2"], ["argument --channels", "invalid choice"]),
])
def test_bad_numbers_are_one_line(capsys, no_port, args, words):
    assert client("--dataset", "mnist", *args) == 2
    one_line(capsys, *words)


def test_count_zero_with_a_model_and_dataset_never_divides(capsys, no_port):
    assert client("--shape", "1x8x8", "--dataset", "mnist", "--count", "0") == 2
    assert "accuracy" not in one_line(capsys, "--count")


@pytest.mark.parametrize("args,words", [
    ([], ["IMAGE.png or --dataset"]),
    (["IMAGE", "--dataset", "mnist"], ["IMAGE.png or --dataset"]),
    (["IMAGE", "--count", "3"], ["--count goes with --dataset"]),
    (["IMAGE", "--data-dir", "d"], ["--data-dir goes with --dataset"]),
    (["--dataset", "mnist", "--channels", "1"], ["--channels converts IMAGE.png"]),
    (["IMAGE", "--channels", "3"], ["--channels 3 does not match", "1x8x8", "give --channels 1"]),
])
def test_conflicting_options(pngs, capsys, no_port, args, words):
    args = [pngs / "rgb8.png" if a == "IMAGE" else a for a in args]
    assert client("--shape", "1x8x8", *args) == 2
    one_line(capsys, *words)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A quantized model of 1x8x8 inputs."""
    from quantize.qmodel import write_qmodel
    from quantize.random_model import random_qmodel
    q = random_qmodel(depth=8, width=1, input_size=8, seed=3)
    path = tmp_path_factory.mktemp("client_model") / "quant" / "qmodel.npz"
    write_qmodel(path, q.manifest, q.tensors)
    assert q.input_shape == (1, 8, 8)
    return path.parent


def test_the_shape_comes_from_the_model(pngs, tiny_model, capsys, no_port):
    assert client("--model", tiny_model, pngs / "gray32.png") == 2
    one_line(capsys, "32x32", "the model takes 1x8x8")


def test_no_model_and_no_shape(pngs, tmp_path, capsys, no_port, monkeypatch):
    monkeypatch.chdir(tmp_path)                 # no runs/default/quant here
    assert client(pngs / "gray8.png") == 2
    one_line(capsys, "no model at runs/default/quant", "--model RUN_DIR/quant", "--shape CxHxW")
    assert client("--model", tmp_path / "nowhere", pngs / "gray8.png") == 2
    one_line(capsys, "nowhere", "not found", "python -m quantize")


def test_dataset_of_another_shape(tmp_path, capsys, no_port):
    write_idx_set(str(tmp_path), np.random.default_rng(0), n_train=4, n_test=3, h=8, w=8)
    assert client("--shape", "1x28x28", "--dataset", "mnist", "--data-dir", tmp_path) == 2
    one_line(capsys, "mnist test images are 1x8x8", "the model takes 1x28x28")
    assert client("--shape", "1x8x8", "--dataset", "mnist", "--data-dir", tmp_path / "none") == 2
    one_line(capsys, "mnist", "data directory", "none")


def test_port_that_cannot_open(pngs, capsys):
    from hw.host.client import main
    assert main(["--port", str(pngs / "ttyUSB9"), "--shape", "1x8x8", str(pngs / "gray8.png")]) == 2
    one_line(capsys, "cannot open", "ttyUSB9", "--port")


# -- good input reaches the port ------------------------------------------------------------------
BOARD_LOGITS = [1, 9, 3] + [0] * 7      # the tiny model's 10 classes


class FakeSerial(Loopback):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.fixture
def board(monkeypatch):
    """serial_for_url -> a port answering each frame with 10 logits [1, 9, 3, 0, ...], class 1."""
    import serial
    opened = []

    def open_port(url, baud, timeout):
        opened.append((url, baud, timeout))
        opened.append(FakeSerial(reply_bytes(BOARD_LOGITS, 1) * 10))
        return opened[-1]
    monkeypatch.setattr(serial, "serial_for_url", open_port)
    return opened


def test_a_board_of_another_model_is_a_failure_not_an_answer(pngs, tiny_model, capsys, monkeypatch):
    """Replies whose CRC holds but whose class count is not the model's (a board built from
    another model): exit 1 with the reason, no answer printed."""
    import serial
    monkeypatch.setattr(serial, "serial_for_url",
                        lambda url, baud, timeout: FakeSerial(reply_bytes([1, 9, 3], 1) * 4))
    monkeypatch.setattr(FakeSerial, "reset_input_buffer", lambda self: None, raising=False)
    assert client("--model", tiny_model, "--retries", "1", "--frame-timeout-ms", "1",
                  pngs / "gray8.png") == 1
    out, err = capsys.readouterr()
    assert out == "" and "3 classes, not the model's 10: is it built from this model?" in err


def test_good_image_is_sent(pngs, tiny_model, capsys, board):
    assert client("--model", tiny_model, "--baud", "9600", "--timeout", "0.5", pngs / "gray8.png") == 0
    assert capsys.readouterr().out.strip() == \
        "class 1, logits [1, 9, 3, 0, 0, 0, 0, 0, 0, 0], 66638 cycles"
    assert board[0] == ("loop://", 9600, 0.5)
    pixels = np.arange(64, dtype=np.uint8) * 3
    body = bytes([64, 0]) + pixels.tobytes()
    assert board[1].written == bytes([0xA5]) + body + zlib.crc32(body).to_bytes(4, "little")


@pytest.mark.parametrize("name,channels,value", [("rgba8.png", "1", 90), ("rgb8.png", "1", 30)])
def test_channels_1_averages_colour_to_gray(pngs, capsys, board, name, channels, value):
    assert client("--shape", "1x8x8", "--channels", channels, pngs / name) == 0
    assert board[1].written[3:3 + 64] == bytes([value] * 64)


def test_gray_to_rgb(pngs, capsys, board):
    assert client("--shape", "3x8x8", "--channels", "3", pngs / "gray8.png") == 0
    assert board[1].written[3:6] == bytes([0, 0, 0]) and board[1].written[6:9] == bytes([3, 3, 3])


@pytest.mark.parametrize("args,baud", [(["--board", "ulx3s_85f"], 3_000_000), ([], 12_000_000),
                                       (["--board", "ulx3s_85f", "--baud", "115200"], 115_200)])
def test_the_board_gives_the_default_baud(pngs, capsys, board, args, baud):
    assert client("--shape", "1x8x8", *args, pngs / "gray8.png") == 0
    assert board[0][1] == baud


def test_dataset_streams_count_images(tmp_path, capsys, board):
    write_idx_set(str(tmp_path), np.random.default_rng(0), n_train=4, n_test=3, h=8, w=8)
    assert client("--shape", "1x8x8", "--dataset", "mnist", "--data-dir", tmp_path, "--count", "2") == 0
    out = capsys.readouterr().out
    assert out.startswith("2 images: accuracy ") and "images/s over the link" in out
    assert "66,638 cycles per image (mean)" in out
    assert len(board[1].written) == 2 * (3 + 64 + 4)


def test_a_count_past_the_test_set_is_refused_not_cut(tmp_path, capsys, board):
    """--count 4 of a 3-image test set used to stream 3 with exit 0 and no word."""
    write_idx_set(str(tmp_path), np.random.default_rng(0), n_train=4, n_test=3, h=8, w=8)
    assert client("--shape", "1x8x8", "--dataset", "mnist", "--data-dir", tmp_path, "--count", "4") == 2
    one_line(capsys, "--count 4", "test set has 3 images", "--count 3 or fewer")
    assert board == []      # refused before the port opened


def test_a_board_that_does_not_answer_is_one_line_exit_1(pngs, capsys):
    # pyserial's loop:// echoes the request: the client reads 0xA5 where 0x5A belongs.
    assert client("--shape", "1x8x8", "--timeout", "0.2", pngs / "gray8.png") == 1
    one_line(capsys, "gray8.png", "unexpected reply byte 0xa5", "check the board")


def test_docs_table_lists_the_clients_options():
    """docs/board.md "Host client": its table names every option of the parser and its defaults."""
    import os
    import re

    from hw.host.client import DEFAULT_MODEL, build_parser
    text = open(os.path.join(os.path.dirname(__file__), "..", "docs", "board.md")).read()
    host = text[text.index("## Host client\n"):]
    rows = [line.split("|")[1:3] for line in host.splitlines()
            if line.startswith("| `--")]
    documented = {o: d.strip().strip("`") for cell, d in rows for o in re.findall(r"`(--[a-z-]+)`", cell)}
    options = {a.option_strings[-1]: a.default for a in build_parser()._actions
               if a.option_strings and a.dest != "help"}
    assert set(documented) == set(options) - {"--dataset", "--data-dir"}   # those two: in the text
    assert documented["--board"] == options["--board"] and documented["--count"] == "100"
    assert documented["--baud"] == "the board's" and options["--baud"] is None
    assert documented["--model"] == DEFAULT_MODEL.replace(os.sep, "/")


def test_the_client_imports_no_hdl():
    """`python -m hw.client --help` on a laptop: neither Amaranth, the core nor torch is loaded
    (python -X importtime lists every module imported)."""
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "hw.client", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "--port" in done.stdout
    loaded = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    assert "hw.link.protocol" in loaded                     # the scan sees what it imports
    heavy = {m for m in loaded if m.split(".")[0] in ("amaranth", "torch")
             or m.startswith(("hw.core", "hw.blocks", "hw.link.framing", "hw.link.uart"))}
    assert not heavy, sorted(heavy)


# -- retries ----------------------------------------------------------------------------------------
class Board:
    """A port double that answers every frame written, in order, with `respond(frame, n)` (n: the
    how-manyth time this frame is sent); `reset_input_buffer` drops what has not been read."""

    def __init__(self, respond):
        self.respond, self.buffer, self.sent, self.resyncs = respond, b"", [], 0
        self.unread, self.most_ahead = [], 0       # the unread replies' lengths

    def write(self, frame):
        self.sent.append(bytes(frame))
        reply = self.respond(bytes(frame), self.sent.count(bytes(frame)))
        self.buffer += reply
        self.unread.append(len(reply))
        self.most_ahead = max(self.most_ahead, len(self.unread))

    def read(self, n):
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        taken = len(out)
        while self.unread and taken >= self.unread[0]:
            taken -= self.unread.pop(0)
        if self.unread:
            self.unread[0] -= taken
        return out

    def reset_input_buffer(self):
        self.buffer, self.unread, self.resyncs = b"", [], self.resyncs + 1


def value_of(frame):
    return frame[3]                          # the first pixel: which image this is


def test_a_failed_frame_is_sent_again_until_it_is_answered():
    from hw.host.client import Retry, classify
    image = np.full((1, 2, 2), 7, np.uint8)
    board = Board(lambda frame, n: bytes([0xEE, 3]) if n < 3 else reply_bytes([7, -7], 0))
    reply = classify(board, image, Retry(retries=3, quiet_s=0))
    assert reply.logits == [7, -7] and board.sent == [encode_frame(image)] * 3 and board.resyncs == 2


def test_a_frame_that_keeps_failing_is_one_error_after_the_retries():
    from hw.host.client import Retry, classify
    board = Board(lambda frame, n: reply_bytes([1, 2], 0)[:-1] + b"\x00")    # a bad CRC, always
    with pytest.raises(FrameError, match="CRC does not hold"):
        classify(board, np.zeros((1, 2, 2), np.uint8), Retry(retries=2, quiet_s=0))
    assert len(board.sent) == 3 and board.resyncs == 3


def test_a_stream_reports_each_image_once_in_order():
    """Image 2 always fails, image 3's first try fails: every other image is answered once, in
    order, image 2 is one error after its retries, and no frame is ever more than one ahead."""
    from hw.host.client import Retry, classify_stream

    def respond(frame, n):
        v = value_of(frame)
        if v == 2 or (v == 3 and n == 1):
            return bytes([0xEE, 4])
        return reply_bytes([v, -v], 0)
    board = Board(respond)
    images = (np.full((1, 2, 2), v, np.uint8) for v in range(6))        # read as it goes
    got = list(classify_stream(board, images, Retry(retries=2, quiet_s=0)))
    assert [r.logits[0] if not isinstance(r, FrameError) else "error" for r in got] == \
        [0, 1, "error", 3, 4, 5]
    assert got[2].code == 4
    assert [value_of(f) for f in board.sent].count(2) == 3                # 1 + 2 retries
    assert board.most_ahead == 2


def test_the_client_soaks_through_a_noisy_pty_with_no_wrong_answer():
    """The client (pyserial on a real pseudo-terminal) against the fake board (sim/fake_board.py)
    with bits flipped both ways at 1e-3 and bytes dropped at 1e-4: every image answered right or
    one error after its retries, none wrong, the faults cost retries, and the client's memory
    stays small (bench.client_soak runs 100,000 frames)."""
    from sim.client_soak import soak
    r = soak(150, rx_flip=1e-3, tx_flip=1e-3, rx_drop=1e-4, seed=2, reply_timeout_s=0.2)
    assert r["wrong"] == 0 and r["correct"] + r["failed"] == 150
    assert r["correct"] > 100 and r["sent"] > 150
    assert r["peak_bytes"] < 200_000
    clean = soak(100, seed=3, reply_timeout_s=1.0)     # no retry however busy the machine
    assert clean["correct"] == 100 and clean["sent"] == 100
