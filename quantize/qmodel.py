"""The quantized model file: every integer, shift and width the hardware uses (docs/quantized-model.md).

Same container as the bundle (training/container.py): `qmodel.npz` holds a JSON manifest and
integer arrays. The manifest's "ops" is the integer op graph that quantize.golden executes and
the hardware implements; every op's output carries its width ("bits", "signed") and the real
value of one LSB ("scale"; "frac" f when that is exactly 2^-f).
"""
import math
import os
from dataclasses import dataclass, field

import numpy as np

from quantize.fixed_point import MAX_SHIFT, MULTIPLIER_BITS
from quantize.float_reference import pool_divisors
from common.bits import int_range
from training.act_points import WIDTHS
from training.graph import VARIANTS, padding_sides, window_out
from training.bundle import unpack_signs
from training.container import (MAX_SIZE, OpGraph, check_tensors, complete_manifest, read_container,
                                write_container)

FORMAT = "bitwrn-qmodel"
VERSION = 3
# 2 added residual_bits (version 1: residual_bits = act_bits); 3 padding per side and pools
# that do not count it
SUPPORTED_VERSIONS = (1, 2, 3)
FIX = "re-create it with python -m quantize RUN_DIR"

# Required attributes and tensors per op kind; `add` takes two inputs, every other op one.
OP_ATTRS = {
    "lut": ("table",),
    "conv": ("in_channels", "out_channels", "kernel", "stride", "padding", "weights"),
    "requant": ("multiplier", "bias", "shift", "lo", "hi"),
    "avgpool": ("kernel", "stride", "padding", "multiplier", "shift"),
    "zero_channels": ("in_channels", "out_channels"),
    "add": ("shifts", "lo", "hi"),
    "global_sum": (),
}


def pool_constants(op):
    """{pixels: (M, B, s)} of an avgpool op, `(sum * M + B) >> s` dividing the sum of a window of
    that many pixels: k*k's from `multiplier` and `shift` (B = 2^(s-1): rounded half up), the
    edge windows' from `edge_divisors`."""
    s = op["shift"]
    table = {op["kernel"] ** 2: (op["multiplier"], (1 << (s - 1)) if s > 0 else 0, s)}
    table.update({n: (m, bias, shift) for n, m, bias, shift in op.get("edge_divisors", ())})
    return table


MANIFEST_FIELDS = ("format", "version", "act_bits", "num_classes", "input_shape", "variant",
                   "ops", "tensors", "logits", "logits_scale", "source")


class QModelError(Exception):
    """A quantized model file is missing, corrupt or inconsistent (one line, with the fix)."""


def _error(path, problem, fix=FIX):
    return QModelError(" ".join(f"{path}: {problem}; fix: {fix}".split()))


@dataclass
class QModel(OpGraph):
    manifest: dict
    tensors: dict
    path: str = "<memory>"
    shapes: dict = field(default_factory=dict)   # tensor name -> per-image shape

    @property
    def act_bits(self):
        """The width of the activations the convs read."""
        return self.manifest["act_bits"]

    @property
    def residual_bits(self):
        """The width of the residual stream (the adds and the tensors read twice)."""
        return self.manifest.get("residual_bits", self.act_bits)

    @property
    def input_bits(self):
        """The width of the image as the first conv reads it (the input table's values)."""
        return self.manifest.get("input_bits", self.act_bits)

    @property
    def storage_bits(self):
        """The width of a stored activation's slot: the wider of the two."""
        return max(self.act_bits, self.residual_bits)

    @property
    def num_classes(self):
        return self.manifest["num_classes"]

    @property
    def input_shape(self):
        return tuple(self.manifest["input_shape"])

    def conv_signs(self, op):
        """int8 +1/-1 weights (out, in, k, k) of a conv op."""
        shape = (op["out_channels"], op["in_channels"], op["kernel"], op["kernel"])
        return unpack_signs(self.tensors[op["weights"]], shape)

    def tensor(self, key):
        return self.tensors[key]

    def weight_bits(self):
        return sum(op["out_channels"] * op["in_channels"] * op["kernel"] ** 2
                   for op in self.ops if op["op"] == "conv")


def write_qmodel(path, manifest, arrays):
    """Validate and write atomically; returns the QModel as a reader will see it."""
    manifest = dict(manifest, format=FORMAT, version=VERSION)
    written = write_container(path, manifest, arrays, lambda m, a: validate(path, m, a))
    return QModel(written, dict(arrays), os.fspath(path), validate(path, written, arrays))


def make_qmodel(manifest, arrays):
    """An in-memory QModel, validated exactly like a file would be (for generators/tests)."""
    manifest = complete_manifest(dict(manifest, format=FORMAT, version=VERSION), arrays)
    return QModel(manifest, dict(arrays), "<memory>", validate("<memory>", manifest, arrays))


def read_qmodel(path):
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, "qmodel.npz")
    if not os.path.isfile(path):
        raise _error(path, "quantized model file not found")
    manifest, tensors = read_container(path, lambda problem: _error(path, problem),
                                       "quantized model")
    return QModel(manifest, tensors, path, validate(path, manifest, tensors))


def validate(path, manifest, tensors):
    """Check format, version, tensors and the op graph; return per-image shapes by name."""
    if manifest.get("format") != FORMAT:
        raise _error(path, f"format is {manifest.get('format')!r}, expected {FORMAT!r} "
                           "(not a bitwrn quantized model)")
    if type(manifest.get("version")) is not int or manifest.get("version") not in SUPPORTED_VERSIONS:
        raise _error(path, f"unsupported quantized-model version {manifest.get('version')!r}; "
                           f"this reader supports {', '.join(map(str, SUPPORTED_VERSIONS))}")
    missing = [f for f in MANIFEST_FIELDS + (("residual_bits",) if manifest["version"] >= 2 else ())
               if f not in manifest]
    if missing:
        raise _error(path, f"manifest lacks field(s) {', '.join(missing)}")
    try:
        check_tensors(manifest["tensors"], tensors, lambda problem: _error(path, problem))
        return _check_graph(path, manifest, tensors)
    except (TypeError, KeyError, AttributeError, ValueError) as e:
        raise _error(path, f"malformed manifest ({type(e).__name__}: {e})") from e


def _integer(value, lo, hi=None):
    return type(value) is int and value >= lo and (hi is None or value <= hi)


def _check_numbers(path, manifest):
    """Every number the golden model and the hardware compute with, inside what they support:
    a value outside would overflow int64 or be cut by a hardware field."""
    def need(ok, what, value, want):
        if not ok:
            raise _error(path, f"{what} is {value!r}, not {want}")

    for key in ("act_bits", "residual_bits", "input_bits"):
        if key in manifest:
            need(_integer(manifest[key], *WIDTHS), key, manifest[key],
                 f"an integer {WIDTHS[0]}..{WIDTHS[1]}")
    need(_integer(manifest["num_classes"], 2), "num_classes", manifest["num_classes"], "an integer >= 2")
    shape = manifest["input_shape"]
    need(isinstance(shape, list) and len(shape) == 3 and all(_integer(v, 1, MAX_SIZE) for v in shape),
         "input_shape", shape, f"[C, H, W] of integers 1..{MAX_SIZE}")
    need(manifest["variant"] in VARIANTS, "variant", manifest["variant"], f"one of {VARIANTS}")
    scale = manifest["logits_scale"]
    need(type(scale) in (int, float) and math.isfinite(scale) and scale > 0, "logits_scale", scale,
         "a finite number > 0")
    need(isinstance(manifest["source"], dict), "source", manifest["source"], "an object")
    for op in manifest["ops"]:
        what = f"op {op.get('name')!r}"
        if "out" in op:
            _check_out(need, what, op["out"])
        for key in ("in_channels", "out_channels", "kernel", "stride"):
            if key in op:
                need(_integer(op[key], 1, MAX_SIZE), f"{what} {key}", op[key], f"an integer 1..{MAX_SIZE}")
        if "padding" in op:
            sides = padding_sides(op["padding"])
            need(sides is not None and all(_integer(v, 0, 16) for v in sides), f"{what} padding",
                 op["padding"], "an integer 0..16 or a list [top, bottom, left, right] of them")
        if "count_include_pad" in op:
            need(type(op["count_include_pad"]) is bool, f"{what} count_include_pad",
                 op["count_include_pad"], "true or false")
        if "edge_divisors" in op:
            table = op["edge_divisors"]
            need(isinstance(table, list) and all(
                isinstance(d, list) and len(d) == 4 and _integer(d[0], 1, MAX_SIZE)
                and _integer(d[1], 1, 1 << 40) and _integer(d[2], 0, 1 << 40)
                and _integer(d[3], 0, MAX_SHIFT) for d in table),
                f"{what} edge_divisors", table,
                f"a list of [pixels, multiplier 1..2^40, bias 0..2^40, shift 0..{MAX_SHIFT}]")
        if "shift" in op:
            need(_integer(op["shift"], 0, MAX_SHIFT), f"{what} shift", op["shift"], f"an integer 0..{MAX_SHIFT}")
        if op.get("op") == "avgpool":
            need(_integer(op["multiplier"], 1, 1 << 32), f"{what} multiplier", op["multiplier"],
                 "an integer 1..2^32")
        if "lo" in op:
            need(type(op["lo"]) is int and type(op["hi"]) is int and op["lo"] <= op["hi"]
                 and -(1 << 31) <= op["lo"] and op["hi"] < 1 << 31, f"{what} lo, hi",
                 [op["lo"], op["hi"]], "integers lo <= hi within 32 bits")
        if "shifts" in op:
            need(isinstance(op["shifts"], list) and all(_integer(v, -16, 16) for v in op["shifts"]),
                 f"{what} shifts", op["shifts"], "integers -16..16")


MAX_OUT_BITS = 62      # the golden model computes in int64: a product of two outputs must fit


def _check_out(need, what, out):
    """An op's output width (docs/quantized-model.md, `out`): its range inside its width."""
    need(isinstance(out, dict) and {"bits", "signed", "lo", "hi", "scale"} <= set(out),
         f"{what} out", out, "an object with bits, signed, lo, hi, scale, frac")
    bits, signed, lo, hi, scale = (out[k] for k in ("bits", "signed", "lo", "hi", "scale"))
    need(_integer(bits, 1, MAX_OUT_BITS) and type(signed) is bool, f"{what} out bits, signed",
         [bits, signed], f"an integer 1..{MAX_OUT_BITS} and true or false")
    low, high = int_range(bits, signed)
    need(type(lo) is int and type(hi) is int and low <= lo <= hi <= high, f"{what} out lo, hi",
         [lo, hi], f"integers lo <= hi within {bits} {'signed' if signed else 'unsigned'} bits")
    need(type(scale) in (int, float) and math.isfinite(scale) and scale > 0, f"{what} out scale",
         scale, "a finite number > 0")
    frac = out.get("frac")
    need(frac is None or (_integer(frac, -MAX_OUT_BITS) and frac <= MAX_OUT_BITS
                          and scale == 2.0 ** -frac), f"{what} out frac", frac,
         f"null or the f of its scale {scale!r} = 2^-f")


def _check_graph(path, manifest, tensors):
    _check_numbers(path, manifest)
    shapes = {"image": tuple(manifest["input_shape"])}
    used = set()

    def tensor(op, key, channels):
        if key not in tensors:
            raise _error(path, f"op {op['name']!r} needs tensor {key!r}, which is not in the file")
        arr = tensors[key]
        if arr.dtype.kind not in "iu" or (channels is not None and arr.shape[0] not in (1, channels)):
            raise _error(path, f"tensor {key!r} is {arr.dtype.name}{list(arr.shape)}, op "
                               f"{op['name']!r} needs integers for {channels} channels")
        used.add(key)
        return arr

    for i, op in enumerate(manifest["ops"]):
        kind, name, inputs = op.get("op"), op.get("name"), op.get("inputs", [])
        if kind not in OP_ATTRS:
            raise _error(path, f"op #{i} {name!r} has unknown kind {kind!r}")
        lacking = [a for a in OP_ATTRS[kind] + ("out",) if a not in op]
        if lacking:
            raise _error(path, f"op {name!r} ({kind}) lacks attribute(s) {', '.join(lacking)}")
        if name in shapes:
            raise _error(path, f"op name {name!r} is used twice (or is 'image')")
        if len(inputs) != (2 if kind == "add" else 1) or any(x not in shapes for x in inputs):
            raise _error(path, f"op {name!r} inputs {inputs} are not earlier tensors")
        s = shapes[inputs[0]]
        if kind == "conv":
            if s[0] != op["in_channels"]:
                raise _error(path, f"conv {name!r} expects {op['in_channels']} channels, got {s[0]}")
            count = op["out_channels"] * op["in_channels"] * op["kernel"] ** 2
            bits = tensor(op, op["weights"], None)
            if bits.dtype != np.uint8 or bits.shape != ((count + 7) // 8,):
                raise _error(path, f"conv {name!r} weight bits {list(bits.shape)} do not hold "
                                   f"{count} weights")
            s = (op["out_channels"], *window_out(op, s))
        elif kind == "lut":
            table = tensor(op, op["table"], s[0])
            if table.shape != (s[0], 256):
                raise _error(path, f"lut {name!r} table is {list(table.shape)}, needs [{s[0]}, 256]")
        elif kind == "requant":
            for key, bits in (("multiplier", MULTIPLIER_BITS), ("bias", 48)):
                arr = tensor(op, op[key], s[0])
                if arr.size and np.abs(arr.astype(np.int64)).max() >= 1 << (bits - 1):
                    raise _error(path, f"requant {name!r} {key} {int(np.abs(arr).max())} does not "
                                       f"fit {bits} signed bits")
        elif kind == "avgpool":
            if not op.get("count_include_pad", True):
                have = {op["kernel"] ** 2} | {d[0] for d in op.get("edge_divisors", ())}
                lacking = sorted(set(np.unique(pool_divisors(op, s[1:])).tolist()) - have)
                if lacking:
                    raise _error(path, f"avgpool {name!r} has windows of {lacking} pixels and "
                                       "no edge_divisors for them")
            s = (s[0], *window_out(op, s))
        elif kind == "zero_channels":
            s = (op["out_channels"], *s[1:])
        elif kind == "add" and shapes[inputs[1]] != s:
            raise _error(path, f"add {name!r} of {list(s)} and {list(shapes[inputs[1]])}")
        elif kind == "global_sum":
            s = (s[0],)
        shapes[name] = tuple(s)
    logits = manifest["logits"]
    if shapes.get(logits) != (manifest["num_classes"],):
        raise _error(path, f"logits tensor {logits!r} is not of shape [{manifest['num_classes']}]")
    unused = sorted(set(manifest["tensors"]) - used)
    if unused:
        raise _error(path, f"tensor(s) {', '.join(unused)} not used by any op")
    return shapes
