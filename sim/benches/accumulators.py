"""cocotb bench for hw.blocks.accumulators.Accumulators alone (run through sim.runner.run_cocotb).

Every cycle new sums, terms and controls go in (driven on the falling edge), and after the
rising edge every accumulator is compared with the reference: acc <- (first ? 0 : acc) +
(depthwise ? term : sum) where `enable` is high, wrapped to `width` bits; held where it is low.
The first cycle loads every accumulator (first, enable), so the check does not depend on what
the registers held before. Sums and terms run over their whole signed ranges, and long runs
without `first` take the accumulators past `width` bits, so a wrap at any other width shows.

Parameters (sim.benches.params, given by tests/test_hw_blocks.py):
    count, width, sum_bits, term_bits    what the DUT was built with
    cycles                               random cycles (default 3000)
    break_model=True                     a wrong reference (depthwise picks the sum): must fail
"""
import random

import cocotb
from cocotb.triggers import FallingEdge, RisingEdge

from sim.benches.params import bench_params
from sim.benches.reset import start

PARAMS = bench_params(count=4, width=14, sum_bits=9, term_bits=5, cycles=3000, break_model=False)
COUNT, WIDTH, CYCLES = PARAMS["count"], PARAMS["width"], PARAMS["cycles"]
SUM_BITS, TERM_BITS, BREAK_MODEL = PARAMS["sum_bits"], PARAMS["term_bits"], PARAMS["break_model"]


def wrap(value, bits):
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def pack(values, bits):
    return sum((v & ((1 << bits) - 1)) << (i * bits) for i, v in enumerate(values))


def unpack(word, bits, count):
    return [wrap(word >> (i * bits), bits) for i in range(count)]


def next_state(acc, sums, terms, depthwise, first, enable):
    """The reference accumulators after one cycle."""
    if not enable:
        return acc
    picked = sums if (BREAK_MODEL or not depthwise) else terms
    return [wrap((0 if first else a) + t, WIDTH) for a, t in zip(acc, picked)]


@cocotb.test()
async def accumulate_random(dut):
    await start(dut, [dut.sums, dut.terms, dut.depthwise, dut.first, dut.enable])
    rng = random.Random(random.getrandbits(64))      # seeded by COCOTB_RANDOM_SEED
    acc, bad = None, []
    for n in range(CYCLES):
        sums = [rng.randrange(-(1 << (SUM_BITS - 1)), 1 << (SUM_BITS - 1)) for _ in range(COUNT)]
        terms = [rng.randrange(-(1 << (TERM_BITS - 1)), 1 << (TERM_BITS - 1)) for _ in range(COUNT)]
        # Loads are rare (long sums that wrap), except in the first cycle.
        first, enable = n == 0 or rng.random() < 0.02, n == 0 or rng.random() < 0.8
        depthwise = (n // 200) % 2 == 1                   # stretches of each kind
        dut.sums.value, dut.terms.value = pack(sums, SUM_BITS), pack(terms, TERM_BITS)
        dut.depthwise.value, dut.first.value, dut.enable.value = depthwise, first, enable
        acc = next_state(acc or [0] * COUNT, sums, terms, depthwise, first, enable)
        await RisingEdge(dut.clk)
        await FallingEdge(dut.clk)
        got = unpack(int(dut.acc.value), WIDTH, COUNT)
        if got != acc:
            bad.append(f"cycle {n}: acc {got}, expected {acc} (depthwise {depthwise}, first "
                       f"{first}, enable {enable})")
    assert not bad, f"{len(bad)} of {CYCLES} cycles wrong ({PARAMS}):\n  " + "\n  ".join(bad[:8])
