"""A run's ONNX and QONNX models against our own references, on its dataset's test set.

    python -m bench.onnx_agreement RUN_DIR [--test-images N] [--chunk 100]

The float ONNX model (python -m training.export_onnx) in onnxruntime against the float reference
(quantize/float_reference.py): the largest logit difference, relative to each image's largest
|logit|, and the share of images whose classes agree. The QONNX model of RUN_DIR/quant/qmodel.npz
(python -m quantize.export_qonnx) in qonnx's executor against the golden model: the images
whose integer logits are all equal, and the classes. Prints and writes
bench/results/onnx_agreement.json.
"""
import argparse
import os
import time

import numpy as np
from tqdm import tqdm

from common.files import write_json
from quantize.export_qonnx import qonnx_model, run_qonnx
from quantize.float_reference import run_float
from quantize.golden import run as run_golden
from quantize.qmodel import read_qmodel
from training.bundle import read_run_bundle
from training.data import load_dataset
from training.export_onnx import onnx_model

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def measure(run_dir, test_images=None, chunk=100, data_dir=None):
    import onnxruntime
    bundle = read_run_bundle(run_dir)
    qmodel = read_qmodel(os.path.join(run_dir, "quant", "qmodel.npz"))
    images = load_dataset(bundle.metadata["dataset"], data_dir).test_x[:test_images]
    session = onnxruntime.InferenceSession(onnx_model(bundle).SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    qonnx = qonnx_model(qmodel)
    worst, float_agree, exact, int_agree = 0.0, 0, 0, 0
    t0 = time.perf_counter()
    for start in tqdm(range(0, len(images), chunk), desc="onnx, qonnx", unit="chunk"):
        x = images[start:start + chunk]
        got, want = session.run(["logits"], {"image": x.astype(np.float32)})[0], run_float(bundle, x)
        worst = max(worst, float((np.abs(got - want) / np.abs(want).max(axis=1, keepdims=True)).max()))
        float_agree += int(np.sum(got.argmax(1) == want.argmax(1)))
        ints = np.round(run_qonnx(qonnx, x) / qmodel.manifest["logits_scale"]).astype(np.int64)
        golden = run_golden(qmodel, x)
        exact += int(np.all(ints == golden.logits, axis=1).sum())
        int_agree += int(np.sum(ints.argmax(1) == golden.classes))
    n = len(images)
    return dict(run=run_dir, images=n, onnx_max_relative_logit_difference=worst,
                onnx_class_agreement=float_agree / n, qonnx_exact_images=exact,
                qonnx_class_agreement=int_agree / n, wall_s=round(time.perf_counter() - t0, 1))


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.onnx_agreement", description=__doc__.split("\n")[0])
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--test-images", type=int, default=None)
    p.add_argument("--chunk", type=int, default=100, help="images per qonnx execution")
    p.add_argument("--data-dir", default=None)
    args = p.parse_args(argv)
    row = measure(args.run_dir, args.test_images, args.chunk, args.data_dir)
    print(f"{row['run']}: {row['images']:,} images; ONNX vs float reference: max logit difference "
          f"{row['onnx_max_relative_logit_difference']:.2e} of the largest, classes agree "
          f"{100 * row['onnx_class_agreement']:.2f}%; QONNX vs golden model: "
          f"{row['qonnx_exact_images']:,} images with every integer logit equal, classes agree "
          f"{100 * row['qonnx_class_agreement']:.2f}% ({row['wall_s']:.0f} s)")
    os.makedirs(OUT, exist_ok=True)
    write_json(os.path.join(OUT, "onnx_agreement.json"), dict(benchmark="onnx_agreement", **row))
    return row


if __name__ == "__main__":
    main()
