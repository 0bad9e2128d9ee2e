"""Every bench starts the same way: a 10 ns clock, inputs at zero, then reset."""
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge

CLOCK_NS = 10


async def start(dut, inputs, reset_cycles=2):
    """Start the clock, drive `inputs` to 0, hold reset for `reset_cycles` cycles and release it
    on a falling edge (inputs are driven on falling edges, sampled on rising ones)."""
    Clock(dut.clk, CLOCK_NS, unit="ns").start()
    for port in inputs:
        port.value = 0
    dut.rst.value = 1
    await ClockCycles(dut.clk, reset_cycles)
    await FallingEdge(dut.clk)
    dut.rst.value = 0
