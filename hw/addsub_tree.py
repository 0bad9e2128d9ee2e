"""Add/subtract tree: the 1-bit-weight dot product, sum_j (w_j ? +x_j : -x_j), no multiplier.

Sign folding (HW-NOTES.md: ~10 instead of ~13 LUT per lane on Artix-7): a node carries a value
v and a sign bit w, meaning w ? +v : -v. Two nodes combine as
    (wa ? +va : -va) + (wb ? +vb : -vb) = wa ? +(va +- vb) : -(va +- vb),
subtracting when the signs differ: va + (vb ^ d) + d with d = wa ^ wb, which the carry chain
does in one LUT per bit (the inversion folds into the adder's LUT, d is the carry-in). The
leaves are (x_j, w_j); only the root pays for a negation. A register after every level
(measured cheaper than every other level). Latency: ceil(log2(lanes)) levels + the root's
negation = 1 + ceil(log2(lanes)) cycles.
"""
from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hw.schedule import ceil_log2


class AddSubTree(wiring.Component):
    @staticmethod
    def latency_for(lanes):
        """The tree's levels, then the root's negation."""
        return 1 + ceil_log2(lanes)

    @staticmethod
    def out_width_for(lanes, width):
        # -x of the most negative input needs one more bit; each level one more.
        return width + 1 + ceil_log2(lanes)

    def __init__(self, lanes, width):
        self.lanes, self.width = lanes, width
        self.levels = ceil_log2(lanes)
        self.latency = self.latency_for(lanes)
        self.out_width = self.out_width_for(lanes, width)
        super().__init__({
            "x": In(data.ArrayLayout(signed(width), lanes)),
            "w": In(unsigned(lanes)),
            "sum": Out(signed(self.out_width)),
        })

    def elaborate(self, platform):
        m = Module()
        level = [(self.x[j], self.w[j]) for j in range(self.lanes)]
        depth = 0
        while len(level) > 1:
            depth += 1
            pairs = [level[i:i + 2] for i in range(0, len(level), 2)]
            level = []
            for i, pair in enumerate(pairs):
                # A value of `depth` levels holds a sum of 2^depth terms of width+1 bits at most.
                v = Signal(signed(self.width + depth), name=f"v{depth}_{i}")
                s = Signal(name=f"s{depth}_{i}")
                (va, wa), rest = pair[0], pair[1:]
                if rest:
                    (vb, wb), = rest
                    d = wa ^ wb
                    m.d.sync += v.eq(va + (vb.as_unsigned() ^ d.replicate(len(vb))).as_signed() + d)
                else:
                    m.d.sync += v.eq(va)
                m.d.sync += s.eq(wa)
                level.append((v, s))
        (v, s), = level
        m.d.sync += self.sum.eq(Mux(s, v, -v))
        return m
