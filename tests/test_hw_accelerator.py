"""The accelerator in Verilator vs the golden model: every layer alone, then the whole network.

Random WRN-8-1 models (8x8 inputs, 8 lanes; 7x7 for two pixels per cycle, so that rows and
whole maps have an odd pixel count) keep builds and runs short; `make test-all` adds the
trained model (slow).
"""
import os

import pytest

from hw.core.accelerator import Accelerator
from hw.core.latency import latency_report, pipeline_depth
from hw.core.plan import CoreOptions, CorePlan
from hw.compiler.schedule import CONV, HEAD, POOL, Step, build_schedule, step_pixels
from quantize.golden import run
from quantize.qmodel import read_qmodel
from quantize.random_model import random_images, random_qmodel
from sim.check import check_layers, check_network
from sim.harness import simulate
from sim.jobs import schedule_job

LANES = 8
TRAINED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "runs", "default", "quant", "qmodel.npz")


@pytest.fixture(scope="module")
def bn_model():
    return random_qmodel(depth=8, width=1, input_size=8, num_classes=10, seed=1)


@pytest.fixture(scope="module")
def bn_network_build(tmp_path_factory):
    """One Verilator build of the bn model's whole-network design, shared by the tests."""
    return tmp_path_factory.mktemp("net_bn")


@pytest.fixture(scope="module")
def srelu_model():
    return random_qmodel(depth=8, width=1, input_size=8, num_classes=10, variant="srelu",
                         act_bits=6, seed=2)


def test_every_layer_bit_exact_bn(bn_model, tmp_path_factory):
    image = random_images(1, bn_model.input_shape, seed=11)[0]
    verdicts, accel = check_layers(CoreOptions(LANES).plan(bn_model), image,
                                   tmp_path_factory.mktemp("layers_bn"))
    names = [v.name for v in verdicts]
    # Every stored tensor of the integer graph is dumped and compared, and the logits.
    stored = {op["name"] for op in bn_model.ops if op["op"] in ("lut", "add", "avgpool")}
    assert stored <= set(names) and "logits" in names
    assert all(v.ok for v in verdicts), "\n".join(v.line() for v in verdicts if not v.ok)


def test_whole_network_bit_exact_with_stalls_and_cycles_match_the_model(bn_model, bn_network_build):
    images = random_images(3, bn_model.input_shape, seed=12)
    build = bn_network_build
    result, accel = check_network(CoreOptions(LANES).plan(bn_model), images, build, in_stall=0.3,
                                  out_stall=0.3, seed=5)
    assert result.exact == 3, "\n".join(v.line() for v in result.verdicts)
    # Stalls only add cycles; without them the model is exact (checked below).
    assert all(abs(c - result.model_cycles) / result.model_cycles < 0.05 for c in result.cycles)
    free, _ = check_network(CoreOptions(LANES).plan(bn_model), images[:2], build)
    assert free.exact == 2
    assert free.cycles[1] == free.model_cycles          # image to image, back to back
    assert abs(free.cycles[0] - free.model_latency) <= 3  # first image: from its first pixel


def test_a_wrong_expectation_is_caught(bn_model, bn_network_build):
    """The bench compares every beat: one wrong logit in the expectation must fail the run."""
    accel = Accelerator(CorePlan(build_schedule(bn_model, LANES)))
    images = random_images(1, bn_model.input_shape, seed=13)
    job = schedule_job(accel.plan, images, run(bn_model, images))
    job.expected[3] ^= 1
    result = simulate(accel, job, bn_network_build)
    assert not result.passed
    assert result.beats[3] != job.expected[3] and result.beats[:3] == job.expected[:3]


@pytest.mark.parametrize("requantizers", [pytest.param("dsp", marks=pytest.mark.slow), "shift-add"])
def test_srelu_network_bit_exact(srelu_model, tmp_path_factory, requantizers):
    images = random_images(2, srelu_model.input_shape, seed=14)
    result, plan = check_network(CoreOptions(LANES, requantizers=requantizers).plan(srelu_model),
                                 images, tmp_path_factory.mktemp("net_srelu"), in_stall=0.2,
                                 out_stall=0.2, seed=3)
    assert result.exact == 2, "\n".join(v.line() for v in result.verdicts)
    free, _ = check_network(CoreOptions(LANES, requantizers=requantizers).plan(srelu_model),
                            images[:2], tmp_path_factory.mktemp("net_srelu_free"))
    assert free.cycles[1] == free.model_cycles      # the same latency model either way
    if requantizers == "shift-add":
        # A few per-layer constants, not a multiplier per channel.
        assert 0 < len(plan.images.params.multipliers) <= 8


@pytest.mark.slow
def test_srelu_shift_add_every_layer_bit_exact(srelu_model, tmp_path_factory):
    image = random_images(1, srelu_model.input_shape, seed=15)[0]
    verdicts, _ = check_layers(CoreOptions(LANES, requantizers="shift-add").plan(srelu_model),
                               image, tmp_path_factory.mktemp("layers_srelu"))
    assert all(v.ok for v in verdicts), "\n".join(v.line() for v in verdicts if not v.ok)


@pytest.mark.parametrize("variant", ["bn", pytest.param("srelu", marks=pytest.mark.slow)])
def test_narrow_convs_on_a_wide_residual_stream_bit_exact(variant, tmp_path_factory):
    """4-bit activations into the convs, an 8-bit residual stream: 5-bit trees, 8-bit slots
    (the pool reads the stream at full width), every layer and the whole network bit-exact."""
    model = random_qmodel(depth=8, width=1, input_size=8, num_classes=10, variant=variant,
                          act_bits=4, residual_bits=8, seed=6)
    plan = CorePlan(build_schedule(model, LANES))
    assert plan.act_bits == 8 and plan.lane_bits == (4 if variant == "srelu" else 5)
    image = random_images(1, model.input_shape, seed=17)
    verdicts, _ = check_layers(CoreOptions(LANES).plan(model), image[0],
                               tmp_path_factory.mktemp(f"layers_mix_{variant}"))
    assert all(v.ok for v in verdicts), "\n".join(v.line() for v in verdicts if not v.ok)
    result, _ = check_network(CoreOptions(LANES).plan(model), random_images(2, model.input_shape,
                              seed=18), tmp_path_factory.mktemp(f"net_mix_{variant}"),
                              in_stall=0.2, seed=2)
    assert result.exact == 2, "\n".join(v.line() for v in result.verdicts)


def test_shift_add_refuses_per_channel_multipliers(bn_model):
    with pytest.raises(ValueError, match="distinct multipliers.*use --requantizers dsp"):
        CorePlan(build_schedule(bn_model, LANES), CoreOptions(LANES, requantizers="shift-add"))
    with pytest.raises(ValueError, match="requantizers must be one of dsp, shift-add"):
        CorePlan(build_schedule(bn_model, LANES), CoreOptions(LANES, requantizers="lut"))


def test_latency_model_counts_conv_taps(bn_model):
    schedule = build_schedule(bn_model, LANES)
    report = latency_report(schedule, clock_mhz=100)
    conv = [s for s in schedule.steps if s.kind == CONV]
    # 3x3 conv over an 8x8 map, 16 -> 16 channels at 8 lanes: 64 pixels x 2 x 2 groups x 9 taps.
    first_block = next(s for s in conv if s.name == "s1b1_a2_relu")
    row = next(r for r in report.steps if r["name"] == "s1b1_a2_relu")
    assert first_block.src_shape == (16, 8, 8)
    # The taps, then the pipeline's drain and a few cycles of step overhead, nothing more.
    assert 0 < row["cycles"] - row["useful_ops"] / LANES ** 2 <= pipeline_depth(LANES, 1) + 4
    assert report.images_per_s == pytest.approx(100e6 / report.cycles_per_image)


@pytest.fixture(scope="module")
def odd_model():
    return random_qmodel(depth=8, width=1, input_size=7, num_classes=10, seed=4)


def test_two_pixels_every_layer_bit_exact(odd_model, tmp_path_factory):
    image = random_images(1, odd_model.input_shape, seed=15)[0]
    verdicts, accel = check_layers(CoreOptions(LANES, 2).plan(odd_model), image,
                                   tmp_path_factory.mktemp("layers_px2"))
    stored = {op["name"] for op in odd_model.ops if op["op"] in ("lut", "add", "avgpool")}
    assert accel.pixels_per_cycle == 2 and stored <= {v.name for v in verdicts}
    assert all(v.ok for v in verdicts), "\n".join(v.line() for v in verdicts if not v.ok)


def test_two_pixels_whole_network_bit_exact_and_twice_as_fast(odd_model, tmp_path_factory):
    images = random_images(2, odd_model.input_shape, seed=16)
    build = tmp_path_factory.mktemp("net_px2")
    stalled, _ = check_network(CoreOptions(LANES, 2).plan(odd_model), images, build, in_stall=0.3,
                               out_stall=0.3, seed=7)
    assert stalled.exact == 2, "\n".join(v.line() for v in stalled.verdicts)
    free, _ = check_network(CoreOptions(LANES, 2).plan(odd_model), images, build)
    assert free.exact == 2 and free.cycles[1] == free.model_cycles
    one = latency_report(build_schedule(odd_model, LANES)).cycles_per_image
    assert 0.5 < free.model_cycles / one < 0.6


def test_four_pixels_whole_network_bit_exact(odd_model, tmp_path_factory):
    """Four pixels: two copies of every feature-map RAM, groups that wrap across rows (7x7:
    the last of 13 groups has one pixel; 2x2: one group of two rows)."""
    images = random_images(2, odd_model.input_shape, seed=17)
    build = tmp_path_factory.mktemp("net_px4")
    result, accel = check_network(CoreOptions(LANES, 4).plan(odd_model), images, build,
                                  in_stall=0.3, out_stall=0.3, seed=9)
    assert accel.pixels_per_cycle == 4 and result.exact == 2, "\n".join(v.line() for v in result.verdicts)
    free, _ = check_network(CoreOptions(LANES, 4).plan(odd_model), images, build)
    assert free.exact == 2 and free.cycles[1] == free.model_cycles


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")   # the refused design
def test_pixels_per_step(odd_model):
    """Conv and pool steps take two pixels when each output needs >= 2 taps; the head one."""
    schedule = build_schedule(odd_model, LANES, 2)
    kinds = {s.kind: step_pixels(s, LANES, 2) for s in schedule.steps}
    assert kinds[CONV] == kinds[POOL] == 2 and kinds[HEAD] == 1
    one_tap = Step(CONV, "1x1", src_shape=(LANES, 3, 3), out_shape=(LANES, 3, 3))
    assert step_pixels(one_tap, LANES, 2) == 1 and step_pixels(one_tap, LANES // 2, 2) == 2
    with pytest.raises(ValueError, match="pixels must be at least 1"):
        Accelerator(CorePlan(build_schedule(odd_model, LANES, 0)))


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(TRAINED), reason="needs make train && python -m quantize runs/default")
def test_trained_model_layers_and_images(tmp_path_factory):
    from training.data import load_dataset
    qmodel = read_qmodel(TRAINED)
    images = load_dataset(qmodel.manifest["source"]["metadata"]["dataset"]).test_x[:2]
    verdicts, _ = check_layers(CoreOptions(16).plan(qmodel), images[0],
                               tmp_path_factory.mktemp("trained_layers"))
    assert all(v.ok for v in verdicts), "\n".join(v.line() for v in verdicts if not v.ok)
    result, _ = check_network(CoreOptions(16).plan(qmodel), images,
                              tmp_path_factory.mktemp("trained_net"), in_stall=0.2, out_stall=0.2)
    assert result.exact == len(images)


def test_a_wide_image_spread_over_narrow_lanes_bit_exact(tmp_path_factory):
    """An 8-bit image with 4-bit conv inputs: the trees stay 5 bits wide, the image is spread
    over the lanes (hw/compiler/image_layout.py) at no cost in cycles, and every layer and the whole
    network are bit-exact. Its 4 lanes per pixel leave no room for the kernel's 3 columns in a
    word of 8 (the image one pixel per word, as a 5-bit image without columns)."""
    model = random_qmodel(depth=8, width=1, input_size=7, num_classes=10, act_bits=4,
                          residual_bits=8, input_bits=8, seed=6)
    narrow = random_qmodel(depth=8, width=1, input_size=7, num_classes=10, act_bits=4,
                           residual_bits=8, seed=6)
    schedule = build_schedule(model, LANES, pixels_per_cycle=2)
    plan = CorePlan(schedule)
    assert model.op("input_bn")["out"]["bits"] > 5 == plan.lane_bits and schedule.spread > 1
    assert schedule.columns == 1
    assert latency_report(schedule).cycles_per_image == latency_report(
        build_schedule(narrow, LANES, pixels_per_cycle=2, image_columns_allowed=False)).cycles_per_image
    image = random_images(1, model.input_shape, seed=19)
    verdicts, _ = check_layers(CoreOptions(LANES, 2).plan(model), image[0],
                               tmp_path_factory.mktemp("layers_spread"))
    assert all(v.ok for v in verdicts), "\n".join(v.line() for v in verdicts if not v.ok)
    result, _ = check_network(CoreOptions(LANES, 2).plan(model), random_images(2,
                              model.input_shape, seed=20), tmp_path_factory.mktemp("net_spread"),
                              in_stall=0.2, seed=4)
    assert result.exact == 2, "\n".join(v.line() for v in result.verdicts)


def test_the_image_as_kernel_columns_bit_exact_and_a_third_of_the_taps(tmp_path_factory):
    """A 6-bit image spread over 2 lanes, stored as the first conv's 3 kernel columns (6 of 8
    lanes): the input stage writes the columns as the pixels arrive, the first conv walks 3
    taps instead of 9 (3 pixels at once at 4 pixels per cycle), every layer and the whole
    network bit-exact, with stalls, cycles as the model says."""
    model = random_qmodel(depth=8, width=1, input_size=7, num_classes=10, act_bits=4,
                          residual_bits=8, input_bits=7, seed=6)      # a 6-bit signed image
    schedule = build_schedule(model, LANES, pixels_per_cycle=4)
    conv0 = next(s for s in schedule.steps if s.kind == CONV)
    assert (schedule.spread, schedule.columns, step_pixels(conv0, LANES, 4)) == (2, 3, 3)
    rows = {r["name"]: r["cycles"] for r in latency_report(schedule).steps}
    without = {r["name"]: r["cycles"] for r in latency_report(
        build_schedule(model, LANES, pixels_per_cycle=4, image_columns_allowed=False)).steps}
    # 49 pixels, 16 outputs (2 groups): 13 groups of 4 pixels x 9 taps -> 17 groups of 3 x 3.
    assert without[conv0.name] - rows[conv0.name] == 13 * 2 * 9 - 17 * 2 * 3
    image = random_images(1, model.input_shape, seed=21)
    verdicts, _ = check_layers(CoreOptions(LANES, 4).plan(model), image[0],
                               tmp_path_factory.mktemp("layers_columns"))
    assert all(v.ok for v in verdicts), "\n".join(v.line() for v in verdicts if not v.ok)
    build = tmp_path_factory.mktemp("net_columns")
    images = random_images(2, model.input_shape, seed=22)
    stalled, _ = check_network(CoreOptions(LANES, 4).plan(model), images, build, in_stall=0.3,
                               out_stall=0.3, seed=5)
    assert stalled.exact == 2, "\n".join(v.line() for v in stalled.verdicts)
    free, _ = check_network(CoreOptions(LANES, 4).plan(model), images, build)
    assert free.exact == 2 and free.cycles[1] == free.model_cycles


def test_the_arty_core_with_dsp48e1_accumulators_bit_exact(bn_model, tmp_path_factory):
    """The core as the Arty build elaborates it: every pair of accumulators a DSP48E1 in SIMD mode
    (hw/blocks/accumulators.py), the requantizers cut for its 25 x 18 multiplier, simulated with
    yosys's own DSP48E1 model: two images bit-exact through the whole network with stalls, and
    the cycles the model says."""
    from amaranth_boards.arty_a7 import ArtyA7_35Platform
    from hw.board.families import XC7
    build = tmp_path_factory.mktemp("net_dsp48e1")
    images = random_images(2, bn_model.input_shape, seed=23)
    plan, arty = XC7.core_options(LANES, 2).plan(bn_model), dict(platform=ArtyA7_35Platform())
    stalled, _ = check_network(plan, images, build, in_stall=0.3, out_stall=0.3,
                               seed=3, **arty)
    assert stalled.exact == 2, "\n".join(v.line() for v in stalled.verdicts)
    assert (build / "accelerator.v").read_text().count("DSP48E1 #(") == LANES * 2 // 2
    free, _ = check_network(plan, images, build, **arty)
    assert free.exact == 2 and free.cycles[1] == free.model_cycles
