"""cocotb bench for hw.blocks.addsub_tree.AddSubTree alone (run through sim.runner.run_cocotb).

A new input vector goes in on EVERY cycle (full throughput), so a register missing, doubled or
shared between pipeline slots shows up. Inputs are driven on the falling edge; `sum` is read on
the next falling edge and compared with the reference (sim.models.addsub_dot) of the vector
driven `latency` cycles earlier (sim.benches.pipeline). The pipeline holds zeros after reset,
whose sum is 0.

Parameters (sim.benches.params, given by tests/test_hw_blocks.py):
    lanes, width        the parameters the DUT was built with
    cycles              random vectors per test (default 2000)
    break_model=True    a deliberately wrong reference (lane 0's weight bit flipped):
                        every test must then fail
"""
import random

import cocotb
import numpy as np

from sim.benches.params import bench_params
from sim.benches.pipeline import check_pipeline
from sim.benches.reset import start
from sim.models import addsub_dot, tree_latency

PARAMS = bench_params(lanes=8, width=9, cycles=2000, break_model=False)
LANES, WIDTH, CYCLES = PARAMS["lanes"], PARAMS["width"], PARAMS["cycles"]
BREAK_MODEL = PARAMS["break_model"]
XMIN, XMAX = -(1 << (WIDTH - 1)), (1 << (WIDTH - 1)) - 1
LATENCY = tree_latency(LANES)


def _expected(x, w):
    w = np.array(w, dtype=np.int64)
    if BREAK_MODEL:
        w[..., 0] ^= 1
    return addsub_dot(x, w)


def _pack_x(row):
    mask = (1 << WIDTH) - 1
    return sum((int(v) & mask) << (j * WIDTH) for j, v in enumerate(row))


def _pack_w(row):
    return sum(int(b) << j for j, b in enumerate(row))


def _rng():
    return np.random.default_rng(random.getrandbits(64))   # seeded by COCOTB_RANDOM_SEED


async def _start(dut):
    await start(dut, [dut.x, dut.w])


async def _stream(dut, x, w, label):
    """Drive rows of x (N x lanes) / w (N x lanes), one per cycle, checking `sum` every cycle."""
    x, w = np.asarray(x, np.int64), np.asarray(w, np.int64)

    def drive(n):
        dut.x.value = 0 if n is None else _pack_x(x[n])
        dut.w.value = 0 if n is None else _pack_w(w[n])

    await check_pipeline(dut.clk, drive, dut.sum, _expected(x, w), LATENCY,
                         lambda k: f"x={x[k].tolist()} w={w[k].tolist()}", name="sum",
                         label=label, context=f"lanes {LANES}, width {WIDTH}")


@cocotb.test()
async def random_full_throughput(dut):
    """CYCLES random vectors back to back: x uniform over the signed width, random weight bits."""
    await _start(dut)
    rng = _rng()
    x = rng.integers(XMIN, XMAX, size=(CYCLES, LANES), endpoint=True)
    w = rng.integers(0, 1, size=(CYCLES, LANES), endpoint=True)
    await _stream(dut, x, w, "random")


@cocotb.test()
async def extremes(dut):
    """All x at min / max / 0 with all weights 0 / 1 (largest |sum| both ways), then random
    mixes of min and max, and one-hot lanes (each lane's wiring and sign alone)."""
    await _start(dut)
    rng = _rng()
    xs, ws = [], []
    for xv in (XMIN, XMAX, 0, -1, 1):
        for wv in (0, 1):
            xs.append([xv] * LANES)
            ws.append([wv] * LANES)
    for _ in range(300):
        xs.append(rng.choice([XMIN, XMAX], size=LANES))
        ws.append(rng.integers(0, 1, size=LANES, endpoint=True))
    for j in range(LANES):
        for xv in (XMIN, XMAX):
            for wv in (0, 1):
                row = [0] * LANES
                row[j] = xv
                xs.append(row)
                ws.append([wv] * LANES)
    # Alternate the two extreme sums on consecutive cycles: stage registers must not mix them.
    for n in range(50):
        xs.append([XMIN] * LANES)
        ws.append([n % 2] * LANES)
    await _stream(dut, xs, ws, "extremes")
