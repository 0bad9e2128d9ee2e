"""cocotb bench for hw.blocks.requant.Requantizer or ShiftAddRequantizer alone (through
sim.runner.run_cocotb).

y = clamp((x*M + B + 2^(s-1)) >> s, lo, hi), checked against quantize.fixed_point.requantize
(via sim.models.requant_golden). One new vector (x, M, B, s, lo, hi) goes in on EVERY cycle,
s anywhere in 0..shift, converted to the DUT's operands (M', C) for its fixed shift by
quantize.fixed_point.fixed_shift_operands, as the memory images do. `y` is read on each falling edge and
compared with the reference of the vector driven `latency` (2) cycles earlier
(sim.benches.pipeline). After reset the registers hold zeros, whose result is 0.

Parameters (sim.benches.params, given by tests/test_hw_blocks.py):
    in_width, mult_width, bias_width, out_width   widths of x, M, B (the golden model's) and y
    shift              the DUT's fixed shift: the largest shift driven
    cycles             random vectors in random_full_throughput (default 2000)
    break_model=True   a deliberately wrong reference that rounds ties down instead of up
    multipliers        the M' values of a ShiftAddRequantizer; its `multiplier` port takes their
                       code (k for multipliers[k - 1], 0 for zero). Only `shift_add_codes` runs:
                       the other tests drive arbitrary M.
"""
import random

import cocotb
import numpy as np

from quantize.fixed_point import fixed_shift_operands
from sim.benches.params import bench_params
from sim.benches.pipeline import check_pipeline
from sim.benches.reset import start
from sim.models import REQUANT_LATENCY, requant_golden

PARAMS = bench_params(in_width=21, mult_width=16, bias_width=26, shift=22, out_width=10,
                      cycles=2000, break_model=False, multipliers=[])
IN, MULT, BIAS = PARAMS["in_width"], PARAMS["mult_width"], PARAMS["bias_width"]
MAX_SHIFT, OUT = PARAMS["shift"], PARAMS["out_width"]
CYCLES = PARAMS["cycles"]
BREAK_MODEL = PARAMS["break_model"]
MULTIPLIERS = [int(v) for v in PARAMS["multipliers"]]
SHIFT_ADD = bool(MULTIPLIERS)
CODE = {0: 0} | {v: k for k, v in enumerate(MULTIPLIERS, start=1)}


def _range(bits):
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


X_LO, X_HI = _range(IN)
M_LO, M_HI = _range(MULT)
B_LO, B_HI = _range(BIAS)
Y_LO, Y_HI = _range(OUT)


def _expected(x, m, b, s, lo, hi):
    if BREAK_MODEL:   # round half down: (v - 1 + 2^(s-1)) >> s, differs from the spec on ties
        b = np.asarray(b, np.int64) - (np.asarray(s, np.int64) > 0)
    return requant_golden(x, m, b, s, lo, hi)


def _rng():
    return np.random.default_rng(random.getrandbits(64))   # seeded by COCOTB_RANDOM_SEED


def _logsigned(rng, bits, n):
    """n signed `bits`-bit ints with log-uniform magnitudes (every bit length equally likely),
    a few at the exact extremes."""
    k = rng.integers(0, bits, size=n)                       # bit length 0 .. bits-1
    mag = rng.integers(0, 1 << k)
    v = np.where(rng.random(n) < 0.5, -mag, mag)
    lo, hi = _range(bits)
    edge = rng.random(n)
    v = np.where(edge < 0.01, lo, np.where(edge > 0.99, hi, v))
    return v.astype(np.int64)


def _bounds(rng, n):
    """Random lo <= hi: a quarter the full output range, some lo == hi, the rest random."""
    a = rng.integers(Y_LO, Y_HI, size=n, endpoint=True)
    b = rng.integers(Y_LO, Y_HI, size=n, endpoint=True)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    kind = rng.random(n)
    lo = np.where(kind < 0.25, Y_LO, np.where(kind > 0.95, hi, lo))
    hi = np.where(kind < 0.25, Y_HI, hi)
    relu = (kind >= 0.25) & (kind < 0.4)                    # the ReLU-like [0, hi] the model uses
    lo = np.where(relu, 0, lo)
    hi = np.where(relu, np.maximum(hi, 0), hi)
    return lo, hi


def _hit(rng, v, tries=40):
    """(x, M, B) in their port ranges with x*M + B == v exactly, or None."""
    if abs(v) > X_HI * -M_LO + B_HI:
        return None
    for t in range(tries):
        k = int(rng.integers(1, MULT))                        # |M| of bit length k
        m = int(rng.integers(1 << (k - 1), 1 << k)) * (1 if rng.random() < 0.5 else -1)
        if t >= tries - 2:
            m = 1 if t % 2 else -1
        b0 = int(rng.integers(B_LO // 2, B_HI // 2, endpoint=True))
        x = int(round((v - b0) / m))
        x = min(max(x, X_LO), X_HI)
        b = v - x * m
        if B_LO <= b <= B_HI:
            return x, m, b
    return None


class _Vectors:
    def __init__(self):
        self.x, self.m, self.b, self.s, self.lo, self.hi = ([] for _ in range(6))

    def add(self, x, m, b, s, lo=Y_LO, hi=Y_HI):
        for lst, v in zip((self.x, self.m, self.b, self.s, self.lo, self.hi), (x, m, b, s, lo, hi)):
            lst.append(int(v))

    def extend(self, x, m, b, s, lo, hi):
        for row in zip(x, m, b, s, lo, hi):
            self.add(*row)

    def __len__(self):
        return len(self.x)

    def arrays(self):
        return tuple(np.array(a, np.int64) for a in (self.x, self.m, self.b, self.s, self.lo, self.hi))


def _u(v, bits):
    return int(v) & ((1 << bits) - 1)


async def _start(dut):
    await start(dut, [dut.x, dut.multiplier, dut.offset, dut.lo, dut.hi])


async def _stream(dut, vec, label):
    """Drive the vectors one per cycle and check `y` every cycle; returns the expected outputs."""
    x, m, b, s, lo, hi = vec.arrays()
    assert ((X_LO <= x) & (x <= X_HI)).all() and (SHIFT_ADD or ((M_LO <= m) & (m <= M_HI)).all())
    assert ((B_LO <= b) & (b <= B_HI)).all() and ((0 <= s) & (s <= MAX_SHIFT)).all()
    assert ((Y_LO <= lo) & (lo <= hi) & (hi <= Y_HI)).all()
    want_all = _expected(x, m, b, s, lo, hi)

    def drive(n):
        if n is None:
            for port in (dut.x, dut.multiplier, dut.offset, dut.lo, dut.hi):
                port.value = 0
            return
        m_op, offset = fixed_shift_operands(m[n], b[n], int(s[n]), MAX_SHIFT)
        dut.x.value = _u(x[n], IN)
        dut.multiplier.value = _u(CODE[m_op] if SHIFT_ADD else m_op, len(dut.multiplier))
        dut.offset.value = _u(offset, len(dut.offset))
        dut.lo.value = _u(lo[n], OUT)
        dut.hi.value = _u(hi[n], OUT)

    def describe(k):
        return (f"x={x[k]} M={m[k]} B={b[k]} s={s[k]} lo={lo[k]} hi={hi[k]}, "
                f"x*M+B={int(x[k]) * int(m[k]) + int(b[k])}")

    await check_pipeline(dut.clk, drive, dut.y, want_all, REQUANT_LATENCY, describe, name="y",
                         label=label, context=f"widths in {IN} mult {MULT} bias {BIAS} "
                                              f"shift {MAX_SHIFT} out {OUT}")
    return want_all


@cocotb.test(skip=SHIFT_ADD)
async def random_full_throughput(dut):
    """CYCLES random vectors back to back; magnitudes log-uniform so that both in-range and
    saturated results are common; shift uniform over 0..MAX_SHIFT."""
    await _start(dut)
    rng = _rng()
    n = CYCLES
    vec = _Vectors()
    s = rng.integers(0, MAX_SHIFT, size=n, endpoint=True)
    lo, hi = _bounds(rng, n)
    vec.extend(_logsigned(rng, IN, n), _logsigned(rng, MULT, n), _logsigned(rng, BIAS, n), s, lo, hi)
    y = await _stream(dut, vec, "random")
    _, _, _, _, lo, hi = vec.arrays()
    inside = int(((y > lo) & (y < hi)).sum())
    clamped = int(((y == lo) | (y == hi)).sum())
    dut._log.info(f"random: {inside} results strictly inside [lo, hi], {clamped} at a bound")
    assert inside > n // 10 and clamped > n // 10, f"poor coverage: {inside} inside, {clamped} at bounds"


@cocotb.test(skip=SHIFT_ADD)
async def rounding_ties(dut):
    """x*M + B exactly at q - 1/2 after the shift (rounds up to q, so -2.5 -> -2, 2.5 -> 3),
    and one below / above it, for positive and negative q and every shift 1..MAX_SHIFT."""
    await _start(dut)
    rng = _rng()
    vec = _Vectors()
    # The plain table: M = 1, B = 0, every small x, shifts 1..4.
    for s in range(1, min(4, MAX_SHIFT) + 1):
        for x in range(max(X_LO, -70), min(X_HI, 70) + 1):
            vec.add(x, 1, 0, s)
    reach = (1 << (IN - 1)) * (1 << (MULT - 1)) + (1 << (BIAS - 2))   # |x*M + B| reachable
    ties = 0
    for s in range(1, MAX_SHIFT + 1):
        qmax = max(1, min(2 * Y_HI + 4, (reach >> s) - 1))
        for _ in range(40):
            q = int(rng.integers(-qmax, qmax, endpoint=True))
            tie = q * (1 << s) - (1 << (s - 1))
            for v in (tie - 1, tie, tie + 1):
                hit = _hit(rng, v)
                if hit:
                    lo, hi = _bounds(rng, 1)
                    bounds = (int(lo[0]), int(hi[0])) if rng.random() < 0.3 else (Y_LO, Y_HI)
                    vec.add(*hit, s, *bounds)
                    ties += v == tie
    assert ties > 20 * min(MAX_SHIFT, 20), f"only {ties} ties constructed"
    order = rng.permutation(len(vec))   # mix shifts and signs from cycle to cycle
    x, m, b, s, lo, hi = vec.arrays()
    shuffled = _Vectors()
    shuffled.extend(x[order], m[order], b[order], s[order], lo[order], hi[order])
    await _stream(dut, vec, "ties (in order)")
    await _stream(dut, shuffled, "ties (shuffled)")


@cocotb.test(skip=SHIFT_ADD)
async def saturation(dut):
    """Results below lo and above hi (far beyond, and by exactly one), and exactly at lo / hi,
    with random, full-range, single-value and ReLU bounds; the largest |x*M + B| both ways."""
    await _start(dut)
    rng = _rng()
    vec = _Vectors()
    for x in (X_LO, X_HI):
        for m in (M_LO, M_HI):
            for b in (B_LO, B_HI):
                for s in (0, 1, MAX_SHIFT // 2, MAX_SHIFT):
                    vec.add(x, m, b, s)
                    vec.add(x, m, b, s, 0, Y_HI)
    lo_all, hi_all = _bounds(rng, 600)
    for i in range(600):
        lo, hi = int(lo_all[i]), int(hi_all[i])
        s = int(rng.integers(0, min(MAX_SHIFT, 16), endpoint=True))
        q = int(rng.choice([lo - 1, lo, hi, hi + 1, lo - int(rng.integers(2, 1000)),
                            hi + int(rng.integers(2, 1000))]))
        r = int(rng.integers(-(1 << s) // 2, max(1, (1 << s) // 2))) if s else 0
        hit = _hit(rng, q * (1 << s) + r)   # rounds to exactly q
        if hit:
            vec.add(*hit, s, lo, hi)
    assert len(vec) > 400, f"only {len(vec)} saturation vectors"
    y = await _stream(dut, vec, "saturation")
    _, _, _, _, lo, hi = vec.arrays()
    assert (y == lo).sum() > 100 and (y == hi).sum() > 100


@cocotb.test(skip=SHIFT_ADD)
async def shift_zero(dut):
    """shift 0: no rounding term, y = clamp(x*M + B) exactly."""
    await _start(dut)
    rng = _rng()
    vec = _Vectors()
    for _ in range(500):
        v = int(rng.integers(2 * Y_LO, 2 * Y_HI, endpoint=True))
        hit = _hit(rng, v)
        if hit:
            vec.add(*hit, 0)
    n = 300
    lo, hi = _bounds(rng, n)
    vec.extend(_logsigned(rng, IN, n), _logsigned(rng, MULT, n), _logsigned(rng, BIAS, n),
               [0] * n, lo, hi)
    await _stream(dut, vec, "shift 0")


@cocotb.test(skip=SHIFT_ADD)
async def extremes(dut):
    """Every combination of extreme x, M, B with shifts 0, 1 and MAX_SHIFT: no internal overflow."""
    await _start(dut)
    vec = _Vectors()
    for x in (X_LO, X_HI, 0, -1, 1):
        for m in (M_LO, M_HI, -1, 1, 0):
            for b in (B_LO, B_HI, 0, -1):
                for s in sorted({0, 1, MAX_SHIFT - 1, MAX_SHIFT}):
                    if 0 <= s <= MAX_SHIFT:
                        vec.add(x, m, b, s)
                        vec.add(x, m, b, s, -1, 1)
    await _stream(dut, vec, "extremes")


@cocotb.test(skip=not SHIFT_ADD)
async def shift_add_codes(dut):
    """The shift-add requantizer: each vector takes one of its M' (or zero) with a shift s
    for which M' = M << (shift - s) holds an integer M; random, extreme and tie-making x and B."""
    await _start(dut)
    rng = _rng()
    vec = _Vectors()
    for value in [0] + MULTIPLIERS:
        zeros = (value & -value).bit_length() - 1 if value else MAX_SHIFT
        shifts = range(max(0, MAX_SHIFT - zeros), MAX_SHIFT + 1)
        for x in (X_LO, X_HI, 0, -1, 1):
            for b in (B_LO, B_HI, 0):
                for s in (shifts[0], shifts[-1]):
                    vec.add(x, value >> (MAX_SHIFT - s), b, s)
        n = CYCLES // (len(MULTIPLIERS) + 1)
        s = rng.integers(shifts[0], shifts[-1], size=n, endpoint=True)
        lo, hi = _bounds(rng, n)
        x = _logsigned(rng, IN, n)
        m = np.array([value >> (MAX_SHIFT - int(k)) for k in s], np.int64)
        b = _logsigned(rng, BIAS, n)
        # Half of them a tie after the shift: x*M + B = q*2^s - 2^(s-1), B in range.
        tie = (rng.random(n) < 0.5) & (s > 0)
        q = (x * m + b) >> s
        b = np.where(tie, q * (1 << s) - ((1 << s) >> 1) - x * m, b)
        ok = (B_LO <= b) & (b <= B_HI)
        vec.extend(x[ok], m[ok], b[ok], s[ok], lo[ok], hi[ok])
    y = await _stream(dut, vec, "shift-add codes")
    _, _, _, _, lo, hi = vec.arrays()
    inside = int(((y > lo) & (y < hi)).sum())
    assert inside > len(vec) // 10, f"poor coverage: {inside} of {len(vec)} inside the bounds"
