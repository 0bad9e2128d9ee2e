"""Requantizer: y = clamp((x * M' + C) >> S, lo, hi) with a shift S fixed at build time.

The golden model's recipe is clamp((x * M + B + 2^(s-1)) >> s, lo, hi) with a shift s per layer.
Scaling M and B by 2^(S-s) and folding the rounding term into the offset gives exactly the same
result for every s <= S (`fixed_shift_operands`), so the hardware needs neither a barrel
shifter nor a rounding adder: one DSP48 computes x * M' + C, the shift is wiring, and only the
saturation is logic. The memory images store M' and C.

Four registered stages, so that no path runs through more than one of them (a block-RAM read
or a wide mux into a multiplier into a carry chain made the slowest path on an ECP5,
docs/board.md): the operands, the product, the product plus offset, the saturation.
Latency 4.

`ShiftAddRequantizer` computes the same with no multiplier: the requantizers of a bank can only
ever multiply by the few M' values the model holds (a shifted-ReLU model: one constant per
layer), so each is built as shifts and adds of its canonical signed digits, at build time, and
the parameter word only chooses among them.
"""
from amaranth import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from quantize.fixed_point import adder_plan, csd_digits, odd_part


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


class Requantizer(wiring.Component):
    """`multiplier` is M' itself: one DSP48 multiplies."""
    latency = 4

    def __init__(self, in_width, mult_width, offset_width, shift, out_width):
        self._init(in_width, signed(mult_width), in_width + mult_width, offset_width, shift, out_width)

    def _init(self, in_width, multiplier_shape, product_width, offset_width, shift, out_width):
        self.shift = shift
        self.sum_width = max(product_width, offset_width) + 1
        super().__init__({
            "x": In(signed(in_width)),
            "multiplier": In(multiplier_shape),
            "offset": In(signed(offset_width)),
            "lo": In(signed(out_width)),
            "hi": In(signed(out_width)),
            "y": Out(signed(out_width)),
        })

    def elaborate(self, platform):
        m = Module()
        x, multiplier = Signal.like(self.x), Signal.like(self.multiplier)
        offset = [Signal.like(self.offset, name=f"offset{i}") for i in range(2)]
        lo = [Signal.like(self.lo, name=f"lo{i}") for i in range(3)]
        hi = [Signal.like(self.hi, name=f"hi{i}") for i in range(3)]
        product = Signal(signed(self.sum_width - 1))
        total = Signal(signed(self.sum_width))
        m.d.sync += [x.eq(self.x), multiplier.eq(self.multiplier), offset[0].eq(self.offset),
                     product.eq(self.product(m, x, multiplier)), offset[1].eq(offset[0]),
                     total.eq(product + offset[1]),
                     lo[0].eq(self.lo), lo[1].eq(lo[0]), lo[2].eq(lo[1]),
                     hi[0].eq(self.hi), hi[1].eq(hi[0]), hi[2].eq(hi[1])]
        shifted = Signal(signed(max(2, self.sum_width - self.shift)))
        m.d.comb += shifted.eq(total >> self.shift)   # arithmetic: floor
        m.d.sync += self.y.eq(Mux(shifted < lo[2], lo[2], Mux(shifted > hi[2], hi[2], shifted)))
        return m

    def product(self, m, x, multiplier):
        return x * multiplier


def shift_add(x, value):
    """x * value from shifts and adds only (`adder_plan`): the factors one after the other,
    then a balanced tree over the rest's digits (subtractors where the signs differ)."""
    if value < 0:
        return -shift_add(x, -value)
    _, factors, rest = adder_plan(value)
    for factor in factors:
        if (factor - 1) & (factor - 2) == 0:          # 2^k + 1
            x = (x << (factor - 1).bit_length() - 1) + x
        else:                                         # 2^k - 1
            x = (x << (factor + 1).bit_length() - 1) - x
    terms = [(x << position, sign) for position, sign in csd_digits(rest)]
    if not terms:
        return Const(0)
    while len(terms) > 1:
        paired = []
        for (a, sa), (b, sb) in zip(terms[::2], terms[1::2]):
            if sa == sb:
                paired.append((a + b, sa))
            else:                          # keep the positive one in front: a subtractor
                paired.append((a - b, sa) if sa > 0 else (b - a, sb))
        terms = paired + terms[len(terms) - len(terms) % 2:]
    total, sign = terms[0]
    return total if sign > 0 else -total


class ShiftAddRequantizer(Requantizer):
    """`multiplier` is a code: 0 multiplies by zero, k by `multipliers[k - 1]`.

    Each distinct odd factor of the multipliers gets one shift-add tree; M' = odd << t is that
    tree's output shifted by t, which is wiring.
    """

    def __init__(self, in_width, multipliers, offset_width, shift, out_width):
        self.multipliers = tuple(int(v) for v in multipliers)
        if 0 in self.multipliers:
            raise ValueError("a shift-add requantizer's multipliers are nonzero (code 0 is zero)")
        code = unsigned(max(1, len(self.multipliers).bit_length()))
        peak = max([abs(v) for v in self.multipliers] + [1])
        self._init(in_width, code, in_width + peak.bit_length() + 1, offset_width, shift, out_width)

    def product(self, m, x, multiplier):
        trees = {}
        chosen = Signal(signed(self.sum_width - 1))
        with m.Switch(multiplier):
            for code, value in enumerate(self.multipliers, start=1):
                odd, t = odd_part(value)
                if odd not in trees:
                    trees[odd] = Signal(signed(self.sum_width - 1), name=f"times_{odd}".replace("-", "minus"))
                    m.d.comb += trees[odd].eq(shift_add(x, odd))
                with m.Case(code):
                    m.d.comb += chosen.eq(trees[odd] << t)
        return chosen
