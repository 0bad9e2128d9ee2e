"""Quantized model: integer-only golden model, worst-case overflow safety of every layer,
fixed-point primitives against independent definitions, agreement with the float reference,
quantized-model file checks, the random model generator and conversion errors.

Every expectation here is computed independently (Python integers and Fractions, brute force,
the unpacked weights), never copied from a run of the code under test.
"""
import copy
import itertools
import json
import math
import os
import zipfile
from fractions import Fraction

import numpy as np
import pytest

from common.bits import bits_for
from quantize import fixed_point as fp
from quantize.convert import divide_by_nine, multiplier_kind, quantize_bundle
from quantize.float_reference import run_float
from quantize.golden import _Prepared, run, run_op
from quantize.qmodel import QModelError, make_qmodel, read_qmodel, write_qmodel
from quantize.random_model import random_bundle, random_images, random_qmodel
from training.bundle import MANIFEST_FIELDS, read_bundle, write_bundle
from training.container import write_container
from training.graph import build_ops

FMNIST = "/usr/share/datasets/fashion-mnist"
HALF = Fraction(1, 2)

_QMODELS, _BUNDLES = {}, {}


def qmodel(**kw):
    """random_qmodel, built once per argument set (each build runs the float reference once
    per BN). Shared: tests must not mutate the result."""
    key = tuple(sorted(kw.items()))
    if key not in _QMODELS:
        _QMODELS[key] = random_qmodel(**kw)
    return _QMODELS[key]


def bundle(**kw):
    key = tuple(sorted(kw.items()))
    if key not in _BUNDLES:
        _BUNDLES[key] = random_bundle(**kw)
    return _BUNDLES[key]


def width_range(bits, signed):
    """Independent definition of a two's complement / unsigned range."""
    return (-2 ** (bits - 1), 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1)


def round_half_up(frac):
    return math.floor(frac + HALF)


def exact_shift(x, shift):
    """x / 2^shift rounded half up (shift > 0), or x * 2^-shift, in exact arithmetic."""
    x = int(x)
    return round_half_up(Fraction(x, 2 ** shift)) if shift > 0 else x * 2 ** -shift


def in_range(q, name):
    """(lo, hi) of an integer tensor as declared by the op that produces it."""
    if name == "image":
        return 0, 255
    out = q.op(name)["out"]
    return out["lo"], out["hi"]


def unpack(q, op):
    """+1/-1 weights (out, in, k, k) straight from the packed bytes (docs/bundle.md packing)."""
    shape = (op["out_channels"], op["in_channels"], op["kernel"], op["kernel"])
    bits = np.unpackbits(q.tensors[op["weights"]], bitorder="big")[:int(np.prod(shape))]
    return np.where(bits == 1, 1, -1).reshape(shape)


# ------------------------------------------------------------------ integer-only arithmetic

@pytest.mark.parametrize("variant", ["bn", "srelu"])
def test_golden_is_integer_only_and_within_declared_ranges(variant):
    q = qmodel(variant=variant)
    r = run(q, random_images(8, q.input_shape, 11), keep=True)
    assert np.issubdtype(r.logits.dtype, np.integer) and r.logits.shape == (8, 10)
    assert np.issubdtype(r.classes.dtype, np.integer) and r.classes.shape == (8,)
    assert np.array_equal(r.classes, np.argmax(r.logits, axis=1))
    assert np.array_equal(r.logits, r.tensors[q.manifest["logits"]])
    assert set(r.tensors) == {op["name"] for op in q.ops}
    for op in q.ops:
        y, out = r.tensors[op["name"]], op["out"]
        assert np.issubdtype(y.dtype, np.integer), op["name"]
        assert out["lo"] <= y.min() and y.max() <= out["hi"], op["name"]
        lo, hi = width_range(out["bits"], out["signed"])
        assert lo <= out["lo"] and out["hi"] <= hi, op["name"]
        assert out["signed"] == (out["lo"] < 0), op["name"]
    # The run is not trivially in range because everything is zero: activations vary.
    assert all(len(np.unique(r.tensors[op["name"]])) > 10 for op in q.ops
               if op["op"] in ("lut", "requant", "add", "conv"))


# ------------------------------------------------------------------ worst-case overflow

OVERFLOW_MODELS = [dict(variant="bn"), dict(variant="srelu"), dict(variant="bn", act_bits=16),
                   dict(variant="srelu", act_bits=16)]


def conv_extreme(q, op, prepared, want_max):
    """Drive the center window of one conv to its analytic worst case; return
    (accumulator there, analytic bound of that channel, all channels' bounds)."""
    src = op["inputs"][0]
    lo, hi = in_range(q, src)
    signs = unpack(q, op)
    flat = signs.reshape(len(signs), -1)
    plus = (flat > 0).sum(axis=1).astype(object)         # Python ints: no overflow here
    minus = flat.shape[1] - plus
    upper, lower = plus * hi - minus * lo, plus * lo - minus * hi
    c = int(np.argmax(upper)) if want_max else int(np.argmin(lower))
    c_in, h, w = q.shapes[src]
    ho, wo = q.shapes[op["name"]][1:]
    k, st, p = op["kernel"], op["stride"], op["padding"]
    oy, ox = ho // 2, wo // 2
    y0, x0 = oy * st - p, ox * st - p
    assert 0 <= y0 and y0 + k <= h and 0 <= x0 and x0 + k <= w, "window touches padding"
    x = np.full((c_in, 1, h, w), min(max(0, lo), hi), np.int64)
    big, small = (hi, lo) if want_max else (lo, hi)
    x[:, 0, y0:y0 + k, x0:x0 + k] = np.where(signs[c] > 0, big, small)
    acc = run_op(q, op, [x], prepared)
    return int(acc[c, 0, oy, ox]), (upper if want_max else lower)[c], upper, lower


@pytest.mark.parametrize("kw", OVERFLOW_MODELS, ids=lambda kw: "-".join(map(str, kw.values())))
def test_conv_worst_case_fits_declared_width_exactly(kw):
    q = qmodel(**kw)
    prepared = _Prepared(q)
    convs = [op for op in q.ops if op["op"] == "conv"]
    assert len(convs) == 8                                   # WRN-8: conv0 + 3 x 2 + head
    for op in convs:
        out = op["out"]
        got_max, bound_max, upper, lower = conv_extreme(q, op, prepared, True)
        got_min, bound_min, _, _ = conv_extreme(q, op, prepared, False)
        assert got_max == bound_max == max(upper), op["name"]
        assert got_min == bound_min == min(lower), op["name"]
        # The declared range is exactly the analytic worst case ...
        assert (out["lo"], out["hi"]) == (min(lower), max(upper)), op["name"]
        # ... it fits the declared signed width ...
        lo, hi = width_range(out["bits"], True)
        assert out["signed"] and lo <= got_min and got_max <= hi, op["name"]
        # ... and needs every one of its bits: one bit less would overflow.
        lo1, hi1 = width_range(out["bits"] - 1, True)
        assert got_max > hi1 or got_min < lo1, op["name"]


@pytest.mark.parametrize("kw", OVERFLOW_MODELS, ids=lambda kw: "-".join(map(str, kw.values())))
def test_requant_add_pool_sum_extremes(kw):
    q = qmodel(**kw)
    prepared = _Prepared(q)
    kinds = set()
    for op in q.ops:
        kind, out = op["op"], op["out"]
        kinds.add(kind)
        lo_w, hi_w = width_range(out["bits"], out["signed"])
        assert lo_w <= out["lo"] and out["hi"] <= hi_w, op["name"]
        if kind == "requant":
            lo, hi = in_range(q, op["inputs"][0])
            m = q.tensors[op["multiplier"]].astype(object)
            b = q.tensors[op["bias"]].astype(object)
            channels = q.shapes[op["inputs"][0]][0]
            m, b = (np.resize(m, channels), np.resize(b, channels))
            s = op["shift"]
            # acc * M + B (+ rounding half) at the worst-case accumulator: int64 with margin.
            worst = max(abs(a * mm) + abs(bb) for a in (lo, hi) for mm, bb in zip(m, b))
            assert worst + 2 ** max(s - 1, 0) < 2 ** 62, op["name"]
            assert int(np.abs(q.tensors[op["multiplier"]]).max()) < 2 ** 15
            x = np.empty((channels, 2, 1, 1), np.int64)
            x[:, 0], x[:, 1] = lo, hi
            y = run_op(q, op, [x], prepared)
            for c in range(channels):
                for j, a in enumerate((lo, hi)):
                    want = min(max(round_half_up(Fraction(a * m[c] + b[c], 2 ** s)),
                                   op["lo"]), op["hi"])
                    assert y[c, j, 0, 0] == want, (op["name"], c, a)
            assert (out["lo"], out["hi"]) == (op["lo"], op["hi"])
        elif kind == "global_sum":
            src = op["inputs"][0]
            lo, hi = in_range(q, src)
            c, h, w = q.shapes[src]
            assert (out["lo"], out["hi"]) == (lo * h * w, hi * h * w), op["name"]
            for v in (lo, hi):
                y = run_op(q, op, [np.full((c, 1, h, w), v, np.int64)], prepared)
                assert np.all(y == v * h * w), op["name"]
        elif kind == "avgpool":
            src = op["inputs"][0]
            lo, hi = in_range(q, src)
            c, h, w = q.shapes[src]
            assert op["kernel"] == 3 and op["padding"] == 1
            for v in (lo, hi):
                y = run_op(q, op, [np.full((c, 1, h, w), v, np.int64)], prepared)
                assert out["lo"] <= y.min() and y.max() <= out["hi"], op["name"]
                assert np.all(y[:, 0, 1:, 1:] == v), op["name"]       # full 3x3 windows
                # Corner window: 2x2 real pixels, 5 zero-padding taps, still divided by 9.
                assert y[0, 0, 0, 0] == round_half_up(Fraction(4 * v, 9)), op["name"]
            assert (out["lo"], out["hi"]) == (lo, hi), op["name"]
        elif kind == "add":
            (a, b), (sa, sb) = op["inputs"], op["shifts"]
            (alo, ahi), (blo, bhi) = in_range(q, a), in_range(q, b)
            shape = q.shapes[a]
            for va, vb in itertools.product((alo, ahi), (blo, bhi)):
                xa, xb = (np.full((shape[0], 1, *shape[1:]), v, np.int64) for v in (va, vb))
                y = run_op(q, op, [xa, xb], prepared)
                want = min(max(exact_shift(va, sa) + exact_shift(vb, sb), op["lo"]), op["hi"])
                assert np.all(y == want), op["name"]
    assert {"lut", "conv", "requant", "add", "avgpool", "zero_channels", "global_sum"} <= kinds


# ------------------------------------------------------------------ fixed-point primitives

def test_shift_round_is_round_half_up():
    xs = list(range(-300, 301)) + [2 ** 40 + 1, -2 ** 40 - 1, 2 ** 50 - 7, -2 ** 50 + 3]
    arr = np.array(xs, np.int64)
    for s in range(1, 12):
        got = fp.shift_round(arr, s)
        assert [int(g) for g in got] == [math.floor(Fraction(x, 2 ** s) + HALF) for x in xs], s
    for s in (0, -1, -5):
        assert [int(g) for g in fp.shift_round(arr, s)] == [x * 2 ** -s for x in xs]
    # ties go up, also for negatives: -2.5 -> -2, 2.5 -> 3, -0.5 -> 0
    assert int(fp.shift_round(np.int64(-5), 1)) == -2
    assert int(fp.shift_round(np.int64(5), 1)) == 3
    assert int(fp.shift_round(np.int64(-1), 1)) == 0
    assert int(fp.shift_round(np.int64(-3), 2)) == -1      # -0.75


def test_requantize_rounds_and_clamps():
    rng = np.random.default_rng(3)
    x = rng.integers(-2 ** 12, 2 ** 12, (3, 4, 2, 2))
    m = rng.integers(-2 ** 15 + 1, 2 ** 15, 4)
    b = rng.integers(-2 ** 24, 2 ** 24, 4)
    s, lo, hi = 18, -128, 127
    got = fp.requantize(x, m, b, s, lo, hi)
    assert got.dtype == np.int64
    clamped = {"lo": 0, "hi": 0, "free": 0}
    for idx in np.ndindex(x.shape):
        c = idx[1]
        exact = round_half_up(Fraction(int(x[idx]) * int(m[c]) + int(b[c]), 2 ** s))
        want = min(max(exact, lo), hi)
        clamped["lo" if exact < lo else "hi" if exact > hi else "free"] += 1
        assert got[idx] == want, idx
    assert min(clamped.values()) > 0          # both clamps and the free range exercised
    # scalar M and B on a 2-D (N, C) tensor, unsigned output range
    x2 = rng.integers(-5000, 5000, (6, 3))
    got2 = fp.requantize(x2, 77, -300, 6, 0, 255)
    want2 = [[min(max(round_half_up(Fraction(int(v) * 77 - 300, 64)), 0), 255) for v in row]
             for row in x2]
    assert got2.tolist() == want2


@pytest.mark.parametrize("real", [0.3, 1e-6, 1.0, 0.5, 3.7, 1000.0, 2.0 ** -20, 2.0 ** -45,
                                  [0.1, -0.7, 0.33], [1e-3, 2e-3, -5e-4], [0.25, 0.125]])
def test_integer_multiplier_approximation(real):
    shift, m = fp.integer_multiplier(real)
    reals = np.atleast_1d(np.asarray(real, np.float64))
    assert m.shape == reals.shape and 0 <= shift <= fp.MAX_SHIFT
    limit = 2 ** 15 - 1
    assert all(abs(int(v)) <= limit for v in m)
    for r, v in zip(reals, m):
        err = abs(Fraction(int(v), 2 ** shift) - Fraction(float(r)))
        assert err <= Fraction(1, 2 ** (shift + 1)), (r, v, shift)
    peak = float(np.max(np.abs(reals)))
    if shift < fp.MAX_SHIFT:
        # shift is maximal: one more bit would not fit, so the peak keeps >= 15 significant bits
        assert round_half_up(Fraction(peak) * 2 ** (shift + 1)) > limit
        rel = abs(Fraction(abs(int(m[np.argmax(np.abs(reals))])), 2 ** shift) - Fraction(peak))
        assert rel / Fraction(peak) <= Fraction(1, 2 ** 15)
    for r, v in zip(reals, m):
        if r != 0 and math.log2(abs(r)).is_integer() and shift < fp.MAX_SHIFT:
            assert Fraction(int(v), 2 ** shift) == Fraction(float(r))   # powers of two exact


def test_integer_multiplier_edges():
    assert fp.integer_multiplier(0.0)[1].tolist() == [0]
    with pytest.raises(ValueError):
        fp.integer_multiplier(1e6)                         # needs more than 16 bits


def test_csd_terms_is_minimal_signed_digit_count():
    # Brute force: every signed-digit string (digits -1, 0, 1) of 12 positions. n <= 1000 < 2^10
    # has a minimal representation within 11 positions (its non-adjacent form), so the minimum
    # over all strings of 12 is the true minimum.
    values, weights = np.zeros(1, np.int64), np.zeros(1, np.int64)
    for i in range(12):
        values = np.concatenate([values + d * 2 ** i for d in (-1, 0, 1)])
        weights = np.concatenate([weights + (d != 0) for d in (-1, 0, 1)])
    best = np.full(1001, 99)
    keep = (values >= 0) & (values <= 1000)
    np.minimum.at(best, values[keep], weights[keep])
    assert [fp.csd_terms(n) for n in range(1001)] == best.tolist()
    assert fp.csd_terms(-7) == best[7]


def test_bits_for_is_minimal():
    for lo in range(-40, 1):
        for hi in range(0, 40):
            want = next(b for b in range(1, 64) if -2 ** (b - 1) <= lo and hi <= 2 ** (b - 1) - 1)
            assert bits_for(lo, hi) == want, (lo, hi)


@pytest.mark.parametrize("lo,hi", [(0, 1), (-8, 7), (0, 255), (-128, 127), (-16, 127),
                                   (0, 65535), (-32768, 32767), (-65536, 65535)])
def test_divide_by_nine_exact_over_whole_range(lo, hi):
    m, s = divide_by_nine(lo, hi)
    sums = np.arange(9 * lo, 9 * hi + 1, dtype=np.int64)
    got = fp.shift_round(sums * m, s)
    q = sums // 9                                  # floor
    want = q + (sums - 9 * q >= 5)                 # remainder r/9 >= 1/2  <=>  r >= 5
    assert np.array_equal(got, want)
    # Never costlier as shifts and adds than the plain rule: M = floor(2^s/9) + 1, smallest s.
    plain = next(m for m in ((1 << t) // 9 + 1 for t in range(4, 41))
                 if np.array_equal(fp.shift_round(sums * m, (m * 9).bit_length() - 1), want))
    assert fp.adder_plan(fp.odd_part(m)[0])[0] <= fp.adder_plan(fp.odd_part(plain)[0])[0]
    step = max(1, len(sums) // 3000)               # Fraction cross-check of the formula above
    for v in sums[::step].tolist() + [9 * lo, 9 * hi]:
        assert int(fp.shift_round(np.int64(v * m), s)) == math.floor(Fraction(v, 9) + HALF)


# ------------------------------------------------------------------ agreement with float

@pytest.mark.parametrize("variant", ["bn", "srelu"])
def test_16_bit_golden_agrees_with_float_reference(variant):
    q = qmodel(variant=variant, act_bits=16)
    b = bundle(variant=variant)                        # the bundle random_qmodel quantized
    images = random_images(64, q.input_shape, 7)
    r = run(q, images)
    f = run_float(b, images)
    # At 16 bits every stored tensor carries >= 15 significant bits of its calibrated peak, so
    # each layer adds ~2^-15 relative error, growing roughly linearly over the ~12 stored
    # layers; the logits (spatial means, which cancel) come out ~1e-3 of their peak. 5 % leaves
    # margin, yet any wrong scale, lost 1/9 or 1/(H*W), or rounding bias fails by far.
    g = r.logits * q.manifest["logits_scale"]
    assert np.abs(g - f).max() <= 0.05 * np.abs(f).max()
    assert (r.classes == f.argmax(axis=1)).sum() >= math.ceil(0.98 * 64)


@pytest.mark.skipif(not os.path.isdir(FMNIST), reason="Fashion-MNIST not installed")
def test_8_bit_fashion_mnist_agreement():
    from training.data import load_dataset
    ds = load_dataset("fashion-mnist", subset=360, seed=0)
    b = random_bundle(depth=8, width=1, input_size=28, seed=0, moment_images=ds.train_x[:32])
    manifest, arrays = quantize_bundle(b, ds.train_x[32:160], 8)
    q = make_qmodel(manifest, arrays)
    images = ds.test_x[:200]
    r = run(q, images)
    f = run_float(b, images)
    g = r.logits * q.manifest["logits_scale"]
    peak = np.abs(f).max()
    # Why these bounds: 8-bit power-of-two scales keep 7..8 significant bits per stored tensor
    # (the calibrated peak of a ~N(0, 1) activation lands just above a power of two, so about
    # one bit goes unused), ~1 % error per layer, accumulating over ~12 stored layers. Measured
    # with this setup over seeds 0..11: RMS logit error 1.1..5.0 % of the peak |logit|. A
    # random (untrained) net's top-2 logit margin has a median of only ~9 % of the peak, so
    # class agreement was 83..97 %: >= 80 % holds for random models (a trained net's margins
    # are far larger, and 90 % failed for 5 of those 12 seeds). Disagreements only occurred
    # at margins < 18 % of the peak, so images with a margin >= 30 % must all agree. A wrong
    # scale or a lost 1/(H*W) gives errors of 50 % and more and fails all three.
    err = np.abs(g - f)
    assert np.sqrt((err ** 2).mean()) <= 0.075 * peak
    agree = r.classes == f.argmax(axis=1)
    assert agree.mean() >= 0.80
    top2 = np.sort(f, axis=1)[:, -2:]
    confident = top2[:, 1] - top2[:, 0] >= 0.3 * peak
    assert confident.sum() >= 5 and np.all(agree[confident])


# ------------------------------------------------------------------ file round trip, errors

def test_qmodel_file_round_trip(tmp_path):
    q = qmodel(variant="bn")
    path = tmp_path / "qmodel.npz"
    write_qmodel(path, q.manifest, q.tensors)
    for back in (read_qmodel(path), read_qmodel(tmp_path)):   # a run dir reads qmodel.npz
        assert back.manifest == q.manifest
        assert back.shapes == q.shapes
        assert set(back.tensors) == set(q.tensors)
        for k, v in q.tensors.items():
            assert back.tensors[k].dtype == v.dtype and np.array_equal(back.tensors[k], v), k
    images = random_images(6, q.input_shape, 21)
    a, b = run(q, images), run(path, images)
    assert np.array_equal(a.logits, b.logits) and np.array_equal(a.classes, b.classes)


def _write_raw(path, manifest, arrays):
    """Write a container without any validation (for corrupt files)."""
    write_container(path, manifest, arrays, lambda m, a: None)


def _member_data_offset(path, member):
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        head = f.read(30)
    name_len = int.from_bytes(head[26:28], "little")
    extra_len = int.from_bytes(head[28:30], "little")
    return info.header_offset + 30 + name_len + extra_len, info.file_size


def _expect_error(path, *words):
    with pytest.raises(QModelError) as e:
        read_qmodel(path)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(str(path)) and "fix:" in msg, msg
    for w in words:
        assert w in msg, msg
    return msg


@pytest.mark.parametrize("field, value, words", [
    ("variant", "resnet", ["variant is 'resnet'", "one of ('bn', 'srelu')"]),
    ("logits_scale", -1, ["logits_scale is -1", "> 0"]),
    ("source", 7, ["source is 7, not an object"]),
    ("out", 0, ["out is 0, not an object with bits"]),
    ("bits", 2 ** 70, ["out bits, signed", "1..62"]),
    ("signed", 1, ["out bits, signed", "true or false"]),
    ("hi", 1 << 40, ["out lo, hi", "within"]),
    ("scale", float("inf"), ["out scale"]),
    ("frac", 3, ["out frac is 3", "2^-f"]),
])
def test_every_stored_number_is_inside_what_its_field_can_be(tmp_path, field, value, words):
    """The fields a reader computes with (an op's output width, the logits' scale) used to be
    taken as they came: a width of 2^70 read without a word."""
    q = qmodel()
    m = json.loads(json.dumps(q.manifest))
    if field in ("variant", "logits_scale", "source"):
        m[field] = value
    elif field == "out":
        m["ops"][0]["out"] = value
    else:
        out = next(op["out"] for op in m["ops"] if op["out"].get("frac") not in (None, 3))
        out[field] = value
    _write_raw(tmp_path / "q.npz", m, q.tensors)
    _expect_error(tmp_path / "q.npz", *words)


def test_qmodel_file_errors(tmp_path):
    q = qmodel(variant="srelu")
    good = tmp_path / "good.npz"
    write_qmodel(good, q.manifest, q.tensors)
    raw = good.read_bytes()
    conv = next(op for op in q.ops if op["op"] == "conv" and op["name"].startswith("s2b1_conv2"))
    key = conv["weights"]

    _expect_error(tmp_path / "absent.npz", "not found")

    p = tmp_path / "truncated.npz"
    p.write_bytes(raw[:len(raw) // 2])
    _expect_error(p, "corrupt")

    p = tmp_path / "flipped.npz"
    offset, size = _member_data_offset(good, key + ".npy")
    data = bytearray(raw)
    data[offset + size - 3] ^= 0x10                      # inside the weight bits' payload
    p.write_bytes(bytes(data))
    _expect_error(p, "corrupt")

    p = tmp_path / "bundle.npz"                          # a deployment bundle, not a qmodel
    b = bundle(variant="srelu")
    write_bundle(p, b.manifest, b.tensors)
    _expect_error(p, "format", "bitwrn-bundle")

    p = tmp_path / "v2.npz"
    _write_raw(p, dict(q.manifest, version=4), q.tensors)
    _expect_error(p, "version 4", "supports 1, 2, 3")
    no_residual = {k: v for k, v in q.manifest.items() if k != "residual_bits"}
    _write_raw(p, no_residual, q.tensors)
    _expect_error(p, "lacks field(s) residual_bits")
    _write_raw(p, dict(no_residual, version=1), q.tensors)   # version 1: as wide as act_bits
    assert read_qmodel(p).residual_bits == q.act_bits

    p = tmp_path / "missing.npz"                         # a member removed from the zip
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(p, "w") as dst:
        for info in src.infolist():
            if info.filename != key + ".npy":
                dst.writestr(info, src.read(info))
    _expect_error(p, key, "missing")

    p = tmp_path / "order.npz"                           # an input that comes later
    m = copy.deepcopy(q.manifest)
    m["ops"][3]["inputs"] = [m["ops"][5]["name"]]
    _write_raw(p, m, q.tensors)
    _expect_error(p, m["ops"][3]["name"], "not earlier tensors")

    p = tmp_path / "mismatched.npz"                      # weight bits of a wider model
    wide = qmodel(variant="srelu", width=2)
    arrays = dict(q.tensors, **{key: wide.tensors[key]})
    _write_raw(p, q.manifest, arrays)
    count = conv["out_channels"] * conv["in_channels"] * 9
    _expect_error(p, conv["name"], f"do not hold {count} weights")

    read_qmodel(good)                                    # the original is still fine


@pytest.mark.parametrize("edit,words", [
    (lambda m: m.update(version=True), ["version True"]),
    (lambda m: m.update(act_bits=8.0), ["act_bits is 8.0"]),
    (lambda m: m.update(num_classes=0), ["num_classes is 0"]),
    (lambda m: _first(m, "requant").update(shift=99), ["shift is 99", "0..40"]),
    (lambda m: _first(m, "requant").update(lo=5, hi=-5), ["lo, hi is [5, -5]"]),
    (lambda m: _first(m, "add").update(shifts=[0, 40]), ["shifts is [0, 40]"]),
    (lambda m: _first(m, "avgpool").update(multiplier=0), ["multiplier is 0"]),
    (lambda m: _first(m, "conv").update(stride=True), ["stride is True"]),
])
def test_qmodel_numbers_out_of_range_name_the_op(tmp_path, edit, words):
    """Numbers outside what the golden model and the hardware support: one line each."""
    q = qmodel(variant="bn")
    m = copy.deepcopy(q.manifest)
    edit(m)
    _write_raw(tmp_path / "q.npz", m, q.tensors)
    _expect_error(tmp_path / "q.npz", *words)


def test_qmodel_multiplier_too_wide_is_refused(tmp_path):
    q = qmodel(variant="bn")
    op = _first(q.manifest, "requant")
    arrays = dict(q.tensors, **{op["multiplier"]: q.tensors[op["multiplier"]] * 0 + (1 << 20)})
    _write_raw(tmp_path / "q.npz", q.manifest, arrays)
    _expect_error(tmp_path / "q.npz", op["name"], "does not fit 16 signed bits")


def _first(manifest, kind):
    return next(op for op in manifest["ops"] if op["op"] == kind)


# ------------------------------------------------------------------ random generator

GENERATOR_CONFIGS = [
    dict(depth=8, width=1, input_size=12, num_classes=10, variant="bn", act_bits=8),
    dict(depth=14, width=1, input_size=8, num_classes=3, variant="bn", act_bits=12),
    dict(depth=8, width=2, input_size=8, num_classes=100, variant="bn", act_bits=4),
    dict(depth=14, width=2, input_size=12, num_classes=10, variant="srelu", act_bits=8),
    dict(depth=8, width=1, input_size=4, num_classes=3, variant="srelu", act_bits=4,
         in_channels=3),
    dict(depth=8, width=1, input_size=8, num_classes=100, variant="srelu", act_bits=12),
]


@pytest.mark.parametrize("cfg", GENERATOR_CONFIGS, ids=lambda c: "-".join(map(str, c.values())))
def test_random_qmodel_configs(cfg):
    q = qmodel(**cfg)
    n, classes = 5, cfg["num_classes"]
    assert q.act_bits == cfg["act_bits"] and q.num_classes == classes
    assert q.input_shape == (cfg.get("in_channels", 1), cfg["input_size"], cfg["input_size"])
    r = run(q, random_images(n, q.input_shape, 1))
    assert r.classes.shape == (n,) and r.logits.shape == (n, classes)
    assert q.manifest["logits_scale"] > 0
    convs = [op for op in q.ops if op["op"] == "conv"]
    assert len(convs) == cfg["depth"]
    assert convs[0]["out_channels"] == 16 * cfg["width"] and convs[-1]["out_channels"] == classes
    kinds = [multiplier_kind(op, q.tensors) for op in q.ops]
    assert kinds[0] == "lut"
    if cfg["variant"] == "srelu":
        assert "per-channel" not in kinds                # no BN: no real multiplier anywhere
        assert all(len(q.tensors[op["multiplier"]]) == 1 for op in q.ops if op["op"] == "requant")
    else:
        assert "per-channel" in kinds
        # every activation after a BN is a per-channel requant
        for op in q.ops:
            if op["name"].endswith("_relu"):
                assert multiplier_kind(op, q.tensors) == "per-channel", op["name"]


def test_fewer_multiplier_bits_round_the_same_real_multipliers():
    """--multiplier-bits B: every requant M fits B signed bits and, with its shift, is the real
    multiplier of the 16-bit model rounded to B bits (ratio within 2^-(B-2) of it)."""
    b = bundle(variant="srelu", depth=8, width=1, input_size=8, num_classes=10)
    images = random_images(16, tuple(b.manifest["input_shape"]), 5)
    full = quantize_bundle(b, images, 8, multiplier_bits=16)
    for bits in (6, 10):
        manifest, arrays = quantize_bundle(b, images, 8, multiplier_bits=bits)
        assert manifest["source"]["multiplier_bits"] == bits
        pairs = [(op, ref) for op, ref in zip(manifest["ops"], full[0]["ops"]) if op["op"] == "requant"]
        assert pairs and all(op["name"] == ref["name"] for op, ref in pairs)
        for op, ref in pairs:
            m = arrays[op["multiplier"]]
            assert np.all(np.abs(m) < 2 ** (bits - 1)), op["name"]
            real = full[1][ref["multiplier"]] / 2.0 ** ref["shift"]
            assert np.allclose(m / 2.0 ** op["shift"], real, rtol=2.0 ** -(bits - 2)), op["name"]
    with pytest.raises(ValueError, match="multiplier_bits must be 2..16"):
        quantize_bundle(b, images, 8, multiplier_bits=17)


def test_random_bundle_is_a_valid_bundle(tmp_path):
    b = bundle(variant="bn", depth=14, width=1, input_size=8, num_classes=3)
    assert set(b.manifest) == set(MANIFEST_FIELDS)
    assert b.ops == build_ops(b.config)
    write_bundle(tmp_path / "b.npz", b.manifest, b.tensors)   # full validation, JSON round trip
    back = read_bundle(tmp_path / "b.npz")
    assert back.manifest == b.manifest and back.shapes == b.shapes
    w, bias = b.tensors["input_bn.weight"], b.tensors["input_bn.bias"]
    assert np.all((0.5 <= w) & (w <= 1.5)) and np.all(np.abs(bias) <= 0.5) and np.any(bias)


@pytest.mark.parametrize("variant", ["bn", "srelu"])
def test_random_bundle_activations_neither_explode_nor_vanish(variant):
    b = bundle(variant=variant, depth=14, width=1, input_size=8, num_classes=3)
    _, acts = run_float(b, random_images(48, b.manifest["input_shape"], 99), keep=True)
    for op in b.ops:
        x = acts[op["name"]]
        if op["op"] == "batchnorm" and op["name"] != "input_bn":
            # moments measured on other random images, perturbed by ~10 %: still ~N(0, 1)
            assert abs(x.mean()) < 0.3 and 0.7 < x.std() < 1.4, op["name"]
        if op["op"] in ("relu", "srelu", "add", "conv"):
            assert 0.1 < x.std() < 20, op["name"]


def test_random_generator_is_deterministic():
    a = random_qmodel(variant="srelu", seed=5)
    b = random_qmodel(variant="srelu", seed=5)
    c = random_qmodel(variant="srelu", seed=6)
    assert a.manifest["source"]["model"]["variant"] == "srelu" 
    assert json.dumps(a.manifest, sort_keys=True) == json.dumps(b.manifest, sort_keys=True)
    assert set(a.tensors) == set(b.tensors) == set(c.tensors)
    assert all(np.array_equal(a.tensors[k], b.tensors[k]) for k in a.tensors)
    differ = [k for k in a.tensors if not np.array_equal(a.tensors[k], c.tensors[k])]
    assert any(k.endswith("weight_bits") for k in differ) and "input_bn.table" in differ
    ba, bb = bundle(variant="bn"), random_bundle(variant="bn")      # BN moments included
    assert ba.manifest == bb.manifest
    assert all(np.array_equal(ba.tensors[k], bb.tensors[k]) for k in ba.tensors)
    assert not np.array_equal(ba.tensors["input_bn.weight"],
                              random_bundle(variant="srelu", seed=1).tensors["input_bn.weight"])


def test_random_generator_rejects_bad_shapes():
    with pytest.raises(ValueError, match="input_size"):
        random_bundle(input_size=3)
    with pytest.raises(ValueError, match="depth"):
        random_bundle(depth=10)
    with pytest.raises(ValueError, match="variant"):
        random_bundle(variant="gelu")


def test_random_images():
    x = random_images(4, (3, 5, 6), 1)
    assert x.dtype == np.uint8 and x.shape == (4, 3, 5, 6)
    assert np.array_equal(x, random_images(4, (3, 5, 6), 1))
    assert not np.array_equal(x, random_images(4, (3, 5, 6), 2))


# ------------------------------------------------------------------ conversion errors

def test_quantize_bundle_rejects_bad_requests():
    b = bundle(variant="srelu")
    images = random_images(4, b.manifest["input_shape"], 0)
    for bits in (1, 17):
        with pytest.raises(ValueError, match=f"act_bits must be 2..16, got {bits}"):
            quantize_bundle(b, images, bits)
    f = random_bundle(variant="srelu", weights="float")
    assert f.manifest["weights"] == "float" and "conv0.weight" in f.tensors
    with pytest.raises(ValueError, match="float weights"):
        quantize_bundle(f, images, 8)
