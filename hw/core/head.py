"""The head: global sums of the 1x1 conv, the logits, the argmax and what EMIT sends.

During the head step the engine's finished words (one pixel at a time), registered with their
tags decoded, add into one global sum per class. In the LOGITS state the controller counts k
over the classes: k's parameter word is read (`ParamStore.latency` cycles later) and registered
as it leaves the ROM (a block RAM on the ECP5, whose clock-to-out leaves no room for the mux over
the lanes), then k's sum goes through the logit requantizer (none for a model without one: the
sum is the logit); each logit is kept, and the largest so far with its class (ties keep the
lower class). EMIT sends the logits in class order, then the class.
"""
from amaranth import Array, Cat, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from common.bits import ceil_div
from hw.core.layouts import finished_words
from hw.core.param_store import ParamStore, bank_field, bank_word, operands, requantizer_for
from hw.blocks.pipeline import delay
from hw.blocks.requant import Requantizer
from hw.compiler.schedule import HEAD


class Head(wiring.Component):
    params_latency = ParamStore.latency + 1                 # k's parameter word, its register
    logit_latency = params_latency + Requantizer.latency

    def __init__(self, plan):
        self.plan = plan
        super().__init__({
            "fields": In(plan.step_layout),
            "words": In(finished_words(plan)),
            "logits": In(1), "class_index": In(range(plan.padded_classes + 8)),
            "param_group": Out(range(plan.padded_classes + 8)),
            "params_word": In(bank_word(plan, plan.images.params)),
            "emit_word": Out(plan.emit_shape),       # logit k, or the class when k = classes
        })

    def elaborate(self, platform):
        m = Module()
        plan, f, k = self.plan, self.fields, self.class_index
        lanes, classes, bank = plan.lanes, plan.num_classes, plan.images.params
        sums = [Signal(signed(plan.sum_bits), name=f"gsum{c}") for c in range(plan.padded_classes)]
        # The engine's word is registered here with its tag decoded (whether it adds, its first
        # pixel, its output group one-hot) before it adds: the tag's route across the chip and
        # the decode left no room for the add (the routed `make train` model's worst path, 12.1
        # ns). The sums are final long before LOGITS: the head step drains for the epilogue's
        # latency too, which it does not use.
        word = self.words.out_pixels[0]
        groups = ceil_div(plan.padded_classes, lanes)
        adds, first_pixel = Signal(), Signal()
        group = Signal(groups)
        acc = Signal.like(word.acc)
        m.d.sync += [adds.eq(self.words.valid & (f.kind == HEAD)),
                     first_pixel.eq((word.tag.y == 0) & (word.tag.x == 0)),
                     group.eq(Cat(word.tag.og == g for g in range(groups))), acc.eq(word.acc)]
        with m.If(adds):
            for c, total in enumerate(sums):
                with m.If(group[c // lanes]):
                    m.d.sync += total.eq(Mux(first_pixel, 0, total) + acc[c % lanes])

        m.d.comb += self.param_group.eq(k >> ceil_log2(lanes))
        k1 = delay(m, k, self.params_latency, "k1")
        params_word = delay(m, self.params_word, 1, "params_word")
        class_sum = Array(sums)[k1]
        # The sum is the logit unless the model requantizes it: then the logit requantizer,
        # with the same latency either way.
        logit_value = delay(m, class_sum, Requantizer.latency, "rawsum")
        if plan.head_requant:
            m.submodules.logit_rq = rq = requantizer_for(plan, bank, plan.sum_bits, plan.logit_bits)
            lane_field = data.View(bank_field(bank),
                                   Array([params_word[o].as_value() for o in range(lanes)])[k1 % lanes])
            m.d.comb += [rq.x.eq(class_sum), *operands(rq, lane_field), rq.lo.eq(f.lo), rq.hi.eq(f.hi)]
            logit_value = rq.y
        k_done = delay(m, k1, Requantizer.latency, "kd")
        logit_valid = delay(m, delay(m, self.logits & (k < classes), self.params_latency, "lv0"),
                            Requantizer.latency, "lv")
        logits = [Signal(signed(plan.logit_bits), name=f"logit{c}") for c in range(classes)]
        best = Signal(signed(plan.logit_bits))
        cls = Signal(range(max(2, classes)))
        with m.If(logit_valid):
            for c in range(classes):
                with m.If(k_done == c):
                    m.d.sync += logits[c].eq(logit_value)
            with m.If((k_done == 0) | (logit_value > best)):   # strict: ties keep the lower class
                m.d.sync += [best.eq(logit_value), cls.eq(k_done)]
        m.d.comb += self.emit_word.eq(Mux(k == classes, cls,
                                          Array([v.as_signed() for v in logits])[k[:plan.class_bits]]
                                          .as_signed()))
        return m
