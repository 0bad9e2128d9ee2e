"""cocotb bench for the accelerator: plays a job (input beats, expected output beats) through it.

The job file (parameter `job`: an .npz written by sim.jobs) holds the beats of the `image` and
`words` input streams, `expected` (raw output payloads: data | last << data_bits) and stall
probabilities. The bench streams the inputs, each stream with its own random stalls, collects as many output beats as expected with random back-pressure, writes
what it saw and the cycle stamps to the file named by parameter `result` (.npz), then asserts
equality beat by beat.
"""
import cocotb
import numpy as np
from cocotb.simtime import get_sim_time
from cocotb.triggers import First, Timer

from sim.benches.params import bench_params
from sim.benches.reset import CLOCK_NS, start
from sim.benches.streams import StreamDriver, StreamMonitor


@cocotb.test()
async def run_job(dut):
    params = bench_params("job", "result")
    job = np.load(params["job"], allow_pickle=False)
    image = [int(v) for v in job["image"]]
    words = [int(v) for v in job["words"]]
    expected = [int(v) for v in job["expected"]]
    await start(dut, [dut.image__valid, dut.words__valid, dut.out__ready], reset_cycles=3)
    # Cycles from simulation time: no Python wakes up every cycle for counting.
    start_ns = get_sim_time("ns")
    cycle = lambda: int((get_sim_time("ns") - start_ns) // CLOCK_NS)  # noqa: E731
    drivers = [StreamDriver(dut, "image", dut.clk, float(job["in_stall"]), int(job["seed"])),
               StreamDriver(dut, "words", dut.clk, float(job["in_stall"]), int(job["seed"]) + 2)]
    monitor = StreamMonitor(dut, "out", dut.clk, float(job["out_stall"]), int(job["seed"]) + 1)
    for driver, beats in zip(drivers, (image, words)):
        cocotb.start_soon(driver.send(beats, cycle))
    done = cocotb.start_soon(monitor.collect(len(expected), cycle))
    await First(done, Timer(int(job["timeout_cycles"]) * CLOCK_NS, unit="ns"))
    np.savez(params["result"], beats=np.array(monitor.beats, dtype=object).astype(str),
             seen_at=np.array(monitor.seen_at, np.int64),
             accepted_at=np.array(sorted(drivers[0].accepted_at + drivers[1].accepted_at), np.int64))
    assert len(monitor.beats) == len(expected), \
        f"timed out: {len(monitor.beats)} of {len(expected)} output beats"
    for i, (got, want) in enumerate(zip(monitor.beats, expected)):
        assert got == want, f"beat {i}: got {got:#x}, expected {want:#x}"
