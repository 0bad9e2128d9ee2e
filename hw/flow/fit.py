"""Whether a core fits a board: lower bounds of its block RAM and DSPs from the plan alone, before
synthesis (`bound_message`), and the yosys estimate against the board's capacity
(`fit_message`, `over_capacity`).
"""
from common.bits import ceil_div
from hw.blocks.accumulators import simd_blocks
from hw.board.boards import BOARDS

RAMB36_BITS = 36 * 1024
# The resources the estimate counts against a board's capacity, as people call them.
LABELS = dict(luts="LUT", ffs="FF", bram36="BRAM36", dsp="DSP48E1")


def over_capacity(resources, capacity):
    """The resources above the board's capacity, as text.

    >>> capacity = dict(luts=20800, ffs=41600, bram36=50, dsp=90)
    >>> over_capacity(dict(luts=25000, ffs=10, bram36=60, dsp=0), capacity)
    ['LUT 25000 > 20800', 'BRAM36 60 > 50']
    """
    return [f"{LABELS[k]} {resources[k]:g} > {v:g}" for k, v in capacity.items() if resources[k] > v]


def weights_message(qmodel, board):
    """None, or one line when the model's weight bits alone exceed the board's block RAM: from
    the model, before anything is planned (a WRN-20-10 holds 26.7 Mbit)."""
    bits, capacity = qmodel.weight_bits(), board.bram36 * RAMB36_BITS
    if bits <= capacity:
        return None
    return (f"the model cannot fit the {board.title} ({board.device}): its weights alone are "
            f"{bits:,} bits ({bits / 1e6:.1f} Mbit), its block RAM holds {capacity:,} "
            f"({board.bram36} RAMB36); a model {bits / capacity:.1f} times smaller is needed "
            "(fewer --width or --depth at training)")


def bound_message(plan, board, memory):
    """None, or one line when the design cannot fit however synthesis maps it: block RAM (the
    weight ROM and the feature-map RAMs, one copy per two pixels, at full 36 Kbit per RAMB36)
    and DSPs (one per DSP requantizer; on a 7-series part one per two of the conv engine's
    accumulators, hw/blocks/accumulators.py). Lower bounds: computed in a moment, before synthesis."""
    copies = ceil_div(plan.pixels_per_cycle, 2)
    bits = memory["weight_rom_bits"] + memory["activation_ram_bits"] * copies
    bram = bits / RAMB36_BITS
    requantizers = 0 if plan.requantizers == "shift-add" else 2 * plan.lanes + plan.head_requant
    pairs = plan.pixels_per_cycle * simd_blocks(plan.lanes, plan.acc_bits) if board.family.dsp_accumulators else 0
    dsp = requantizers + pairs
    over = []
    if bram > board.bram36:
        over.append(f"at least {bram:.1f} RAMB36 of block RAM ({bits:,} bits: weights "
                    f"{memory['weight_rom_bits']:,}, feature maps {memory['activation_ram_bits']:,} "
                    f"x {copies}) > {board.bram36}")
    if dsp > board.dsp:
        over.append(f"at least {dsp} DSP48 ({requantizers} requantizers"
                    + (f", {pairs} accumulator pairs" if pairs else "") + f") > {board.dsp}")
    if not over:
        return None
    bigger = [b.name for b in BOARDS.values() if b.bram36 > board.bram36 and b.dsp > board.dsp]
    fixes = ["a smaller model (fewer --width or --depth at training)",
             "--pixels 2 or 1" if plan.pixels_per_cycle > 2 and bram > board.bram36 else None,
             f"--lanes {plan.lanes // 2}" if dsp > board.dsp else None,
             f"--pixels {plan.pixels_per_cycle - 1}" if pairs and plan.pixels_per_cycle > 1 and dsp > board.dsp else None,
             "--requantizers shift-add (srelu models)" if dsp > board.dsp else None,
             f"--board {bigger[0]}" if bigger else None]
    return (f"the design cannot fit the {board.title} ({board.device}): {'; '.join(over)}; "
            f"try {' or '.join(f for f in fixes if f)}")


def fit_message(res, board, lanes, pixels=1):
    """None when the core fits `board`, else one line with the numbers and what to change."""
    over = over_capacity(res, board.capacity)
    if not over:
        return None
    bigger = [b.name for b in BOARDS.values() if b.luts > board.luts]
    fixes = [f"--pixels {pixels - 1}" if pixels > 1 else None, f"--lanes {lanes // 2}" if lanes > 1 else None,
             "a narrower model (smaller --width)",
             f"--board {bigger[0]}" if bigger else None]
    return (f"the core does not fit the {board.title} ({board.device}): {', '.join(over)}; "
            f"try {' or '.join(f for f in fixes if f)}")
