"""Classify image files with a run's model: the float reference and the golden model side by side.

    python -m quantize.classify RUN_DIR IMAGE... [--top 5] [--qmodel PATH]

RUN_DIR holds bundle.npz (the float reference, quantize/float_reference.py) and, after
`python -m quantize RUN_DIR`, quant/qmodel.npz (the bit-exact integer model the hardware
computes, quantize/golden.py). Each image is converted and resized to the model's input
(quantize/images.py). Per image, the top classes of each model with their logits; the golden
model's logits are shown as real values (integer x logits_scale) beside the integers. Class
names come from the dataset the bundle names.
"""
import os
import sys

import numpy as np

from common.cli import OneLineParser, UsageError, integer, path_arg, run_main
from quantize.float_reference import run_float
from quantize.golden import run as run_golden
from quantize.images import ImageFileError, load_images
from quantize.qmodel import QModelError, read_qmodel
from training.bundle import BundleError, read_run_bundle
from training.data import CLASS_NAMES

PROG = "python -m quantize.classify"


def build_parser():
    p = OneLineParser(prog=PROG, description=__doc__.split("\n")[0])
    p.add_argument("run_dir", type=path_arg, metavar="RUN_DIR", help="run folder holding bundle.npz")
    p.add_argument("images", type=path_arg, nargs="+", metavar="IMAGE", help="PNG, JPEG, ... files")
    p.add_argument("--top", type=integer(1, 1000, "the model's class count is checked too"),
                   default=5, metavar="K", help="classes shown per model (default 5)")
    p.add_argument("--qmodel", type=path_arg, default=None,
                   help="integer model (default RUN_DIR/quant/qmodel.npz, if it exists)")
    return p


def top_classes(logits, k):
    """Indices of the k largest logits, largest first; ties to the lower index (as argmax)."""
    return list(np.argsort(-np.asarray(logits, np.float64), kind="stable")[:k])


def classify(bundle, qmodel, images, k):
    """Per image a dict: float logits and top-k, and, with a qmodel, the golden model's."""
    float_logits = run_float(bundle, images)
    golden = run_golden(qmodel, images) if qmodel is not None else None
    rows = []
    for i in range(len(images)):
        row = dict(float_logits=float_logits[i], float_top=top_classes(float_logits[i], k))
        if golden is not None:
            row.update(int_logits=golden.logits[i], int_top=top_classes(golden.logits[i], k))
        rows.append(row)
    return rows


def main(argv=None):
    args = build_parser().parse_args(argv)

    def work():
        bundle = read_run_bundle(args.run_dir)
        qpath = args.qmodel or os.path.join(args.run_dir, "quant", "qmodel.npz")
        qmodel = read_qmodel(qpath) if args.qmodel or os.path.isfile(qpath) else None
        classes = bundle.manifest["num_classes"]
        if args.top > classes:
            raise UsageError(f"--top {args.top}: the model has {classes} classes; give "
                             f"--top {classes} or fewer")
        if qmodel is not None and qmodel.num_classes != classes:
            raise UsageError(f"{qpath} has {qmodel.num_classes} classes, {bundle.path} {classes}: "
                             "quantize this run again")
        names = CLASS_NAMES.get(bundle.metadata.get("dataset"), [str(c) for c in range(classes)])
        images = load_images(args.images, tuple(bundle.manifest["input_shape"]))
        if qmodel is None:
            print(f"no integer model at {qpath}: float reference only (python -m quantize "
                  f"{args.run_dir} makes one)")
        scale = qmodel.manifest["logits_scale"] if qmodel is not None else None
        for path, row in zip(args.images, classify(bundle, qmodel, images, args.top)):
            print(path)
            print(f"  {'float reference':<32}" + (f"  {'golden model (integer x scale)':<40}"
                                                 if qmodel is not None else ""))
            for r in range(args.top):
                c = row["float_top"][r]
                line = f"  {names[c]:<20} {row['float_logits'][c]:>11.4f}"
                if qmodel is not None:
                    g = row["int_top"][r]
                    v = int(row["int_logits"][g])
                    line += f"  {names[g]:<20} {v:>8} x {scale:.3g} = {v * scale:>9.4f}"
                print(line)
        return 0
    return run_main(PROG, work, errors=(BundleError, QModelError, ImageFileError))


if __name__ == "__main__":
    sys.exit(main())
