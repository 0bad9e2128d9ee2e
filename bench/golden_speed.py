"""Speed of the numpy float reference and the integer golden model on test images.

    python -m bench.golden_speed [--model RUN_DIR/quant] [--images 2000]

Without --model: a random WRN-20-1 on 28x28 inputs (the `make train` architecture). Images are
random pixels: the work per image does not depend on them. Prints images/s and the projected
time for 10,000 images.
"""
import argparse
import os
import time

from common.files import write_json
from quantize.convert import quantize_bundle
from quantize.float_reference import run_float
from quantize.golden import run
from quantize.qmodel import make_qmodel, read_qmodel
from quantize.random_model import random_bundle, random_images
from training.bundle import read_bundle

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.golden_speed", description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None, help="RUN_DIR/quant (its run's bundle.npz is used too)")
    p.add_argument("--images", type=int, default=2000)
    args = p.parse_args(argv)
    if args.model:
        qmodel = read_qmodel(args.model)
        bundle = read_bundle(qmodel.manifest["source"]["bundle"])
    else:
        bundle = random_bundle(depth=20, width=1, in_channels=1, num_classes=10, input_size=28)
        qmodel = make_qmodel(*quantize_bundle(bundle, random_images(64, (1, 28, 28), 3)))
    images = random_images(args.images, qmodel.input_shape, seed=4)
    times = {}
    for label, fn in (("float_reference", lambda: run_float(bundle, images)),
                      ("golden", lambda: run(qmodel, images))):
        t0 = time.perf_counter()
        fn()
        times[label] = time.perf_counter() - t0
        print(f"{label:16s} {args.images / times[label]:7.0f} images/s -> "
              f"{times[label] * 10000 / args.images:5.0f} s per 10,000 images")
    os.makedirs(OUT, exist_ok=True)
    write_json(os.path.join(OUT, "golden_speed.json"),
               dict(benchmark="golden_speed", images=args.images,
                    images_per_s={k: args.images / v for k, v in times.items()},
                    seconds_per_10k={k: v * 10000 / args.images for k, v in times.items()}))


if __name__ == "__main__":
    main()
