"""The host client against the fake board (sim/fake_board.py) on a pseudo-terminal: many frames
with faults, every answer checked, the client's memory measured (bench.client_soak, tests)."""
import subprocess
import sys
import time
import tracemalloc
from collections import deque

import numpy as np

from hw.host.client import Retry, classify_stream, quiet_s
from hw.link.protocol import FrameError
from sim.fake_board import CYCLES, answer_for


class CountingPort:
    """A serial port that counts the frames written through it."""

    def __init__(self, port):
        self.port, self.writes = port, 0

    def write(self, data):
        self.writes += 1
        return self.port.write(data)

    def read(self, n):
        return self.port.read(n)

    def reset_input_buffer(self):
        self.port.reset_input_buffer()


def soak(frames, *, shape=(1, 8, 8), classes=10, frame_timeout_ms=1.0, retries=3, seed=0,
         rx_flip=0.0, tx_flip=0.0, rx_drop=0.0, reply_timeout_s=0.05):
    """Stream `frames` random images through the client to the fake board; returns the counts
    (frames sent, answered correctly, failed after the retries, wrong answers accepted), the
    peak of the memory Python allocated meanwhile (tracemalloc) in bytes, and the seconds."""
    import serial
    c, h, w = shape
    board = subprocess.Popen(
        [sys.executable, "-m", "sim.fake_board", "--pixels", str(c * h * w), "--classes", str(classes),
         "--frame-timeout-ms", str(frame_timeout_ms), "--rx-flip", str(rx_flip), "--tx-flip",
         str(tx_flip), "--rx-drop", str(rx_drop), "--seed", str(seed)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        path = board.stdout.readline().strip()
        rng = np.random.default_rng(seed)
        images = (rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(frames))
        expected = deque()           # the answers of the images sent, not yet checked

        def remembered():
            for image in images:
                expected.append(answer_for(image.transpose(1, 2, 0).reshape(-1), classes))
                yield image
        counts = dict(frames=frames, sent=0, correct=0, failed=0, wrong=0)
        tracemalloc.start()
        t0 = time.perf_counter()
        with serial.Serial(path, timeout=reply_timeout_s) as device:
            port = CountingPort(device)
            for reply in classify_stream(port, remembered(), Retry(retries, quiet_s(frame_timeout_ms))):
                want = expected.popleft()
                if isinstance(reply, FrameError):
                    counts["failed"] += 1
                elif (reply.logits, reply.cls, reply.cycles) == (want[0], want[1], CYCLES):
                    counts["correct"] += 1
                else:
                    counts["wrong"] += 1
        seconds = time.perf_counter() - t0
        counts["sent"] = port.writes
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    finally:
        board.stdin.close()
        board.wait(timeout=10)
    return dict(counts, peak_bytes=peak, seconds=seconds)
