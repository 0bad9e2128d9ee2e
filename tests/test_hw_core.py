"""The core's plan and step table without a simulator build: records, their hardware view,
and the pipeline depth as the sum of the parts' latencies."""
import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.blocks.addsub_tree import AddSubTree
from hw.core.conv_engine import ConvEngine
from hw.core.epilogue import Epilogue
from hw.core.head import Head
from hw.compiler.image_layout import spread_tensor
from hw.core.input_stage import InputStage
from hw.core.latency import latency_report, pipeline_depth
from hw.core.param_store import ParamStore
from hw.core.plan import CorePlan
from hw.blocks.requant import Requantizer
from hw.compiler.layer_tests import layer_test_schedule
from hw.compiler.schedule import CONV, DUMP, HEAD, INPUT, POOL, StepKind, build_schedule
from hw.compiler.memory_images import weight_words
from hw.core.step_table import StepTable, step_records
from quantize.random_model import random_qmodel

LANES = 8

# Components built only to read their attributes are never elaborated: Amaranth warns.
pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


@pytest.fixture(scope="module")
def model():
    # 7x7 input: rows and maps with odd pixel counts; 16 -> 32 -> 64 channels.
    return random_qmodel(depth=8, width=1, input_size=7, num_classes=10, seed=4)


@pytest.fixture(scope="module")
def plan(model):
    return CorePlan(build_schedule(model, LANES, 2))


def test_records_describe_each_step(plan):
    records = step_records(plan)
    assert len(records) == len(plan.steps) == len(plan.records)
    kinds = [r["kind"] for r in records]
    assert kinds[0] == INPUT and kinds[-1] == HEAD and CONV in kinds and POOL in kinds
    first_conv = records[kinds.index(CONV)]
    # conv0: 1 input channel over 7x7 stored as the 3x3 kernel's 3 columns, so the engine walks
    # 3 rows x 1 column, padded in y only; 16 outputs = 2 groups of 8.
    assert (first_conv["c_in_last"], first_conv["h_in"], first_conv["w_in"]) == (2, 7, 7)
    assert (first_conv["h_in_last"], first_conv["w_in_last"]) == (6, 6)
    assert (first_conv["hb_in"], first_conv["wb_in"]) == (3, 3)
    assert (first_conv["ky_last"], first_conv["kx_last"], first_conv["pad_y"], first_conv["pad_x"]) == (2, 0, 1, 0)
    second_conv = records[kinds.index(CONV) + 1]
    assert (second_conv["ky_last"], second_conv["kx_last"], second_conv["pad_y"], second_conv["pad_x"]) == (2, 2, 1, 1)
    assert first_conv["g_out_last"] == 1 and first_conv["g_in_last"] == 0 and not first_conv["stride2"]
    # Two pixels: 49 outputs in 25 pixel groups; pixel 1 starts at (0, 1); a group moves 2 right.
    assert first_conv["pg_last"] == 24
    assert (first_conv["start_y"], first_conv["start_x"]) == ([0, 0], [0, 1])
    assert (first_conv["adv_y"], first_conv["adv_x"]) == (0, 2)
    head = records[-1]
    # The head loops over its input's pixels (2x2 after two stride-2 stages), classes in groups.
    assert (head["h_out"], head["w_out"], head["g_out_last"]) == (2, 2, 1)
    assert plan.head_requant and head["lo"] < 0 < head["hi"]
    pool = records[kinds.index(POOL)]
    assert pool["depthwise"] and pool["g_in_last"] == 0 and pool["stride2"]
    for r, step in zip(records, plan.steps):
        assert r["dst"] == (plan.buffers if step.dst is None else step.dst)
        assert r["dst2"] == (plan.buffers if step.dst2 is None else step.dst2)
        assert r["shortcut"] == (plan.buffers if step.shortcut is None else step.shortcut)


def test_step_table_presents_the_record_of_the_current_step(plan):
    """The hardware table, simulated: step 0's record after reset, and a cycle after each
    `advance` (steps of three cycles, the shortest), every field of the next step's record,
    around the table and back to step 0."""
    table = StepTable(plan)
    seen = []

    def record_now(ctx):
        fields = table.fields
        got = {name: ctx.get(fields[name]) for name in plan.records[0]}
        got["kind"] = ctx.get(fields.kind)
        return got

    async def bench(ctx):
        seen.append((record_now(ctx), plan.records[0]))
        for index in [*range(1, len(plan.records)), 0]:
            await ctx.tick().repeat(2)
            ctx.set(table.advance, 1)
            await ctx.tick()
            ctx.set(table.advance, 0)
            seen.append((record_now(ctx), plan.records[index]))

    sim = Simulator(table)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert len(seen) == len(plan.records) + 1
    for got, record in seen:
        for name, want in record.items():
            value = got[name]
            if isinstance(want, list):
                value = list(value)
            assert value == want, (name, value, want)


@pytest.mark.parametrize("lanes,pixels", [(8, 1), (16, 2), (16, 4), (32, 3)])
def test_pipeline_depth_is_the_sum_of_the_parts(lanes, pixels):
    tree = AddSubTree.latency_for(lanes)
    # Address registers (the engine's, the RAM's), block-RAM read, its two data registers and
    # the buffer mux's, the tree, the accumulator; queue, requantizer, add and clamp,
    # requantizer; the words of the other pixels; the registered write; a spare cycle.
    assert ConvEngine.latency_for(lanes) == 6 + tree + 1
    assert Epilogue.latency == 1 + 2 * Requantizer.latency + 2 == 19
    assert pipeline_depth(lanes, pixels) == (6 + tree + 1) + 19 + (pixels - 1) + 1 + 1
    assert ParamStore.latency == 2           # the address register, the ROM
    assert ParamStore.second_latency == 3    # the address register, each lane's copy, the ROM
    assert Head.logit_latency == 2 + 1 + Requantizer.latency      # the word, its register, the requantizer


def test_plan_widths_and_refusals(model, plan):
    assert plan.word_bits == LANES * model.act_bits and plan.pixels_per_cycle == 2
    assert plan.num_classes == 10 and plan.padded_classes == 16
    # `out` carries the logits, and feature-map words only where the table DUMPs them.
    assert plan.out_bits == max(plan.logit_bits, 8) < plan.word_bits
    tests = CorePlan(layer_test_schedule(plan.schedule, [1]))
    assert tests.out_bits >= tests.word_bits and DUMP in tests.kinds and DUMP not in plan.kinds
    assert plan.step_layout["kind"].shape is StepKind
    with pytest.raises(ValueError, match="pixels must be at least 1"):
        CorePlan(build_schedule(model, LANES, 0))
    with pytest.raises(ValueError, match="lanes must be a power of two"):
        CorePlan(build_schedule(model, 6, 1))


def test_a_constant_the_hardware_cannot_hold_is_refused(model):
    """A step constant outside its field would be cut silently in the step table: refused."""
    schedule = build_schedule(model, LANES, 2)
    step = next(s for s in schedule.steps if s.fused_add)
    step.add_shift = -9                     # a left shift of 9: the field holds 0..7
    with pytest.raises(ValueError, match=rf"step {step.name}: add_l = 9 does not fit .*range\(0, 8\)"):
        CorePlan(schedule)


def test_a_wide_image_is_spread_exactly_over_narrow_lanes():
    """The parts of each value sum to it; the lanes they need follow the image's range and the
    lane width; an RGB image that would need more lanes than a word has is refused in one line."""
    t = np.random.default_rng(0).integers(-128, 128, (3, 5, 5))
    for k in (1, 2, 4, 8, 16):
        parts = spread_tensor(t, k)
        assert parts.shape == (3 * k, 5, 5)
        assert np.array_equal(parts.reshape(3, k, 5, 5).sum(1), t)
        assert parts.min() == t.min() // k and parts.max() == -(-t.max() // k)
    rgb = random_qmodel(depth=8, width=1, in_channels=3, input_size=7, num_classes=10,
                        act_bits=4, residual_bits=8, input_bits=8, seed=4)
    with pytest.raises(ValueError, match=r"8-bit image needs \d+ lanes per channel to fit 5-bit "
                                         r"lanes, and 3 x \d+ > 8 lanes: use more lanes"):
        build_schedule(rgb, LANES)
    schedule = build_schedule(rgb, 32)
    plan = CorePlan(schedule)
    k = schedule.spread
    table = rgb.tensors[rgb.op("input_bn")["table"]]
    parts = spread_tensor(table.reshape(3, 256, 1), k)
    assert plan.lane_bits == 5 and 1 < k and -16 <= parts.min() and parts.max() <= 15
    assert k == 1 or not (-16 <= table.min() // (k // 2) and -(-table.max() // (k // 2)) <= 15)
    # The first conv's weights repeat over each channel's k lanes.
    conv0 = next(s for s in schedule.steps if s.kind == CONV)
    assert conv0.src_shape == (3 * k, 7, 7) and conv0.spread == k
    signs = rgb.conv_signs(rgb.op(conv0.weights))
    first = weight_words(rgb, conv0, 32)[0]                      # group 0, tap (0, 0)
    for o in range(16):
        for j in range(3 * k):
            assert (first >> (o * 32 + j)) & 1 == int(signs[o, j // k, 0, 0] > 0)


def _conv_from_words(words, stored, lanes, rows, cols, pad_y, pad_x):
    """sum_j (sign ? +x : -x) over one group of `lanes` stored channels, tap by tap, the way the
    engine walks a step with one input and one output group (the bits of `words`, in order)."""
    _, h, w = stored.shape
    padded = np.zeros((lanes, h + 2 * pad_y, w + 2 * pad_x), np.int64)
    padded[:stored.shape[0], pad_y:pad_y + h, pad_x:pad_x + w] = stored
    out = np.zeros((lanes, h, w), np.int64)
    for tap, word in enumerate(words):
        ky, kx = divmod(tap, cols)
        bits = np.array([(word >> i) & 1 for i in range(lanes * lanes)]).reshape(lanes, lanes)
        signs = 2 * bits - 1                                            # out o, lane j
        window = padded[:, ky:ky + h, kx:kx + w]
        out += np.einsum("oj,jyx->oyx", signs, window)
    return out


def test_the_image_as_kernel_columns_gives_the_first_conv_exactly():
    """Stored as its 3x3 kernel's columns (lane block t: the image moved left by t - 1, zero past
    the edges), the image's first conv walks 3 rows x 1 column with the weights of column t on
    block t, and its sums are the 3x3 conv's, spread image included; other convs walk 3 x 3."""
    rng = np.random.default_rng(3)
    for input_bits, lanes in ((None, 8), (6, 8), (8, 16)):
        model = random_qmodel(depth=8, width=1, input_size=7, num_classes=10, act_bits=4,
                              residual_bits=8, input_bits=input_bits, seed=6)
        schedule = build_schedule(model, lanes, 2)
        conv0 = next(s for s in schedule.steps if s.kind == CONV)
        k = schedule.spread
        assert schedule.columns == conv0.columns == 3 and conv0.src_shape == (3 * k, 7, 7)
        assert (conv0.tap_rows, conv0.tap_columns, conv0.padding_x) == (3, 1, 0)
        image = rng.integers(-2 ** 5, 2 ** 5, (1, 7, 7))
        stored = schedule.stored_tensor(schedule.image, image)
        assert stored.shape == (3 * k, 7, 7)
        assert np.array_equal(stored[k:2 * k].sum(0), image[0])              # the centre block
        assert np.array_equal(stored[:k, :, 1:].sum(0), image[0, :, :-1])    # moved right by 1
        assert not stored[:k, :, 0].any() and not stored[2 * k:, :, -1].any()
        signs = model.conv_signs(model.op(conv0.weights))[:lanes]          # out, 1, 3, 3
        want = np.zeros((lanes, 7, 7), np.int64)
        padded = np.pad(image[0], 1)
        for ky in range(3):
            for kx in range(3):
                want += signs[:, 0, ky, kx, None, None] * padded[None, ky:ky + 7, kx:kx + 7]
        words = weight_words(model, conv0, lanes)[:3]                      # output group 0
        # Lanes past the 3k used meet zeros: whatever their weights, they add nothing.
        got = _conv_from_words(words, stored, lanes, 3, 1, 1, 0)
        assert np.array_equal(got[:len(signs)], want[:len(signs)])
    rgb = random_qmodel(depth=8, width=1, in_channels=3, input_size=7, num_classes=10, seed=4)
    assert build_schedule(rgb, 8).columns == 1 and build_schedule(rgb, 16).columns == 3
    assert build_schedule(model, 16, image_columns_allowed=False).columns == 1


def test_the_next_image_comes_in_while_the_last_steps_run():
    """The make-train network (WRN-20-1, 28x28) at 16 lanes x 4 pixels: from step
    `input_opens` to the end no step touches the image's buffer, so the next image can be
    written there meanwhile; four buffers still do (step s3b2_add reads two tensors and writes
    two); the last add's sum, which no step reads, is not stored."""
    model = random_qmodel(depth=20, width=1, in_channels=1, num_classes=10, input_size=28, seed=0)
    schedule = build_schedule(model, 16, 4)
    steps, image = schedule.steps, schedule.steps[0].dst
    names = [s.name for s in steps]
    assert steps[0].kind == INPUT and schedule.buffers == 4
    assert schedule.input_opens == names.index("s3b2_add") + 1
    for s in steps[schedule.input_opens:]:
        assert image not in {s.src, s.shortcut, s.dst, s.dst2}, s.name
    conv0 = steps[1]
    assert conv0.reads == [schedule.image] and image not in {conv0.dst, conv0.dst2}
    last_add = steps[names.index("logits") - 1]
    assert last_add.dst is None and last_add.dst2 is not None
    assert step_records(CorePlan(schedule))[steps.index(last_add)]["dst"] == schedule.buffers
    # The window is long enough: image to image, the INPUT step costs START, RUN and NEXT; an
    # image alone takes its 784 beats and the input stage's latency in it (+ START and NEXT).
    report = latency_report(schedule)
    window = sum(row["cycles"] for row in report.steps[schedule.input_opens:])
    assert window > 28 * 28 + InputStage.pixel_latency_for(3)
    assert report.steps[0]["cycles"] == 3
    assert report.latency_cycles - report.cycles_per_image == 28 * 28 + InputStage.pixel_latency_for(3) - 1
