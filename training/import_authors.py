"""Import a model that the method's authors released (McDonnell-Lab/1-bit-per-weight) as a run.

    python -m training.import_authors FILE.mat --out RUN_DIR [--input-size 32] [--dataset NAME]

Reads either of their exports (scipy.io.loadmat), each checked layer by layer against the graph
of the WRN-d-k that its shapes describe (depth, width, input channels, classes: inferred, never
assumed):
- Keras (`TrainedModels/Tensorflow.keras/*_allparams.mat`, their ResNetModel.py `resnet`): the
  convolutions `conv2d`, `conv2d_1`, ... (or from another start: Keras's counters) in network
  order as 0/1 uint8 [1, F, F, Cin, Cout] (1 = +1, the scale sqrt(2 / (F F Cin)) implied), and
  the batch norms under Keras's counters, taken in the order of their numbers: the input BN
  (4, C) = gamma, beta, mean, var, every other (2, C) = mean, var without affine, eps 1e-5.
  Padding: Keras's 'same' (training.graph.PADDINGS).
- MatConvNet (`TrainedModels/Matlab/TrainedWideResNet20-10_*.mat`, their
  Test_1_bit_per_weight_models.m): per layer a BN (Moments = [mean, sigma], gain BNG, bias BNB),
  a ReLU and a conv of BinaryWeights [F, F, Cin, Cout] times LayerWeights, the first layer's BN
  and ReLU on the image itself; a last BN. Padding: symmetric, and vl_nnpool's average divides
  by the pixels inside the image ("matconvnet").
Writes RUN_DIR/bundle.npz (docs/bundle.md), which `python -m quantize RUN_DIR` takes as it is,
and prints the layer table. The `_01weights` files hold the convolutions alone: refused in one
line, as is every file whose layers do not make a WRN.
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


def _array(path, name, value, shape):
    """`value` as an array of numbers with as many axes as `shape` (for the message)."""
    a = np.asarray(value)
    if a.dtype.kind not in "uif" or a.ndim != len(shape):
        raise AuthorsFileError(f"{path}: layer {name} is {a.dtype}{list(a.shape)}, expected "
                               f"numbers of shape [{', '.join(map(str, shape))}]")
    return a


def wrn_config(path, first, last, depth, input_size, **graph):
    """The WRN-d-k config of `depth` convs, the first and last [F, F, Cin, Cout]."""
    try:
        check_depth(depth)
    except ValueError:
        raise AuthorsFileError(f"{path}: {depth} convolutions; a WRN-d-k has d = 6n + 2 "
                               "(8, 14, 20, ...)") from None
    if first.shape[-1] % 16:
        raise AuthorsFileError(f"{path}: the first conv has {first.shape[-1]} filters, not 16 k "
                               "for a width k")
    return model_config(depth=depth, width=first.shape[-1] // 16, in_channels=int(first.shape[2]),
                        num_classes=int(last.shape[-1]), input_size=input_size, weights="1bit",
                        variant="bn", **graph)


def assemble(path, config, convs, bns, source):
    """(manifest, arrays, table) of a bundle from `convs`, (layer, 0/1 array [F, F, Cin, Cout])
    in network order, and `bns`, (layer, {mean, var[, weight, bias]}) in network order, each
    checked against the graph of `config`; `table` is one row per layer."""
    ops = build_ops(config)
    conv_ops = [op for op in ops if op["op"] == "conv"]
    bn_ops = [op for op in ops if op["op"] == "batchnorm"]
    wrn = f"WRN-{config['depth']}-{config['width']}"
    if len(bns) != len(bn_ops):
        raise AuthorsFileError(f"{path}: {len(bns)} batch norms, a {wrn} has {len(bn_ops)}")
    channels = channels_of(ops, config)
    arrays, tensors, table = {}, {}, []
    for (name, w), op in zip(convs, conv_ops):
        k, cin, cout = op["kernel"], op["in_channels"], op["out_channels"]
        if w.shape != (k, k, cin, cout):
            raise AuthorsFileError(f"{path}: layer {name} has shape {list(w.shape)}; as {op['name']} "
                                   f"of a {wrn} it must be {[k, k, cin, cout]}")
        bad = (w != 0) & (w != 1)
        if bad.any():
            raise AuthorsFileError(f"{path}: layer {name} holds {w[bad].flat[0].item()!r}; 1-bit "
                                   "weights are stored as 0 (-1) and 1 (+1)")
        signs = w.transpose(3, 2, 0, 1).astype(np.int8) * 2 - 1     # F F Cin Cout -> Cout Cin F F
        arrays[op["name"] + ".weight_bits"] = pack_signs(signs)
        tensors[op["name"] + ".weight_bits"] = dict(logical_shape=list(signs.shape), count=int(signs.size))
        table.append(dict(layer=name, op=op["name"], shape=[cout, cin, k, k], stride=op["stride"],
                          padding=op["padding"]))
    for (name, fields), op in zip(bns, bn_ops):
        c = channels[op["inputs"][0]]
        want = ("weight", "bias", "mean", "var") if op["affine"] else ("mean", "var")
        for field in want:
            v = np.asarray(fields[field], np.float64)
            if v.shape != (c,):
                raise AuthorsFileError(f"{path}: layer {name} has {v.size} channels; as {op['name']} "
                                       f"it must have {c}")
            if not np.isfinite(v).all() or (field == "var" and (v < 0).any()):
                raise AuthorsFileError(f"{path}: layer {name} holds a NaN, an infinity or a negative "
                                       "variance; its moments are unusable")
            arrays[f"{op['name']}.{field}"] = v.astype(np.float32)
        table.append(dict(layer=name, op=op["name"], shape=[len(want), c]))
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    manifest = dict(format=FORMAT, version=VERSION, model=config,
                    num_classes=config["num_classes"],
                    input_shape=[config["in_channels"], config["input_size"], config["input_size"]],
                    variant="bn", weights="1bit", ops=ops, tensors=tensors, activations=None,
                    metadata=dict(source=f"McDonnell-Lab/1-bit-per-weight, {source}",
                                  file=os.path.basename(path), sha256=digest))
    return complete_manifest(manifest, arrays), arrays, table


def import_keras(path, variables, input_size):
    """The Keras export: 0/1 [1, F, F, Cin, Cout] convs, (4 or 2, C) BNs."""
    names, bn_names = keras_layers(path, variables)
    convs = []
    for name in names:
        w = _array(path, name, variables[name], [1, "F", "F", "Cin", "Cout"])
        if w.shape[0] != 1:
            raise AuthorsFileError(f"{path}: layer {name} has shape {list(w.shape)}, not [1, F, F, "
                                   "Cin, Cout]")
        convs.append((name, w[0]))
    config = wrn_config(path, convs[0][1], convs[-1][1], len(convs), input_size, padding="keras")
    bns = []
    for name in bn_names:
        v = _array(path, name, variables[name], ["rows", "C"])
        if len(v) not in (2, 4):
            raise AuthorsFileError(f"{path}: layer {name} has {len(v)} rows: (gamma, beta,) mean, "
                                   "var per channel")
        bns.append((name, dict(zip(("weight", "bias", "mean", "var")[4 - len(v):], v))))
    return assemble(path, config, convs, bns, "Tensorflow.keras export")


def _cells(path, variables, key):
    """A MATLAB cell array's cells, in order."""
    if key not in variables:
        raise AuthorsFileError(f"{path}: no {key}; a MatConvNet export of the authors' WRN holds "
                               "BinaryWeights, Moments, BNG, BNB, LayerWeights, Stride, Padding")
    return [c for c in np.asarray(variables[key], dtype=object).reshape(-1, order="F")]


def import_matconvnet(path, variables, input_size):
    """The MatConvNet export (their Test_1_bit_per_weight_models.m): per layer BN (Moments =
    [mean, sigma], BNG, BNB), ReLU and a conv of BinaryWeights [F, F, Cin, Cout] times
    LayerWeights, the first layer's BN on the image; a last BN; the pool vl_nnpool's."""
    weights = _cells(path, variables, "BinaryWeights")
    convs = [(f"BinaryWeights{{{i + 1}}}", _array(path, f"BinaryWeights{{{i + 1}}}", w, ["F", "F", "Cin", "Cout"]))
             for i, w in enumerate(weights)]
    config = wrn_config(path, convs[0][1], convs[-1][1], len(convs), input_size,
                        padding="matconvnet", input_relu=True)
    conv_ops = [op for op in build_ops(config) if op["op"] == "conv"]
    for key, want in (("LayerWeights", [op["scale"] for op in conv_ops]),
                      ("Stride", [op["stride"] for op in conv_ops]),
                      ("Padding", [op["padding"] for op in conv_ops])):
        have = np.asarray(variables.get(key, []), np.float64).reshape(-1)
        if have.shape != (len(want),) or not np.allclose(have, want, rtol=1e-6):
            raise AuthorsFileError(f"{path}: {key} is {have.tolist()[:4]}...; a {config['depth']}-layer "
                                   f"WRN's are {want[:4]}...")
    moments, gains, biases = (_cells(path, variables, k) for k in ("Moments", "BNG", "BNB"))
    bns = []
    for i, (m, g, b) in enumerate(zip(moments, gains, biases)):
        name = f"Moments{{{i + 1}}}"
        m = _array(path, name, m, ["C", 2])
        g, b = np.asarray(g, np.float64).reshape(-1), np.asarray(b, np.float64).reshape(-1)
        # vl_nnbnorm with given moments divides by sigma itself: var + eps = sigma^2
        fields = dict(mean=m[:, 0], var=m[:, 1].astype(np.float64) ** 2 - BN_EPS, weight=g, bias=b)
        if i and not (np.all(g == 1) and np.all(b == 0)):
            raise AuthorsFileError(f"{path}: layer BNG{{{i + 1}}}/BNB{{{i + 1}}} is not 1/0; in "
                                   "bitwrn's WRN only the input BN has a gain and a bias")
        bns.append((name, fields))
    return assemble(path, config, convs, bns, "MatConvNet export")


def import_authors(path, input_size):
    """(manifest, arrays, table) of either of the authors' exports."""
    variables = read_mat(path)
    if "BinaryWeights" in variables:
        return import_matconvnet(path, variables, input_size)
    return import_keras(path, variables, input_size)


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
        manifest, arrays, table = import_authors(args.mat, args.input_size)
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
