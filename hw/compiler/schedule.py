"""The layer table: a quantized model's integer ops grouped into the steps the accelerator runs.

One step keeps the conv engine busy with one layer and fuses what follows it in the integer
graph into its epilogue: requant, the residual add (with its shortcut shift and the zero
channels of a downsampling block), and the next requant that reads the sum (the following
block's BN+ReLU or shifted ReLU). Steps read and write feature-map buffers; a greedy allocator
gives every stored tensor a buffer no step input of the same step uses.

Memory layout of a stored tensor (C, H, W) with `lanes` channels per word: word address
(g << (hb + wb)) | (y << wb) | x, g = channel group, hb/wb = bits of H and W; lane l of group
g is channel g*lanes + l. Lanes past the last channel hold zeros. The image may be stored
spread over lanes and as its first conv's kernel columns (hw/compiler/image_layout.py).

Pixel parallelism: a conv or pool step computes up to `pixels_per_cycle` output pixels per cycle
(neighbours in raster order, sharing every weight word), no more than each output takes taps,
so that one epilogue can requantize the finished words one after the other; other steps compute
one pixel per cycle (`step_pixels`).
"""
from dataclasses import dataclass, field

from amaranth.lib import enum
from amaranth.utils import ceil_log2

from common.bits import ceil_div
from training.graph import pads
from hw.compiler.image_layout import columns_tensor, image_layout, spread_tensor


class StepKind(enum.Enum, shape=3):
    """What a step does; the hardware's step table holds it in 3 bits (hw/core/step_table.py)."""
    INPUT = 0    # pixels in through the input table
    LOAD = 1     # feature-map words in (layer tests)
    CONV = 2
    POOL = 3     # the average-pool shortcut: the conv engine, depthwise
    HEAD = 4     # 1x1 conv, global sum, logits, argmax, out
    DUMP = 5     # feature-map words out (layer tests)

    @property
    def label(self):
        """The name reports use: "conv", "pool", ..."""
        return self.name.lower()


INPUT, LOAD, CONV, POOL, HEAD, DUMP = StepKind


def groups(channels, lanes):
    """Words of `lanes` channels that hold `channels` (the last one zero-padded)."""
    return ceil_div(channels, lanes)


@dataclass
class Requant:
    """Per-channel (padded to whole groups) constants of clamp((x*M + B + rnd) >> shift)."""
    multiplier: list
    bias: list
    shift: int
    lo: int
    hi: int


@dataclass
class Step:
    kind: StepKind
    name: str                       # the tensor written to dst (or streamed out)
    src_shape: tuple = (0, 0, 0)    # C, H, W read from src (or the stream)
    out_shape: tuple = (0, 0, 0)    # C, H, W written to dst
    src: int = None
    dst: int = None
    shortcut: int = None
    dst2: int = None
    dst2_name: str = None
    src_signed: bool = True
    shortcut_signed: bool = True
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    weights: str = None             # qmodel conv op name whose bits this step reads
    requant: Requant = None
    add_shift: int = 0              # shortcut shift of the fused residual add
    add_lo: int = 0
    add_hi: int = 0
    shortcut_groups: int = 0        # groups of the shortcut tensor; later groups are zeros
    requant2: Requant = None
    spread: int = 1                 # lanes per input channel (the image, hw/compiler/image_layout.py)
    columns: int = 1                # the kernel's columns stored as channels (the image)
    reads: list = field(default_factory=list)    # tensor names read from buffers
    writes: list = field(default_factory=list)   # tensor names written to buffers
    segment: int = None             # a layer-test table's: the step it checks (its own buffers)
    unsupported: str = None         # why the accelerator cannot compute it (build_schedule's check=False)

    @property
    def fused_add(self):
        return self.shortcut_groups > 0

    @property
    def tap_rows(self):
        return self.kernel

    @property
    def tap_columns(self):
        """The kernel's columns the engine walks (one where its source holds them as channels)."""
        return 1 if self.columns > 1 else self.kernel

    @property
    def padding_x(self):
        return 0 if self.columns > 1 else self.padding


def taps_per_output(step, lanes):
    """Cycles the engine spends on one output word of one pixel."""
    g_in = 1 if step.kind == POOL else groups(step.src_shape[0], lanes)
    return g_in * step.tap_rows * step.tap_columns


def step_pixels(step, lanes, pixels_per_cycle):
    """Output pixels the step computes per cycle: as many as its output words take taps, up to
    `pixels_per_cycle` (the epilogue takes one word per cycle)."""
    if step.kind in (CONV, POOL):
        return max(1, min(pixels_per_cycle, taps_per_output(step, lanes)))
    return 1


class Schedule:
    """Steps + buffers for a qmodel at `lanes` channels per feature-map word and up to
    `pixels_per_cycle` output pixels per cycle, its image stored as `layout` says.

    A stored tensor is known by (segment, name): the steps of one layer test (`Step.segment`)
    share their tensors, and no other segment's."""

    def __init__(self, qmodel, lanes, steps, layout, pixels_per_cycle=1):
        self.qmodel, self.lanes, self.steps = qmodel, lanes, steps
        self.pixels_per_cycle = pixels_per_cycle
        self.layout = layout
        self._allocate()

    @property
    def image(self):
        return self.layout.tensor

    @property
    def spread(self):
        return self.layout.spread

    @property
    def columns(self):
        return self.layout.columns

    def stored_shape(self, name):
        """(C, H, W) of tensor `name` as the feature maps hold it (the image spread over lanes,
        maybe as columns)."""
        c, h, w = self.qmodel.shapes[name]
        return (c * self.spread * self.columns, h, w) if name == self.image else (c, h, w)

    def stored_tensor(self, name, t):
        """A golden tensor (C, H, W) as the feature maps hold it."""
        if name != self.image:
            return t
        return columns_tensor(spread_tensor(t, self.spread), self.columns)

    def depth_of(self, shape):
        c, h, w = shape
        return groups(c, self.lanes) << (ceil_log2(h) + ceil_log2(w))

    def _allocate(self):
        """Buffers for the stored tensors (a tensor no step reads is not stored: its step's
        write goes nowhere), and `input_opens`: the step from which the next image may be
        written while this one finishes. The image's buffer is kept free from that step to the
        end; the earliest such step that needs no more buffers than none at all."""
        steps = self.steps
        # Only a table that starts with the image can take the next one while it finishes.
        image = (steps[0].segment, steps[0].writes[0]) if steps and steps[0].kind == INPUT else None
        self.input_opens = len(steps)
        self.buffers, self.where = self._allocate_from(self.input_opens, image)
        if image is not None:
            after_reads = max((i for i, s in enumerate(steps) if image in reads(s)), default=0) + 1
            for opens in range(after_reads, len(steps)):
                buffers, where = self._allocate_from(opens, image)
                if buffers <= self.buffers:
                    self.input_opens, self.buffers, self.where = opens, buffers, where
                    break
        for s in steps:
            read, written = reads(s), writes(s)
            s.src = self.where.get(read[0]) if read else None
            s.shortcut = self.where.get(read[1]) if len(read) > 1 else None
            s.dst = self.where.get(written[0]) if written else None
            s.dst2 = self.where.get(written[1]) if len(written) > 1 else None
        self.buffer_depth = max([self.depth_of(self.stored_shape(name)) for _, name in self.where] + [1])

    def _allocate_from(self, opens, image):
        """(buffers, tensor -> buffer) by a greedy allocator, keeping the buffer of tensor
        `image` free in steps `opens`..end (for the next image)."""
        last_read = {}
        for i, s in enumerate(self.steps):
            for tensor in reads(s):
                last_read[tensor] = i
        where, free_after = {}, {}   # tensor -> buffer; buffer -> step index it frees at
        buffers = 0
        for i, s in enumerate(self.steps):
            busy = {where[t] for t in reads(s)}
            for tensor in writes(s):
                if tensor not in last_read:
                    continue
                clashes = i >= opens or last_read[tensor] >= opens     # with the next image
                choice = next((b for b in range(buffers) if free_after.get(b, -1) < i
                               and b not in busy and not (b == where.get(image) and clashes)), None)
                if choice is None:
                    choice, buffers = buffers, buffers + 1
                where[tensor] = choice
                busy.add(choice)
                free_after[choice] = last_read[tensor]
        return max(buffers, 1), where


def _requant(qmodel, op, channels_padded):
    """Constants per padded channel; a per-tensor M or B repeats, padding channels get 0."""
    m, b = qmodel.tensors[op["multiplier"]], qmodel.tensors[op["bias"]]
    c = qmodel.shapes[op["name"]][0]
    mult = [int(m[i % len(m)]) if i < c else 0 for i in range(channels_padded)]
    bias = [int(b[i % len(b)]) if i < c else 0 for i in range(channels_padded)]
    return Requant(mult, bias, int(op["shift"]), int(op["lo"]), int(op["hi"]))


def unsupported(op):
    """Why the accelerator cannot compute `op`, or None: its address generator pads every side
    of a conv or pool alike, and its pool divides every window by k*k. Keras 'same' padding
    (training.graph.PADDINGS) breaks both at stride 2, MatConvNet's pool the second."""
    if op["op"] not in ("conv", "avgpool"):
        return None
    sides = pads(op)
    if len(set(sides)) > 1:
        return (f"{op['name']} pads {list(sides)} (top, bottom, left, right, Keras 'same'): the "
                "accelerator pads every side alike")
    if not op.get("count_include_pad", True):
        return (f"{op['name']} divides each window by its pixels inside the image (as Keras' and "
                f"MatConvNet's pools do): the accelerator's pool divides every window by "
                f"{op['kernel'] ** 2}")
    return None


def check_supported(qmodel):
    """ValueError for the first op the accelerator cannot compute (`unsupported`): the golden
    model runs such a model, the hardware refuses it here, before anything is planned."""
    for op in qmodel.ops:
        reason = unsupported(op)
        if reason:
            raise ValueError(f"{reason}; such a model runs in the golden model (python -m "
                             "quantize.classify) and its other layers in python -m sim --layer, "
                             "but not in hardware")


def build_schedule(qmodel, lanes, pixels_per_cycle=1, image_columns_allowed=True, check=True):
    """The accelerator's steps for the whole network: pixels in, logits and class out
    (`image_columns_allowed=False`: the image one pixel per word even where its first conv's
    columns would fit, hw/compiler/image_layout.py). `check=False` plans a model with ops the
    accelerator cannot compute (`unsupported`), for the layer tests of its other steps only."""
    if check:
        check_supported(qmodel)
    ops = {op["name"]: op for op in qmodel.ops}
    consumers = {}
    for op in qmodel.ops:
        for i in op["inputs"]:
            consumers.setdefault(i, []).append(op)

    def only_consumer(name, kind):
        users = consumers.get(name, [])
        return users[0] if len(users) == 1 and users[0]["op"] == kind else None

    def padded(c):
        return groups(c, lanes) * lanes

    def signed(name):
        return name == "image" or ops[name]["out"]["signed"]

    layout = image_layout(qmodel, lanes, image_columns_allowed)
    image, spread, columns = layout.tensor, layout.spread, layout.columns
    steps = []
    for op in qmodel.ops:
        kind, name = op["op"], op["name"]
        shape = qmodel.shapes[name]
        if kind == "lut":
            steps.append(Step(INPUT, name, src_shape=qmodel.input_shape, columns=columns,
                              out_shape=(shape[0] * spread * columns,) + tuple(shape[1:]),
                              writes=[name]))
        elif kind == "avgpool":
            src = op["inputs"][0]
            rq = Requant([op["multiplier"]] * padded(shape[0]), [0] * padded(shape[0]),
                         op["shift"], op["out"]["lo"], op["out"]["hi"])
            steps.append(Step(POOL, name, src_shape=qmodel.shapes[src], out_shape=shape,
                              src_signed=signed(src), kernel=op["kernel"], stride=op["stride"],
                              padding=pads(op)[0], requant=rq, reads=[src], writes=[name],
                              unsupported=unsupported(op)))
        elif kind == "conv":
            step = _conv_step(qmodel, op, consumers, only_consumer, padded, signed)
            step.unsupported = unsupported(op)
            if op["inputs"][0] == image:
                c, h, w = step.src_shape
                step.src_shape = (c * spread * columns, h, w)
                step.spread, step.columns = spread, columns
            steps.append(step)
    return Schedule(qmodel, lanes, _dependency_order(steps), layout, pixels_per_cycle)


def _dependency_order(steps):
    """Stable topological order: a pool step moves before the conv whose add reads it."""
    ordered, written = [], set()
    pending = list(steps)
    while pending:
        ready = next(s for s in pending if all(r in written for r in s.reads))
        pending.remove(ready)
        ordered.append(ready)
        written.update(ready.writes)
    return ordered


def _conv_step(qmodel, op, consumers, only_consumer, padded, signed):
    src = op["inputs"][0]
    common = dict(src_shape=qmodel.shapes[src], src_signed=signed(src), kernel=op["kernel"],
                  stride=op["stride"], padding=pads(op)[0], weights=op["name"])
    total = only_consumer(op["name"], "global_sum")
    if total is not None:
        logits = only_consumer(total["name"], "requant")
        rq = _requant(qmodel, logits, padded(qmodel.num_classes)) if logits else None
        return Step(HEAD, (logits or total)["name"], out_shape=qmodel.shapes[total["name"]] + (1, 1),
                    requant=rq, reads=[src], **common)
    rq_op = only_consumer(op["name"], "requant")
    if rq_op is None:
        raise ValueError(f"{op['name']}: conv output must feed one requant or one global_sum")
    c_out = padded(qmodel.shapes[rq_op["name"]][0])
    step = Step(CONV, rq_op["name"], out_shape=qmodel.shapes[rq_op["name"]],
                requant=_requant(qmodel, rq_op, c_out), reads=[src], **common)
    add = only_consumer(rq_op["name"], "add")
    if add is not None and add["inputs"][0] == rq_op["name"]:
        main_shift, shortcut_shift = add["shifts"]
        if main_shift != 0:
            raise ValueError(f"{add['name']}: the conv input of a residual add must be at the "
                             "sum's scale (shift 0)")
        shortcut = add["inputs"][1]
        stored = shortcut
        if qmodel.op(shortcut)["op"] == "zero_channels":   # zeros are implied, not stored
            stored = qmodel.op(shortcut)["inputs"][0]
        step.name, step.out_shape = add["name"], qmodel.shapes[add["name"]]
        step.add_shift, step.add_lo, step.add_hi = shortcut_shift, add["lo"], add["hi"]
        step.shortcut_groups = padded(qmodel.shapes[stored][0]) // padded(1)
        step.shortcut_signed = signed(stored)
        step.reads.append(stored)
        last = add
    else:
        last = rq_op
    step.writes = [step.name]
    follow = [c for c in consumers.get(last["name"], []) if c["op"] == "requant"]
    if follow:
        step.requant2 = _requant(qmodel, follow[0], c_out)
        step.dst2_name = follow[0]["name"]
        step.writes.append(follow[0]["name"])
    return step


def reads(step):
    """The stored tensors `step` reads, as (segment, name)."""
    return [(step.segment, name) for name in step.reads]


def writes(step):
    """The stored tensors `step` writes, as (segment, name)."""
    return [(step.segment, name) for name in step.writes]
