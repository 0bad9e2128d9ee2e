"""The accelerator: the whole network on chip, one layer step at a time.

(Block diagram with these class names: docs/hardware.md, "The core, as its classes".)

The controller walks the step table (hw/core/step_table.py, built from hw/compiler/schedule.py) and runs each
step's loops (hw/core/controller.py); every component reads the current step's record. Conv, pool
and head steps issue one tap per cycle to the conv engine (hw/core/conv_engine.py), which reads
`pixels_per_cycle` source words from the feature-map buffers (hw/core/feature_maps.py) and the weight word,
and hands finished words to the epilogue (hw/core/epilogue.py: requantize, residual add, write,
requantize, write, with parameters from hw/core/param_store.py) and, in the head step, to the head
(hw/core/head.py: global sums, logits, argmax). The input stage (hw/core/input_stage.py) writes the image
from the `image` stream while its window is open (the INPUT step waits for it, and the next
image comes in while the last steps of this one run) and LOAD steps' words from `words`; DUMP
steps and the head's EMIT go out on `out`.
Every part is built from one `CorePlan` (hw/core/plan.py). Streams tolerate stalls on both sides.

Ports: `image` (one 8-bit channel value per beat, raster order, channels innermost), `words`
(whole feature-map words for LOAD steps), `out` (DUMP words, or the logits then the class with
`last`), `step` (the step being run), `image_wait` (the INPUT step waits for its image: the
link is behind).
"""
from amaranth import Module, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw.core.controller import Controller
from hw.core.conv_engine import ConvEngine
from hw.core.epilogue import Epilogue
from hw.core.feature_maps import FeatureMaps
from hw.core.head import Head
from hw.core.input_stage import InputStage
from hw.core.param_store import ParamStore
from hw.core.step_table import StepTable


class Accelerator(wiring.Component):
    def __init__(self, plan):
        self.plan = plan
        super().__init__({
            "image": In(stream.Signature(unsigned(8))),
            "words": In(stream.Signature(plan.word)),
            "out": Out(stream.Signature(plan.out_layout)),
            "step": Out(range(max(2, len(plan.steps)))),
            "image_wait": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        plan = self.plan
        m.submodules.table = table = StepTable(plan)
        m.submodules.controller = ctrl = Controller(plan)
        m.submodules.input_stage = inputs = InputStage(plan)
        m.submodules.engine = engine = ConvEngine(plan)
        m.submodules.params = params = ParamStore(plan)
        m.submodules.epilogue = epilogue = Epilogue(plan)
        m.submodules.head = head = Head(plan)
        m.submodules.feature_maps = maps = FeatureMaps(plan)
        for part in (ctrl, inputs, engine, params, epilogue, head, maps):
            m.d.comb += part.fields.eq(table.fields)
        m.d.comb += [table.advance.eq(ctrl.advance), self.step.eq(ctrl.step),
                     self.image_wait.eq(ctrl.image_wait)]

        wiring.connect(m, wiring.flipped(self.image), inputs.image)
        wiring.connect(m, wiring.flipped(self.words), inputs.words)
        m.d.comb += [inputs.step.eq(ctrl.step), inputs.advance.eq(ctrl.advance),
                     ctrl.image_ready.eq(inputs.image_ready),
                     inputs.take_words.eq(ctrl.take_words), ctrl.word_taken.eq(inputs.word_taken),
                     inputs.position.eq(ctrl.position)]

        m.d.comb += [engine.issue.eq(ctrl.issue), engine.tap.eq(ctrl.tap),
                     engine.out_pixels.eq(ctrl.out_pixels), engine.weight_addr.eq(ctrl.weight_addr),
                     maps.read_addr.eq(engine.read_addr), engine.read_data.eq(maps.read_data)]

        m.d.comb += [epilogue.words.eq(engine.result), epilogue.finishing.eq(engine.finishing),
                     head.words.eq(engine.result),
                     params.word_group.eq(epilogue.param_group), params.word2_group.eq(epilogue.param2_group),
                     params.logits.eq(ctrl.logits),
                     params.logit_group.eq(head.param_group),
                     epilogue.params_word.eq(params.word), epilogue.params2_word.eq(params.word2),
                     head.params_word.eq(params.word),
                     maps.shortcut_addr.eq(epilogue.shortcut_addr),
                     epilogue.shortcut_data.eq(maps.shortcut_data)]

        m.d.comb += [maps.epilogue_write.eq(epilogue.write), maps.second_write.eq(epilogue.second_write),
                     maps.word_write.eq(inputs.word_write), maps.pixel_write.eq(inputs.pixel_write),
                     maps.position.eq(ctrl.position)]

        m.d.comb += [head.logits.eq(ctrl.logits), head.class_index.eq(ctrl.class_index),
                     ctrl.dump_word.eq(maps.dump_data), ctrl.emit_word.eq(head.emit_word)]
        wiring.connect(m, ctrl.out, wiring.flipped(self.out))
        return m
