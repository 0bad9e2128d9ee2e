"""The conv engine: one tap per cycle for `pixels` output pixels, `lanes` x `lanes` add/subtract
lanes per pixel.

Stage A (the tap's cycle): per pixel, the input position and whether it is inside the map, and
the address of its source word, registered (the position's adders, the address's shifts and the
buffers' address muxes did not fit one 10 ns cycle with it). The feature maps register it again
at their block RAMs, and the words as they leave them; the weight ROM (hw/blocks/banked_rom.py) does
the same, since a block RAM's clock-to-out leaves no room for logic. Stage B (`READ_LATENCY` =
6 cycles after the tap): each pixel's `lanes`
activations (zero outside the map) go into `lanes` add/subtract trees against the weight word's
`lanes` x `lanes` bits, shared by the pixels; a pool step (depthwise) takes lane o of the input
for output o instead. The trees' sums accumulate over the taps of a word; after its last tap the
word is final (`result.valid`) for one cycle (hw/blocks/accumulators.py: DSP48E1s on a 7-series part);
`finishing` names its output group the cycle before, so the epilogue's parameter read can start
early.

What reaches many trees comes from registers near them (at 16 x 4 one register could not sit
beside 64 trees spread over a fifth of the chip): each pixel's trees read a weight register of
their own, and each group of four trees (`lane_groups`) a copy of the pixel's word, the
accumulators' controls and the step's fields.
"""
from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hw.blocks.accumulators import Accumulators
from hw.blocks.addsub_tree import AddSubTree
from hw.blocks.banked_rom import BankedRom
from hw.core.feature_maps import FeatureMaps, word_address
from hw.core.layouts import COUNT, OUTPUT_PIXEL, TAG, TAP, finished_words
from hw.blocks.pipeline import delay, delay_copies, lane_groups, own_copy

READ_LATENCY = 1 + FeatureMaps.read_latency     # the engine's address register, the feature maps' read


class ConvEngine(wiring.Component):
    @staticmethod
    def latency_for(lanes):
        """Cycles from a word's last tap to `result.valid`: the address register, the block-RAM
        read, its data register, the tree, the accumulator."""
        return READ_LATENCY + AddSubTree.latency_for(lanes) + 1

    def __init__(self, plan):
        self.plan = plan
        self.latency = self.latency_for(plan.lanes)
        super().__init__({
            "fields": In(plan.step_layout),
            "issue": In(1), "tap": In(TAP), "out_pixels": In(data.ArrayLayout(OUTPUT_PIXEL, plan.pixels_per_cycle)),
            "weight_addr": In(range(max(2, len(plan.images.weights)))),
            "read_addr": Out(data.ArrayLayout(plan.addr_bits, plan.pixels_per_cycle)),
            "read_data": In(data.ArrayLayout(data.ArrayLayout(plan.word, len(lane_groups(plan.lanes))),
                                              plan.pixels_per_cycle)),   # a copy per tree group
            "result": Out(finished_words(plan)),
            "finishing": Out(data.StructLayout({"valid": 1, "og": COUNT})),     # result, a cycle early
        })

    def elaborate(self, platform):
        m = Module()
        plan, f, tap = self.plan, self.fields, self.tap
        lanes, a = plan.lanes, plan.act_bits
        tree_latency = AddSubTree.latency_for(lanes)
        # The weight word arrives with the activations.
        # The weight word reaches the trees of every pixel: each pixel's trees read a copy of
        # their own, its register the ROM's last (the ROM a cycle shorter).
        m.submodules.weights = weights = BankedRom(unsigned(lanes * lanes), plan.images.weights,
                                                   READ_LATENCY - 1, parts=len(lane_groups(lanes)))
        m.d.comb += weights.addr.eq(self.weight_addr)

        # -- stage A: positions and addresses ------------------------------------------------
        group = Mux(f.depthwise, tap.og, tap.ig)
        inside, tags = [], []
        for p, pixel in enumerate(self.out_pixels):
            iy, ix = Signal(signed(13), name=f"iy{p}"), Signal(signed(12), name=f"ix{p}")
            m.d.comb += [iy.eq(Mux(f.stride2, pixel.y << 1, pixel.y) + tap.ky - f.pad_y),
                         ix.eq(Mux(f.stride2, pixel.x << 1, pixel.x) + tap.kx - f.pad_x)]
            inside.append((iy >= 0) & (iy < f.h_in) & (ix >= 0) & (ix < f.w_in))
            m.d.sync += self.read_addr[p].eq(word_address(group, iy[:10], ix[:10], f.hb_in, f.wb_in))
            tag = Signal(TAG, name=f"tag{p}")
            m.d.comb += [tag.og.eq(tap.og), tag.y.eq(pixel.y), tag.x.eq(pixel.x),
                         tag.valid.eq(pixel.y < f.h_out)]
            tags.append(tag)

        # -- stage B: words -> trees -> accumulators -----------------------------------------
        b_valid, b_first, b_last = (delay(m, s, READ_LATENCY, n) for s, n in
                                    ((self.issue, "valid"), (tap.first, "first"), (tap.last, "last")))
        c_valid, c_last = (delay(m, s, tree_latency, n) for s, n in ((b_valid, "cv"), (b_last, "cl")))
        done = Signal()
        m.d.sync += done.eq(c_valid & c_last)
        m.d.comb += [self.result.valid.eq(done), self.finishing.valid.eq(c_valid & c_last)]
        groups = lane_groups(lanes)
        for p, copies in enumerate(self.read_data):
            weight_bits = own_copy(m, weights.data, f"weights{p}")
            final_tag = Signal(TAG, name=f"etag{p}")
            c_tag = delay(m, delay(m, tags[p], READ_LATENCY, f"tag{p}"), tree_latency, f"ctag{p}")
            m.d.sync += final_tag.eq(c_tag)
            if p == 0:                   # the pixels of a step share their output group
                m.d.comb += self.finishing.og.eq(c_tag.og)
            m.d.comb += self.result.out_pixels[p].tag.eq(final_tag)
            b_insides = delay_copies(m, inside[p], READ_LATENCY, len(groups), f"inb{p}")
            # Each group of lanes has its accumulators' controls from registers of its own.
            c_valids = delay_copies(m, b_valid, tree_latency, len(groups), f"cv{p}")
            c_firsts = delay_copies(m, b_first, tree_latency, len(groups), f"cf{p}")
            for k, group in enumerate(groups):
                full_in, lane_in = self.tree_inputs(m, copies[k], b_insides[k],
                                                    own_copy(m, f.src_signed, f"src_signed{p}_{k}"), f"{p}_{k}")
                accumulators = Accumulators(len(group), plan.acc_bits,
                                            signed(AddSubTree.out_width_for(lanes, plan.lane_bits)),
                                            signed(a + 1))
                m.submodules[f"acc{p}_{k}"] = accumulators
                m.d.comb += [accumulators.depthwise.eq(own_copy(m, f.depthwise, f"depthwise{p}_{k}")),
                             accumulators.first.eq(c_firsts[k]), accumulators.enable.eq(c_valids[k])]
                for i, o in enumerate(group):
                    tree = AddSubTree(lanes, plan.lane_bits)
                    m.submodules[f"tree{p}_{o}"] = tree
                    m.d.comb += [tree.x[j].eq(lane_in[j]) for j in range(lanes)]
                    m.d.comb += tree.w.eq(weight_bits[o * lanes:(o + 1) * lanes])
                    through = delay(m, full_in[o], tree_latency, f"dw{p}_{o}")    # depthwise
                    m.d.comb += [accumulators.sums[i].eq(tree.sum), accumulators.terms[i].eq(through),
                                 self.result.out_pixels[p].acc[o].eq(accumulators.acc[i])]
        return m

    def tree_inputs(self, m, word, inside, src_signed, name):
        """A tree group's activations (zero outside the map), at full width and at the trees'
        width: what a conv reads fits lane_bits (maybe fewer than a stored slot), so the trees
        are that narrow; a pool step reads the residual stream at full width."""
        full, narrow = [], []
        for j in range(self.plan.lanes):
            raw = word[j]
            v = Signal(signed(self.plan.act_bits + 1), name=f"v{name}_{j}")
            m.d.comb += v.eq(Mux(inside, Mux(src_signed, raw.as_signed(), raw.as_unsigned()), 0))
            x = Signal(signed(self.plan.lane_bits), name=f"x{name}_{j}")
            m.d.comb += x.eq(v)
            full.append(v)
            narrow.append(x)
        return full, narrow
