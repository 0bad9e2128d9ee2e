"""Import a model that the method's authors released (McDonnell-Lab/1-bit-per-weight) as a run.

    python -m training.import_authors FILE.mat --out RUN_DIR [--input-size 32] [--dataset NAME]

Reads the Keras export (`TrainedModels/Tensorflow.keras/*_allparams.mat`, scipy.io.loadmat):
the convolutions `conv2d`, `conv2d_1`, ... (or from another start: Keras's counters) in network
order as 0/1 uint8 [1, F, F, Cin, Cout]
(1 = +1, the scale sqrt(2 / (F F Cin)) implied), and the batch norms, named with Keras's
counters and taken in the order of their numbers: the input BN (4, C) = gamma, beta, mean, var,
every other (2, C) = mean, var without affine, eps 1e-5 (the authors' ResNetModel.py `resnet`).
WRN-d-k, the input channels and the class count come from the shapes, which must be exactly a
WRN's; the padding is Keras's 'same' (training.graph.PADDINGS). Writes RUN_DIR/bundle.npz
(docs/bundle.md), which `python -m quantize RUN_DIR` takes as it is, and prints the layer table.

The `_01weights` files hold the convolutions alone, and the MatConvNet exports (`Matlab/`) use a
graph of their own (their Test_1_bit_per_weight_models.m: BN, ReLU and conv for every layer, the
first included; vl_nnpool divides a window by its pixels inside the image, at symmetric padding):
both are refused in one line.
"""
import hashlib
import os
import re
import sys

import numpy as np

from common.cli import OneLineParser, UsageError, integer, path_arg, run_main
from common.files import writing
from training.bundle import FORMAT, VERSION, BundleError, pack_signs, write_bundle
from training.container import MAX_SIZE, complete_manifest
from training.data import DATASETS
from training.graph import BN_EPS, build_ops, channels_of, check_depth, model_config

PROG = "python -m training.import_authors"
CONV = re.compile(r"conv2d(?:_(\d+))?$")
BN = re.compile(r"batch_normalization(?:_v\d+)?(?:_(\d+))?$")
DATASET_OF_CLASSES = {10: "cifar10", 100: "cifar100"}


class AuthorsFileError(ValueError):
    """A file that is not a model this importer knows; the message names the file and layer."""


def read_mat(path):
    """The variables of a MATLAB file, or one line saying why scipy cannot read it."""
    import scipy.io
    try:
        return {k: v for k, v in scipy.io.loadmat(path).items() if not k.startswith("__")}
    except NotImplementedError as e:          # MATLAB v7.3 (HDF5)
        raise AuthorsFileError(f"{path}: scipy cannot read this MATLAB file ({e}); save it with "
                           "MATLAB's -v7 option") from None
    except (ValueError, TypeError, OSError) as e:
        raise AuthorsFileError(f"{path}: not a MATLAB .mat file scipy can read ({e})") from None


def _numbered(variables, pattern):
    """Names matching `pattern`, ordered by their Keras counter (none = 0)."""
    found = [(int(m.group(1) or 0), k) for k in variables if (m := pattern.match(k))]
    return [k for _, k in sorted(found)]


def keras_layers(path, variables):
    """(convs, bns): the Keras export's conv and BN variable names in network order, checked."""
    if "BinaryWeights" in variables:
        raise AuthorsFileError(f"{path}: a MatConvNet export (BinaryWeights, Moments, ...), which "
                               "scipy reads but bitwrn's graph cannot express yet (a ReLU after "
                               "the input BN; a pool that does not count its symmetric padding): "
                               "import the authors' Tensorflow.keras _allparams release instead")
    convs, bns = _numbered(variables, CONV), _numbered(variables, BN)
    if not convs:
        raise AuthorsFileError(f"{path}: no conv2d variables; this is not a Keras export of the "
                           "authors' WRN (its variables: "
                           f"{', '.join(sorted(variables)[:6])}{', ...' if len(variables) > 6 else ''})")
    if not bns:
        raise AuthorsFileError(f"{path}: {len(convs)} convolutions and no batch norms (a _01weights "
                           "file?): import the matching _allparams file, which holds both")
    for names, pattern in ((convs, CONV), (bns, BN)):
        # Keras numbers layers on from earlier models in its session (conv2d_40 ... conv2d_59 in
        # CIFAR100_allparams.mat): consecutive numbers from any start, a gap is a lost layer.
        numbers = [int(pattern.match(k).group(1) or 0) for k in names]
        gaps = sorted(set(range(numbers[0], numbers[-1] + 1)) - set(numbers))
        if gaps:
            base = re.sub(r"_\d+$", "", names[-1])       # the last one has a number
            raise AuthorsFileError(f"{path}: {base}_{gaps[0]} is missing ({names[0]} ... "
                                   f"{names[-1]} must be numbered without gaps)")
    return convs, bns


def _array(path, variables, name, shape):
    """Variable `name` as an array of numbers with as many axes as `shape` (for the message)."""
    a = np.asarray(variables[name])
    if a.dtype.kind not in "uif" or a.ndim != len(shape):
        raise AuthorsFileError(f"{path}: layer {name} is {a.dtype}{list(a.shape)}, expected "
                               f"numbers of shape [{', '.join(map(str, shape))}]")
    return a


def infer_config(path, variables, convs, input_size):
    """The WRN-d-k config the conv shapes describe (Keras padding)."""
    first = _array(path, variables, convs[0], [1, "F", "F", "Cin", "Cout"])
    last = _array(path, variables, convs[-1], [1, 1, 1, "Cin", "classes"])
    depth = len(convs)
    try:
        check_depth(depth)
    except ValueError:
        raise AuthorsFileError(f"{path}: {depth} convolutions; a WRN-d-k has d = 6n + 2 "
                           "(8, 14, 20, ...)") from None
    if first.shape[-1] % 16:
        raise AuthorsFileError(f"{path}: layer {convs[0]} has {first.shape[-1]} filters, not 16 k "
                           "for a width k")
    return model_config(depth=depth, width=first.shape[-1] // 16, in_channels=int(first.shape[3]),
                        num_classes=int(last.shape[-1]), input_size=input_size, weights="1bit",
                        variant="bn", padding="keras")


def import_keras(path, input_size):
    """(manifest, arrays, table) of the Keras export at `path`; `table` is one row per layer."""
    variables = read_mat(path)
    convs, bns = keras_layers(path, variables)
    config = infer_config(path, variables, convs, input_size)
    ops = build_ops(config)
    conv_ops = [op for op in ops if op["op"] == "conv"]
    bn_ops = [op for op in ops if op["op"] == "batchnorm"]
    if len(bns) != len(bn_ops):
        raise AuthorsFileError(f"{path}: {len(bns)} batch norms, a WRN-{config['depth']}-"
                           f"{config['width']} has {len(bn_ops)}")
    channels = channels_of(ops, config)
    arrays, tensors, table = {}, {}, []
    for name, op in zip(convs, conv_ops):
        k, cin, cout = op["kernel"], op["in_channels"], op["out_channels"]
        w = _array(path, variables, name, [1, k, k, cin, cout])
        if w.shape != (1, k, k, cin, cout):
            raise AuthorsFileError(f"{path}: layer {name} has shape {list(w.shape)}; as {op['name']} "
                               f"of a WRN-{config['depth']}-{config['width']} it must be "
                               f"{[1, k, k, cin, cout]}")
        bad = (w != 0) & (w != 1)
        if bad.any():
            raise AuthorsFileError(f"{path}: layer {name} holds {w[bad].flat[0].item()!r}; 1-bit weights "
                               "are stored as 0 (-1) and 1 (+1)")
        signs = w[0].transpose(3, 2, 0, 1).astype(np.int8) * 2 - 1   # F F Cin Cout -> Cout Cin F F
        arrays[op["name"] + ".weight_bits"] = pack_signs(signs)
        tensors[op["name"] + ".weight_bits"] = dict(logical_shape=list(signs.shape), count=int(signs.size))
        table.append(dict(layer=name, op=op["name"], shape=[cout, cin, k, k], stride=op["stride"],
                          padding=op["padding"]))
    for name, op in zip(bns, bn_ops):
        rows = 4 if op["affine"] else 2
        c = channels[op["inputs"][0]]
        v = _array(path, variables, name, [rows, c])
        if v.shape != (rows, c):
            raise AuthorsFileError(f"{path}: layer {name} has shape {list(v.shape)}; as {op['name']} it "
                               f"must be {[rows, c]} ({'gamma, beta, ' if op['affine'] else ''}"
                               "mean, var per channel)")
        if not np.isfinite(v).all() or (v[-1] < 0).any():
            raise AuthorsFileError(f"{path}: layer {name} holds a NaN, an infinity or a negative "
                               "variance; its moments are unusable")
        fields = ("weight", "bias", "mean", "var") if op["affine"] else ("mean", "var")
        for field, row in zip(fields, v.astype(np.float32)):
            arrays[f"{op['name']}.{field}"] = row.copy()
        table.append(dict(layer=name, op=op["name"], shape=[rows, c]))
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    manifest = dict(format=FORMAT, version=VERSION, model=config,
                    num_classes=config["num_classes"],
                    input_shape=[config["in_channels"], input_size, input_size],
                    variant="bn", weights="1bit", ops=ops, tensors=tensors, activations=None,
                    metadata=dict(source="McDonnell-Lab/1-bit-per-weight, Tensorflow.keras export",
                                  file=os.path.basename(path), sha256=digest, eps=BN_EPS))
    return complete_manifest(manifest, arrays), arrays, table


def build_parser():
    p = OneLineParser(prog=PROG, description=__doc__.split("\n")[0])
    p.add_argument("mat", type=path_arg, metavar="FILE.mat", help="the authors' _allparams.mat file")
    p.add_argument("--out", type=path_arg, required=True, help="run folder to write bundle.npz into")
    p.add_argument("--input-size", type=integer(1, MAX_SIZE), default=32, metavar="N",
                   help="the side of the square images the model takes (default 32, CIFAR)")
    p.add_argument("--dataset", choices=DATASETS, default=None,
                   help="the dataset to record (default: cifar10 for 10 classes, cifar100 for 100)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)

    def work():
        if not os.path.isfile(args.mat):
            raise UsageError(f"{args.mat}: no such file")
        manifest, arrays, table = import_keras(args.mat, args.input_size)
        dataset = args.dataset or DATASET_OF_CLASSES.get(manifest["num_classes"])
        if dataset:
            manifest["metadata"]["dataset"] = dataset
        out = os.path.join(args.out, "bundle.npz")
        os.makedirs(args.out, exist_ok=True)
        with writing(out, "nothing was written"):
            write_bundle(out, manifest, arrays)
        cfg = manifest["model"]
        print(f"{args.mat}: WRN-{cfg['depth']}-{cfg['width']}, {cfg['in_channels']} x "
              f"{args.input_size} x {args.input_size} in, {cfg['num_classes']} classes"
              f"{f' ({dataset})' if dataset else ''}, Keras padding")
        for row in table:
            extra = (f" stride {row['stride']} padding {row['padding']}" if "stride" in row else "")
            print(f"  {row['layer']:<28} -> {row['op']:<14} {row['shape']}{extra}")
        bits = sum(a["count"] for a in manifest["tensors"].values() if "count" in a)
        print(f"wrote {out}: {bits:,} weight bits ({bits / 8 / 2 ** 20:.2f} MiB)")
        return 0
    return run_main(PROG, work, errors=(AuthorsFileError, BundleError))


if __name__ == "__main__":
    sys.exit(main())
