"""The simulator switch: BITWRN_SIM picks Verilator (default) or Icarus for sim.runner.run_cocotb.

A wrong value is a one-line error; under icarus without iverilog the hardware tests are skipped
with a reason; with iverilog, one block bench gives the same verdicts and the same simulated
time (cycles) under both simulators. `make test-icarus` runs the block and a whole-network test
under Icarus.
"""
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from hw.blocks.addsub_tree import AddSubTree
from sim.runner import (SIM_ENV, SIMULATORS, CocotbFailure, SimulatorError, run_cocotb,
                        simulator)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HAVE_ICARUS = shutil.which("iverilog") is not None and shutil.which("vvp") is not None


def test_default_and_values(monkeypatch):
    monkeypatch.delenv(SIM_ENV, raising=False)
    assert simulator() == "verilator"
    monkeypatch.setenv(SIM_ENV, "")
    assert simulator() == "verilator"
    monkeypatch.setenv(SIM_ENV, "Icarus")
    assert simulator() == "icarus"
    assert SIMULATORS == ("verilator", "icarus")


def test_unknown_simulator_is_a_one_line_error(monkeypatch, tmp_path):
    monkeypatch.setenv(SIM_ENV, "bogus")
    with pytest.raises(SimulatorError) as info:
        run_cocotb(tmp_path / "top.v", "top", "sim.benches.addsub_tree", tmp_path / "build")
    assert str(info.value) == "BITWRN_SIM='bogus': must be one of verilator, icarus"
    assert not (tmp_path / "build").exists()      # refused before anything was made


def test_icarus_without_iverilog_skips_the_hardware_tests(tmp_path):
    """A PATH holding only the venv's bin (no iverilog): the simulating tests are skipped with
    the install hint, the pure-Python ones still pass."""
    env = dict(os.environ, **{SIM_ENV: "icarus", "PATH": os.path.dirname(sys.executable)})
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
         "--basetemp", str(tmp_path / "t"), "tests/test_hw_blocks.py",
         "-k", "test_tree_sim or test_tree_broken_twin_fails or test_requant_model_is_golden"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "1 passed, 4 skipped" in out, out
    assert out.count("iverilog not installed: apt-get install iverilog") >= 1, out


def _verdicts(results_xml):
    """{cocotb test: (passed, simulated ns)} from a cocotb results file."""
    out = {}
    for case in ET.parse(results_xml).iter("testcase"):
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        failed = case.find("failure") is not None or case.find("error") is not None
        out[case.get("name")] = (not failed, float(props["sim_time_duration"]))
    return out


@pytest.mark.skipif(not HAVE_ICARUS, reason="iverilog not installed: apt-get install iverilog")
def test_a_block_is_the_same_under_both_simulators(monkeypatch, tmp_path):
    """The adder tree bench (a new vector every cycle, each output checked against the model on
    its cycle) passes under both with the same simulated time per test, and its broken twin
    fails every test under both; each simulator builds in its own folder."""
    params = {"lanes": 5, "width": 9, "cycles": 400}
    build = tmp_path / "build"
    runs = {}
    for sim in SIMULATORS:
        monkeypatch.setenv(SIM_ENV, sim)
        test_dir = tmp_path / sim
        runs[sim] = _verdicts(run_cocotb(AddSubTree(5, 9), "addsub_tree", "sim.benches.addsub_tree",
                                         build, test_dir=test_dir, seed=7, params=params,
                                         log_file=test_dir / "sim.log"))
        with pytest.raises(CocotbFailure) as info:
            run_cocotb(AddSubTree(5, 9), "addsub_tree", "sim.benches.addsub_tree", build,
                       test_dir=test_dir, seed=7, params={**params, "break_model": True},
                       log_file=test_dir / "sim_broken.log")
        assert info.value.num_tests == info.value.num_failed == 2, sim
    assert runs["icarus"] == runs["verilator"]
    assert set(runs["icarus"]) == {"random_full_throughput", "extremes"}
    assert all(ok for ok, _ in runs["icarus"].values())
    assert (build / "icarus" / "sim.vvp").is_file() and (build / "verilator").is_dir()
