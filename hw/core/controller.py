"""The controller: walks the step table and runs each step's loops.

States: START (load the loop counters), RUN (engine steps issue one tap per cycle; INPUT steps
wait for the input stage's image; LOAD steps take their stream; DUMP steps stream a tensor
out), DRAIN (wait for the pipeline), LOGITS (the head's classes through the logit
requantizer), EMIT (the logits and the class out), NEXT (the next step; after the last, the
first again). Only the step kinds the table holds get their logic (`CorePlan.kinds`).

An engine step's taps run along (pixel group, output group, input group, ky, kx), kx
innermost; the weight words run along the same order and start over for every pixel group.
"""
from amaranth import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.core.feature_maps import FeatureMaps
from hw.core.head import Head
from hw.core.input_stage import InputStage
from hw.core.layouts import COUNT, OUTPUT_PIXEL, POSITION, TAP
from hw.blocks.pipeline import count_nested
from hw.compiler.schedule import CONV, DUMP, HEAD, INPUT, LOAD, POOL


class Controller(wiring.Component):
    def __init__(self, plan):
        self.plan = plan
        super().__init__({
            "fields": In(plan.step_layout),
            "step": Out(range(max(2, len(plan.steps)))),
            "advance": Out(1),                                  # NEXT: the next step from the next cycle on
            "issue": Out(1),                                    # a tap this cycle
            "tap": Out(TAP),
            "out_pixels": Out(data.ArrayLayout(OUTPUT_PIXEL, plan.pixels_per_cycle)),
            "weight_addr": Out(range(max(2, len(plan.images.weights)))),
            "position": Out(POSITION),                          # of LOAD / DUMP beats
            "image_ready": In(1),                               # the input stage's
            "image_wait": Out(1),                               # the INPUT step waits for it
            "take_words": Out(1), "word_taken": In(1),
            "logits": Out(1),                                   # in the LOGITS state
            "class_index": Out(range(plan.padded_classes + 8)),
            "dump_word": In(plan.word),
            "emit_word": In(plan.emit_shape),
            "out": Out(stream.Signature(plan.out_layout)),
        })

    def elaborate(self, platform):
        m = Module()
        f, plan, out = self.fields, self.plan, self.out
        og, ig, ky, kx, pg = (Signal(COUNT, name=n) for n in ("og", "ig", "ky", "kx", "pg"))
        oy = [Signal(OUTPUT_PIXEL["y"].shape, name=f"oy{p}") for p in range(plan.pixels_per_cycle)]
        ox = [Signal(COUNT, name=f"ox{p}") for p in range(plan.pixels_per_cycle)]
        waddr = Signal.like(self.weight_addr)
        lg, ly, lx = (Signal(COUNT, name=n) for n in ("lg", "ly", "lx"))
        # DUMP: the address out at phase 0, the feature maps' read (`FeatureMaps.read_latency`
        # cycles), the word offered on `out` at the last phase.
        dump_data_phase = Signal(range(FeatureMaps.read_latency + 1))
        k = Signal.like(self.class_index)
        drain = Signal(range(64))
        m.d.comb += [self.tap.og.eq(og), self.tap.ig.eq(ig), self.tap.ky.eq(ky), self.tap.kx.eq(kx),
                     self.weight_addr.eq(waddr), self.class_index.eq(k),
                     self.position.g.eq(lg), self.position.y.eq(ly), self.position.x.eq(lx)]
        m.d.comb += [self.out_pixels[p].y.eq(oy[p]) for p in range(plan.pixels_per_cycle)]
        m.d.comb += [self.out_pixels[p].x.eq(ox[p]) for p in range(plan.pixels_per_cycle)]

        engine = (f.kind == CONV) | (f.kind == POOL) | (f.kind == HEAD)
        at_kx, at_ky = kx == f.kx_last, ky == f.ky_last
        at_ig, at_og, at_pg = ig == f.g_in_last, og == f.g_out_last, pg == f.pg_last
        tap_last = at_kx & at_ky & at_ig
        word_last = tap_last & at_og         # the pixels move on after this tap
        m.d.comb += [self.tap.first.eq((ig == 0) & (ky == 0) & (kx == 0)), self.tap.last.eq(tap_last)]

        with m.FSM():
            with m.State("START"):
                m.d.sync += [y.eq(start) for y, start in zip(oy, f.start_y)]
                m.d.sync += [x.eq(start) for x, start in zip(ox, f.start_x)]
                m.d.sync += [pg.eq(0), og.eq(0), ig.eq(0), ky.eq(0), kx.eq(0), waddr.eq(f.wbase),
                             ly.eq(0), lx.eq(0), lg.eq(0), dump_data_phase.eq(0), k.eq(0)]
                m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += self.issue.eq(engine)
                if LOAD in plan.kinds:
                    m.d.comb += self.take_words.eq(f.kind == LOAD)
                with m.If(engine):
                    done = count_nested(m, [(kx, at_kx), (ky, at_ky), (ig, at_ig), (og, at_og),
                                            (pg, at_pg)])
                    with m.If(word_last):
                        for y, x in zip(oy, ox):
                            wrap = x + f.adv_x >= f.w_out
                            m.d.sync += [x.eq(Mux(wrap, x + f.adv_x - f.w_out, x + f.adv_x)),
                                         y.eq(y + f.adv_y + wrap)]
                    m.d.sync += waddr.eq(Mux(word_last, f.wbase, waddr + 1))
                    with m.If(done):
                        m.d.sync += drain.eq(plan.pipeline_depth)
                        m.next = "DRAIN"
                with m.Elif(f.kind == INPUT):
                    m.d.comb += self.image_wait.eq(~self.image_ready)
                    with m.If(self.image_ready):
                        m.next = "NEXT"
                if LOAD in plan.kinds:        # nor LOAD steps
                    with m.Elif(self.word_taken):
                        with m.If(count_nested(m, [(lx, lx == f.w_out_last), (ly, ly == f.h_out_last),
                                                   (lg, lg == f.g_out_last)])):
                            m.d.sync += drain.eq(InputStage.word_latency)
                            m.next = "DRAIN"
                if DUMP in plan.kinds:        # a board's table has no DUMP steps
                    with m.Elif(f.kind == DUMP):
                        with m.If(dump_data_phase != FeatureMaps.read_latency):
                            m.d.sync += dump_data_phase.eq(dump_data_phase + 1)
                        with m.Else():
                            m.d.comb += [out.valid.eq(1), out.payload.data.eq(self.dump_word),
                                         out.payload.last.eq((lx == f.w_in_last) & (ly == f.h_in_last)
                                                             & (lg == f.g_src_last))]
                            with m.If(out.ready):
                                m.d.sync += dump_data_phase.eq(0)
                                with m.If(count_nested(m, [(lx, lx == f.w_in_last), (ly, ly == f.h_in_last),
                                                           (lg, lg == f.g_src_last)])):
                                    m.next = "NEXT"
            with m.State("DRAIN"):
                m.d.sync += drain.eq(drain - 1)
                with m.If(drain == 0):
                    with m.If(f.kind == HEAD):
                        m.next = "LOGITS"
                    with m.Else():
                        m.next = "NEXT"
            with m.State("LOGITS"):
                m.d.comb += self.logits.eq(1)
                m.d.sync += k.eq(k + 1)
                with m.If(k == plan.num_classes + Head.logit_latency):
                    m.d.sync += k.eq(0)
                    m.next = "EMIT"
            with m.State("EMIT"):
                m.d.comb += [out.valid.eq(1), out.payload.last.eq(k == plan.num_classes),
                             out.payload.data.eq(self.emit_word)]
                with m.If(out.ready):
                    m.d.sync += k.eq(k + 1)
                    with m.If(k == plan.num_classes):
                        m.next = "NEXT"
            with m.State("NEXT"):
                m.d.comb += self.advance.eq(1)
                m.d.sync += self.step.eq(Mux(self.step == len(plan.steps) - 1, 0, self.step + 1))
                m.next = "START"
        return m
