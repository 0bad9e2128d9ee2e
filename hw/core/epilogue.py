"""The epilogue: finished words -> requantize -> residual add -> write -> requantize -> write.

The pixels' finished words queue here and leave one per cycle (every output takes at least
`pixels_per_cycle` taps, so the queue is empty when the next words finish). For the word at the head of
the queue (E1) the parameter word and the shortcut word have been read; `lanes` requantizers
(E1 -> E3) while the shortcut word is registered and shifted to the sum's binary point (output
groups past the stored shortcut add zero, the zero channels of a downsampling block), the
residual add (E3) and its clamp (-> E4), the write to dst (E4), `lanes` second requantizers for
the next layer's input (E4 -> E6) and its write to dst2 (E6).
"""
from amaranth import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hw.core.feature_maps import FeatureMaps, word_address
from hw.core.layouts import COUNT, TAG, finished_words, write_request
from hw.core.param_store import ParamStore, bank_word, operands, requantizer_for
from hw.blocks.pipeline import delay, lane_groups, own_copy
from hw.blocks.requant import Requantizer
from hw.compiler.schedule import CONV, POOL

QUEUE_LATENCY = 1       # a finished word into the queue's head
ADD_LATENCY = 2         # the residual add, then its clamp
# E1 -> the aligned shortcut: the word read, then shifted left, then rounded right
SHORTCUT_LATENCY = FeatureMaps.read_latency + 1


class Epilogue(wiring.Component):
    latency = QUEUE_LATENCY + Requantizer.latency + ADD_LATENCY + Requantizer.latency

    def __init__(self, plan):
        self.plan = plan
        images = plan.images
        super().__init__({
            "fields": In(plan.step_layout),
            "words": In(finished_words(plan)),
            "finishing": In(data.StructLayout({"valid": 1, "og": COUNT})),   # `words`, a cycle early
            "param_group": Out(COUNT),        # the output group whose parameters are read
            "param2_group": Out(COUNT),       # the same for the second requantizers
            "params_word": In(bank_word(plan, images.params)),
            "params2_word": In(bank_word(plan, images.params2)),
            "shortcut_addr": Out(plan.addr_bits), "shortcut_data": In(plan.word),
            "write": Out(write_request(plan)), "second_write": Out(write_request(plan)),
        })

    def elaborate(self, platform):
        m = Module()
        plan, f, words = self.plan, self.fields, self.words
        a, vb, images = plan.act_bits, plan.val_bits, plan.images
        entry = words.out_pixels.shape().elem_shape
        queue = [Signal(entry, name=f"queue{p}") for p in range(plan.pixels_per_cycle)]
        # New words load, else the queue moves up one. `words.valid` would reach every bit of
        # the queue; each tag and each group of lanes loads on a copy of its own instead (made
        # from `finishing`, the same a cycle early).
        for p, q in enumerate(queue):
            up = queue[p + 1] if p + 1 < len(queue) else None
            new_word = words.out_pixels[p]
            parts = [(q.tag, new_word.tag, up.tag if up is not None else None)]
            parts += [([q.acc[o] for o in group], [new_word.acc[o] for o in group],
                       [up.acc[o] for o in group] if up is not None else None)
                      for group in lane_groups(plan.lanes)]
            for k, (held, incoming, following_entry) in enumerate(parts):
                with m.If(own_copy(m, self.finishing.valid, f"load{p}_{k}")):
                    m.d.sync += Cat(held).eq(Cat(incoming))
                with m.Else():
                    if following_entry is not None:
                        m.d.sync += Cat(held).eq(Cat(following_entry))
                    elif k == 0:
                        m.d.sync += q.tag.valid.eq(0)
        # The word entering E1 next cycle: the first pixel of new words, else the queue's second.
        following = Signal(TAG)
        new = words.out_pixels[0].tag.as_value()
        m.d.comb += following.eq(Mux(words.valid, new, queue[1].tag.as_value()) if plan.pixels_per_cycle > 1 else new)
        out_addr = Signal(plan.addr_bits)
        m.d.comb += [out_addr.eq(word_address(following.og, following.y, following.x, f.hb_out, f.wb_out)),
                     self.shortcut_addr.eq(out_addr)]
        # The parameter store takes ParamStore.latency = 2 cycles, so the group is named the
        # cycle before the words arrive; all pixels of a queue share their output group.
        word_og = Signal(COUNT)
        early = self.finishing
        with m.If(early.valid):
            m.d.sync += word_og.eq(early.og)
        m.d.comb += self.param_group.eq(Mux(early.valid, early.og, word_og))

        # E1: the queue's head; its parameters and shortcut word are out.
        e1_valid, e1_acc = queue[0].tag.valid, queue[0].acc
        e1_addr, e1_og = delay(m, out_addr, 1, "e1addr"), delay(m, following.og, 1, "e1og")
        first = self._requantizers(m, "rq", images.params, plan.acc_bits, e1_acc, self.params_word,
                                   f.lo, f.hi)
        # Beside the requantizers: the shortcut word (out `FeatureMaps.read_latency` cycles after
        # its address, named the cycle before E1) chosen and shifted left, then rounded and
        # shifted right to the sum's binary point, and held until E3.
        rl = Requantizer.latency
        sc_word = self.shortcut_data
        # Whether the word's output group is stored (past it a downsampling block adds zero),
        # ready with the shortcut word `read_latency - 1` cycles after E1: the group's delay,
        # the compare's register, then each lane's own copy of the answer.
        sc_stored = Signal()
        m.d.sync += sc_stored.eq(delay(m, e1_og, FeatureMaps.read_latency - 3, "scog") < f.sc_groups)
        # E3 (E1 + the requantizer's latency): the residual add, then its clamp -> E4.
        e3_valid, e3_addr = delay(m, e1_valid, rl, "e3v"), delay(m, e1_addr, rl, "e3addr")
        e4 = []
        for o, rq in enumerate(first):
            # The step's fields stand still while its words pass: each lane reads its own copies
            # (a cycle late), not one register routed to every lane.
            lf = {name: own_copy(m, f[name], f"{name}{o}")
                  for name in ("sc_signed", "add_l", "add_r", "add_lo", "add_hi", "add_en")}
            raw = sc_word[o]
            shortcut = Signal(signed(a + 1), name=f"sc{o}")
            m.d.comb += shortcut.eq(Mux(own_copy(m, sc_stored, f"sc_stored{o}"),
                                        Mux(lf["sc_signed"], raw.as_signed(), raw.as_unsigned()), 0))
            shifted = Signal(signed(a + 9), name=f"scl{o}")
            m.d.sync += shifted.eq(shortcut << lf["add_l"])
            aligned = Signal(signed(a + 10), name=f"scw{o}")
            add_r = lf["add_r"]
            m.d.sync += aligned.eq((shifted + Mux(add_r == 0, 0, (1 << add_r) >> 1)) >> add_r)
            total = Signal(signed(a + 11), name=f"sum{o}")
            m.d.sync += total.eq(rq.y + delay(m, aligned, rl - SHORTCUT_LATENCY, f"e3scw{o}"))
            value = Signal(signed(vb), name=f"e4_{o}")
            lo, hi = lf["add_lo"], lf["add_hi"]
            clamped = Mux(total < lo, lo, Mux(total > hi, hi, total))
            m.d.sync += value.eq(Mux(lf["add_en"], clamped, delay(m, rq.y, 1, f"rqy{o}")))
            e4.append(value)
        e4_valid = delay(m, e3_valid, ADD_LATENCY, "e4v")
        e4_addr = delay(m, e3_addr, ADD_LATENCY, "e4addr")
        m.d.comb += [self.write.en.eq(e4_valid & ((f.kind == CONV) | (f.kind == POOL))),
                     self.write.addr.eq(e4_addr), self.write.data.eq(Cat(*[v[:a] for v in e4]))]
        # E4: the second requantizers -> E6 (E4 + the requantizer's latency), written to dst2.
        # The second parameter word is read for E4: its group named ParamStore.second_latency
        # cycles before (a delay of the group, not of the word: 10 bits, not 16 x 39).
        m.d.comb += self.param2_group.eq(delay(m, e1_og, rl + ADD_LATENCY - ParamStore.second_latency, "p2og"))
        second = self._requantizers(m, "rq2_", images.params2, vb, e4, self.params2_word, f.lo2, f.hi2)
        e6_valid, e6_addr = delay(m, e4_valid, rl, "e6v"), delay(m, e4_addr, rl, "e6addr")
        m.d.comb += [self.second_write.en.eq(e6_valid & (f.kind == CONV) & (f.dst2 != plan.buffers)),
                     self.second_write.addr.eq(e6_addr),
                     self.second_write.data.eq(Cat(*[rq.y[:a] for rq in second]))]
        return m

    def _requantizers(self, m, name, bank, in_width, inputs, word, lo, hi):
        """`lanes` requantizers on `inputs`, operands from `word` of `bank`."""
        out = []
        for o, x in enumerate(inputs):
            rq = requantizer_for(self.plan, bank, in_width, self.plan.val_bits)
            m.submodules[f"{name}{o}"] = rq
            m.d.comb += [rq.x.eq(x), *operands(rq, word[o]), rq.lo.eq(lo), rq.hi.eq(hi)]
            out.append(rq)
        return out
