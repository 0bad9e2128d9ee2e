"""The integer primitives of the quantized model: the exact recipes the hardware implements.

Every function takes and returns int64 arrays. Rounding is "half up": add half an LSB, then an
arithmetic shift right (floor), so -2.5 -> -2 and 2.5 -> 3. Saturation clamps to the range of
the output width.
"""
import math
from functools import lru_cache

import numpy as np


MULTIPLIER_BITS = 16   # signed requant multipliers fit in int16 (one DSP48 port is 18/25 bits)
MAX_SHIFT = 40         # keeps acc * multiplier + bias well inside int64


def shift_round(x, shift):
    """x / 2^shift rounded half up (shift > 0), or x * 2^-shift exactly (shift <= 0)."""
    if shift > 0:
        return (x + (1 << (shift - 1))) >> shift
    return x << -shift


def requantize(x, multiplier, bias, shift, lo, hi):
    """clamp((x * M + B + 2^(shift-1)) >> shift, lo, hi), M and B per channel (axis 1) or scalar."""
    x = np.asarray(x, dtype=np.int64)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    m = np.asarray(multiplier, dtype=np.int64).reshape(shape)
    b = np.asarray(bias, dtype=np.int64).reshape(shape)
    return np.clip(shift_round(x * m + b, shift), lo, hi)


def fixed_shift_operands(multiplier, bias, shift, fixed_shift):
    """(M', C) with (x*M' + C) >> fixed_shift == (x*M + B + 2^(shift-1)) >> shift for all x.

    Exact: the left side is floor((x*M + B + 2^(shift-1)) * 2^d / 2^(shift+d)), d = fixed_shift
    - shift >= 0 (for shift 0 the added 2^(d-1) stays below one output step).
    """
    d = fixed_shift - shift
    if d < 0:
        raise ValueError(f"shift {shift} is larger than the requantizer's fixed shift {fixed_shift}")
    rounding = (1 << (fixed_shift - 1)) if fixed_shift else 0
    return int(multiplier) << d, (int(bias) << d) + rounding


def integer_multiplier(real, limit_bits=MULTIPLIER_BITS):
    """(shift, M) with M = round(real * 2^shift) and |M| < 2^(limit_bits-1), shift maximal.

    `real` may be an array (per channel); one shift serves all channels so the hardware needs
    one shifter. Powers of two come out exact with M a power of two.
    """
    real = np.atleast_1d(np.asarray(real, dtype=np.float64))
    peak = float(np.max(np.abs(real)))
    limit = (1 << (limit_bits - 1)) - 1
    if peak == 0:
        return 0, np.zeros(real.shape, np.int64)
    shift = min(MAX_SHIFT, math.floor(math.log2(limit / peak)))
    while shift > 0 and np.max(np.abs(np.floor(real * 2.0 ** shift + 0.5))) > limit:
        shift -= 1
    if shift < 0:
        raise ValueError(f"requant multiplier {peak:.3g} too large for {limit_bits} bits")
    return shift, np.floor(real * 2.0 ** shift + 0.5).astype(np.int64)


def reduce_power_of_two(multiplier, bias, shift):
    """Strip common factors of two from (M, B) against the shift: 8x >> 5 becomes x >> 2.

    Makes a power-of-two multiplier visibly a pure shift (M = 1) for the report and hardware.
    """
    m, b = np.asarray(multiplier, np.int64), np.asarray(bias, np.int64)
    while shift > 0 and np.all(m % 2 == 0) and np.all(b % 2 == 0):
        m, b, shift = m // 2, b // 2, shift - 1
    return m, b, shift


def csd_digits(value):
    """The canonical signed-digit form of an integer as (position, sign) pairs, lowest first:
    value == sum(sign << position). No two digits are adjacent, so the count is minimal."""
    rest, position, digits = int(value), 0, []
    while rest:
        if rest & 1:
            sign = 1 if rest & 3 == 1 else -1   # -1 where the next bit is also set: 3 = 4 - 1
            digits.append((position, sign))
            rest -= sign
        rest >>= 1
        position += 1
    return digits


def csd_terms(value):
    """Nonzero digits of the canonical signed-digit form of an integer (1 for a power of two):
    a constant multiplication by `value` built from shifts costs terms - 1 adders."""
    return len(csd_digits(value))


def odd_part(value):
    """(odd, t) with value == odd << t and odd odd: a constant multiply by `value` is one by
    `odd`, shifted by wiring.

    >>> odd_part(1820), odd_part(7)
    ((455, 2), (7, 0))
    """
    t = (value & -value).bit_length() - 1
    return value >> t, t


@lru_cache(maxsize=None)
def adder_plan(value):
    """(adders, factors, rest): the cheapest way found to multiply by the positive `value` with
    shifts and adds: value = factors[0] * factors[1] * ... * rest, each factor 2^k +- 1 (one adder: (y << k) +- y)
    and rest summed from its canonical signed digits (digits - 1 adders).

    >>> adder_plan(21845)      # 5 * 17 * 257: 3 adders instead of the 7 of its 8 digits
    (3, (5, 17), 257)
    >>> adder_plan(15447)      # no cheaper factor: 6 digits
    (5, (), 15447)
    """
    best = (max(0, csd_terms(value) - 1), (), value)
    for k in range(1, value.bit_length()):
        for factor in ((1 << k) + 1, (1 << k) - 1):
            if factor > 1 and value % factor == 0:
                adders, factors, rest = adder_plan(value // factor)
                if adders + 1 < best[0]:
                    best = (adders + 1, (factor,) + factors, rest)
    return best
