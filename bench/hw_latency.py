"""Cycles per image, images/s and add/sub lane utilization of the accelerator, over a sweep of
lanes x pixels per cycle, from the analytic latency model (which the simulation matches cycle
for cycle).

    python -m bench.hw_latency [--model RUN_DIR/quant] [--configs 8x1,8x2,16x1,16x2,32x1]
                               [--clock-mhz 100]

Latency depends on the architecture only, so without --model it uses a random WRN-20-1 on
28x28 inputs: the `make train` architecture. Writes bench/results/hw_latency.json and .png.
"""
import argparse
import os

from common.files import atomic_path, write_json
from hw.core.latency import latency_report
from hw.compiler.schedule import CONV, build_schedule
from quantize.qmodel import read_qmodel
from quantize.random_model import random_qmodel

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.hw_latency", description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None)
    p.add_argument("--configs", default="8x1,8x2,16x1,16x2,32x1,32x2", help="LANESxPIXELS,...")
    p.add_argument("--clock-mhz", type=float, default=100.0)
    args = p.parse_args(argv)
    qmodel = read_qmodel(args.model) if args.model else \
        random_qmodel(depth=20, width=1, in_channels=1, num_classes=10, input_size=28, seed=0)
    rows = []
    print(f"{'lanes':>5} {'pixels':>6} {'add/sub':>7} {'cycles/img':>10} {'img/s':>8} "
          f"{'conv util':>9} {'overall':>8}")
    for config in args.configs.split(","):
        lanes, pixels = (int(v) for v in config.split("x"))
        r = latency_report(build_schedule(qmodel, lanes, pixels), args.clock_mhz)
        rows.append(r.as_dict())
        print(f"{lanes:5d} {pixels:6d} {r.add_sub_lanes:7d} {r.cycles_per_image:10d} "
              f"{r.images_per_s:8.0f} {r.conv_utilization:9.1%} {r.utilization:8.1%}")
    best = max(rows, key=lambda r: (r["lanes"] == 16, r["pixels_per_cycle"]))
    print(f"\nper layer at {best['lanes']} lanes x {best['pixels_per_cycle']} pixels:")
    for s in best["layers"]:
        util = f"{s['utilization']:6.1%}" if s["kind"] == CONV.label else "     -"
        print(f"  {s['name']:16s} {s['kind']:6s} {s['cycles']:8d} cycles  util {util}")
    os.makedirs(OUT, exist_ok=True)
    write_json(os.path.join(OUT, "hw_latency.json"), dict(benchmark="hw_latency", sweep=rows))
    plot(rows, os.path.join(OUT, "hw_latency.png"))
    return rows


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax_c, ax_u) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for r in rows:
        names = [s["name"] for s in r["layers"]]
        ax_c.plot(names, [s["cycles"] for s in r["layers"]], "o-", label=f"{r['lanes']} lanes x {r['pixels_per_cycle']} px")
        ax_u.plot(names, [100 * s["utilization"] for s in r["layers"]], "o-")
    ax_c.set_yscale("log")
    ax_c.set_ylabel("cycles")
    ax_c.legend()
    ax_u.set_ylabel("lane utilization (%)")
    ax_u.tick_params(axis="x", rotation=90)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
