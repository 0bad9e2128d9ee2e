"""The core's options and its plan: everything its components need, computed once.

`CoreOptions(lanes, pixels_per_cycle, requantizers, multiplier)` is what a core is built with
besides the model, the one object that hw.build, sim, the benches and the tests pass around:
`lanes` channels per feature-map word (a power of two; lanes x lanes add/subtract lanes per
output pixel), `pixels_per_cycle` output pixels computed at once, `requantizers` "dsp"
(hardware multipliers) or "shift-add" (no multiplier: shifts and adds of the model's few
per-layer constants; hw/blocks/requant.py), `multiplier` the target's hardware multiplier (each
family's: `Family.core_options`, hw/board/families.py). `options.plan(qmodel)` makes the plan.

`CorePlan(schedule, options)` holds the widths of every datapath, the memory images, the step
table's records and the pipeline depth. The accelerator's components are built from it, and
tools outside the core (the simulation, the board build, the reports) read the plan instead of
an elaborated component.
"""
from dataclasses import dataclass
from functools import cached_property

from amaranth import signed, unsigned
from amaranth.lib import data
from amaranth.utils import ceil_log2

from hw.blocks.addsub_tree import AddSubTree
from hw.blocks.requant import ANY_MULTIPLIER, HardMultiplier
from common.bits import ceil_div, signed_width
from hw.compiler.memory_images import REQUANTIZERS, build_images
from hw.compiler.schedule import DUMP, HEAD, INPUT, build_schedule, check_supported
from hw.core.latency import pipeline_depth
from hw.core.step_table import check_records_fit, step_layout, step_records


@dataclass(frozen=True)
class CoreOptions:
    lanes: int = 16
    pixels_per_cycle: int = 1
    requantizers: str = "dsp"
    multiplier: HardMultiplier = ANY_MULTIPLIER

    def __post_init__(self):
        if self.lanes < 1 or self.lanes & (self.lanes - 1):
            raise ValueError(f"lanes must be a power of two, got {self.lanes}")
        if self.pixels_per_cycle < 1:
            raise ValueError(f"pixels must be at least 1, got {self.pixels_per_cycle}")
        if self.requantizers not in REQUANTIZERS:
            raise ValueError(f"requantizers must be one of {', '.join(REQUANTIZERS)}, "
                             f"got {self.requantizers!r}")

    def schedule(self, qmodel, image_columns_allowed=True, check=True):
        """The whole network's step table at these lanes and pixels per cycle (`check`:
        build_schedule's)."""
        return build_schedule(qmodel, self.lanes, self.pixels_per_cycle, image_columns_allowed, check)

    def plan(self, qmodel, check=True):
        """The core that runs the whole network. `check=False`: a model with ops the
        accelerator cannot compute is planned too, its steps marked `unsupported`, for the layer
        tests of the others (sim.check.check_layers) and never for a build."""
        self.check_needed_by(qmodel, check)
        return CorePlan(self.schedule(qmodel, check=check), self)

    def check_needed_by(self, qmodel, check=True):
        """ValueError, from arithmetic alone, for lanes or pixels the model cannot use: a lane past
        the widest layer's channels, or an output pixel per cycle past the image's, computes
        nothing, and planning for them takes minutes (1,024 lanes on a 64-channel model); and
        for a window the accelerator cannot compute (hw.compiler.schedule.check_supported)."""
        if check:
            check_supported(qmodel)
        channels = max([qmodel.input_shape[0]] + [op[k] for op in qmodel.ops
                                                  for k in ("in_channels", "out_channels") if k in op])
        useful = 1 << ceil_log2(channels)
        if self.lanes > useful:
            raise ValueError(f"{self.lanes} lanes: the model's widest layer has {channels} channels, "
                             f"so at most {useful} lanes do work; give --lanes {useful} or fewer")
        _, h, w = qmodel.input_shape
        if self.pixels_per_cycle > h * w:
            raise ValueError(f"{self.pixels_per_cycle} pixels per cycle: the model's largest feature "
                             f"map has {h * w} pixels; give --pixels {h * w} or fewer")


class CorePlan:
    def __init__(self, schedule, options=None):
        """`options`: a CoreOptions of the schedule's lanes and pixels per cycle (None: those
        with the default requantizers and multiplier)."""
        options = options or CoreOptions(schedule.lanes, schedule.pixels_per_cycle)
        lanes, pixels = schedule.lanes, schedule.pixels_per_cycle
        if (options.lanes, options.pixels_per_cycle) != (lanes, pixels):
            raise ValueError(f"the options are for {options.lanes} lanes x {options.pixels_per_cycle} "
                             f"pixels, the schedule for {lanes} x {pixels}")
        self.options = options
        qmodel = schedule.qmodel
        self.schedule, self.qmodel = schedule, qmodel
        self.steps = schedule.steps
        # The step kinds the table holds: the core builds only their logic (a board's core
        # has no LOAD or DUMP steps, so neither the words stream's path nor the DUMP mux).
        self.kinds = frozenset(s.kind for s in self.steps)
        self.input_step = next((i for i, s in enumerate(self.steps) if s.kind == INPUT), None)
        # act_bits: a stored activation's slot in a feature-map word (the residual stream may be
        # wider than what the convs read); lane_bits: a conv lane's input, signed, as wide as
        # the widest tensor a conv reads (an unsigned b-bit tensor takes b + 1), the image aside
        # (it is spread over lanes, `schedule.spread` of them per channel: hw/compiler/image_layout.py).
        self.lanes, self.pixels_per_cycle, self.act_bits = lanes, pixels, qmodel.storage_bits
        self.lane_bits = schedule.layout.lane_bits
        a = self.act_bits
        self.word_bits = lanes * a
        self.buffers, self.buffer_depth = schedule.buffers, schedule.buffer_depth
        self.addr_bits = max(1, ceil_log2(self.buffer_depth))
        self.requantizers, self.multiplier = options.requantizers, options.multiplier
        self.images = build_images(qmodel, schedule, self.requantizers)
        image = schedule.image and qmodel.op(schedule.image)["out"]
        self.table_signed = bool(image and image["signed"])
        self.acc_bits = max([AddSubTree.out_width_for(lanes, self.lane_bits), a + 6] +
                            [qmodel.op(s.weights)["out"]["bits"] for s in self.steps if s.weights])
        self.val_bits = a + 2        # requant/add results: act_bits (+1 for the wide conv2 requant)
        head = next((s for s in self.steps if s.kind == HEAD), None)
        if head is not None:
            h, w = head.src_shape[1:]
            self.sum_bits = self.acc_bits + ceil_log2(h * w) + 1
            rq = head.requant
            self.head_requant = rq is not None
            self.logit_bits = signed_width([rq.lo, rq.hi]) if rq else self.sum_bits
            self.num_classes = head.out_shape[0]
            self.padded_classes = ceil_div(self.num_classes, lanes) * lanes
        else:
            self.sum_bits = self.logit_bits = 2
            self.head_requant = False
            self.num_classes = self.padded_classes = 1
        self.out_bits = max(self.word_bits if DUMP in self.kinds else 0, self.logit_bits, 8)
        self.pipeline_depth = pipeline_depth(lanes, pixels)
        self.records = step_records(self)
        check_records_fit(self)

    def requantizer_summary(self):
        """What the report says of the requantizers: their kind and, per parameter bank, the
        fixed shift and (shift-add) the M' values each lane is built for."""
        banks = {name: dict(shift=bank.shift, multipliers=None if bank.multipliers is None
                            else list(bank.multipliers))
                 for name, bank in (("first", self.images.params), ("second", self.images.params2))}
        return dict(kind=self.requantizers, logits=self.head_requant, banks=banks,
                    multiplier=self.multiplier._asdict() if self.requantizers == "dsp" else None)

    @cached_property
    def step_layout(self):
        """The step table's record as a `data.StructLayout`."""
        return step_layout(self)

    @property
    def word(self):
        """A feature-map word: `lanes` activations (raw bits; a step says whether signed)."""
        return data.ArrayLayout(unsigned(self.act_bits), self.lanes)

    @property
    def out_layout(self):
        """A beat of the `out` stream: DUMP words (where the table has DUMP steps), or the
        logits then the class with `last`."""
        return data.StructLayout({"data": unsigned(self.out_bits), "last": 1})

    @property
    def class_bits(self):
        return ceil_log2(max(2, self.num_classes))

    @property
    def emit_shape(self):
        """A logit or the class index, signed: the logits are sign-extended over `data`."""
        return signed(max(self.logit_bits, self.class_bits + 1))
