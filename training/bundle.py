"""The deployment bundle: the contract between training/ (writer) and quantize/ (reader).

NumPy only (no torch), so the integer/hardware side can read a bundle without PyTorch.
One file, `bundle.npz`: a zip of .npy members (each member CRC-checked by zipfile) holding
`manifest` (UTF-8 JSON as a uint8 array) and one array per tensor, each also sha256-checked.
The format is specified in docs/bundle.md; keep the two in step.
"""
import math
import os
from dataclasses import dataclass, field

import numpy as np

from training.act_points import WIDTHS, act_plan
from training.graph import build_ops, model_config, padding_sides, window_out
from training.container import MAX_SIZE, OpGraph, check_tensors, read_container, write_container

FORMAT = "bitwrn-bundle"
VERSION = 4
# 1: no "activations" (read as null); 2: no activations.input_bits (read as bits)
SUPPORTED_VERSIONS = (1, 2, 3, 4)

FIX_CORRUPT = ("re-copy the file, or re-export it from the checkpoint with "
               "training.export.export_bundle (python -m training.train writes one)")
FIX_MISSING = ("export it with training.export.export_bundle (python -m training.train writes "
               "one) or copy the bundle to this path")

# Required attributes per op kind; number of inputs is 2 for add, else 1.
OP_ATTRS = {
    "batchnorm": ("affine", "eps"),
    "conv": ("in_channels", "out_channels", "kernel", "stride", "padding", "scale", "binary"),
    "relu": (),
    "srelu": ("floor",),
    "avgpool": ("kernel", "stride", "padding", "count_include_pad"),
    "zero_channels": ("in_channels", "out_channels"),
    "add": (),
    "scale": ("factor",),
    "global_avgpool": (),
}
MANIFEST_FIELDS = ("format", "version", "model", "num_classes", "input_shape", "variant",
                   "weights", "ops", "tensors", "metadata", "activations")
V1_ABSENT = ("activations",)   # version 1 predates these fields


class BundleError(Exception):
    """A bundle is missing, corrupt or inconsistent; the message is one line with the fix."""


def _error(path, problem, fix=FIX_CORRUPT):
    return BundleError(" ".join(f"{path}: {problem}; fix: {fix}".split()))


def pack_signs(signs):
    """+1/-1 (any shape, C order) -> uint8 bytes, 8 weights per byte, first weight in the MSB."""
    return np.packbits(np.asarray(signs).reshape(-1) > 0, bitorder="big")


def unpack_signs(bits, shape):
    count = int(np.prod(shape))
    b = np.unpackbits(np.asarray(bits, np.uint8), count=count, bitorder="big")
    return (b.astype(np.int8) * 2 - 1).reshape(shape)


def write_bundle(path, manifest, arrays):
    """Validate and write atomically: the old file at `path` stays intact if anything fails.

    Returns the manifest as written (tensor shapes, dtypes and sha256 filled in).
    """
    return write_container(path, manifest, arrays, lambda m, a: validate(path, m, a))


@dataclass
class Bundle(OpGraph):
    path: str
    manifest: dict
    tensors: dict                                # key -> np.ndarray as stored
    shapes: dict = field(default_factory=dict)   # tensor name -> per-image shape (C, H, W) / (C,)

    @property
    def config(self):
        return self.manifest["model"]

    @property
    def metadata(self):
        return self.manifest["metadata"]

    @property
    def activations(self):
        """None, or {"bits", "residual_bits", "input_bits", "scales", "bounds"}: the activations
        were trained for `bits`-bit integers (the residual stream `residual_bits`, the image as
        the first conv reads it `input_bits`; either may be absent: `bits`) at the power-of-two
        scales that `bounds` set (docs/bundle.md)."""
        return self.manifest.get("activations")

    def conv_signs(self, name):
        """int8 +1/-1 of shape (out, in, k, k) for a 1-bit conv."""
        key = name + ".weight_bits"
        if key not in self.tensors:
            raise KeyError(f"conv {name!r} has no 1-bit weights in {self.path}")
        return unpack_signs(self.tensors[key], self.manifest["tensors"][key]["logical_shape"])

    def conv_weight(self, name):
        """float64 weight the conv applies: scale * sign for 1-bit, the stored float otherwise."""
        op = self.op(name)
        if op["binary"]:
            return op["scale"] * self.conv_signs(name).astype(np.float64)
        return self.tensors[name + ".weight"].astype(np.float64)

    def bn(self, name):
        """(mean, var, weight or None, bias or None, eps) of a batchnorm op."""
        op, t = self.op(name), self.tensors
        w, b = (t[name + ".weight"], t[name + ".bias"]) if op["affine"] else (None, None)
        return t[name + ".mean"], t[name + ".var"], w, b, op["eps"]


def read_run_bundle(run_dir):
    """The bundle of a run folder, RUN_DIR/bundle.npz; a BundleError in one line that says how to
    make one when the folder has none."""
    path = os.path.join(run_dir, "bundle.npz")
    if not os.path.isfile(path):
        raise BundleError(f"no bundle at {path}: train the run first (make train, or python -m "
                          f"training.train --out {run_dir}), or import one (python -m "
                          f"training.import_authors FILE.mat --out {run_dir})")
    return read_bundle(path)


def read_bundle(path):
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise _error(path, "bundle file not found", FIX_MISSING)
    manifest, tensors = read_container(path, lambda problem: _error(path, problem), "bundle")
    shapes = validate(path, manifest, tensors)
    return Bundle(path, manifest, tensors, shapes)


# ---------------------------------------------------------------- validation

def validate(path, manifest, tensors):
    """Check a manifest against its tensors and its op graph; return the inferred shapes."""
    if not isinstance(manifest, dict):
        raise _error(path, "manifest is not a JSON object")
    if manifest.get("format") != FORMAT:
        raise _error(path, f"format is {manifest.get('format')!r}, expected {FORMAT!r} "
                           "(not a bitwrn bundle)")
    version = manifest.get("version")
    if type(version) is not int or version not in SUPPORTED_VERSIONS:   # not True, not 1.0
        raise _error(path, f"unsupported bundle version {version!r}; this reader supports "
                           f"version(s) {', '.join(map(str, SUPPORTED_VERSIONS))}",
                     "re-export it with this checkout's training.export.export_bundle, or "
                     "read it with the bitwrn version that wrote it")
    missing = [f for f in MANIFEST_FIELDS
               if f not in manifest and not (version == 1 and f in V1_ABSENT)]
    if missing:
        raise _error(path, f"manifest lacks field(s) {', '.join(missing)}")
    try:
        check_tensors(manifest["tensors"], tensors, lambda problem: _error(path, problem))
        shapes = _check_graph(path, manifest, tensors)
        _check_model(path, manifest)
        _check_activations(path, manifest)
        return shapes
    except (TypeError, KeyError, AttributeError, ValueError) as e:  # malformed JSON structure
        raise _error(path, f"malformed manifest ({type(e).__name__}: {e})") from e


# The integer attributes that fix an op graph's structure; the learned numbers (eps, scale,
# floor, factor) are checked as values instead.
STRUCTURE = ("op", "name", "inputs", "in_channels", "out_channels", "kernel", "stride", "padding",
             "binary", "affine", "count_include_pad")


def _check_model(path, manifest):
    """The header fields and the op graph are the ones the model config describes
    (training.graph.build_ops): a number that no WRN has (a side of 2^70, a stride of 10^9) or a
    header that contradicts the graph is refused here, not deep inside a reader."""
    config = manifest["model"]
    if not isinstance(config, dict):
        raise _error(path, f"model is {config!r}, not an object with the WRN's depth, width, ...")
    fields = {k: config.get(k) for k in ("depth", "width", "in_channels", "num_classes",
                                          "input_size")}
    for key, value in fields.items():
        if not (type(value) is int and 1 <= value <= MAX_SIZE):
            raise _error(path, f"model.{key} is {value!r}, not an integer 1..{MAX_SIZE}")
    try:
        config = model_config(**fields, weights=config.get("weights"), variant=config.get("variant"),
                              srelu_temperature=config.get("srelu_temperature"),
                              padding=config.get("padding", "torch"),   # absent before version 4
                              input_relu=config.get("input_relu", False))
    except (ValueError, TypeError) as e:
        raise _error(path, f"model: {e}") from None
    header = dict(num_classes=config["num_classes"], variant=config["variant"],
                  weights=config["weights"],
                  input_shape=[config["in_channels"], config["input_size"], config["input_size"]])
    for key, value in header.items():
        if manifest[key] != value:
            raise _error(path, f"{key} is {manifest[key]!r}, the model ({config['variant']} "
                               f"WRN-{config['depth']}-{config['width']}) has {value!r}")
    want = [{k: op[k] for k in STRUCTURE if k in op} for op in build_ops(config)]
    if len(manifest["ops"]) != len(want):
        raise _error(path, f"{len(manifest['ops'])} ops, the model's graph has {len(want)}")
    for i, (op, expected) in enumerate(zip(manifest["ops"], want)):
        for key, value in expected.items():
            if op.get(key) != value:
                raise _error(path, f"op #{i} {op.get('name')!r}: {key} is {op.get(key)!r}, the "
                                   f"model's graph has {value!r}")


def _check_activations(path, manifest):
    """The trained activation scales: widths, a mode and one positive bound per scale key of the
    op graph at those widths (training.act_points)."""
    act = manifest.get("activations")
    if act is None:
        return
    if not isinstance(act, dict) or not {"bits", "scales", "bounds"} <= set(act):
        raise _error(path, "activations is not null or an object with bits, scales and bounds")
    bits = act["bits"]
    lo, hi = WIDTHS
    residual, image = act.get("residual_bits", bits), act.get("input_bits", bits)
    for key, value in (("bits", bits), ("residual_bits", residual), ("input_bits", image)):
        if type(value) is not int or not lo <= value <= hi:
            raise _error(path, f"activations.{key} is {value!r}, not an integer {lo}..{hi}")
    bounds = act["bounds"]
    want = [k.name for k in act_plan(manifest["ops"], bits, residual, image).keys]
    if not isinstance(bounds, dict) or sorted(bounds) != sorted(want):
        have = sorted(bounds) if isinstance(bounds, dict) else bounds
        raise _error(path, f"activations.bounds names {have!r}, the graph's scale keys are "
                           f"{want!r}")
    for name, v in bounds.items():
        if not (type(v) in (int, float) and math.isfinite(v) and v > 0):
            raise _error(path, f"activations.bounds[{name!r}] is {v!r}, not a finite number > 0")


# Attribute values: integers (not bools) with a lower bound, or finite numbers with a sign.
INT_ATTRS = dict(in_channels=1, out_channels=1, kernel=1, stride=1)
NUMBER_ATTRS = dict(eps="> 0", scale="> 0", factor="> 0", floor="any")
MAX_EPS = 1.0       # a BN eps near a unit variance would swamp it; every framework's is ~1e-5


def _check_attribute_values(path, op):
    for key, low in INT_ATTRS.items():
        if key in op and not (type(op[key]) is int and op[key] >= low):
            raise _error(path, f"op {op['name']!r}: {key} is {op[key]!r}, not an integer >= {low}")
    for key, sign in NUMBER_ATTRS.items():
        if key not in op:
            continue
        v = op[key]
        ok = type(v) in (int, float) and math.isfinite(v) and (sign == "any" or v > 0)
        if key == "eps":
            ok = ok and v <= MAX_EPS
            sign = f"> 0 and <= {MAX_EPS:g}"
        if not ok:
            want = "a finite number" + ("" if sign == "any" else f" {sign}")
            raise _error(path, f"op {op['name']!r}: {key} is {v!r}, not {want}")
    if "padding" in op:
        sides = padding_sides(op["padding"])
        if sides is None or not all(type(v) is int and 0 <= v < op["kernel"] for v in sides):
            raise _error(path, f"op {op['name']!r}: padding is {op['padding']!r}, not an integer "
                               "or a list [top, bottom, left, right] of integers 0..kernel-1")
    for key in ("binary", "affine", "count_include_pad"):
        if key in op and type(op[key]) is not bool:
            raise _error(path, f"op {op['name']!r}: {key} is {op[key]!r}, not true or false")


def _check_graph(path, manifest, tensors):
    """Check op attributes, inputs, tensors and channel counts by propagating per-image shapes."""
    entries = manifest["tensors"]
    shape = manifest["input_shape"]
    if not (isinstance(shape, list) and len(shape) == 3 and all(isinstance(s, int) and s > 0
                                                                 for s in shape)):
        raise _error(path, f"input_shape {shape!r} is not [C, H, W]")
    shapes = {"image": tuple(shape)}
    used = set()

    def have(op, key):
        if key not in tensors:
            raise _error(path, f"op {op['name']!r} needs tensor {key!r}, which is not in the file")

    def need(op, key, dtype, want_shape):
        have(op, key)
        arr = tensors[key]
        if arr.dtype.name != dtype or tuple(arr.shape) != tuple(want_shape):
            raise _error(path, f"tensor {key!r} is {arr.dtype.name}{list(arr.shape)}, op "
                               f"{op['name']!r} needs {dtype}{list(want_shape)}")
        used.add(key)

    for i, op in enumerate(manifest["ops"]):
        if not isinstance(op, dict) or not {"op", "name", "inputs"} <= set(op):
            raise _error(path, f"op #{i} lacks op/name/inputs")
        kind, name, inputs = op["op"], op["name"], op["inputs"]
        if kind not in OP_ATTRS:
            raise _error(path, f"op {name!r} has unknown kind {kind!r}",
                         "read it with the bitwrn version that wrote it")
        lacking = [a for a in OP_ATTRS[kind] if a not in op]
        if lacking:
            raise _error(path, f"op {name!r} ({kind}) lacks attribute(s) {', '.join(lacking)}")
        _check_attribute_values(path, op)
        if name in shapes:
            raise _error(path, f"op name {name!r} is used twice (or is 'image')")
        if len(inputs) != (2 if kind == "add" else 1):
            raise _error(path, f"op {name!r} ({kind}) has {len(inputs)} inputs")
        for x in inputs:
            if x not in shapes:
                raise _error(path, f"op {name!r} input {x!r} is neither 'image' nor the output "
                                   "of an earlier op")
        s = shapes[inputs[0]]
        c = s[0]

        def channels(expected):
            if c != expected:
                raise _error(path, f"op {name!r} expects {expected} input channels, "
                                   f"{inputs[0]!r} has {c}")

        if kind == "conv":
            k, o = op["kernel"], op["out_channels"]
            channels(op["in_channels"])
            if op["binary"]:
                key = name + ".weight_bits"
                count = o * op["in_channels"] * k * k
                have(op, key)
                e = entries[key]
                if e.get("count") != count or e.get("logical_shape") != [o, c, k, k]:
                    raise _error(path, f"tensor {key!r} holds {e.get('count')} bits of shape "
                                       f"{e.get('logical_shape')}, op {name!r} needs {count} "
                                       f"of shape {[o, c, k, k]}")
                need(op, key, "uint8", ((count + 7) // 8,))
            else:
                need(op, name + ".weight", "float32", (o, c, k, k))
            h, w = window_out(op, s)
            if h < 1 or w < 1:
                raise _error(path, f"op {name!r}: input {list(s)} too small for the kernel")
            s = (o, h, w)
        elif kind == "batchnorm":
            for suffix in ("mean", "var") + (("weight", "bias") if op["affine"] else ()):
                key = f"{name}.{suffix}"
                need(op, key, "float32", (c,))
                bad = ~np.isfinite(tensors[key]) | ((tensors[key] < 0) if suffix == "var" else False)
                if bad.any():
                    i = int(np.argmax(bad))
                    raise _error(path, f"tensor {key!r} channel {i} is {float(tensors[key][i])!r}; "
                                       f"it must be a finite number{' >= 0' if suffix == 'var' else ''}")
        elif kind == "avgpool":
            s = (c, *window_out(op, s))
        elif kind == "zero_channels":
            channels(op["in_channels"])
            if op["out_channels"] < c:
                raise _error(path, f"op {name!r}: out_channels < in_channels")
            s = (op["out_channels"], *s[1:])
        elif kind == "add":
            if shapes[inputs[1]] != s:
                raise _error(path, f"op {name!r} adds {list(s)} to {list(shapes[inputs[1]])}")
        elif kind == "global_avgpool":
            s = (c,)
        shapes[name] = s

    if shapes.get("logits") != (manifest["num_classes"],):
        raise _error(path, f"no 'logits' output of shape [{manifest['num_classes']}] "
                           f"(got {shapes.get('logits')})")
    unused = sorted(set(entries) - used)
    if unused:
        raise _error(path, f"tensor(s) {', '.join(unused)} not used by any op")
    return shapes
