"""Run a job through the accelerator in Verilator and return what came out, with cycle stamps."""
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sim.runner import CocotbFailure, export_verilog, run_cocotb, write_if_changed

TOPLEVEL = "accelerator"


@dataclass
class SimResult:
    beats: list           # output payloads as ints
    seen_at: np.ndarray   # cycle of each output beat
    accepted_at: np.ndarray  # cycle of each input handshake
    passed: bool          # every beat equal to the job's expectation
    message: str = ""


def platform_sources(accel, build_dir, platform):
    """The accelerator's Verilog as elaborated for `platform` (its hard-block instances), and
    the simulation models those instances need (sim/xilinx_cells.py)."""
    from sim.xilinx_cells import dsp48e1_model
    sources = [export_verilog(accel, TOPLEVEL, build_dir, platform)]
    if "DSP48E1 #(" in sources[0].read_text():
        sources.append(write_if_changed(build_dir / "dsp48e1.v", dsp48e1_model()))
    return sources


def simulate(accel, job, build_dir, log_file=None, platform=None, netlist=None, fault=None):
    """`platform`: elaborate for it (a 7-series one builds DSP48E1s, simulated with yosys's
    model); default: none, every part its Amaranth twin. `netlist`: a board, whose family's
    synthesized netlist of the core is simulated instead, edited by `fault` where given
    (sim/netlist.py)."""
    build_dir = Path(build_dir).resolve()  # the simulator runs inside it: no relative paths
    build_dir.mkdir(parents=True, exist_ok=True)
    build_args = None
    if netlist is not None:
        from sim.netlist import netlist_sources
        accel, build_args = netlist_sources(accel, TOPLEVEL, build_dir, netlist, fault)
    elif platform is not None:
        accel = platform_sources(accel, build_dir, platform)
    job_path, result_path = build_dir / "job.npz", build_dir / "result.npz"
    job.save(job_path)
    if result_path.exists():
        result_path.unlink()
    passed, message = True, ""
    try:
        run_cocotb(accel, TOPLEVEL, "sim.benches.accelerator", build_dir, test_dir=build_dir,
                   params={"job": job_path, "result": result_path}, build_args=build_args,
                   log_file=log_file or build_dir / "sim.log")
    except CocotbFailure as e:
        passed, message = False, str(e)
    if not result_path.exists():
        raise CocotbFailure(f"the simulation wrote no result ({message}); see {build_dir / 'sim.log'}")
    r = np.load(result_path, allow_pickle=False)
    return SimResult([int(v) for v in r["beats"]], r["seen_at"], r["accepted_at"], passed, message)
