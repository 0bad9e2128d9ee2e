"""cocotb bench for hw.link.framing.FramedAccelerator: the host's UART at the real baud rate.

Parameters: `frames`, the path of a JSON plan; `result` (optional), a path where the bench
writes what came back. The plan: `clock_ps` (the clock period: 10000 for 100 MHz), `baud`,
`reply_timeout_cycles`, `check` (compare the replies byte for byte; without it only their
lengths are used, and the host side reads the result) and `exchanges`, each with
- `frames`: byte lists the host sends, each as one burst;
- `expect`: the replies it waits for, in order (byte lists);
- `ahead` (optional): the host sends frames up to reply r + `ahead` before it waits for reply r
  (1: one frame ahead); by default every frame goes out before the first reply is awaited;
- `host_baud_scale` (optional): the host's rate against `baud` (1.02: 2% fast);
- `quiet_bits` (optional): bit times of idle line after the replies, which must bring nothing;
- `last_class`, `error` (optional): the design's outputs after the exchange.

Both directions run in real time from the baud rate, independent of the design's bit timing:
bit j of a burst starts round(j * 10^12 / baud) ps after the burst, so the rate does not drift;
the board's `tx` is decoded by sampling each bit (k + 1/2) bit times after the start bit's
falling edge. The result file holds, per exchange, the bytes that came back and the simulation
time (ps) at which each reply's last byte did.
"""
import json
from fractions import Fraction

import cocotb
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import ClockCycles, FallingEdge, Timer

from hw.link.protocol import BITS_PER_BYTE
from sim.benches.params import bench_params

START_BIT, STOP_BIT = 0, 1
DATA_BITS = BITS_PER_BYTE - 2       # 8N1: between the start and the stop bit


def now_ps():
    return get_sim_time("ps")


async def until(t_ps):
    if t_ps > now_ps():
        await Timer(t_ps - now_ps(), unit="ps")


def line_bits(data):
    """8N1: for each byte the start bit, its bits LSB first, the stop bit."""
    return [b for byte in data for b in (START_BIT, *((byte >> i) & 1 for i in range(DATA_BITS)), STOP_BIT)]


async def send(dut, data, baud):
    """Drive `data` on `rx` as one burst at `baud`."""
    origin = now_ps()
    bits = line_bits(data)
    for j, bit in enumerate(bits):
        await until(origin + round(Fraction(j * 10 ** 12, baud)))
        dut.rx.value = bit
    await until(origin + round(Fraction(len(bits) * 10 ** 12, baud)))


class LineReceiver:
    """Decodes the board's `tx` at `baud`: bytes, the time each one's stop bit was sampled, and
    the line errors seen (a start bit that was a glitch, a low stop bit)."""

    def __init__(self, dut, baud):
        self.dut, self.bit_ps = dut, Fraction(10 ** 12, baud)
        self.bytes, self.times, self.errors = [], [], []

    async def run(self):
        tx = self.dut.tx
        while True:
            if int(tx.value) == 1:
                await FallingEdge(tx)
            edge = now_ps()
            bits = []
            for k in range(BITS_PER_BYTE):
                await until(edge + round((k + Fraction(1, 2)) * self.bit_ps))
                bits.append(int(tx.value))
            if bits[0] != START_BIT:
                self.errors.append(f"glitch on tx after byte {len(self.bytes)}")
                continue
            if bits[-1] != STOP_BIT:
                self.errors.append(f"low stop bit in byte {len(self.bytes)}")
            self.bytes.append(sum(b << i for i, b in enumerate(bits[1:-1])))
            self.times.append(now_ps())

    async def wait_for(self, count, timeout_ps):
        """Until `count` bytes have come or `timeout_ps` has passed; polled once a byte time."""
        deadline = now_ps() + timeout_ps
        while len(self.bytes) < count and now_ps() < deadline:
            await Timer(round(BITS_PER_BYTE * self.bit_ps), unit="ps")


async def exchange(dut, line, ex, plan):
    """Play one exchange; returns the bytes that came back and the times its replies ended."""
    baud = plan["baud"]
    host_baud = round(baud * Fraction(str(ex.get("host_baud_scale", 1))))
    frames, expect = ex["frames"], ex["expect"]
    ahead = ex.get("ahead", len(frames))
    timeout_ps = plan["reply_timeout_cycles"] * plan["clock_ps"]
    start, sent, ends = len(line.bytes), 0, []
    for r, reply in enumerate(expect):
        while sent < len(frames) and sent <= r + ahead:
            await send(dut, frames[sent], host_baud)
            sent += 1
        need = start + sum(len(e) for e in expect[:r + 1])
        await line.wait_for(need, timeout_ps)
        assert len(line.bytes) >= need, \
            f"{ex['name']}: reply {r} timed out, got {line.bytes[start:]}"
        ends.append(line.times[need - 1])
    for frame in frames[sent:]:
        await send(dut, frame, host_baud)
    await until(now_ps() + round(ex.get("quiet_bits", 0) * line.bit_ps))
    return line.bytes[start:], ends


@cocotb.test()
async def exchanges(dut):
    params = bench_params("frames", result=None)
    with open(params["frames"]) as f:
        plan = json.load(f)
    Clock(dut.clk, plan["clock_ps"], unit="ps").start()
    dut.rx.value = 1
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 2)
    line = LineReceiver(dut, plan["baud"])
    cocotb.start_soon(line.run())
    results = []
    for n, ex in enumerate(plan["exchanges"]):
        got, ends = await exchange(dut, line, ex, plan)
        results.append(dict(name=ex["name"], bytes=got, reply_end_ps=ends))
        if params["result"]:
            with open(params["result"], "w") as f:
                json.dump(results, f)
        assert not line.errors, line.errors
        want = [b for reply in ex["expect"] for b in reply]
        assert len(got) == len(want), f"exchange {n} ({ex['name']}): extra bytes {got[len(want):]}"
        if plan["check"]:
            assert got == want, f"exchange {n} ({ex['name']}): got {got}, expected {want}"
            if "last_class" in ex:
                assert int(dut.last_class.value) == ex["last_class"], ex["name"]
            if "error" in ex:
                assert int(dut.error.value) == ex["error"], ex["name"]
