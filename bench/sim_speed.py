"""Verilator simulation speed of the accelerator: Verilog export time, Verilator build time,
and simulated cycles per wall-clock second on a whole-network run.

    python -m bench.sim_speed [--model RUN_DIR/quant] [--lanes 8] [--images 2]

Without --model: a random WRN-8-1 on 12x12 inputs. Writes bench/results/sim_speed.json.
"""
import argparse
import os
import shutil
import tempfile
import time

from common.files import write_json
from hw.core.accelerator import Accelerator
from hw.core.plan import CoreOptions
from quantize.golden import run
from quantize.qmodel import read_qmodel
from quantize.random_model import random_images, random_qmodel
from sim.harness import TOPLEVEL, simulate
from sim.jobs import schedule_job
from sim.runner import export_verilog

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.sim_speed", description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None)
    p.add_argument("--lanes", type=int, default=8)
    p.add_argument("--images", type=int, default=2)
    args = p.parse_args(argv)
    if args.model:
        qmodel = read_qmodel(args.model)
        name = args.model
    else:
        qmodel = random_qmodel(depth=8, width=1, input_size=12, seed=0)
        name = "random WRN-8-1 12x12"
    images = random_images(args.images, qmodel.input_shape, seed=1)
    build = tempfile.mkdtemp(prefix="bitwrn_simspeed_")
    try:
        t0 = time.perf_counter()
        accel = Accelerator(CoreOptions(args.lanes).plan(qmodel))
        verilog = export_verilog(accel, TOPLEVEL, build)
        export_s = time.perf_counter() - t0
        job = schedule_job(accel.plan, images, run(qmodel, images))
        t0 = time.perf_counter()
        first = simulate(accel, job, build)          # build + run
        first_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        second = simulate(accel, job, build)         # cached build: run only
        run_s = time.perf_counter() - t0
        assert first.passed and second.passed, "simulation does not match the golden model"
        cycles = int(second.seen_at[-1])
        result = dict(benchmark="sim_speed", model=name, lanes=args.lanes, images=args.images,
                      verilog_bytes=os.path.getsize(verilog), export_s=export_s,
                      build_s=first_s - run_s, run_s=run_s, simulated_cycles=cycles,
                      cycles_per_s=cycles / run_s)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    print(f"{name}, {args.lanes} lanes: Verilog {result['verilog_bytes'] / 1e3:.0f} kB in "
          f"{export_s:.1f} s; Verilator build ~{result['build_s']:.0f} s; {cycles} cycles "
          f"simulated in {run_s:.1f} s = {result['cycles_per_s']:.0f} cycles/s "
          f"(run time includes cocotb start-up)")
    os.makedirs(OUT, exist_ok=True)
    write_json(os.path.join(OUT, "sim_speed.json"), result)
    return result


if __name__ == "__main__":
    main()
