"""Block-level hardware tests: each block alone, on random data, against its golden twin.

hw.blocks.addsub_tree.AddSubTree vs sim.models.addsub_dot (itself checked here against
quantize.golden's conv), and hw.blocks.requant.Requantizer vs quantize.fixed_point.requantize, both
simulated in Verilator through sim.runner.run_cocotb with one new input vector per cycle
(benches: sim/benches/addsub_tree.py, sim/benches/requant.py). Every output is compared as an integer.
"""
import re

import numpy as np
import pytest
from amaranth import signed
from amaranth.back import rtlil, verilog

from hw.blocks.accumulators import DSP48E1_CONFIGURATION, Accumulators
from hw.blocks.addsub_tree import AddSubTree
from hw.blocks.banked_rom import BankedRom
from hw.board.families import ECP5, XC7
from hw.blocks.requant import ANY_MULTIPLIER, HardMultiplier, Requantizer, ShiftAddRequantizer
from common.bits import int_range
from quantize.fixed_point import MAX_SHIFT, fixed_shift_operands, requantize
from quantize.golden import _Prepared, run_op
from quantize.qmodel import QModel
from sim.ecp5_cells import MULT18X18D_CONFIGURATION, instance_parameters, model_verilog, strip_parameters
from sim.models import REQUANT_LATENCY, addsub_dot, requant_golden, tree_latency, tree_out_width
from sim.runner import CocotbFailure, run_cocotb
from sim.xilinx_cells import dsp48e1_model
from sim.xilinx_cells import instance_parameters as dsp48e1_parameters
from training.bundle import pack_signs

# Components built only to read their attributes are never elaborated: Amaranth warns.
pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

SEED = 20240611
TREES = [(8, 9), (16, 9), (5, 9)]                 # (lanes, width); 5: a non-power-of-two tree
# Golden-model widths of x, M, B and y, and the requantizer's fixed shift (the largest s driven).
ACCEL_REQUANT = dict(in_width=21, mult_width=16, bias_width=26, shift=24, out_width=10)
SMALL_REQUANT = dict(in_width=12, mult_width=8, bias_width=14, shift=15, out_width=6)
REQUANTS = {"accel": ACCEL_REQUANT, "small": SMALL_REQUANT}
# M' of a shift-add requantizer (ACCEL_REQUANT widths): a shifted-ReLU model's per-layer
# constants (sqrt(2)/3 and 1/3 at 15 bits) at several shifts, divide-by-9, a power of two, a
# negative and a tiny one.
SHIFT_ADD_MULTIPLIERS = [15447 << 9, 15447 << 5, 21845 << 8, 7282 << 3, 1 << 20, -(5 << 12), 3]


def _requantizer(in_width, mult_width, bias_width, shift, out_width, unit=ANY_MULTIPLIER):
    """The hardware block for these golden widths: M' = M << d and C = (B << d) + 2^(shift-1)
    for any d <= shift."""
    return Requantizer(in_width, mult_width + shift, bias_width + shift + 1, shift, out_width, unit)


# -- the references against the golden model ----------------------------------------------------

def _golden_conv1x1(x, w_bits, width):
    """quantize.golden's conv op on a C-in, O-out 1x1 conv with weight bits w_bits (O x C).

    x: C x N x H x W int64 of signed `width`-bit values. Goes through the real path:
    pack_signs -> QModel.conv_signs -> _Prepared (weight matrix, float32/64 chosen from the
    output width) -> run_op -> _conv.
    """
    out_ch, in_ch = w_bits.shape
    signs = np.where(w_bits.reshape(out_ch, in_ch, 1, 1) != 0, 1, -1).astype(np.int8)
    bits = tree_out_width(in_ch, width)
    op = {"name": "conv", "op": "conv", "inputs": ["image"], "in_channels": in_ch,
          "out_channels": out_ch, "kernel": 1, "stride": 1, "padding": 0, "weights": "conv.w",
          "out": {"bits": bits, "signed": True}}
    qmodel = QModel({"ops": [op]}, {"conv.w": pack_signs(signs)})
    return run_op(qmodel, op, [x], _Prepared(qmodel))


@pytest.mark.parametrize("lanes,width", TREES + [(1, 9), (3, 4), (64, 9)])
def test_tree_model_is_golden_conv(lanes, width):
    """addsub_dot == golden conv (1x1, C = lanes in, 6 out) on random and extreme pixels."""
    rng = np.random.default_rng(SEED + lanes)
    lo, hi = int_range(width, True)
    out_ch = 6
    x = rng.integers(lo, hi, size=(lanes, 40, 3, 2), endpoint=True)
    x[:, 0], x[:, 1], x[:, 2] = lo, hi, 0                       # extreme pixels
    x[:, 3] = rng.choice([lo, hi], size=(lanes, 3, 2))
    w = rng.integers(0, 1, size=(out_ch, lanes), endpoint=True)
    w[0], w[1] = 0, 1                                           # all -1, all +1
    got = _golden_conv1x1(x, w, width)
    assert got.shape == (out_ch, 40, 3, 2) and got.dtype == np.int64
    pixels = np.moveaxis(x, 0, -1)                              # N x H x W x lanes
    for o in range(out_ch):
        np.testing.assert_array_equal(got[o], addsub_dot(pixels, np.broadcast_to(w[o], pixels.shape)))
    assert got[1, 0, 0, 0] == lanes * lo and got[0, 0, 0, 0] == -lanes * lo   # largest |sum|
    assert np.abs(got).max() < 1 << (tree_out_width(lanes, width) - 1)


def test_requant_model_is_golden():
    """requant_golden (vectors grouped by shift) == requantize one element at a time, and the
    rounding the spec names: half up, so -2.5 -> -2 and 2.5 -> 3; saturation; shift 0."""
    rng = np.random.default_rng(SEED)
    n = 500
    x = rng.integers(-(1 << 20), 1 << 20, n)
    m, b = rng.integers(-(1 << 15), 1 << 15, n), rng.integers(-(1 << 25), 1 << 25, n)
    s = rng.integers(0, MAX_SHIFT, n, endpoint=True)
    lo, hi = rng.integers(-512, 0, n), rng.integers(0, 512, n)
    want = [requantize(x[i], m[i], b[i], int(s[i]), lo[i], hi[i]).item() for i in range(n)]
    np.testing.assert_array_equal(requant_golden(x, m, b, s, lo, hi), want)
    cases = [(-5, 1, 0, 1, -2), (5, 1, 0, 1, 3), (-1, 1, 0, 1, 0), (-3, 1, 0, 1, -1),
             (7, 3, -1, 2, 5), (1000, 1, 0, 0, 511), (-1000, 1, 0, 0, -512), (-6, 1, 0, 2, -1)]
    for x1, m1, b1, s1, y1 in cases:
        assert requant_golden([x1], [m1], [b1], [s1], [-512], [511])[0] == y1, (x1, m1, b1, s1)


def test_fixed_shift_operands_are_exact():
    """(x*M' + C) >> S == requantize(x, M, B, s) for every s <= S, ties and extremes included;
    a shift above S is refused."""
    rng = np.random.default_rng(SEED)
    big = 24
    for s in range(big + 1):
        x = np.concatenate([rng.integers(-(1 << 20), 1 << 20, 300), [-(1 << 20), (1 << 20) - 1, 0]])
        m, b = int(rng.integers(-(1 << 15), 1 << 15)), int(rng.integers(-(1 << 25), 1 << 25))
        if s:   # x*M + B landing on ties q*2^s - 2^(s-1)
            x[:3] = 1
            m, b = 1, -(1 << (s - 1)) + 7 * (1 << s) - 1
        m2, c = fixed_shift_operands(m, b, s, big)
        for xs in (x, np.arange(-5, 6)):
            want = requantize(xs, m, b, s, -(1 << 40), 1 << 40).reshape(-1)
            got = [(int(v) * m2 + c) >> big for v in xs]
            np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="larger than"):
        fixed_shift_operands(1, 0, big + 1, big)


def test_component_latency_and_widths():
    for lanes, width in TREES + [(1, 9), (64, 9)]:
        t = AddSubTree(lanes, width)
        t._MustUse__silence = True     # built for its attributes only: no "never used" warning
        assert t.latency == tree_latency(lanes)
        assert t.out_width >= tree_out_width(lanes, width)
    assert Requantizer.latency == REQUANT_LATENCY


# -- elaboration --------------------------------------------------------------------------------

def _ports(text, module):
    found = re.search(rf"^module {module}\s*\(.*?^endmodule", text, re.M | re.S)
    assert found, f"no module {module}"
    ports = {}
    for direction, rng, name in re.findall(r"^\s*(input|output)\s+(?:signed\s+)?(\[\d+:0\]\s+)?(\w+)\s*;",
                                           found[0], re.M):
        ports[name] = (direction, int(rng.strip()[1:].split(":")[0]) + 1 if rng else 1)
    return ports


def test_elaborate_to_verilog():
    tree = AddSubTree(5, 9)
    ports = _ports(verilog.convert(tree, name="addsub_tree"), "addsub_tree")
    assert ports == {"clk": ("input", 1), "rst": ("input", 1), "x": ("input", 5 * 9),
                     "w": ("input", 5), "sum": ("output", tree.out_width)}
    ports = _ports(verilog.convert(_requantizer(**ACCEL_REQUANT), name="requant"), "requant")
    assert ports == {"clk": ("input", 1), "rst": ("input", 1), "x": ("input", 21),
                     "multiplier": ("input", 40), "offset": ("input", 51),
                     "lo": ("input", 10), "hi": ("input", 10), "y": ("output", 10)}


# -- simulation ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def build_root(tmp_path_factory):
    # One Verilator build per parameter set, shared by the tests using it (~15 s each).
    return tmp_path_factory.mktemp("hw_blocks")


def _run_tree(build_root, test_dir, lanes, width, **extra):
    return run_cocotb(AddSubTree(lanes, width), "addsub_tree", "sim.benches.addsub_tree",
                      build_root / f"tree_{lanes}x{width}", test_dir=test_dir, seed=SEED,
                      params={"lanes": lanes, "width": width, **extra},
                      log_file=test_dir / "sim.log")


def _run_requant(build_root, test_dir, params, testcase=None, unit=ANY_MULTIPLIER, **extra):
    widths = REQUANTS[params]
    dut = _requantizer(**widths, unit=unit)
    if extra.get("multipliers"):
        dut = ShiftAddRequantizer(widths["in_width"], extra["multipliers"], len(dut.offset),
                                  widths["shift"], widths["out_width"])
    return run_cocotb(dut, "requant", "sim.benches.requant",
                      build_root / f"requant_{params}_{unit.a_bits}x{unit.b_bits}", test_dir=test_dir, seed=SEED,
                      testcase=testcase, log_file=test_dir / "sim.log",
                      params={**widths, **extra})


@pytest.mark.parametrize("lanes,width", TREES)
def test_tree_sim(build_root, tmp_path, lanes, width):
    assert _run_tree(build_root, tmp_path, lanes, width).is_file()


# 5 accumulators: two DSP48E1s and one with a single lane; 14 bits, so they wrap in the bench.
ACCUMULATORS = dict(count=5, width=14, sum_bits=9, term_bits=5)


def _accumulators(platform=None):
    p = ACCUMULATORS
    dut = Accumulators(p["count"], p["width"], signed(p["sum_bits"]), signed(p["term_bits"]))
    return verilog.convert(dut, name="accumulators", platform=platform)


def _run_accumulators(folder, test_dir, sources, **extra):
    return run_cocotb(sources, "accumulators", "sim.benches.accumulators", folder,
                      test_dir=test_dir, seed=SEED, params={**ACCUMULATORS, **extra},
                      log_file=test_dir / "sim.log")


def test_accumulators_sim(build_root, tmp_path):
    folder = build_root / "accumulators"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "accumulators.v").write_text(_accumulators())
    assert "DSP48E1" not in (folder / "accumulators.v").read_text()
    assert _run_accumulators(folder, tmp_path, [folder / "accumulators.v"]).is_file()
    with pytest.raises(CocotbFailure):
        _run_accumulators(folder, tmp_path, [folder / "accumulators.v"], break_model=True)


def test_dsp48e1_accumulators_sim(build_root, tmp_path):
    """On a 7-series part, each pair of accumulators is a DSP48E1 in SIMD mode TWO24: its Verilog
    for the Arty, run against yosys's own model of the DSP48E1 (sim/xilinx_cells.py), keeps
    every accumulator bit for bit as the reference, wraps included."""
    from amaranth_boards.arty_a7 import ArtyA7_35Platform
    design = _accumulators(ArtyA7_35Platform())
    instances = dsp48e1_parameters(design)
    assert len(instances) == 3 and " + " not in design           # no adder left in the fabric
    for params in instances:
        assert {k: v.strip('"') for k, v in params.items()} == {
            k: str(v) if isinstance(v, str) else f"32'd{v}" for k, v in DSP48E1_CONFIGURATION.items()}
    folder = build_root / "accumulators_dsp48e1"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "accumulators.v").write_text(design)
    (folder / "dsp48e1.v").write_text(dsp48e1_model())
    assert _run_accumulators(folder, tmp_path, [folder / "accumulators.v", folder / "dsp48e1.v"]).is_file()


def test_tree_broken_twin_fails(build_root, tmp_path):
    with pytest.raises(CocotbFailure) as info:
        _run_tree(build_root, tmp_path, 8, 9, break_model=True)
    assert info.value.num_tests == info.value.num_failed == 2


# The small set costs one more Verilator build (~20 s): make test-all only.
@pytest.mark.parametrize("params", ["accel", pytest.param("small", marks=pytest.mark.slow)])
def test_requant_sim(build_root, tmp_path, params):
    assert _run_requant(build_root, tmp_path, params).is_file()


def test_dsp48_requant_sim(build_root, tmp_path):
    """Cut for the 7-series DSP48's 25 x 18 multiplier (fewer, wider partial products, each
    registered once for its post-adder): the same results at the same latency."""
    assert _run_requant(build_root, tmp_path, "accel", unit=XC7.multiplier).is_file()


def test_ecp5_multiplier_instances_sim(build_root, tmp_path):
    """On an ECP5 every partial product is a MULT18X18D with its input, pipeline and output
    registers in use: the requantizer's Verilog for the ULX3S, run against a model of the
    primitive in that configuration (sim/ecp5_cells.py), gives the golden results at the same
    latency, so the instances are wired bit for bit and cycle for cycle as the twin that every
    other simulation runs."""
    from amaranth_boards.ulx3s import ULX3S_85F_Platform
    rq = _requantizer(**ACCEL_REQUANT, unit=ECP5.multiplier)
    design = verilog.convert(rq, name="requant", platform=ULX3S_85F_Platform())
    instances = instance_parameters(design)
    assert len(instances) == 6 and " * " not in design       # no multiply left in the fabric
    assert all(params == MULT18X18D_CONFIGURATION for params in instances)
    assert design.count(".SOURCEA(1'h0)") == design.count(".SOURCEB(1'h0)") == 6
    folder = build_root / "requant_ecp5"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "requant.v").write_text(strip_parameters(design))
    (folder / "mult18x18d.v").write_text(model_verilog())
    assert run_cocotb([folder / "requant.v", folder / "mult18x18d.v"], "requant",
                      "sim.benches.requant", folder, test_dir=tmp_path, seed=SEED,
                      params=ACCEL_REQUANT, log_file=tmp_path / "sim.log").is_file()


def test_a_wider_multiplier_without_post_adder_is_refused():
    """RegisteredMultiplier is 18 x 18: a wider unit would have its parts cut short silently."""
    with pytest.raises(ValueError, match="RegisteredMultiplier takes 18 x 18"):
        rtlil.convert(_requantizer(**ACCEL_REQUANT, unit=HardMultiplier(25, 18, False)), name="requant")


def test_operands_are_cut_to_the_multiplier():
    """A 21-bit x times a 40-bit M': 18 x 18 multipliers take 2 x 3 parts (17 + 4 bits; 17 + 17 +
    6), the DSP48's 25 x 18 takes x whole against 3 parts of M' (the other way round: 2 x 2)."""
    def multipliers(unit):
        return rtlil.convert(_requantizer(**ACCEL_REQUANT, unit=unit), name="requant").count("cell $mul ")
    assert multipliers(ECP5.multiplier) == multipliers(ANY_MULTIPLIER) == 6
    assert multipliers(XC7.multiplier) == 3


def test_shift_add_requant_sim(build_root, tmp_path_factory, tmp_path):
    """The multiplier-free requantizer, against the same golden recipe."""
    root = tmp_path_factory.mktemp("shift_add")
    assert _run_requant(root, tmp_path, "accel", multipliers=SHIFT_ADD_MULTIPLIERS).is_file()


def test_shift_add_requantizer_has_no_multiplier():
    """Its netlist has no multiply cell (nothing for synthesis to map to a DSP), where the DSP
    requantizer has one."""
    shift_add = ShiftAddRequantizer(21, SHIFT_ADD_MULTIPLIERS, 51, 24, 10)
    assert "$mul" not in rtlil.convert(shift_add, name="requant")
    assert "$mul" in rtlil.convert(_requantizer(**ACCEL_REQUANT), name="requant")


def test_requant_broken_twin_fails(build_root, tmp_path):
    with pytest.raises(CocotbFailure) as info:
        _run_requant(build_root, tmp_path, "accel", testcase="rounding_ties", break_model=True)
    assert info.value.num_tests == info.value.num_failed == 1


# -- the banked ROM (the conv engine's weights) ---------------------------------------------------

# 3 banks, the last short; 1 bank, with a register after the mux
@pytest.mark.parametrize("count,bank_depth,latency", [(11, 4, BankedRom.MIN_LATENCY), (5, 8, 5)])
def test_banked_rom_sim(build_root, tmp_path, count, bank_depth, latency):
    """Every word at every address, at one address per cycle, `latency` cycles late."""
    words = [int(w) for w in np.random.default_rng(SEED + count).integers(0, 1 << 20, size=count)]
    words[0] |= 1 << 19                                  # a word with the top bit set
    rom = BankedRom(20, words, latency, bank_depth)
    assert rom.banks == -(-count // bank_depth)
    params = dict(words=words, width=20, latency=latency, bank_depth=bank_depth)

    def run(test_dir, **extra):
        return run_cocotb(rom, "banked_rom", "sim.benches.banked_rom",
                          build_root / f"rom_{count}_{bank_depth}_{latency}", test_dir=test_dir,
                          seed=SEED, params={**params, **extra}, log_file=test_dir / "sim.log")

    assert run(tmp_path).is_file()
    with pytest.raises(CocotbFailure):
        run(tmp_path / "broken", break_model=True)
