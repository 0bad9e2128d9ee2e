"""cocotb test bench for the smoke accumulator (run through :func:`sim.runner.run_cocotb`).

Inputs are driven on the falling edge; the DUT's ``acc`` is compared with the reference model
on every falling edge, i.e. after each rising edge has been applied to both.

Parameters (sim.benches.params):
    acc_width          accumulator width the DUT was built with (default 16)
    break_model=True   use a deliberately wrong reference (weight bit inverted): every test
                       must then fail; used to check that failures propagate to pytest.
"""

import random

import cocotb
from cocotb.triggers import FallingEdge

from sim.benches.params import bench_params
from sim.benches.reset import start
from sim.smoke_model import AccumulatorModel

PARAMS = bench_params(acc_width=16, break_model=False)
ACC_WIDTH, BREAK_MODEL = PARAMS["acc_width"], PARAMS["break_model"]


def _model() -> AccumulatorModel:
    model = AccumulatorModel(ACC_WIDTH)
    if BREAK_MODEL:
        step = model.step
        model.step = lambda x, w, en, clear: step(x, 1 - w, en, clear)
    return model


async def _start(dut) -> None:
    await start(dut, [dut.x, dut.w, dut.en, dut.clear])
    assert dut.acc.value.to_signed() == 0, "acc not 0 after reset"


async def _drive(dut, model, cycles) -> None:
    """Drive ``cycles`` = iterable of (x, w, en, clear) and check ``acc`` after every edge."""
    for n, (x, w, en, clear) in enumerate(cycles):
        dut.x.value = x
        dut.w.value = w
        dut.en.value = en
        dut.clear.value = clear
        expected = model.step(x, w, en, clear)
        await FallingEdge(dut.clk)
        got = dut.acc.value.to_signed()
        assert got == expected, (
            f"cycle {n}: x={x} w={w} en={en} clear={clear}: acc={got}, model={expected}")


@cocotb.test()
async def random_add_subtract(dut):
    """Random x / weight-bit / enable / clear sequence against the model."""
    await _start(dut)
    model = _model()

    def stimulus(n):
        for _ in range(n):
            yield (random.randint(-128, 127), random.getrandbits(1),
                   int(random.random() < 0.8), int(random.random() < 0.03))

    await _drive(dut, model, stimulus(1000))


@cocotb.test()
async def wraps_around(dut):
    """Repeated +127 / -128 steps overflow the accumulator both ways; it must wrap like the model."""
    await _start(dut)
    model = _model()
    n = (1 << (ACC_WIDTH - 1)) // 127 + 20
    await _drive(dut, model, [(127, 1, 1, 0)] * n)
    await _drive(dut, model, [(-128, 1, 1, 0)] * (2 * n))


@cocotb.test()
async def reset_clears(dut):
    """Synchronous reset returns the accumulator to 0 mid-stream."""
    await _start(dut)
    model = _model()
    await _drive(dut, model, [(100, 1, 1, 0)] * 5)
    dut.rst.value = 1
    await FallingEdge(dut.clk)
    dut.rst.value = 0
    model.reset()
    assert dut.acc.value.to_signed() == 0, "acc not 0 after rst"
    await _drive(dut, model, [(-7, 0, 1, 0)] * 5)
