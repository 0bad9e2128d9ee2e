"""Pure-Python reference model of :class:`sim.smoke_design.SmokeAccumulator` (no HDL imports)."""


def wrap_signed(value: int, width: int) -> int:
    """Two's-complement wrap of ``value`` to ``width`` bits."""
    value &= (1 << width) - 1
    return value - (1 << width) if value >> (width - 1) else value


class AccumulatorModel:
    """Cycle model: :meth:`step` applies one rising clock edge and returns the new ``acc``."""

    def __init__(self, acc_width: int = 16):
        self.acc_width = acc_width
        self.acc = 0

    def reset(self) -> None:
        self.acc = 0

    def step(self, x: int, w: int, en: int, clear: int) -> int:
        if clear:
            self.acc = 0
        elif en:
            self.acc = wrap_signed(self.acc + (x if w else -x), self.acc_width)
        return self.acc
