"""Add/subtract tree: the 1-bit-weight dot product, sum_j (w_j ? +x_j : -x_j), no multiplier.

Sign folding (HW-NOTES.md: ~10 instead of ~13 LUT per lane on Artix-7): a node carries a value
v and a sign bit w, meaning w ? +v : -v. Two nodes combine as
    (wa ? +va : -va) + (wb ? +vb : -vb) = wa ? +(va +- vb) : -(va +- vb),
subtracting when the signs differ (d = wa ^ wb), which the carry chain does in one LUT per bit
(`add_or_subtract`). The leaves are (x_j, w_j); only the root pays for a negation. A register
after every level (measured cheaper than every other level). Latency: ceil(log2(lanes)) levels
+ the root's negation = 1 + ceil(log2(lanes)) cycles.
"""
from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from amaranth.utils import ceil_log2


def add_or_subtract(m, va, vb, subtract, name):
    """va + vb, or va - vb where `subtract` is 1, as one carry chain with va on its DI inputs.

    Computed as (2*va - (2*(vb ^ ~subtract) + ~subtract)) halved: va + vb for subtract = 0, va -
    vb for 1. A subtraction keeps va first: yosys puts an adder's first operand on the Xilinx
    carry chain's DI inputs but orders the operands of a sum by internal names, so the plain
    va + (vb ^ d) + d put the xor there in some designs and not in others (one more LUT per
    bit: 290 instead of 174 LUT for a 16-input tree of 9-bit inputs, depending only on where
    the tree sat in the hierarchy). The inversion and the xor fold into the carry chain's LUTs.
    The conv engine's accumulators use it too (acc + term, subtract = 0).
    """
    keep = ~subtract
    flipped = (vb.as_unsigned() ^ keep.replicate(len(vb))).as_signed()
    total = Signal(signed(max(len(va), len(vb)) + 2), name=name)
    m.d.comb += total.eq(Cat(Const(0, 1), va).as_signed() - Cat(keep, flipped).as_signed())
    return total[1:].as_signed()


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
                    m.d.sync += v.eq(add_or_subtract(m, va, vb, wa ^ wb, f"t{depth}_{i}"))
                else:
                    m.d.sync += v.eq(va)
                m.d.sync += s.eq(wa)
                level.append((v, s))
        (v, s), = level
        m.d.sync += self.sum.eq(Mux(s, v, -v))
        return m
