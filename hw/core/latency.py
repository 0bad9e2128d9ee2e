"""Analytic latency of the accelerator: cycles per step, per image, images/s, lane utilization.

Counts the controller's cycles exactly as hw/core/controller.py spends them (the simulation checks
it), from the latencies the components declare: every step costs START + NEXT (2 cycles) plus
- engine steps (conv, pool, head): one tap per cycle for P pixels at once (P = step_pixels),
  ceil(H_out*W_out / P)*G_out*G_in*(kernel rows)*(kernel columns walked), then the drain (`pipeline_depth`: the conv engine, the
  epilogue, one cycle per extra pixel queued for the epilogue, the feature maps' registered
  write, a spare cycle, and the cycle that leaves DRAIN); the head adds the logits (classes +
  `Head.logit_latency` + 1 cycles) and streams classes + 1 beats;
- input: the image's beats (C*H*W, one per cycle from the step's START) +
  `InputStage.pixel_latency_for(columns)`; but image to image, the next image comes in from
  step `schedule.input_opens` on, while the last steps of this one run: then the INPUT step
  costs 3 cycles (START, RUN finding the image in, NEXT) plus what the image still lacks;
  load: one word per cycle + `InputStage.word_latency` + 1 (both latencies end with the
  registered write);
- dump: `DUMP_CYCLES` per word (the address, the feature maps' read, the beat).
"""
from dataclasses import dataclass

from common.bits import ceil_div
from hw.core.conv_engine import ConvEngine
from hw.core.epilogue import Epilogue
from hw.core.feature_maps import FeatureMaps
from hw.core.head import Head
from hw.core.input_stage import InputStage
from hw.compiler.schedule import CONV, DUMP, HEAD, INPUT, LOAD, POOL, groups, step_pixels, taps_per_output

STEP_OVERHEAD = 2          # START and NEXT
DRAIN_EXIT = 1             # DRAIN counts its start value down to 0 inclusive
DUMP_CYCLES = 1 + FeatureMaps.read_latency     # per word: the address, the read, the beat
SPARE = 1                  # a cycle of slack after the last write of an engine step


def pipeline_depth(lanes, pixels_per_cycle=1):
    """Drain after the last tap: the engine, the epilogue, the words of the other pixels queued
    for the epilogue (one per cycle), the feature maps' registered write, and a spare cycle.

    >>> from hw.blocks.addsub_tree import AddSubTree
    >>> AddSubTree.latency_for(16), ConvEngine.latency_for(16), Epilogue.latency
    (5, 12, 19)
    >>> pipeline_depth(16, 2)
    34
    """
    return (ConvEngine.latency_for(lanes) + Epilogue.latency + pixels_per_cycle - 1
            + FeatureMaps.write_latency + SPARE)


def taps(step, lanes, pixels_per_cycle=1):
    """Engine cycles of a step: taps of all its outputs, `step_pixels` pixels at a time."""
    c_out, h, w = step.out_shape if step.kind != HEAD else (step.out_shape[0],) + step.src_shape[1:]
    pixel_groups = ceil_div(h * w, step_pixels(step, lanes, pixels_per_cycle))
    return pixel_groups * groups(c_out, lanes) * taps_per_output(step, lanes)


def step_cycles(step, lanes, pixels_per_cycle=1):
    if step.kind in (CONV, POOL, HEAD):
        cycles = (taps(step, lanes, pixels_per_cycle) + pipeline_depth(lanes, pixels_per_cycle)
                  + DRAIN_EXIT)
        if step.kind == HEAD:
            classes = step.out_shape[0]
            logits = classes + Head.logit_latency + 1      # + the cycle the last logit is kept
            cycles += logits + classes + 1                 # EMIT: the logits, then the class
        return cycles + STEP_OVERHEAD
    if step.kind == INPUT:
        return input_cycles(step, 0)
    if step.kind == LOAD:
        c, h, w = step.out_shape
        return groups(c, lanes) * h * w + InputStage.word_latency + DRAIN_EXIT + STEP_OVERHEAD
    if step.kind == DUMP:
        c, h, w = step.src_shape
        return DUMP_CYCLES * groups(c, lanes) * h * w + STEP_OVERHEAD
    raise ValueError(step.kind)


def input_cycles(step, window):
    """The INPUT step when the image's beats began `window` cycles before its START (0: at
    its START, as for the first image)."""
    c, h, w = step.src_shape
    image = c * h * w + InputStage.pixel_latency_for(step.columns)    # first beat -> last word
    return STEP_OVERHEAD + 1 + max(0, image - 1 - window)


def useful_ops(step):
    """Add/subtract operations the layer needs: one per weight per output pixel."""
    if step.kind not in (CONV, HEAD):
        return 0
    c_out = step.out_shape[0]
    h, w = step.out_shape[1:] if step.kind == CONV else step.src_shape[1:]
    c_in = step.src_shape[0] // (step.spread * step.columns)     # the image's own channels
    return h * w * c_out * c_in * step.kernel ** 2


@dataclass
class LatencyReport:
    lanes: int
    pixels_per_cycle: int
    clock_mhz: float
    steps: list            # dicts: name, kind, cycles (image to image), useful_ops, utilization
    cycles_per_image: int  # image to image, back to back
    latency_cycles: int    # an image alone: its first pixel to its class

    @property
    def add_sub_lanes(self):
        return self.lanes ** 2 * self.pixels_per_cycle

    @property
    def images_per_s(self):
        return self.clock_mhz * 1e6 / self.cycles_per_image

    @property
    def conv_utilization(self):
        conv = [s for s in self.steps if s["kind"] == CONV.label]
        return sum(s["useful_ops"] for s in conv) / (self.add_sub_lanes * sum(s["cycles"] for s in conv))

    @property
    def utilization(self):
        return sum(s["useful_ops"] for s in self.steps) / (self.add_sub_lanes * self.cycles_per_image)

    def as_dict(self):
        return dict(lanes=self.lanes, pixels_per_cycle=self.pixels_per_cycle, add_sub_lanes=self.add_sub_lanes,
                    clock_mhz=self.clock_mhz, cycles_per_image=self.cycles_per_image,
                    latency_cycles=self.latency_cycles, images_per_s=self.images_per_s,
                    conv_utilization=self.conv_utilization, utilization=self.utilization,
                    layers=self.steps)


def latency_report(schedule, clock_mhz=100.0):
    """Cycles per step image to image (the INPUT step overlapped, `input_cycles`), per image,
    and an image's latency."""
    lanes, pixels = schedule.lanes, schedule.pixels_per_cycle
    cycles = [step_cycles(s, lanes, pixels) for s in schedule.steps]
    alone = sum(cycles)
    window = sum(cycles[schedule.input_opens:])
    cycles = [input_cycles(s, window) if s.kind == INPUT else n for s, n in zip(schedule.steps, cycles)]
    rows = []
    for s, n in zip(schedule.steps, cycles):
        ops = useful_ops(s)
        rows.append(dict(name=s.name, kind=s.kind.label, cycles=n, useful_ops=ops,
                         utilization=ops / (lanes ** 2 * pixels * n)))
    return LatencyReport(lanes, pixels, clock_mhz, rows, sum(cycles), alone)
