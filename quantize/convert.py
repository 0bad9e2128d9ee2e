"""Deployment bundle -> quantized model: every integer the hardware computes with.

Calibration picks one power-of-two scale per stored tensor. BN (fixed moments), the constant
1-bit scale of Eq. 1 and ReLU / shifted ReLU fold into one integer requantization per stored
tensor: y = clamp((acc * M + B + 2^(s-1)) >> s). Float tensors that are affine functions of an
integer tensor ("views": a conv's output before its BN, a BN's output before its ReLU) are never
materialized; a view becomes an integer tensor only where the network stores or clamps it.
"""
import math
from dataclasses import dataclass

import numpy as np

from common.bits import bits_for, int_range
from quantize.fixed_point import (MULTIPLIER_BITS, adder_plan, csd_terms, integer_multiplier, odd_part,
                                  reduce_power_of_two, requantize, shift_round)
from quantize.float_reference import pool_divisors, run_float
from training.act_points import LOGIT_BITS, WIDTHS, power_of_two_frac
from training.bundle import pack_signs

CALIB_CHUNK = 50
CALIB_SAMPLE = 200_000   # values kept per tensor for the percentile


@dataclass
class View:
    """real value = a[c] * int_tensor + b[c], per channel c, for an integer tensor `src`."""
    src: str
    a: np.ndarray
    b: np.ndarray


def calibrate(bundle, images, percentile=100.0, seed=0):
    """Magnitude bound of every float tensor: the `percentile` of |x| over `images`."""
    rng = np.random.default_rng(seed)
    chunks = max(1, math.ceil(len(images) / CALIB_CHUNK))
    samples, peaks = {}, {}
    for start in range(0, len(images), CALIB_CHUNK):
        _, tensors = run_float(bundle, images[start:start + CALIB_CHUNK], keep=True)
        for name, x in tensors.items():
            mag = np.abs(x).reshape(-1)
            peaks[name] = max(peaks.get(name, 0.0), float(mag.max()))
            take = min(mag.size, CALIB_SAMPLE // chunks + 1)
            samples.setdefault(name, []).append(rng.choice(mag, take, replace=False))
    if percentile >= 100:
        return peaks
    return {k: float(np.percentile(np.concatenate(v), percentile)) for k, v in samples.items()}


def divide_by_nine(lo, hi, kernel_area=9):
    """(M, s) with (sum * M + 2^(s-1)) >> s == floor(sum / 9 + 1/2) for every window sum of
    values in [lo, hi]: the average pool's division, exact, as a constant multiply and shift.

    Of the exact pairs the one whose multiplier takes the fewest adders as shifts and adds
    (`adder_plan`), then the smallest shift: hardware without a multiplier builds exactly that.
    """
    sums = np.arange(kernel_area * lo, kernel_area * hi + 1, dtype=np.int64)
    exact = np.floor_divide(2 * sums + kernel_area, 2 * kernel_area)
    found = []
    for shift in range(4, 33):
        for m in ((1 << shift) // kernel_area, (1 << shift) // kernel_area + 1):
            if m > 0 and np.array_equal(shift_round(sums * m, shift), exact):
                found.append((adder_plan(odd_part(m)[0])[0], shift, m))
    if not found:
        raise ValueError("no exact divide-by-9 constant found")
    _, shift, m = min(found)
    return m, shift


def divide_exactly(lo, hi, pixels):
    """(M, B, s) with (sum * M + B) >> s == floor(sum / pixels + 1/2) for every sum of `pixels`
    values in [lo, hi]: the mean of a window at an edge, rounded half up. A divisor with a
    factor 2 has sums exactly halfway, where the usual B = 2^(s-1) rounds one sign the wrong
    way, so B is searched too: the smallest s, then B nearest 2^(s-1)."""
    sums = np.arange(pixels * lo, pixels * hi + 1, dtype=np.int64)
    exact = np.floor_divide(2 * sums + pixels, 2 * pixels)
    for shift in range(1, 40):
        for m in ((1 << shift) // pixels, (1 << shift) // pixels + 1):
            # each sum bounds B: exact * 2^s <= sum * M + B < (exact + 1) * 2^s
            low = int((exact * (1 << shift) - sums * m).max())
            high = int(((exact + 1) * (1 << shift) - sums * m).min()) - 1
            if m > 0 and low <= high:
                return m, min(max(1 << (shift - 1), low), high), shift
    raise ValueError(f"no exact divide-by-{pixels} constant found")


def never_below(real_m, real_b, m, b, shift, x_lo, x_hi, lo, hi):
    """B raised just enough that x*M + B >= 2^shift * (x*real_m + real_b) for every x in
    [x_lo, x_hi] whose real result lands within one step of [lo, hi] (per channel; beyond
    that the clamp decides).

    M is real_m rounded, so without this a value exactly halfway between two steps (a conv scale
    such as 1/12 makes them common) would round up or down with the sign of M's rounding error;
    with it the integer model rounds every such tie up, as the real value rounds half up and as
    training rounds (training/fake_quant.py). Exact M and B stay unchanged. The cost is a bias of
    at most 2 x (M's rounding error) x |x| / 2^shift of a step."""
    real_m = np.asarray(real_m, np.float64) * np.ones(len(m))
    real_b = np.asarray(real_b, np.float64) * np.ones(len(m))
    with np.errstate(divide="ignore", invalid="ignore"):
        ends = np.stack([(lo - 1 - real_b) / real_m, (hi + 1 - real_b) / real_m])
    first = np.where(real_m != 0, np.maximum(x_lo, np.floor(ends.min(0))), x_lo)
    last = np.where(real_m != 0, np.minimum(x_hi, np.ceil(ends.max(0))), x_hi)
    scale = 2.0 ** shift
    slope = real_m * scale - m
    below = np.maximum(first * slope, last * slope) + (real_b * scale - b)
    raise_by = np.where(first <= last, np.maximum(0, np.ceil(below)), 0)
    return b + raise_by.astype(np.int64)


class Converter:
    def __init__(self, bundle, bounds, act_bits, multiplier_bits=MULTIPLIER_BITS,
                 residual_bits=None, input_bits=None):
        """act_bits: the width of the tensors a conv reads; residual_bits: of the residual
        stream (adds, tensors read twice); input_bits: of the image as the first conv reads it
        (the folded input BN's table); both default act_bits (training/act_points.py)."""
        self.bundle, self.bounds, self.act_bits = bundle, bounds, act_bits
        self.residual_bits = residual_bits or act_bits
        self.input_bits = input_bits or act_bits
        self.multiplier_bits = multiplier_bits
        self.ops, self.arrays, self.ints, self.views = [], {}, {}, {}
        self.consumers = {}
        for op in bundle.ops:
            for i in op["inputs"]:
                self.consumers[i] = self.consumers.get(i, 0) + 1

    # -- integer tensors ------------------------------------------------------------------
    def emit(self, op, lo, hi, scale, frac=None):
        lo, hi = int(lo), int(hi)
        signed = lo < 0
        bits = bits_for(lo, hi) if signed else max(1, hi.bit_length())
        op["out"] = dict(bits=bits, signed=signed, lo=lo, hi=hi, scale=float(scale), frac=frac)
        self.ops.append(op)
        self.ints[op["name"]] = op["out"]
        self.views[op["name"]] = View(op["name"], np.array([float(scale)]), np.array([0.0]))
        return op["name"]

    def frac_for(self, float_name, signed, bits=None):
        return power_of_two_frac(self.bounds[float_name], bits or self.act_bits, signed)

    def materialize(self, view, name, frac, lo, hi):
        """Requantize a view to scale 2^-frac, clamped to [lo, hi] (a LUT on raw pixels)."""
        r_out = 2.0 ** -frac
        shift, m = integer_multiplier(view.a / r_out, self.multiplier_bits)
        b = np.floor(view.b / r_out * 2.0 ** shift + 0.5).astype(np.int64) * np.ones_like(m)
        if np.all(view.a == view.a[0]):
            # One real multiplier for every channel (no BN: a conv scale, possibly rational, so
            # exact ties occur); its M is large, so lifting it costs nothing measurable. A
            # per-channel BN multiplier has no exact ties, and lifting its small-M channels
            # would bias them: it keeps round-to-nearest M and B.
            src = self.ints[view.src]
            b = never_below(view.a / r_out, view.b / r_out, m, b, shift, src["lo"], src["hi"],
                            lo, hi)
        m, b, shift = reduce_power_of_two(m, b, shift)
        if np.all(m == m[0]) and np.all(b == b[0]):
            m, b = m[:1], b[:1]
        if view.src == "image":  # 256 pixel values: the folded input BN is a table per channel
            pixels = np.arange(256, dtype=np.int64)[None, :]
            table = np.stack([requantize(pixels, m[c % len(m)], b[c % len(b)], shift, lo, hi)[0]
                              for c in range(self.bundle.manifest["input_shape"][0])])
            self.arrays[name + ".table"] = table.astype(np.int16)
            return self.emit(dict(op="lut", name=name, inputs=["image"], table=name + ".table"),
                             table.min(), table.max(), r_out, frac)
        self.arrays[name + ".multiplier"], self.arrays[name + ".bias"] = m, b
        return self.emit(dict(op="requant", name=name, inputs=[view.src], multiplier=name + ".multiplier",
                              bias=name + ".bias", shift=int(shift), lo=int(lo), hi=int(hi)),
                         lo, hi, r_out, frac)

    def is_stored(self, view):
        """A view that is exactly an integer tensor with a power-of-two scale."""
        src = self.ints[view.src]
        return bool(np.all(view.a == src["scale"]) and not np.any(view.b)) and src["frac"] is not None

    def stored(self, name, bits=None):
        """The integer tensor holding float tensor `name`, stored (signed, `bits` wide; default
        act_bits) at its own calibrated scale if it is still a view."""
        view, bits = self.views[name], bits or self.act_bits
        if not self.is_stored(view):
            frac = self.frac_for(name, True, bits)
            self.materialize(view, name, frac, *int_range(bits, True))
        return self.views[name].src

    # -- float ops ------------------------------------------------------------------------
    def convert(self):
        self.emit_input()
        for op in self.bundle.ops:
            getattr(self, "op_" + op["op"])(op, [self.views[i] for i in op["inputs"]])
            if self.consumers.get(op["name"], 0) > 1:   # read twice: the residual stream
                self.stored(op["name"], self.residual_bits)
        return self.ops, self.arrays

    def emit_input(self):
        c = self.bundle.manifest["input_shape"][0]
        self.ints["image"] = dict(bits=8, signed=False, lo=0, hi=255, scale=1.0, frac=0)
        self.views["image"] = View("image", np.ones(c), np.zeros(c))

    def op_batchnorm(self, op, xs):
        mean, var, w, b, eps = self.bundle.bn(op["name"])
        alpha = (1.0 if w is None else w.astype(np.float64)) / np.sqrt(var.astype(np.float64) + eps)
        beta = (0.0 if b is None else b.astype(np.float64)) - alpha * mean
        x = xs[0]
        self.views[op["name"]] = View(x.src, x.a * alpha, x.b * alpha + beta)

    def op_relu(self, op, xs):
        frac = self.frac_for(op["name"], False)
        self.materialize(xs[0], op["name"], frac, *int_range(self.act_bits, False))

    def op_srelu(self, op, xs):
        frac = self.frac_for(op["name"], True)
        lo, hi = int_range(self.act_bits, True)
        floor_int = math.floor(op["floor"] * 2.0 ** frac + 0.5)  # max(x, -1) in LSBs, rounded
        self.materialize(xs[0], op["name"], frac, max(lo, floor_int), hi)

    def op_conv(self, op, xs):
        on_image = xs[0].src == "image"    # a view of the raw pixels: stored at input_bits
        src = self.stored(op["inputs"][0], self.input_bits if on_image else None)
        signs = self.bundle.conv_signs(op["name"]).reshape(op["out_channels"], -1)
        plus = (signs > 0).sum(1).astype(np.int64)
        minus = signs.shape[1] - plus
        # Zero padding puts 0 into any tap, so 0 joins the input range.
        lo_in, hi_in = min(self.ints[src]["lo"], 0), max(self.ints[src]["hi"], 0)
        # Worst case per output channel: every +1 weight meets the largest input and every
        # -1 weight the smallest (and the reverse).
        hi = int((plus * hi_in - minus * lo_in).max())
        lo = int((plus * lo_in - minus * hi_in).min())
        key = op["name"] + ".weight_bits"
        self.arrays[key] = pack_signs(self.bundle.conv_signs(op["name"]))
        name = self.emit(dict(op="conv", name=op["name"] + "_acc", inputs=[src],
                              in_channels=op["in_channels"], out_channels=op["out_channels"],
                              kernel=op["kernel"], stride=op["stride"], padding=op["padding"],
                              weights=key), lo, hi, op["scale"] * self.ints[src]["scale"])
        self.views[op["name"]] = self.views[name]

    def op_avgpool(self, op, xs):
        src = self.stored(op["inputs"][0], self.residual_bits)
        s = self.ints[src]
        area = op["kernel"] ** 2
        m, shift = divide_by_nine(s["lo"], s["hi"], area)
        # The exact mean rounded half up stays in the input's range, whatever the divisor.
        lo = int(shift_round(np.int64(area * s["lo"] * m), shift))
        hi = int(shift_round(np.int64(area * s["hi"] * m), shift))
        pool = dict(op="avgpool", name=op["name"], inputs=[src], kernel=op["kernel"],
                    stride=op["stride"], padding=op["padding"], multiplier=int(m), shift=int(shift))
        if not op["count_include_pad"]:
            pixels = pool_divisors(op, self.bundle.shapes[op["inputs"][0]][1:])
            edges = sorted(set(np.unique(pixels).tolist()) - {area})
            pool.update(count_include_pad=False, edge_divisors=[
                [n, *divide_exactly(s["lo"], s["hi"], n)] for n in edges])
        self.emit(pool, lo, hi, s["scale"], s["frac"])

    def op_zero_channels(self, op, xs):
        src = self.stored(op["inputs"][0], self.residual_bits)
        s = self.ints[src]
        self.emit(dict(op="zero_channels", name=op["name"], inputs=[src],
                       in_channels=op["in_channels"], out_channels=op["out_channels"]),
                  min(s["lo"], 0), max(s["hi"], 0), s["scale"], s["frac"])

    def op_add(self, op, xs):
        bits = self.residual_bits
        frac = self.frac_for(op["name"], True, bits)
        lo, hi = int_range(bits, True)
        inputs, shifts = [], []
        for name, view in zip(op["inputs"], xs):
            src = self.ints[view.src]
            if self.is_stored(view):
                inputs.append(view.src)           # aligned by a shift
                shifts.append(src["frac"] - frac)
            else:                                 # a conv output: requantized to the sum's scale
                wide = int_range(bits + 1, True)
                inputs.append(self.materialize(view, name, frac, *wide))
                shifts.append(0)
        self.emit(dict(op="add", name=op["name"], inputs=inputs, shifts=shifts, lo=lo, hi=hi),
                  lo, hi, 2.0 ** -frac, frac)

    def op_scale(self, op, xs):
        x = xs[0]
        self.views[op["name"]] = View(x.src, x.a * op["factor"], x.b * op["factor"])

    def op_global_avgpool(self, op, xs):
        x = xs[0]
        s = self.ints[x.src]
        h, w = self.shape_of(op["inputs"][0])
        uniform = np.all(x.a == x.a[0]) and x.a[0] > 0 and not np.any(x.b)
        # Sum, not mean: GAP commutes with the per-channel affine (BN) that follows it, and a
        # positive common scale does not change the argmax, so no division is ever needed.
        name = op["name"] if uniform else op["name"] + "_sum"
        self.emit(dict(op="global_sum", name=name, inputs=[x.src]), s["lo"] * h * w,
                  s["hi"] * h * w, s["scale"])
        if uniform:
            # The integer logits are sums over h*w positions; the float logits are means.
            self.logits_scale = float(x.a[0]) / (h * w)
            return
        frac = self.frac_for(op["name"], True, LOGIT_BITS)
        view = View(name, x.a / (h * w), x.b)
        self.materialize(view, op["name"], frac, *int_range(LOGIT_BITS, True))
        self.logits_scale = 2.0 ** -frac

    def shape_of(self, float_name):
        return self.bundle.shapes[float_name][1:]


def trained_widths(bundle):
    """(act_bits, residual_bits, input_bits) the bundle's activations were trained for, or
    None."""
    act = bundle.activations
    if act is None:
        return None
    return act["bits"], act.get("residual_bits", act["bits"]), act.get("input_bits", act["bits"])


def trained_bounds(bundle, act_bits, residual_bits=None, input_bits=None):
    """The bounds the bundle's activations were trained with at these widths (residual_bits or
    input_bits None: the trained one), or None (float activations, or trained for other
    widths)."""
    widths = trained_widths(bundle)
    if (widths is None or widths[0] != act_bits or residual_bits not in (None, widths[1])
            or input_bits not in (None, widths[2])):
        return None
    return dict(bundle.activations["bounds"])


def quantize_bundle(bundle, calib_images, act_bits=8, percentile=100.0, bounds=None,
                    multiplier_bits=MULTIPLIER_BITS, residual_bits=None, input_bits=None):
    """(manifest, arrays) of the quantized model.

    act_bits: the width of what the convs read; residual_bits: of the residual stream;
    input_bits: of the image as the first conv reads it (each default: the trained one if the
    bundle was trained at act_bits, else act_bits).
    The scales: `bounds` if given; else those the activations were trained with at these widths
    (the bundle's `activations`); else calibrated on `calib_images` at `percentile`.
    `multiplier_bits`: the signed width of every requant multiplier M. Fewer bits round the
    real multipliers more coarsely, and a per-layer constant then has fewer signed digits:
    cheaper shift-add requantizers (hw.blocks.requant.ShiftAddRequantizer)."""
    lo, hi = WIDTHS
    if not lo <= act_bits <= hi:
        raise ValueError(f"act_bits must be {lo}..{hi}, got {act_bits}")
    if not 2 <= multiplier_bits <= MULTIPLIER_BITS:
        raise ValueError(f"multiplier_bits must be 2..{MULTIPLIER_BITS}, got {multiplier_bits}")
    if bundle.manifest["weights"] != "1bit":
        raise ValueError("only 1-bit bundles can be quantized (this one has float weights)")
    trained = trained_widths(bundle)
    same = trained is not None and trained[0] == act_bits
    residual_bits = residual_bits or (trained[1] if same else act_bits)
    input_bits = input_bits or (trained[2] if same else act_bits)
    for name, bits in (("residual_bits", residual_bits), ("input_bits", input_bits)):
        if not lo <= bits <= hi:
            raise ValueError(f"{name} must be {lo}..{hi}, got {bits}")
    scales = "given" if bounds else "calibrated"
    if bounds is None and trained_bounds(bundle, act_bits, residual_bits, input_bits) is not None:
        bounds, scales = trained_bounds(bundle, act_bits, residual_bits, input_bits), "trained"
    bounds = bounds or calibrate(bundle, calib_images, percentile)
    conv = Converter(bundle, bounds, act_bits, multiplier_bits, residual_bits, input_bits)
    ops, arrays = conv.convert()
    manifest = dict(act_bits=act_bits, residual_bits=residual_bits, input_bits=input_bits,
                    num_classes=bundle.manifest["num_classes"],
                    input_shape=bundle.manifest["input_shape"], variant=bundle.manifest["variant"],
                    ops=ops, logits="logits", logits_scale=conv.logits_scale,
                    source=dict(bundle=bundle.path, model=bundle.config,
                                metadata=bundle.metadata, scales=scales,
                                calib_images=len(calib_images) if scales == "calibrated" else 0,
                                calib_percentile=percentile, multiplier_bits=multiplier_bits))
    return manifest, arrays


def multiplier_kind(op, tensors):
    """How the hardware applies an op's multiplier: 'lut', 'shift', 'constant' (shift-add of
    its CSD digits) or 'per-channel' (a real multiplier, one DSP)."""
    if op["op"] == "lut":
        return "lut"
    if op["op"] == "avgpool":
        return "constant"
    if op["op"] != "requant":
        return None
    m = tensors[op["multiplier"]]
    if len(m) > 1:
        return "per-channel"
    return "shift" if csd_terms(m[0]) <= 1 else "constant"
