"""A run trained for low-bit activations: its own forward pass against its golden model.

    python -m bench.qat_agreement RUN_DIR [RUN_DIR ...] [--test-images N]

For each run (python -m training.train --act-bits B ...): the network rebuilt from its bundle
(training.export.model_from_bundle: the float forward with the trained rounding) and the golden
model of RUN_DIR/quant/qmodel.npz (python -m quantize RUN_DIR: the trained scales) classify the
test set. Prints both test errors and the share of images where the classes agree; writes
bench/results/qat_agreement.json.
"""
import argparse
import os

import numpy as np
import torch

from common.files import write_json
from quantize.golden import run as run_golden
from quantize.qmodel import read_qmodel
from training.bundle import read_bundle
from training.data import load_dataset
from training.export import model_from_bundle

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
BATCH = 500


def measure(run_dir, test_images=None):
    bundle = read_bundle(os.path.join(run_dir, "bundle.npz"))
    qmodel = read_qmodel(os.path.join(run_dir, "quant", "qmodel.npz"))
    data = load_dataset(bundle.metadata["dataset"])
    n = test_images or len(data.test_x)
    x, y = data.test_x[:n], data.test_y[:n]
    model = model_from_bundle(bundle)
    with torch.no_grad():
        ours = np.concatenate([model(torch.from_numpy(x[i:i + BATCH]).float()).argmax(1).numpy()
                               for i in range(0, n, BATCH)])
    golden = run_golden(qmodel, x).classes
    act = bundle.activations or {}
    return dict(run=run_dir, act_bits=act.get("bits"), residual_bits=act.get("residual_bits"),
                scales=qmodel.manifest["source"].get("scales"), test_images=n,
                trained_forward_error=float(np.mean(ours != y)),
                golden_error=float(np.mean(golden != y)),
                class_agreement=float(np.mean(ours == golden)))


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.qat_agreement", description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--test-images", type=int, default=None)
    args = p.parse_args(argv)
    print(f"{'run':28s} {'bits':>4s} {'resid':>5s} {'scales':>8s} {'trained fwd':>11s} "
          f"{'golden':>7s} {'agree':>7s}")
    rows = []
    for run_dir in args.runs:
        r = measure(run_dir, args.test_images)
        rows.append(r)
        print(f"{run_dir:28s} {r['act_bits']!s:>4s} {r['residual_bits']!s:>5s} {r['scales']!s:>8s} "
              f"{100 * r['trained_forward_error']:10.2f}% {100 * r['golden_error']:6.2f}% "
              f"{100 * r['class_agreement']:6.2f}%", flush=True)
    os.makedirs(OUT, exist_ok=True)
    write_json(os.path.join(OUT, "qat_agreement.json"), dict(benchmark="qat_agreement", rows=rows))
    return rows


if __name__ == "__main__":
    main()
