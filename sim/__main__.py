"""Check the generated accelerator against the golden model in Verilator, from the command line.

    python -m sim --model RUN_DIR/quant --images N [--layer NAME] [--lanes 16] [--pixels 2]
                  [--requantizers dsp|shift-add] [--stall 0.2] [--board arty_a7] [--netlist]

With --board, the core is elaborated as that board's build elaborates it: on the Arty, the
requantizers cut for the DSP48E1's multiplier and the accumulators as DSP48E1 instances,
simulated with yosys's own model of the primitive (sim/xilinx_cells.py); without it, every
part is its Amaranth twin. With --netlist, what runs is not the RTL but the netlist yosys
synthesizes from it for the board's family (synth_ecp5 as the ULX3S build runs it, synth_xilinx
as the Arty estimate does), with yosys's cell models and the project's models of the block RAM
and multiplier (sim/netlist.py).

Prints every layer's verdict (`bit-exact`, or the first mismatch: index, expected, got) on the
first test image, then runs N test images through the whole network and prints the cycles per
image next to the analytic model. --image-folder DIR takes the images from image files instead
of the test set. A model with layers the accelerator cannot compute (Keras padding at stride 2)
gets the layer check of its other layers, each one it cannot compute named, and no
whole-network run. The last line reads `N/N images bit-exact`. Exit status: 0 all
bit-exact, 1 a mismatch or a failed simulator build/run (one line on stderr naming its log),
2 a bad command line, model, dataset or --build-dir (one line, checked before any build).
"""
import os
import re
import sys
import time

from common.cli import OneLineParser, UsageError, integer, number, path_arg, run_main
from common.files import check_output_folder, folder_lock, writing
from hw.board.boards import BOARDS
from hw.board.families import XC7
from hw.compiler.memory_images import REQUANTIZERS
from hw.core.latency import latency_report
from hw.core.plan import CoreOptions
from hw.link.protocol import MAX_PIXELS
from hw.compiler.schedule import unsupported
from quantize.images import ImageFileError, folder_images, load_images
from quantize.qmodel import QModelError, read_qmodel
from sim.netlist import FAMILIES as NETLIST_FAMILIES
from sim.runner import build_path_problem
from training.container import MAX_SIZE
from training.data import DatasetError, load_dataset


PROG = "python -m sim"
MAX_IMAGES = 10 ** 7          # more than any test set here has
# Boards whose RTL's hard blocks have a simulation model here (the ECP5's MULT18X18D is
# simulated in tests/test_hw_blocks.py, and in the netlist of every board: --netlist).
SIM_BOARDS = [name for name, board in BOARDS.items() if board.family is XC7]
NETLIST_BOARDS = [name for name, board in BOARDS.items() if board.family.name in NETLIST_FAMILIES]


def build_parser():
    p = OneLineParser(prog=PROG, description=__doc__.split("\n")[0])
    p.add_argument("--model", type=path_arg, required=True,
                   help="quantized model: RUN_DIR/quant or its qmodel.npz")
    p.add_argument("--images", type=integer(1, MAX_IMAGES, "the test set's size is checked too"),
                   default=4, help="test images through the whole network")
    p.add_argument("--layer", action="append", default=None, metavar="NAME",
                   help="check only this layer (repeatable); default: all layers")
    p.add_argument("--lanes", type=integer(1, MAX_SIZE, "a quantized model's channel limit"),
                   default=16, help="channels per word (power of two)")
    p.add_argument("--pixels", type=integer(1, MAX_PIXELS, "the pixels a frame carries"), default=2,
                   help="output pixels per cycle")
    p.add_argument("--requantizers", default="dsp", choices=REQUANTIZERS,
                   help="the requantizers to build (as python -m hw.build --requantizers)")
    p.add_argument("--stall", type=number(0, 0.9, "a probability; 1 would stall for ever"),
                   default=0.2, help="probability of a stall cycle on each stream side (0..0.9)")
    p.add_argument("--data-dir", type=path_arg, default=None)
    p.add_argument("--image-folder", type=path_arg, default=None, metavar="DIR",
                   help="take the images from the image files in DIR (PNG, JPEG, ...; resized "
                        "to the model's input) instead of the dataset's test set")
    p.add_argument("--build-dir", type=path_arg, default="build/sim",
                   help="a folder for the simulator builds (its layers/ and network/)")
    p.add_argument("--no-layers", action="store_true", help="skip the layer-by-layer check")
    p.add_argument("--board", default=None,
                   help=f"elaborate the core as this board's build does ({', '.join(SIM_BOARDS)}), "
                        "its hard blocks simulated with yosys's models (default: none, every part "
                        "its twin)")
    p.add_argument("--netlist", action="store_true",
                   help="simulate the netlist yosys synthesizes for --board's family (synth_ecp5, "
                        "synth_xilinx) with the cell models, instead of the RTL")
    return p


def core_options(args):
    """(CoreOptions, platform) for the command line: with --board its family's multiplier and
    its platform, else the default multiplier and no platform (every part its twin)."""
    if args.board is None:
        return CoreOptions(args.lanes, args.pixels, args.requantizers), None
    board = BOARDS[args.board]
    return (board.family.core_options(args.lanes, args.pixels, args.requantizers),
            board.make_platform())


def check_arguments(args):
    """Every option alone and together: UsageError (one line) before any work."""
    if args.lanes & (args.lanes - 1):
        raise UsageError(f"--lanes must be a power of two, got {args.lanes}")
    if args.netlist and args.board is None:
        raise UsageError(f"--netlist simulates a board's netlist: give --board "
                         f"({' or '.join(NETLIST_BOARDS)})")
    if args.board is not None and args.board not in BOARDS:
        raise UsageError(f"--board {args.board}: no such board; give one of {', '.join(BOARDS)}")
    if args.board is not None and args.netlist and args.board not in NETLIST_BOARDS:
        raise UsageError(f"--board {args.board}: no netlist simulation for its family; give "
                         f"{' or '.join(NETLIST_BOARDS)}")
    if args.board is not None and not args.netlist and args.board not in SIM_BOARDS:
        raise UsageError(f"--board {args.board}: no simulation model of its hard blocks in the RTL "
                         f"here; give --netlist (its synthesized netlist), {' or '.join(SIM_BOARDS)}, "
                         "or leave --board out (every part its twin)")
    if args.layer and args.no_layers:
        raise UsageError(f"--layer {args.layer[0]} selects a layer of the layer-by-layer check, "
                         f"which --no-layers skips: give one or the other")
    if args.image_folder and args.data_dir:
        raise UsageError("--image-folder replaces the dataset that --data-dir finds: give one or "
                         "the other")


def check_build_dir(build_dir, subfolders):
    """--build-dir and its `subfolders` are folders this process can write, or can make: one
    line otherwise. Makes nothing (make_build_dirs does, once the inputs are read)."""
    problem = build_path_problem(build_dir)
    if problem:
        raise UsageError(f"--build-dir {problem}")
    check_output_folder(build_dir, "--build-dir")
    for sub in subfolders:
        check_output_folder(os.path.join(build_dir, sub), "--build-dir")


def make_build_dirs(build_dir, subfolders):
    for sub in subfolders:
        path = os.path.join(build_dir, sub)
        with writing(f"--build-dir {build_dir}: {path}", "give a writable folder"):
            os.makedirs(path, exist_ok=True)


def simulation_failed(error, folder):
    """One line for a CocotbFailure: what failed and the simulator's log; exit status 1."""
    log = os.path.join(os.path.abspath(folder), "sim.log")
    text = re.sub(r";? see \S*sim\.log", "", " ".join(str(error).split()))
    if len(text) > 240:
        text = text[:237] + "..."
    print(f"{PROG}: error: the simulation failed ({text}); see {log}", file=sys.stderr)
    return 1


def run(args):
    check_arguments(args)
    subfolders = ([] if args.no_layers else ["layers"]) + ["network"]
    check_build_dir(args.build_dir, subfolders)
    qmodel = read_qmodel(args.model)
    images = test_images(args, qmodel)
    options, platform = core_options(args)
    try:
        plan = options.plan(qmodel)
    except ValueError as e:                 # the model and options the core cannot take
        if not any(unsupported(op) for op in qmodel.ops) or args.no_layers:
            raise UsageError(str(e)) from e
        plan = options.plan(qmodel, check=False)    # its other layers, one by one
        from sim.check import select_layers
        try:
            _, refused = select_layers(plan.schedule, args.layer)
        except ValueError as e:     # no such layer: the layer check's own line, before any build
            raise UsageError(str(e)) from None
        if refused:
            raise UsageError(f"--layer {refused[0].name}: {refused[0].unsupported}")
    from sim.runner import SimulatorError, ensure_simulator
    try:
        ensure_simulator()              # $BITWRN_SIM names one, and it is installed
    except (SimulatorError, RuntimeError) as e:
        raise UsageError(str(e)) from None
    with folder_lock(args.build_dir, "--build-dir"):
        return simulate_all(args, plan, images, subfolders, platform)


def test_images(args, qmodel):
    """The first --images images: of --image-folder's files, or of the dataset's test set."""
    if args.image_folder:
        images, where = load_images(folder_images(args.image_folder), qmodel.input_shape), \
            f"{args.image_folder} holds"
    else:
        dataset = qmodel.manifest["source"].get("metadata", {}).get("dataset")
        if not dataset:
            raise DatasetError(f"{args.model} does not name its dataset; quantize a trained run, "
                               "or give --image-folder")
        images, where = load_dataset(dataset, args.data_dir).test_x, f"the {dataset} test set has"
    if args.images > len(images):
        raise UsageError(f"--images {args.images}: {where} {len(images)} images; give --images "
                         f"{len(images)} or fewer")
    return images[:args.images]


def simulate_all(args, plan, images, subfolders, platform):
    """The layer-by-layer check and the whole network, in --build-dir (locked)."""
    from sim.runner import CocotbFailure
    netlist = BOARDS[args.board] if args.netlist else None
    layers_dir = os.path.join(args.build_dir, "layers")
    network_dir = os.path.join(args.build_dir, "network")
    make_build_dirs(args.build_dir, subfolders)
    # Imported late: pulls in cocotb's runner only when there is work for it.
    from sim.check import check_layers, check_network

    report = latency_report(plan.schedule)
    failures = 0
    if not args.no_layers:
        print(f"layer by layer on test image 0 ({len(plan.steps)} steps, {args.lanes} lanes x {args.pixels} pixel(s))...",
              flush=True)
        t0 = time.time()
        try:
            verdicts, _ = check_layers(plan, images[0], layers_dir, args.layer, platform, netlist)
        except ValueError as e:
            raise UsageError(str(e)) from e
        except CocotbFailure as e:
            return simulation_failed(e, layers_dir)
        for v in verdicts:
            print(f"  {v.line()}")
        failures += sum(not v.ok for v in verdicts)
        print(f"  ({time.time() - t0:.0f} s)")
    refused = [s for s in plan.steps if s.unsupported]
    for step in refused:
        print(f"  {step.name}: not computable by the accelerator ({step.unsupported})")
    if refused:
        print(f"whole network: not run, {len(refused)} of its steps are not computable by the "
              "accelerator")
        return 0 if failures == 0 else 1
    print(f"whole network, {len(images)} image(s), stalls {args.stall:.0%} on both streams...",
          flush=True)
    t0 = time.time()
    try:
        result, _ = check_network(plan, images, network_dir, in_stall=args.stall,
                                  out_stall=args.stall, platform=platform, netlist=netlist)
    except CocotbFailure as e:
        return simulation_failed(e, network_dir)
    for v, cycles in zip(result.verdicts, result.cycles + [None] * len(result.verdicts)):
        print(f"  {v.line()}" + (f", {cycles} cycles" if cycles else ""))
    print(f"cycles per image: model {report.latency_cycles} for the first, {report.cycles_per_image} "
          f"back to back ({report.images_per_s:.0f} images/s at 100 MHz, "
          f"{report.add_sub_lanes} add/sub lanes, conv utilization {report.conv_utilization:.1%}); "
          f"measured {', '.join(map(str, result.cycles))} with {args.stall:.0%} stalls "
          f"({time.time() - t0:.0f} s)")
    exact = result.exact
    print(f"{exact}/{len(images)} images bit-exact" +
          ("" if exact == len(images) else f" ({len(images) - exact} not)"))
    return 0 if exact == len(images) and failures == 0 else 1


def main(argv=None):
    args = build_parser().parse_args(argv)
    return run_main(PROG, lambda: run(args), errors=(QModelError, DatasetError, ImageFileError))


if __name__ == "__main__":
    sys.exit(main())
