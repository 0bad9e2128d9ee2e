"""Check the generated accelerator against the golden model in Verilator, from the command line.

    python -m sim --model RUN_DIR/quant --images N [--layer NAME] [--lanes 16] [--pixels 2]
                  [--requantizers dsp|shift-add] [--stall 0.2]

Prints every layer's verdict (`bit-exact`, or the first mismatch: index, expected, got) on the
first test image, then runs N test images through the whole network and prints the cycles per
image next to the analytic model. The last line reads `N/N images bit-exact`; the exit code is
non-zero on any mismatch.
"""
import os
import sys
import time

from common.cli import OneLineParser
from hw.latency import latency_report
from hw.memory_images import REQUANTIZERS
from hw.plan import CorePlan
from hw.schedule import build_schedule
from quantize.qmodel import QModelError, read_qmodel
from training.data import DatasetError, load_dataset


def build_parser():
    p = OneLineParser(prog="python -m sim", description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="quantized model: RUN_DIR/quant or its qmodel.npz")
    p.add_argument("--images", type=int, default=4, help="test images through the whole network")
    p.add_argument("--layer", action="append", default=None, metavar="NAME",
                   help="check only this layer (repeatable); default: all layers")
    p.add_argument("--lanes", type=int, default=16, help="channels per word (power of two)")
    p.add_argument("--pixels", type=int, default=2, help="output pixels per cycle (>= 1)")
    p.add_argument("--requantizers", default="dsp", choices=REQUANTIZERS,
                   help="the requantizers to build (as python -m hw.build --requantizers)")
    p.add_argument("--stall", type=float, default=0.2,
                   help="probability of a stall cycle on each stream side (0..0.9)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--build-dir", default="build/sim")
    p.add_argument("--no-layers", action="store_true", help="skip the layer-by-layer check")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    prog = "python -m sim"
    if args.images < 1 or args.pixels < 1 or args.lanes < 1 or args.lanes & (args.lanes - 1):
        print(f"{prog}: error: --images and --pixels must be >= 1 and --lanes a power of two",
              file=sys.stderr)
        return 2
    if not 0 <= args.stall <= 0.9:
        print(f"{prog}: error: --stall must be within 0..0.9", file=sys.stderr)
        return 2
    try:
        qmodel = read_qmodel(args.model)
        dataset = qmodel.manifest["source"].get("metadata", {}).get("dataset")
        if not dataset:
            raise DatasetError(f"{args.model} does not name its dataset; quantize a trained run")
        images = load_dataset(dataset, args.data_dir).test_x[:args.images]
    except (QModelError, DatasetError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    # Imported late: pulls in cocotb's runner only when there is work for it.
    from sim.check import check_layers, check_network

    schedule = build_schedule(qmodel, args.lanes, args.pixels)
    try:
        CorePlan(schedule, args.requantizers)    # checked before any simulator build
    except ValueError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    report = latency_report(schedule)
    failures = 0
    if not args.no_layers:
        print(f"layer by layer on test image 0 ({len(schedule.steps)} steps, {args.lanes} lanes x {args.pixels} pixel(s))...",
              flush=True)
        t0 = time.time()
        try:
            verdicts, _ = check_layers(qmodel, args.lanes, images[0],
                                       os.path.join(args.build_dir, "layers"), args.layer, args.pixels,
                                       args.requantizers)
        except ValueError as e:
            print(f"{prog}: error: {e}", file=sys.stderr)
            return 2
        for v in verdicts:
            print(f"  {v.line()}")
        failures += sum(not v.ok for v in verdicts)
        print(f"  ({time.time() - t0:.0f} s)")
    print(f"whole network, {len(images)} image(s), stalls {args.stall:.0%} on both streams...",
          flush=True)
    t0 = time.time()
    result, _ = check_network(qmodel, args.lanes, images, os.path.join(args.build_dir, "network"),
                              in_stall=args.stall, out_stall=args.stall, pixels=args.pixels,
                              requantizers=args.requantizers)
    for v, cycles in zip(result.verdicts, result.cycles + [None] * len(result.verdicts)):
        print(f"  {v.line()}" + (f", {cycles} cycles" if cycles else ""))
    model = report.cycles_per_image
    print(f"cycles per image: model {model} ({report.images_per_s:.0f} images/s at 100 MHz, "
          f"{report.add_sub_lanes} add/sub lanes, conv utilization {report.conv_utilization:.1%}); "
          f"measured {', '.join(map(str, result.cycles))} with stalls ({time.time() - t0:.0f} s)")
    exact = result.exact
    print(f"{exact}/{len(images)} images bit-exact" +
          ("" if exact == len(images) else f" ({len(images) - exact} not)"))
    return 0 if exact == len(images) and failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
