"""cocotb bench for hw.framing.FramedAccelerator: a bit-level UART on the host side.

The exchanges (parameter `frames`: the path of a JSON file): the bytes to send, the
bytes the board must answer, and the quiet time (in bit periods) to leave after sending. Bytes
go out 8N1 at `divisor` clock cycles per bit on `rx`; a receiver coroutine decodes `tx` the
same way.
"""
import json

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, First, Timer

from sim.benches.params import bench_params


async def send_byte(dut, byte, divisor):
    for bit in [0] + [(byte >> i) & 1 for i in range(8)] + [1]:
        dut.rx.value = bit
        await ClockCycles(dut.clk, divisor)


class Receiver:
    def __init__(self, dut, divisor):
        self.dut, self.divisor, self.bytes, self.errors = dut, divisor, [], []

    async def run(self):
        dut, d = self.dut, self.divisor
        while True:
            if int(dut.tx.value) == 1:
                await FallingEdge(dut.tx)
            await ClockCycles(dut.clk, d // 2)
            if int(dut.tx.value) != 0:
                self.errors.append(f"glitch on tx after byte {len(self.bytes)}")
                continue
            byte = 0
            for i in range(8):
                await ClockCycles(dut.clk, d)
                byte |= int(dut.tx.value) << i
            await ClockCycles(dut.clk, d)
            if int(dut.tx.value) != 1:
                self.errors.append(f"bad stop bit in byte {len(self.bytes)}")
            self.bytes.append(byte)
            await ClockCycles(dut.clk, d // 2 - 1)


@cocotb.test()
async def exchanges(dut):
    plan = json.load(open(bench_params("frames")["frames"]))
    d = plan["divisor"]
    Clock(dut.clk, 10, unit="ns").start()
    dut.rx.value = 1
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 2)
    rx = Receiver(dut, d)
    cocotb.start_soon(rx.run())
    for n, ex in enumerate(plan["exchanges"]):
        start = len(rx.bytes)
        for byte in ex["send"]:
            await send_byte(dut, byte, d)
        want = ex["expect"]
        for _ in range(plan["timeout_cycles"] // 1000):
            if len(rx.bytes) >= start + len(want):
                break
            await First(ClockCycles(dut.clk, 1000), Timer(1, unit="sec"))
        got = rx.bytes[start:]
        await ClockCycles(dut.clk, ex.get("quiet_bits", 0) * d)
        assert not rx.errors, rx.errors
        assert got[:len(want)] == want, f"exchange {n} ({ex['name']}): got {got}, expected {want}"
        assert len(rx.bytes) == start + len(want), \
            f"exchange {n} ({ex['name']}): extra bytes {rx.bytes[start + len(want):]}"
        if "last_class" in ex:
            assert int(dut.last_class.value) == ex["last_class"]
        if "error" in ex:
            assert int(dut.error.value) == ex["error"]
