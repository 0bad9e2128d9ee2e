"""Pipeline registers shared by the core's components."""
from amaranth import Signal


def delay(m, value, cycles, name):
    """`value` `cycles` clock cycles late, through registers named name_d1, name_d2, ..."""
    for c in range(cycles):
        register = Signal.like(value, name=f"{name}_d{c + 1}")
        m.d.sync += register.eq(value)
        value = register
    return value
