"""Add/subtract tree: the 1-bit-weight dot product, sum_j (w_j ? +x_j : -x_j), no multiplier.

The weight bit only chooses between x and -x; the sums then go through a binary adder tree
with a register after every level (measured cheaper on Artix-7 than registering every other
level: HW-NOTES.md). Latency: 1 (select) + ceil(log2(lanes)) cycles.
"""
from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hw.latency import tree_latency
from hw.schedule import ceil_log2


class AddSubTree(wiring.Component):
    @staticmethod
    def out_width_for(lanes, width):
        # -x of the most negative input needs one more bit; each level one more.
        return width + 1 + ceil_log2(lanes)

    def __init__(self, lanes, width):
        self.lanes, self.width = lanes, width
        self.levels = ceil_log2(lanes)
        self.latency = tree_latency(lanes)
        self.out_width = self.out_width_for(lanes, width)
        super().__init__({
            "x": In(data.ArrayLayout(signed(width), lanes)),
            "w": In(unsigned(lanes)),
            "sum": Out(signed(self.out_width)),
        })

    def elaborate(self, platform):
        m = Module()
        level = []
        for j in range(self.lanes):
            t = Signal(signed(self.width + 1), name=f"sel{j}")
            m.d.sync += t.eq(Mux(self.w[j], self.x[j], -self.x[j]))
            level.append(t)
        depth = 0
        while len(level) > 1:
            depth += 1
            pairs = [level[i:i + 2] for i in range(0, len(level), 2)]
            level = []
            for i, pair in enumerate(pairs):
                r = Signal(signed(self.width + 1 + depth), name=f"l{depth}_{i}")
                m.d.sync += r.eq(pair[0] + pair[1] if len(pair) == 2 else pair[0])
                level.append(r)
        m.d.comb += self.sum.eq(level[0])
        return m
