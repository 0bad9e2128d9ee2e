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
- `packets` (optional): the host's bytes reach the line as a USB-UART passes them on, in
  packets of `bytes` bytes (each frame cut from its start), the line idle `gaps_ps[k]` before
  packet k of the exchange (cyclically) and bytes back to back inside a packet;
- `quiet_bits` (optional): bit times of idle line after the replies, which must bring nothing;
- `last_class`, `error` (optional): the design's outputs after the exchange.

Or, instead of `exchanges`, a `session`: the host client's own code (hw.host.client's
`classify_stream`, run in a cocotb bridge thread against a simulated port) streams `images`
one frame ahead, retrying failed frames (`retries`, `quiet_ps` of silence before each, replies
awaited `reply_timeout_ps`), over a line with faults: each bit the host sends flipped with
probability `rx_flip`, each byte it sends dropped with `rx_drop`, each data bit the board
sends flipped with `tx_flip` (drawn from `seed`), the host's bytes cut into `packets` (as
above) if given. The result file then holds per image its reply (logits, class, cycles) or
its error, how many times its frame went out, and the simulated time.

Both directions run in real time from the baud rate, independent of the design's bit timing:
bit j of a burst starts round(j * 10^12 / baud) ps after the burst, so the rate does not drift;
the board's `tx` is decoded by sampling each bit (k + 1/2) bit times after the start bit's
falling edge. The result file holds, per exchange, the bytes that came back and the simulation
time (ps) at which each reply's last byte did.
"""
import json
import random
from fractions import Fraction

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.task import bridge, resume
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


async def drive(dut, bits, baud):
    """Drive line bits on `rx` back to back at `baud`."""
    origin = now_ps()
    for j, bit in enumerate(bits):
        await until(origin + round(Fraction(j * 10 ** 12, baud)))
        dut.rx.value = bit
    await until(origin + round(Fraction(len(bits) * 10 ** 12, baud)))


class LineReceiver:
    """Decodes the board's `tx` at `baud`: bytes, the time each one's stop bit was sampled, and
    the line errors seen (a start bit that was a glitch, a low stop bit). `flip`: the
    probability that each data bit arrives flipped (drawn from `rng`)."""

    def __init__(self, dut, baud, flip=0.0, rng=None):
        self.dut, self.bit_ps = dut, Fraction(10 ** 12, baud)
        self.bytes, self.times, self.errors = [], [], []
        self.flip, self.rng = flip, rng

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
            data = [b ^ (self.flip > 0 and self.rng.random() < self.flip) for b in bits[1:-1]]
            self.bytes.append(sum(b << i for i, b in enumerate(data)))
            self.times.append(now_ps())

    async def wait_for(self, count, timeout_ps):
        """Until `count` bytes have come or `timeout_ps` has passed; polled once a byte time."""
        deadline = now_ps() + timeout_ps
        while len(self.bytes) < count and now_ps() < deadline:
            await Timer(round(BITS_PER_BYTE * self.bit_ps), unit="ps")


class Host:
    """The host's side of the line: frames as bursts, or cut into USB packets with gaps; each
    bit flipped with probability `flip`, each byte dropped with `drop` (drawn from `rng`)."""

    def __init__(self, dut, baud, packets=None, flip=0.0, drop=0.0, rng=None):
        self.dut, self.baud = dut, baud
        self.packet_bytes = packets["bytes"] if packets else None
        self.gaps_ps = packets["gaps_ps"] if packets else [0]
        self.sent_packets = 0
        self.flip, self.drop, self.rng = flip, drop, rng

    async def send(self, frame):
        size = self.packet_bytes or len(frame)
        for i in range(0, len(frame), size):
            if self.packet_bytes:
                await until(now_ps() + self.gaps_ps[self.sent_packets % len(self.gaps_ps)])
                self.sent_packets += 1
            await drive(self.dut, self.faulty_bits(frame[i:i + size]), self.baud)

    def faulty_bits(self, data):
        if not (self.flip or self.drop):
            return line_bits(data)
        kept = [b for b in data if self.rng.random() >= self.drop]
        return [bit ^ (self.rng.random() < self.flip) for bit in line_bits(kept)]


async def exchange(dut, line, ex, plan):
    """Play one exchange; returns the bytes that came back and the times its replies ended."""
    baud = plan["baud"]
    host = Host(dut, round(baud * Fraction(str(ex.get("host_baud_scale", 1)))), ex.get("packets"))
    frames, expect = ex["frames"], ex["expect"]
    ahead = ex.get("ahead", len(frames))
    timeout_ps = plan["reply_timeout_cycles"] * plan["clock_ps"]
    start, sent, ends = len(line.bytes), 0, []
    for r, reply in enumerate(expect):
        while sent < len(frames) and sent <= r + ahead:
            await host.send(frames[sent])
            sent += 1
        need = start + sum(len(e) for e in expect[:r + 1])
        await line.wait_for(need, timeout_ps)
        assert len(line.bytes) >= need, \
            f"{ex['name']}: reply {r} timed out, got {line.bytes[start:]}"
        ends.append(line.times[need - 1])
    for frame in frames[sent:]:
        await host.send(frame)
    await until(now_ps() + round(ex.get("quiet_bits", 0) * line.bit_ps))
    return line.bytes[start:], ends


class SimPort:
    """A serial port for the host client's own code, run in a bridge thread: `write` sends on
    the host's line, `read` waits in simulated time for what the board's `tx` brought, at most
    `timeout_ps`, and `reset_input_buffer` drops what has come and is unread."""

    def __init__(self, host, line, timeout_ps):
        self.host, self.line, self.timeout_ps = host, line, timeout_ps
        self.unread, self.sent = 0, []

    def write(self, data):
        self.sent.append(bytes(data))
        resume(self.host.send)(list(data))

    def read(self, n):
        return resume(self._read)(n)

    async def _read(self, n):
        await self.line.wait_for(self.unread + n, self.timeout_ps)
        data = bytes(self.line.bytes[self.unread:self.unread + n])
        self.unread += len(data)
        return data

    def reset_input_buffer(self):
        self.unread = len(self.line.bytes)


async def session(dut, plan, result_path):
    """The client streams the session's images over a faulty line; writes what it got."""
    from hw.host.client import Retry, classify_stream
    from hw.link.protocol import FrameError, encode_frame
    s = plan["session"]
    rng = random.Random(s["seed"])
    line = LineReceiver(dut, plan["baud"], s.get("tx_flip", 0.0), rng)
    cocotb.start_soon(line.run())
    host = Host(dut, plan["baud"], s.get("packets"), s.get("rx_flip", 0.0), s.get("rx_drop", 0.0), rng)
    port = SimPort(host, line, s["reply_timeout_ps"])

    async def sleep_ps(ps):
        await Timer(ps, unit="ps")
    retry = Retry(s["retries"], s["quiet_ps"] * 1e-12, sleep=lambda seconds: resume(sleep_ps)(round(seconds * 1e12)))
    images = [np.asarray(x, np.uint8) for x in s["images"]]

    def run_client():
        return list(classify_stream(port, images, retry))
    replies = await bridge(run_client)()
    frames = [encode_frame(x) for x in images]
    out = dict(images=[dict(error=str(r), code=r.code) if isinstance(r, FrameError) else
                       dict(logits=r.logits, cls=r.cls, cycles=r.cycles) for r in replies],
               sends=[port.sent.count(f) for f in frames], sim_ps=now_ps())
    with open(result_path, "w") as f:
        json.dump(out, f)


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
    if "session" in plan:
        await session(dut, plan, params["result"])
        return
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
