"""Reusable cocotb valid/ready stream driver and monitor, with random stalls on either side.

Signal names follow Amaranth's flattening of `amaranth.lib.stream` ports: `<name>__payload`,
`<name>__valid`, `<name>__ready`. Both sides act on the falling edge and sample on the rising.
While the other side is idle (ready or valid low) they sleep until it changes instead of waking
every cycle: long layers between stream phases cost no Python time.
"""
import random

from cocotb.triggers import FallingEdge, RisingEdge


class _StreamEnd:
    """One side of the stream `name` of the DUT: its payload/valid/ready signals and a stall
    pattern drawn from `seed`."""

    def __init__(self, dut, name, clock, stall, seed):
        self.payload = getattr(dut, f"{name}__payload")
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.clock, self.stall, self.rng = clock, stall, random.Random(seed)


class StreamDriver(_StreamEnd):
    """Sends payloads; between beats holds valid low with probability `stall`."""

    def __init__(self, dut, name, clock, stall=0.0, seed=0):
        super().__init__(dut, name, clock, stall, seed)
        self.accepted_at = []     # cycle number of each handshake
        self.valid.value = 0

    async def send(self, payloads, cycle):
        for p in payloads:
            await FallingEdge(self.clock)
            while self.rng.random() < self.stall:
                self.valid.value = 0
                await FallingEdge(self.clock)
            self.payload.value = p
            self.valid.value = 1
            while True:
                if not self.ready.value:
                    await self.ready.value_change
                await RisingEdge(self.clock)
                if self.ready.value:
                    self.accepted_at.append(cycle())
                    break
        await FallingEdge(self.clock)
        self.valid.value = 0


class StreamMonitor(_StreamEnd):
    """Collects payloads; holds ready low with probability `stall` each cycle."""

    def __init__(self, dut, name, clock, stall=0.0, seed=1):
        super().__init__(dut, name, clock, stall, seed)
        self.beats, self.seen_at = [], []
        self.ready.value = 0

    async def collect(self, count, cycle):
        while len(self.beats) < count:
            if not self.valid.value:
                await self.valid.value_change
            else:
                await FallingEdge(self.clock)
            self.ready.value = 0 if self.rng.random() < self.stall else 1
            await RisingEdge(self.clock)
            if self.valid.value and self.ready.value:
                self.beats.append(int(self.payload.value))
                self.seen_at.append(cycle())
        await FallingEdge(self.clock)
        self.ready.value = 0
