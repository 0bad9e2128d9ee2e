"""Requantizer: y = clamp((x * M' + C) >> S, lo, hi) with a shift S fixed at build time.

The golden model's recipe is clamp((x * M + B + 2^(s-1)) >> s, lo, hi) with a shift s per layer.
Scaling M and B by 2^(S-s) and folding the rounding term into the offset gives exactly the same
result for every s <= S (`quantize.fixed_point.fixed_shift_operands`), so the hardware needs
neither a barrel shifter nor a rounding adder: one DSP48 computes x * M' + C, the shift is
wiring, and only the saturation is logic. The memory images store M' and C.

Registered stages, so that no path runs through more than one multiplier or adder (a block-RAM
read or a wide mux into a multiplier into a carry chain made the slowest path on an ECP5,
docs/board.md): the operands; the partial products, each operand cut into parts no wider than
the family's multiplier takes (`HardMultiplier`: each family's in hw/board/families.py), so
that each product is one hardware multiplier;
a balanced tree of adds over the partial products and the offset, one register per level, at
most `SUM_LEVELS` levels; the saturation. The operands are registered twice and, on a
multiplier without a post-adder (the ECP5's), the products too: there the second operand
register and both product registers are the multiplier's own (`RegisteredMultiplier`, inside
the MULT18X18D on an ECP5), so that only routes lie between the fabric and the hard block. With
a post-adder (the DSP48E1) the products are registered once, in the fabric, so that synthesis can
put the first add in it, and the spare register follows the add tree. Latency 8 whatever the
widths (a shallower tree is padded with registers), so every requantizer of a bank lines up.

`ShiftAddRequantizer` computes the same with no multiplier: the requantizers of a bank can only
ever multiply by the few M' values the model holds (a shifted-ReLU model: one constant per
layer), so each is built as shifts and adds of its canonical signed digits, at build time, and
the parameter word only chooses among them.
"""
from typing import NamedTuple

from amaranth import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.blocks.pipeline import delay, own_copy
from hw.blocks.registered_multiplier import OPERAND_BITS, RegisteredMultiplier
from quantize.fixed_point import adder_plan, csd_digits, odd_part


class HardMultiplier(NamedTuple):
    """A family's hardware multiplier: its signed operand widths, and whether it adds a term to
    a product registered once (the DSP48E1's post-adder: P = A*B + C), which synthesis only
    uses where a single register stands between the multiply and the add."""
    a_bits: int
    b_bits: int
    post_adder: bool


# An 18 x 18 multiplier without a post-adder, which every family here has (each family's own:
# hw/board/families.py): the default where no board is named.
ANY_MULTIPLIER = HardMultiplier(18, 18, False)
SUM_LEVELS = 3          # the add tree: up to 7 partial products and the offset


def operand_parts(value, width, part_bits):
    """A signed `width`-bit value as [(part, weight)]: value = sum(part << weight), the low parts
    unsigned (part_bits - 1 bits) and the top one signed, each at most `part_bits` signed bits."""
    parts, low = [], 0
    while width - low > part_bits:
        parts.append((value[low:low + part_bits - 1], low))
        low += part_bits - 1
    parts.append((value[low:width].as_signed(), low))
    return parts


def cut_operands(x, multiplier, unit):
    """x and the multiplier as parts for the HardMultiplier `unit`: the orientation (which
    operand goes to the wider port) with fewer partial products."""
    wide, narrow = max(unit.a_bits, unit.b_bits), min(unit.a_bits, unit.b_bits)
    cuts = [(operand_parts(x, len(x), wide), operand_parts(multiplier, len(multiplier), narrow)),
            (operand_parts(x, len(x), narrow), operand_parts(multiplier, len(multiplier), wide))]
    return min(cuts, key=lambda cut: len(cut[0]) * len(cut[1]))


def product_pairs(x, multiplier, unit):
    """[((x part, weight), (multiplier part, weight))], one pair per hardware multiplier."""
    x_parts, multiplier_parts = cut_operands(x, multiplier, unit)
    return [(xp, mp) for xp in x_parts for mp in multiplier_parts]


def add_tree(m, terms, name):
    """Sum of `terms` by a balanced tree of adds, one register per level; returns (sum, levels)."""
    levels = 0
    while len(terms) > 1:
        paired = []
        for i in range(0, len(terms) - 1, 2):
            s = Signal((terms[i] + terms[i + 1]).shape(), name=f"{name}{levels}_{i // 2}")
            m.d.sync += s.eq(terms[i] + terms[i + 1])
            paired.append(s)
        if len(terms) % 2:
            s = Signal.like(terms[-1], name=f"{name}{levels}_{len(terms) // 2}")
            m.d.sync += s.eq(terms[-1])
            paired.append(s)
        terms, levels = paired, levels + 1
    return terms[0], levels


class Requantizer(wiring.Component):
    """`multiplier` is M' itself: HardMultipliers `unit`, one per pair of operand parts."""
    # The operands, registered twice, the partial products, registered twice, the add tree, the
    # saturation. Without a post-adder, the registers around the multiply are the hard block's
    # own: fabric registers meant to sit beside each multiplier were placed 40-50 rows away
    # from it in the routed ECP5 design, and the route to and from the block made the slowest
    # path (docs/history.md, "The 8-bit `make train` model on the ULX3S"). A unit with a
    # post-adder gets its products registered once, so that synthesis can put the first add in
    # it, and the spare register after the add tree.
    latency = 2 + 2 + SUM_LEVELS + 1

    def __init__(self, in_width, mult_width, offset_width, shift, out_width, unit=ANY_MULTIPLIER):
        self.unit = unit
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
        terms = [product << weight for product, weight in self.registered_products(m)]
        terms.append(delay(m, self.offset, 2 + self.product_registers, "offset"))
        total, levels = add_tree(m, terms, "sum")
        if levels > SUM_LEVELS:
            raise ValueError(f"a {len(self.x)}-bit x {len(self.multiplier)}-bit requantizer needs "
                             f"{levels} add levels; at most {SUM_LEVELS} fit its latency")
        total = delay(m, total, SUM_LEVELS - levels + 2 - self.product_registers, "total")
        shifted = Signal(signed(max(2, self.sum_width - self.shift)))
        m.d.comb += shifted.eq(total >> self.shift)   # arithmetic: floor
        # The bounds are the same in every requantizer of a bank: each gets its own last copy.
        lo, hi = (own_copy(m, delay(m, bound, self.latency - 2, name), f"{name}_own")
                  for bound, name in ((self.lo, "lo"), (self.hi, "hi")))
        m.d.sync += self.y.eq(Mux(shifted < lo, lo, Mux(shifted > hi, hi, shifted)))
        return m

    @property
    def product_registers(self):
        return 1 if self.unit.post_adder else 2

    def registered_products(self, m):
        """[(product, weight)]: x * multiplier = sum(product << weight), each product one
        hardware multiplier, `2 + product_registers` cycles after the ports.

        Without a post-adder each product is a `RegisteredMultiplier`, whose input register is
        the operands' second and whose pipeline and output registers are the products' two."""
        if self.unit.post_adder:
            return self.fabric_products(m)
        if max(self.unit.a_bits, self.unit.b_bits) > OPERAND_BITS:
            raise ValueError(f"a {self.unit.a_bits} x {self.unit.b_bits} multiplier without a "
                             f"post-adder: RegisteredMultiplier takes {OPERAND_BITS} x {OPERAND_BITS}")
        x, multiplier = self.operands(m, 2 + self.product_registers - RegisteredMultiplier.latency)
        products = []
        for i, ((xp, xw), (mp, mw)) in enumerate(product_pairs(x, multiplier, self.unit)):
            m.submodules[f"mult{i}"] = mult = RegisteredMultiplier()
            m.d.comb += [mult.a.eq(xp), mult.b.eq(mp)]
            product = Signal((xp * mp).shape(), name=f"product{i}")
            m.d.comb += product.eq(mult.p)    # exact: the product fits its own width
            products.append((product, xw + mw))
        return products

    def operands(self, m, cycles):
        return delay(m, self.x, cycles, "x"), delay(m, self.multiplier, cycles, "multiplier")

    def fabric_products(self, m):
        """The partial products as registers in the fabric, `product_registers` deep, behind
        the operands registered twice."""
        products = []
        for i, (part, weight) in enumerate(self.partial_products(m, *self.operands(m, 2))):
            product = Signal(part.shape(), name=f"product{i}")
            m.d.sync += product.eq(part)
            products.append((delay(m, product, self.product_registers - 1, f"product{i}_out"), weight))
        return products

    def partial_products(self, m, x, multiplier):
        """[(product, weight)]: x * multiplier = sum(product << weight), each product one
        hardware multiplier."""
        return [(xp * mp, xw + mw) for (xp, xw), (mp, mw) in product_pairs(x, multiplier, self.unit)]


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

    product_registers = 2           # no multiplier, no post-adder: the chosen product twice

    def registered_products(self, m):
        return self.fabric_products(m)

    def partial_products(self, m, x, multiplier):
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
        return [(chosen, 0)]
