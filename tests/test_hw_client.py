"""The host client's framing, checked against the protocol of docs/board.md byte by byte.

The end-to-end path (client frames -> UART -> framing -> accelerator -> reply) runs in
Verilator in tests/test_hw_build.py; here a loopback port stands in for the serial cable.
"""
import numpy as np
import pytest

from hw.client import FrameError, classify, encode_frame, read_reply


def test_request_layout():
    image = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4) * 7
    data = encode_frame(image)
    assert data[0] == 0xA5
    assert data[1] | data[2] << 8 == 24
    # Raster order, channels innermost: pixel (y=0, x=1) channel 1 is the 4th byte.
    assert data[3:3 + 4] == bytes([image[0, 0, 0], image[1, 0, 0], image[0, 0, 1], image[1, 0, 1]])
    assert data[-1] == int(image.sum()) % 256 and len(data) == 3 + 24 + 1


def reply_bytes(logits, cls):
    out = bytes([0x5A, len(logits)])
    for v in logits:
        out += int(v).to_bytes(4, "little", signed=True)
    return out + bytes([cls])


class Loopback:
    """A serial port double: records what is written, replays a canned answer."""

    def __init__(self, answer):
        self.written, self.answer = b"", answer

    def write(self, data):
        self.written += data

    def read(self, n):
        out, self.answer = self.answer[:n], self.answer[n:]
        return out


def test_classify_sends_one_frame_and_decodes_the_reply():
    image = np.full((1, 4, 4), 200, np.uint8)
    port = Loopback(reply_bytes([-5, 70000, -2 ** 31, 3], 1))
    reply = classify(port, image)
    assert reply.logits == [-5, 70000, -2 ** 31, 3] and reply.cls == 1
    assert port.written == bytes([0xA5, 16, 0]) + bytes([200] * 16) + bytes([(200 * 16) % 256])


@pytest.mark.parametrize("answer,code,text", [
    (bytes([0xEE, 3]), 3, "checksum"),
    (bytes([0xEE, 2]), 2, "length"),
    (bytes([0x5A, 2, 1, 0]), None, "timed out"),
    (bytes([0x42]), None, "unexpected"),
])
def test_errors_and_truncated_replies(answer, code, text):
    with pytest.raises(FrameError, match=text) as info:
        read_reply(Loopback(answer).read)
    assert info.value.code == code


def test_cli_errors(tmp_path, capsys):
    from hw.client import main
    assert main(["--port", str(tmp_path / "ttyUSB9")]) == 2
    assert "IMAGE.png or --dataset" in capsys.readouterr().err
    assert main(["--port", str(tmp_path / "ttyUSB9"), "--dataset", "fashion-mnist"]) == 2
    assert "cannot open" in capsys.readouterr().err
