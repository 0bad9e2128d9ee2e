"""Registers shared by the core's components: pipeline delays, own copies, nested counters."""
from amaranth import Const, Mux, Signal

# Synthesis merges registers that hold the same value (yosys opt_merge, Vivado's equivalent
# register removal): the bounds every requantizer delays alike become one register driving every
# lane's compare across the chip, the routed design's slowest path. `keep` on a register's
# flip-flops stops the merge; Amaranth puts it on the wire only, so this yosys command (run
# after reading the design) gives it to the flip-flops that drive such wires.
KEEP_OWN_COPIES = "setattr -set keep 1 w:* a:keep %i %ci1:+[Q] t:* %i"


def delay(m, value, cycles, name):
    """`value` `cycles` clock cycles late, through registers named name_d1, name_d2, ..."""
    for c in range(cycles):
        register = Signal.like(value, name=f"{name}_d{c + 1}")
        m.d.sync += register.eq(value)
        value = register
    return value


def own_copy(m, value, name):
    """`value` a cycle late in a register of the caller's own, never merged with its twins in
    other components (KEEP_OWN_COPIES), so the placer can put it beside its users: for values
    that stand still for many cycles (a step's fields) and reach many lanes."""
    register = Signal.like(value, name=name, attrs={"keep": 1})
    m.d.sync += register.eq(value)
    return register


# Lanes per copy of a control that a whole datapath reads (a step's select, a valid, a field): one
# register cannot sit beside every lane's logic, spread over a fifth of the chip at 16 lanes
# and 4 pixels, so each group of lanes gets its own.
LANE_GROUP = 4


def lane_groups(lanes):
    """The lanes in groups of `LANE_GROUP`, the last one maybe smaller.

    >>> [list(g) for g in lane_groups(6)]
    [[0, 1, 2, 3], [4, 5]]
    """
    return [range(k, min(k + LANE_GROUP, lanes)) for k in range(0, lanes, LANE_GROUP)]


def delay_copies(m, value, cycles, count, name):
    """`count` copies of `value` `cycles` (at least 1) clock cycles late: one delay line, then an
    own copy (`own_copy`) per group of users as its last register."""
    shared = delay(m, value, cycles - 1, name)
    return [own_copy(m, shared, f"{name}_own{k}") for k in range(count)]


def count_nested(m, digits):
    """Advance an odometer of (counter, at_last) digits, innermost first: each digit steps when
    every digit inside it is at its last value, and wraps to 0 after its own last. Returns the
    condition 'every digit at its last value' (the final count of the loop nest)."""
    inner_done = Const(1)
    for counter, at_last in digits:
        with m.If(inner_done):
            m.d.sync += counter.eq(Mux(at_last, 0, counter + 1))
        inner_done = inner_done & at_last
    return inner_done
