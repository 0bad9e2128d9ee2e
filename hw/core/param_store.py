"""The requant parameter ROMs and how a requantizer reads its operands from them.

Two banks (hw/compiler/memory_images.py): `params` serves every step's first requantizers and the
logits, `params2` the second requantizers; each holds one word per output group, lane l the
(M', C) of channel g*lanes + l. They are wide and shallow: as block RAM each would take ~10
RAMB36 for a few dozen words, so they carry no `rom_style` and synthesis chooses (yosys finds no
LUTRAM mapping for a forced "distributed" sync ROM): for the 7-series it builds them from LUTs,
for the ECP5 it puts them in block RAM (the `make train` model's first bank at 16 x 2: 24
DP16KD).
"""
from amaranth import Module, Mux, Shape, Signal, signed
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from hw.core.layouts import COUNT
from hw.blocks.pipeline import own_copy
from hw.blocks.requant import Requantizer, ShiftAddRequantizer
from amaranth.utils import ceil_log2


def bank_field(bank):
    """One lane of a bank's word: the operands of one channel's requantizer."""
    return data.StructLayout({"multiplier": bank.multiplier_shape, "offset": signed(bank.offset_bits)})


def bank_word(plan, bank):
    return data.ArrayLayout(bank_field(bank), plan.lanes)


def requantizer_for(plan, bank, in_width, out_width):
    """A requantizer with the bank's fixed shift and operand widths: hardware multipliers of the
    plan's operand widths, or shift-add trees of the bank's multipliers where the bank has them."""
    if bank.multipliers is not None:
        return ShiftAddRequantizer(in_width, bank.multipliers, bank.offset_bits, bank.shift, out_width)
    return Requantizer(in_width, bank.mult_bits, bank.offset_bits, bank.shift, out_width,
                       plan.multiplier)


def operands(requantizer, field):
    """Drive a requantizer's M' and C from one lane (`bank_field`) of a parameter word."""
    return [requantizer.multiplier.eq(field.multiplier), requantizer.offset.eq(field.offset)]


def rom_depth(bank):
    """The bank's words rounded up to a power of two (the wrap ParamStore describes)."""
    return 1 << ceil_log2(max(2, len(bank.words)))


class ParamStore(wiring.Component):
    """`word`: bank 1 at the step's base + `word_group`, or + `logit_group` while `logits`;
    `word2`: bank 2 at its base + `word2_group`. `latency` = 2 cycles from group to `word`:
    base + group is registered, then the ROM reads (the sum, its bound check and the ROM's
    decode did not fit one cycle at 100 MHz). `second_latency` = 3 to `word2`: bank 2 is a ROM
    per lane, each read through its own copy of the registered address. Synthesis builds a bank
    this shallow from LUTs, and as one ROM it shared the decode between lanes: the routed
    make-train model's worst path ran from the address register through six LUTs in lanes
    strewn across the chip (10.7 ns, 8.7 routing); a lane's own address keeps its decode its own.

    A group is only meaningful while its step uses the bank: at other cycles base + group can
    point past the bank's words (at the head step, before its first words, `word_group` still
    holds the previous step's last output group; the head's class count can run past its last
    group while the logit pipeline drains; a step without second requantizers has bank 2's base
    0). So each ROM's depth is a power of two (the words past the bank's read zero) and its
    address is base + group cut to the address's width: every read lands inside the ROM (an
    address past it reads X in Icarus), with no bound check and its mux on the address's path
    (they were the slowest path at 100 MHz on an ECP5). The words read there are never used: no
    result or cycle changes.
    """

    latency = 2
    second_latency = 3

    def __init__(self, plan):
        self.plan = plan
        images = plan.images
        super().__init__({
            "fields": In(plan.step_layout),
            "word_group": In(COUNT), "logits": In(1), "logit_group": In(range(plan.padded_classes + 8)),
            "word2_group": In(COUNT),
            "word": Out(bank_word(plan, images.params)), "word2": Out(bank_word(plan, images.params2)),
        })

    def elaborate(self, platform):
        m = Module()
        f, plan, images = self.fields, self.plan, self.plan.images
        m.submodules.params = rom = memory.Memory(shape=Shape.cast(bank_word(plan, images.params)),
                                                  depth=rom_depth(images.params), init=images.params.words)
        first = rom.read_port()
        group = Mux(self.logits, self.logit_group, self.word_group)
        # The sums are cut to the ports' address widths: the wrap described above.
        m.d.sync += first.addr.eq(f.pbase + group)
        m.d.comb += [first.en.eq(1), self.word.eq(first.data)]

        bank = images.params2
        address = Signal(range(rom_depth(bank)), name="word2_address")
        m.d.sync += address.eq(f.p2base + self.word2_group)
        lane_bits = bank.field_bits
        for lane in range(plan.lanes):
            rom = memory.Memory(shape=lane_bits, depth=rom_depth(bank),
                                init=[(word >> lane * lane_bits) & ((1 << lane_bits) - 1) for word in bank.words])
            m.submodules[f"params2_lane{lane}"] = rom
            port = rom.read_port()
            m.d.comb += [port.addr.eq(own_copy(m, address, f"word2_address{lane}")), port.en.eq(1),
                         self.word2[lane].eq(port.data)]
        return m
