"""The layer table in hardware: one record of constants per step, and the current step's record.

`step_records(plan)` is pure Python: for every step of the schedule, the loop bounds, address
bits, buffer numbers, memory bases, clamps and residual-add constants the components read.
`step_layout(plan)` is the record's `data.StructLayout`, and `StepTable` presents the record of
the step the controller is on (one constant multiplexer per field).

Loop bounds are what the step's loops run over: the head loops over its input's pixels, a DUMP
step over the tensor it streams out.
"""
from enum import Enum

from amaranth import Array, Const, Module, Mux, Shape, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from common.bits import ceil_div
from hw.compiler.schedule import DUMP, HEAD, POOL, StepKind, groups, step_pixels

CHUNK = 16                # steps one LUT4 per record bit chooses among
RECORD_SLICE = 64         # record bits per copy of the step counter
DIM = range(1 << 10)      # sizes, counts and loop bounds
BITS = range(16)          # address bits of a map's height or width


def loop_shape(step):
    """(C, H, W) the step's loops run over."""
    if step.kind == DUMP:
        return step.src_shape
    if step.kind == HEAD:
        return (step.out_shape[0],) + tuple(step.src_shape[1:])
    return step.out_shape


def pixel_walk(step, lanes, pixels_per_cycle):
    """(pixels per cycle, width, height) of the step's output raster."""
    _, h, w = loop_shape(step)
    return step_pixels(step, lanes, pixels_per_cycle), max(1, w), h


def _last(count):
    return max(count - 1, 0)


def _record(plan, index, step):
    lanes, nb, images = plan.lanes, plan.buffers, plan.images
    _, h_out, w_out = loop_shape(step)
    c_in, h_in, w_in = step.src_shape
    per_cycle, width, height = pixel_walk(step, lanes, plan.pixels_per_cycle)
    rq, rq2 = step.requant, step.requant2
    return dict(
        kind=step.kind,
        # buffers: read, written, shortcut and second output (nb: none)
        src=step.src or 0, dst=nb if step.dst is None else step.dst,
        shortcut=nb if step.shortcut is None else step.shortcut,
        dst2=nb if step.dst2 is None else step.dst2,
        # shapes and loops
        # The loops' last values are constants here, so that no subtractor sits on the paths
        # from the loop counters to the controller's state (a source-less LOAD: 0, unused).
        h_in=h_in, w_in=w_in, hb_in=ceil_log2(h_in), wb_in=ceil_log2(w_in),
        h_out=h_out, w_out=w_out, hb_out=ceil_log2(h_out), wb_out=ceil_log2(w_out),
        c_in_last=_last(c_in), h_in_last=_last(h_in), w_in_last=_last(w_in),
        h_out_last=_last(h_out), w_out_last=_last(w_out),
        g_out_last=_last(groups(loop_shape(step)[0], lanes)),
        g_in_last=_last(1 if step.kind == POOL else groups(c_in, lanes)),
        g_src_last=_last(groups(c_in, lanes)),
        ky_last=step.tap_rows - 1, kx_last=step.tap_columns - 1, stride2=step.stride == 2,
        pad_y=step.padding, pad_x=step.padding_x,
        depthwise=step.kind == POOL, src_signed=step.src_signed,
        # Pixel p starts at raster index p and advances by the pixels per cycle: (y, x) +=
        # divmod(pixels, W) with a carry; past the last row it is not valid.
        pg_last=ceil_div(h_out * w_out, per_cycle) - 1,
        adv_x=per_cycle % width, adv_y=per_cycle // width,
        start_y=[p // width if p < per_cycle else height for p in range(plan.pixels_per_cycle)],
        start_x=[p % width for p in range(plan.pixels_per_cycle)],
        # memory bases
        wbase=images.weight_base.get(index, 0),
        pbase=images.params.base.get(index, 0),
        p2base=images.params2.base.get(index, 0),
        # epilogue: clamps, residual add
        lo=rq.lo if rq else 0, hi=rq.hi if rq else 0,
        lo2=rq2.lo if rq2 else 0, hi2=rq2.hi if rq2 else 0,
        add_en=step.fused_add, add_r=max(step.add_shift, 0), add_l=max(-step.add_shift, 0),
        add_lo=step.add_lo, add_hi=step.add_hi,
        sc_groups=step.shortcut_groups, sc_signed=step.shortcut_signed,
    )


def step_records(plan):
    """One dict of constants per step of `plan.schedule`, keys as in `step_layout`."""
    return [_record(plan, i, s) for i, s in enumerate(plan.steps)]


def step_layout(plan):
    nb, vb, images = plan.buffers, plan.val_bits, plan.images
    clamp = signed(max(vb, plan.logit_bits))
    per_pixel = data.ArrayLayout(DIM, plan.pixels_per_cycle)
    return data.StructLayout({
        "kind": StepKind,
        "src": range(nb), "dst": range(nb + 1),
        "shortcut": range(nb + 1), "dst2": range(nb + 1),
        "h_in": DIM, "w_in": DIM, "hb_in": BITS, "wb_in": BITS,
        "h_out": DIM, "w_out": DIM, "hb_out": BITS, "wb_out": BITS,
        "c_in_last": DIM, "h_in_last": DIM, "w_in_last": DIM, "h_out_last": DIM, "w_out_last": DIM,
        "g_out_last": DIM, "g_in_last": DIM, "g_src_last": DIM,
        "ky_last": range(8), "kx_last": range(8), "stride2": 1, "pad_y": range(4),
        "pad_x": range(4), "depthwise": 1, "src_signed": 1,
        "pg_last": DIM, "adv_x": DIM, "adv_y": DIM, "start_y": per_pixel, "start_x": per_pixel,
        "wbase": range(max(2, len(images.weights))),
        "pbase": range(max(2, len(images.params.words))),
        "p2base": range(max(2, len(images.params2.words))),
        "lo": clamp, "hi": clamp, "lo2": signed(vb), "hi2": signed(vb),
        "add_en": 1, "add_r": range(32), "add_l": range(8),
        "add_lo": signed(vb), "add_hi": signed(vb),
        "sc_groups": DIM, "sc_signed": 1,
    })


def _fits(value, shape):
    if isinstance(value, Enum):
        return True
    if isinstance(shape, range):
        return int(value) in shape
    shape = Shape.cast(shape)
    top = 1 << (shape.width - shape.signed)
    return (-top if shape.signed else 0) <= int(value) < top


def check_records_fit(plan):
    """Every record value inside its field's range: a constant that does not fit would be cut
    silently by the hardware. Raises ValueError naming the step, the field and its range."""
    for name, field in plan.step_layout:
        array = isinstance(field.shape, data.ArrayLayout)
        shape = field.shape.elem_shape if array else field.shape
        for step, record in zip(plan.steps, plan.records):
            for value in (record[name] if array else [record[name]]):
                if not _fits(value, shape):
                    bounds = shape if isinstance(shape, range) else Shape.cast(shape)
                    raise ValueError(f"step {step.name}: {name} = {value} does not fit the "
                                     f"accelerator's {bounds} for it: this model needs what the "
                                     "hardware does not support")


def _constant(value, shape):
    return Const(value.value if isinstance(value, Enum) else int(value), Shape.cast(shape))


class StepTable(wiring.Component):
    """`fields`: the record of the step being run, from a register. The record of the step
    after it waits in a second register, read from the table while the step runs, and moves in
    the cycle after `advance` (the controller's NEXT; after the last step comes the first), so
    that no path runs from the controller's state through the table's muxes into the datapath.
    After reset: step 0's record. A step lasts at least three cycles, so the waiting record is
    always read in time (two cycles after the step before it starts)."""

    def __init__(self, plan):
        self.plan = plan
        super().__init__({"advance": In(1), "fields": Out(plan.step_layout)})

    def elaborate(self, platform):
        m = Module()
        columns = []        # (bit offset, width, one constant per step)
        for name, field in self.plan.step_layout:
            column = [record[name] for record in self.plan.records]
            if isinstance(field.shape, data.ArrayLayout):
                elem, size = field.shape.elem_shape, Shape.cast(field.shape.elem_shape).width
                columns += [(field.offset + p * size, size, [_constant(v[p], elem) for v in column])
                            for p in range(field.shape.length)]
            else:
                columns.append((field.offset, field.width, [_constant(v, field.shape) for v in column]))
        steps = len(self.plan.records)
        step0 = sum((consts[0].value & ((1 << size) - 1)) << at for at, size, consts in columns)
        held = Signal(Shape.cast(self.plan.step_layout).width, init=step0)
        waiting = Signal.like(held)             # the record of step `following`
        # `following` in copies that count alike, each steering the muxes of a slice of the
        # record: one counter reached every bit of it, through seven LUTs spread over a fifth of
        # the chip (the routed 16 x 4 core's slowest path). The muxes are two registered
        # levels: a LUT4 per bit picks among CHUNK steps, then a mux over the chunks; a step
        # lasts at least three cycles, so both are through before the record moves.
        counters = {}
        for at, size, consts in columns:
            slice_index = at // RECORD_SLICE
            if slice_index not in counters:
                counters[slice_index] = Signal(range(max(2, steps)), init=1 % steps,
                                               name=f"following{slice_index}", attrs={"keep": 1})
            following = counters[slice_index]
            chunks = [consts[k:k + CHUNK] for k in range(0, steps, CHUNK)]
            picked = []
            for k, chunk in enumerate(chunks):
                level = Signal(size, name=f"record{at}_{k}")
                m.d.sync += level.eq(Array(chunk)[following[:ceil_log2(CHUNK)]] if len(chunks) > 1
                                     else Array(chunk)[following])
                picked.append(level)
            m.d.sync += waiting[at:at + size].eq(Array(picked)[following[ceil_log2(CHUNK):]]
                                                 if len(picked) > 1 else picked[0])
        with m.If(self.advance):
            m.d.sync += held.eq(waiting)
            m.d.sync += [c.eq(Mux(c == steps - 1, 0, c + 1)) for c in counters.values()]
        m.d.comb += self.fields.as_value().eq(held)
        return m
