"""Integer widths and ranges: the one set of helpers the stages share (hardware code takes
`ceil_log2` and `exact_log2` from `amaranth.utils`).

>>> int_range(8, True), int_range(8, False)
((-128, 127), (0, 255))
>>> bits_for(-128, 127), signed_width([-128, 127]), ceil_div(33, 16)
(8, 9, 3)
"""


def int_range(bits, signed):
    """(lo, hi) of a two's complement (signed) or plain binary (unsigned) number of `bits`."""
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


def bits_for(lo, hi):
    """Smallest two's complement width holding every integer in [lo, hi]."""
    bits = 1
    while not (-(1 << (bits - 1)) <= lo and hi <= (1 << (bits - 1)) - 1):
        bits += 1
    return bits


def signed_width(values):
    """A two's complement width holding every value, at least 2 bits: each value's bit length
    plus a sign bit (one more than `bits_for` needs for a negative power of two; the widths of
    the hardware's fields are built on it)."""
    return max([int(v).bit_length() + 1 for v in values] + [2])


def ceil_div(a, b):
    """a / b rounded up, for positive b: words of b lanes that hold a channels, and the like."""
    return -(-a // b)
