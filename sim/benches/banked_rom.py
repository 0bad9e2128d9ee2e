"""cocotb bench for hw.blocks.banked_rom.BankedRom alone (run through sim.runner.run_cocotb).

A new address on EVERY cycle (sim.benches.pipeline): `data` must be the word at the address
driven `latency` cycles earlier. The addresses visit every word, each bank's first and last and
the jumps between banks back to back, then random ones. Address 0 is held for `latency` cycles
after reset, so the pipeline holds word 0 when the stream starts (the fill).

Parameters (sim.benches.params, given by tests/test_hw_blocks.py):
    words, width        the ROM's contents and word width the DUT was built with
    latency             the DUT's latency
    break_model=True    a deliberately wrong reference (the word after the address): must fail
"""
import random

import cocotb
from cocotb.triggers import ClockCycles, FallingEdge

from sim.benches.params import bench_params
from sim.benches.pipeline import check_pipeline
from sim.benches.reset import start

PARAMS = bench_params("words", "width", "latency", "bank_depth", break_model=False)
WORDS, WIDTH, LATENCY = PARAMS["words"], PARAMS["width"], PARAMS["latency"]
BANK_DEPTH = PARAMS["bank_depth"]


def _signed(v):
    """`check_pipeline` reads the output as signed."""
    return v - (1 << WIDTH) if v >> (WIDTH - 1) else v


def _expected(addr):
    if PARAMS["break_model"]:
        addr = (addr + 1) % len(WORDS)
    return _signed(WORDS[addr])


@cocotb.test()
async def every_word_then_random(dut):
    await start(dut, [dut.addr])
    await ClockCycles(dut.clk, LATENCY)
    await FallingEdge(dut.clk)
    n = len(WORDS)
    edges = [a for k in range(0, n, BANK_DEPTH) for a in (k, min(k + BANK_DEPTH, n) - 1)]
    addrs = list(range(n)) + list(reversed(range(n))) + edges + edges[::-1]
    addrs += [random.randrange(n) for _ in range(200)]     # seeded by COCOTB_RANDOM_SEED

    def drive(k):
        dut.addr.value = 0 if k is None else addrs[k]

    await check_pipeline(dut.clk, drive, dut.data, [_expected(a) for a in addrs], LATENCY,
                         lambda k: f"addr={addrs[k]}", name="data", fill=_signed(WORDS[0]),
                         context=f"{n} words in banks of {BANK_DEPTH}")
