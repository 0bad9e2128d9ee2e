"""Quantize a trained run: deployment bundle -> integer model (qmodel.npz) + report.

    python -m quantize RUN_DIR [--act-bits B] [--multiplier-bits 16] [--calib-images 2000]
                       [--calib-folder DIR] [--out RUN_DIR/quant]

Reads RUN_DIR/bundle.npz and loads the dataset named in its metadata. With --calib-folder the
scales are picked on the image files in DIR instead of training images (an imported model whose
training set is not at hand); without the dataset, the float and integer models are then
compared on those images and no test error is measured. A run trained for B-bit
activations (python -m training.train --act-bits B) brings its own power-of-two scales, and
--act-bits defaults to B; at any other width (8 by default) the scales are picked on training
images (the first N of a fixed seeded permutation). It measures the float reference's test
error, then for every width in --sweep-bits quantizes, runs the bit-exact golden model and
compares. Writes into --out: qmodel.npz (the --act-bits model; format in
docs/quantized-model.md), report.json, report.md and report.png. --out is checked before the
work starts; the files are written only after all the work succeeded, into a new folder that
then takes --out's place as a whole, so a failed run leaves --out as it was.
"""
import os
import sys
import time

import numpy as np
from tqdm import tqdm

from common.bits import ceil_div
from common.cli import OneLineParser, UsageError, integer, number, path_arg, run_main
from common.files import check_output_folder, folder_lock, replace_folder, writing
from quantize.convert import (CALIB_CHUNK, calibrate, quantize_bundle, trained_bounds,
                              trained_widths)
from quantize.fixed_point import MULTIPLIER_BITS
from quantize.float_reference import auto_chunk, run_float
from quantize.golden import run as run_golden
from quantize.images import ImageFileError, folder_images, load_images
from quantize.qmodel import make_qmodel, write_qmodel
from quantize.report import build_report, render, write_report
from training.act_points import WIDTHS
from training.bundle import BundleError, read_run_bundle
from training.data import DATASETS, DatasetError, load_dataset

PROG = "python -m quantize"
MIN_BITS, MAX_BITS = WIDTHS
DEFAULT_ACT_BITS = 8    # without scales trained for a width
CALIB_SEED = 0          # the calibration images: first N of permutation(seed 0) of the train set
CALIB_STEP = 4 * CALIB_CHUNK
DEFAULT_SWEEP = "8,6,4"
CALIB_IMAGES = 2000
MAX_IMAGES = 10 ** 8        # more than any dataset here has
OUTPUTS = ("qmodel.npz", "report.json", "report.md", "report.png")


def _bits_list(text):
    parse = integer(MIN_BITS, MAX_BITS)
    return [parse(t.strip()) for t in text.split(",") if t.strip()]


def build_parser():
    p = OneLineParser(prog=PROG, description=__doc__.split("\n")[0])
    p.add_argument("run_dir", type=path_arg, metavar="RUN_DIR", help="run directory holding bundle.npz")
    p.add_argument("--act-bits", type=integer(MIN_BITS, MAX_BITS), default=None,
                   help=f"activation width of the model written ({MIN_BITS}..{MAX_BITS}; default: "
                        f"the width the run was trained for, else {DEFAULT_ACT_BITS})")
    p.add_argument("--residual-bits", type=integer(MIN_BITS, MAX_BITS), default=None,
                   help="width of the residual stream (default: the trained one at the trained "
                        "width, else the activation width)")
    p.add_argument("--input-bits", type=integer(MIN_BITS, MAX_BITS), default=None,
                   help="width of the image as the first conv reads it, after the input BN "
                        "(default: the trained one at the trained width, else the activation "
                        "width)")
    p.add_argument("--multiplier-bits", type=integer(2, MULTIPLIER_BITS), default=MULTIPLIER_BITS,
                   metavar="B", help=f"signed width of the requant multipliers (2..{MULTIPLIER_BITS}, "
                   f"default {MULTIPLIER_BITS}); fewer make cheaper shift-add requantizers")
    p.add_argument("--calib-images", type=integer(1, MAX_IMAGES, "the training set's size is "
                                                  "checked too"), default=None, metavar="N",
                   help=f"training images used to pick the scales (default {CALIB_IMAGES}, or all "
                        "when the training set has fewer)")
    p.add_argument("--calib-folder", type=path_arg, default=None, metavar="DIR",
                   help="calibrate on the image files in DIR (PNG, JPEG, ...; resized to the "
                        "model's input) instead of training images; without the dataset at hand "
                        "the float and integer models are compared on them, with no test error")
    p.add_argument("--calib-percentile", type=number(0, 100, "a percentile", above=True),
                   default=100.0, metavar="P",
                   help="scale bound = P-th percentile of |x| (default 100: the peak)")
    p.add_argument("--sweep-bits", type=_bits_list, default=_bits_list(DEFAULT_SWEEP),
                   metavar="B,B,...", help="activation widths evaluated for the report "
                   f"(default {DEFAULT_SWEEP}; --act-bits is always added)")
    p.add_argument("--test-images", type=integer(1, MAX_IMAGES, "the test set's size is checked too"),
                   default=None, metavar="N",
                   help="evaluate on the first N test images (default: all)")
    p.add_argument("--dataset", choices=DATASETS, default=None,
                   help="dataset (default: the one named in the bundle's metadata)")
    p.add_argument("--data-dir", type=path_arg, default=None, help="folder with the dataset's files")
    p.add_argument("--out", type=path_arg, default=None, help="output folder (default RUN_DIR/quant)")
    return p


# ---------------------------------------------------------------- steps

def _bar(iterable, desc, total=None):
    return tqdm(iterable, desc=desc, total=total, leave=False, file=sys.stderr, unit="chunk")


def load_run(args):
    bundle = read_run_bundle(args.run_dir)
    path = bundle.path
    if bundle.manifest["weights"] != "1bit":
        raise UsageError(f"{path} has float weights; only 1-bit bundles can be quantized "
                         "(train with --weights 1bit)")
    want = tuple(bundle.manifest["input_shape"])
    folder = None
    if args.calib_folder:
        if args.calib_images is not None:
            raise UsageError("--calib-images counts training images; with --calib-folder every "
                             "image in the folder is used: give one or the other")
        folder = load_images(folder_images(args.calib_folder), want)
    name = args.dataset or bundle.metadata.get("dataset")
    if not name and folder is None:
        raise UsageError(f"{path} does not name its dataset (metadata['dataset']): pass --dataset")
    try:
        data = load_dataset(name, args.data_dir) if name else None
    except DatasetError as e:
        if folder is None:
            raise
        if args.test_images is not None:
            raise UsageError(f"--test-images {args.test_images}: no test set at hand ({e})") from None
        print(f"no test set at hand ({e}): the float and integer models are compared on the "
              f"{len(folder)} images of {args.calib_folder}; no test error is measured",
              flush=True)
        data = None
    if data is None:
        return bundle, None, folder
    if data.train_x.shape[1:] != want or data.test_x.shape[1:] != want:
        raise UsageError(f"{data.name} images are {'x'.join(map(str, data.test_x.shape[1:]))}, "
                         f"the model expects {'x'.join(map(str, want))}: wrong --dataset or "
                         "--data-dir")
    if data.num_classes != bundle.manifest["num_classes"]:
        raise UsageError(f"{data.name} has {data.num_classes} classes, the model "
                         f"{bundle.manifest['num_classes']}: wrong --dataset")
    if len(data.test_x) == 0 or len(data.train_x) == 0:
        raise UsageError(f"{data.name}: empty training or test set")
    for flag, asked, have, split in (
            ("--calib-images", args.calib_images, len(data.train_x), "training"),
            ("--test-images", args.test_images, len(data.test_x), "test")):
        if asked is not None and asked > have:
            raise UsageError(f"{flag} {asked}: the {data.name} {split} set has {have} images; give "
                             f"{flag} {have} or fewer")
    return bundle, data, folder


def calibration_bounds(bundle, images, percentile):
    """quantize.convert.calibrate over `images`, with progress. The peak (percentile 100) is
    a max, so it is taken step by step; a percentile needs all samples in one call."""
    if percentile < 100:
        print(f"calibrating on {len(images)} images (percentile {percentile:g}) ...",
              file=sys.stderr, flush=True)
        return calibrate(bundle, images, percentile)
    bounds = {}
    for start in _bar(range(0, len(images), CALIB_STEP), "calibrate",
                      ceil_div(len(images), CALIB_STEP)):
        for k, v in calibrate(bundle, images[start:start + CALIB_STEP]).items():
            bounds[k] = max(bounds.get(k, 0.0), v)
    return bounds


def float_classes(bundle, images, step):
    out = [run_float(bundle, images[i:i + step]).argmax(1)
           for i in _bar(range(0, len(images), step), "float", ceil_div(len(images), step))]
    return np.concatenate(out)


def golden_classes(qmodel, images, step, bits):
    out = [run_golden(qmodel, images[i:i + step]).classes
           for i in _bar(range(0, len(images), step), f"int{bits}", ceil_div(len(images), step))]
    return np.concatenate(out)


def output_folder(args):
    return args.out or os.path.join(args.run_dir, "quant")


def quantize_run(args):
    start = time.time()
    out_dir = output_folder(args)
    bundle, data, folder = load_run(args)
    widths = trained_widths(bundle)
    trained = widths[0] if widths else None
    if args.act_bits is None:
        args.act_bits = trained or DEFAULT_ACT_BITS
    bits_list = sorted(set(args.sweep_bits) | {args.act_bits}, reverse=True)

    def residual(bits):
        """The residual width quantized with activation width `bits`."""
        if args.residual_bits is not None:
            return args.residual_bits
        return widths[1] if bits == trained else bits

    def image(bits):
        """The image's width quantized with activation width `bits`."""
        if args.input_bits is not None:
            return args.input_bits
        return widths[2] if bits == trained else bits

    if folder is not None:
        calib, calib_from = folder, f"images from {args.calib_folder}"
    else:
        order = np.random.default_rng(CALIB_SEED).permutation(len(data.train_x))
        calib, calib_from = data.train_x[order[:args.calib_images or CALIB_IMAGES]], "training images"
    if data is None:    # no labels: agreement on the folder's images only
        test_x, test_y = folder, None
    else:
        test_x, test_y = data.test_x[:args.test_images or len(data.test_x)], \
            data.test_y[:args.test_images or len(data.test_x)]
    n_test = len(test_x)
    data_name = data.name if data else bundle.metadata.get("dataset") or "no dataset"
    step = 4 * auto_chunk(bundle)
    calibrated = [b for b in bits_list if trained_bounds(bundle, b, residual(b), image(b)) is None]
    scale_note = (f"scales trained for {trained} bits (residual {widths[1]}, image {widths[2]})"
                  if trained
                  else "no trained scales") + \
        (f", calibrating on {len(calib)} {calib_from} for {', '.join(map(str, calibrated))} "
         "bits" if calibrated else "")
    print(f"{bundle.path}: {bundle.manifest['variant']} WRN-{bundle.config['depth']}-"
          f"{bundle.config['width']} on {data_name}; {scale_note}; "
          f"{'testing on' if data else 'comparing on'} {n_test} images; "
          f"activation widths {', '.join(map(str, bits_list))}", flush=True)

    bounds = calibration_bounds(bundle, calib, args.calib_percentile) if calibrated else None
    ref = float_classes(bundle, test_x, step)
    float_error = None if test_y is None else float(np.mean(ref != test_y))

    sweep, chosen = [], None
    for bits in bits_list:
        try:
            manifest, arrays = quantize_bundle(bundle, calib, bits, args.calib_percentile,
                                               bounds=None if bits not in calibrated else bounds,
                                               multiplier_bits=args.multiplier_bits,
                                               residual_bits=residual(bits),
                                               input_bits=image(bits))
        except ValueError as e:
            raise UsageError(f"cannot quantize {bundle.path} at {bits} bits: {e}") from None
        qmodel = make_qmodel(manifest, arrays)
        classes = golden_classes(qmodel, test_x, step, bits)
        scales = "calibrated" if bits in calibrated else "trained"
        sweep.append(dict(act_bits=bits, residual_bits=residual(bits), input_bits=image(bits),
                          scales=scales,
                          int_test_error=None if test_y is None else float(np.mean(classes != test_y)),
                          class_agreement=float(np.mean(classes == ref))))
        error = sweep[-1]["int_test_error"]
        print(f"  act_bits {bits:2d}, residual {residual(bits):2d}, image {image(bits):2d} "
              f"({scales} scales): int test error "
              f"{'-' if error is None else f'{error:.4f}'}, agreement "
              f"{100 * sweep[-1]['class_agreement']:.2f}%", flush=True)
        if bits == args.act_bits:
            chosen = (manifest, arrays, qmodel)

    manifest, arrays, qmodel = chosen
    meta = bundle.metadata
    report = build_report(
        qmodel, float_error, sweep, test_images=n_test,
        calib_images=0 if args.act_bits not in calibrated else len(calib),
        calib_percentile=args.calib_percentile, wall_s=time.time() - start,
        extra=dict(dataset=data_name, bundle=bundle.path, model=bundle.config,
                   calib_from=calib_from,
                   bundle_test_error=meta.get("test_error"),
                   qmodel=os.path.join(out_dir, "qmodel.npz"),
                   title=f"{bundle.manifest['variant']} WRN-{bundle.config['depth']}-"
                         f"{bundle.config['width']} on {data_name}"))
    rendered = render(report)  # everything in memory before the first file is written
    with writing(out_dir, "it is unchanged"), replace_folder(out_dir) as new:
        # the old set of files or the new one, never a mix
        write_qmodel(os.path.join(new, "qmodel.npz"), manifest, arrays)
        write_report(new, report, rendered)

    print(rendered[0])
    print(f"wrote {out_dir}/qmodel.npz, report.json, report.md, report.png")
    if report["float_test_error"] is None:
        print(f"act_bits {report['act_bits']}: agreement with float {100 * report['class_agreement']:.1f}% "
              f"on {n_test} images (no test error: the test set is not at hand)", flush=True)
    else:
        print(f"act_bits {report['act_bits']}: int test error {report['int_test_error']:.4f} vs "
              f"float {report['float_test_error']:.4f} ({report['delta_pp']:+.2f} pp), "
              f"agreement {100 * report['class_agreement']:.1f}%", flush=True)
    return report


def main(argv=None):
    args = build_parser().parse_args(argv)
    def locked():
        out = output_folder(args)
        check_output_folder(out, "--out", marker=OUTPUTS)
        with folder_lock(out, "--out"):
            return quantize_run(args)
    return run_main(PROG, locked, errors=(BundleError, DatasetError, ImageFileError))


if __name__ == "__main__":
    sys.exit(main())
