"""Smoke test of the simulator path: Amaranth -> Verilog -> Verilator 5.048 via cocotb 2.1's runner."""

import re

import pytest

from sim.runner import CocotbFailure, export_verilog, run_cocotb
from sim.smoke_design import SmokeAccumulator
from sim.smoke_model import AccumulatorModel, wrap_signed

TOP = "smoke_acc"


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory):
    # One Verilator build shared by the tests below (the first build takes ~15 s).
    return tmp_path_factory.mktemp("smoke_build")


def test_model_wraps():
    assert wrap_signed(32767 + 1, 16) == -32768
    assert wrap_signed(-32768 - 1, 16) == 32767
    m = AccumulatorModel(16)
    assert [m.step(5, 1, 1, 0), m.step(7, 0, 1, 0), m.step(3, 1, 0, 0), m.step(9, 1, 1, 1)] == [5, -2, -2, 0]


def test_export_has_signature_ports(tmp_path):
    text = export_verilog(SmokeAccumulator(), TOP, tmp_path).read_text()
    assert re.search(rf"^module {TOP}\s*\(", text, re.M)
    for port in ("clk", "rst", "x", "w", "en", "clear", "acc"):
        assert re.search(rf"\b(input|output)\b[^;]*\b{port}\b\s*;", text), port


def test_smoke_accumulator_passes(build_dir, tmp_path):
    results = run_cocotb(SmokeAccumulator(), TOP, "sim.benches.smoke", build_dir,
                         test_dir=tmp_path, seed=1234)
    assert results.is_file()


def test_wrong_reference_fails(build_dir, tmp_path):
    with pytest.raises(CocotbFailure) as info:
        run_cocotb(SmokeAccumulator(), TOP, "sim.benches.smoke", build_dir,
                   test_dir=tmp_path, seed=1234, params={"break_model": True})
    assert info.value.num_tests == 3
    assert info.value.num_failed == 3
