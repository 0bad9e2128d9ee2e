"""The boards `python -m hw.build` targets: amaranth-boards platform, FPGA family and capacity.

What a board's family means for the build (its multiplier, its flow, its clocking) is the
family's (hw/board/families.py). Capacities are in the family's own primitives: LUT6 or LUT4,
RAMB36 or 18-Kbit EBR halves (`bram36`: 36-Kbit equivalents, for the block-RAM bound), DSP48E1
or MULT18X18D."""
from dataclasses import dataclass

from hw.board.families import ECP5, XC7, Family
from hw.link.protocol import LINK_RATES


@dataclass(frozen=True)
class Board:
    name: str
    title: str
    device: str
    platform: str          # class name in amaranth_boards.<module>
    luts: int
    ffs: int
    bram36: int
    dsp: int
    clock_mhz: float = 100.0   # the board's oscillator: the design's clock, or the PLL's input
    pixels_per_cycle: int = 2  # python -m hw.build's default --pixels
    family: Family = XC7
    module: str = "arty_a7"

    @property
    def max_baud(self):
        """The USB-UART's fastest rate: python -m hw.build's default --baud, and its limit."""
        return LINK_RATES[self.name]

    @property
    def capacity(self):
        return dict(luts=self.luts, ffs=self.ffs, bram36=self.bram36, dsp=self.dsp)

    def make_platform(self):
        import importlib
        return getattr(importlib.import_module(f"amaranth_boards.{self.module}"), self.platform)()


BOARDS = {
    "arty_a7": Board("arty_a7", "Digilent Arty A7-35T", "XC7A35T", "ArtyA7_35Platform",
                     20_800, 41_600, 50, 90,
                     pixels_per_cycle=4),  # the make-train model (5 / 8 / 8 bits) at 3,000 images/s
    "arty_a7_100": Board("arty_a7_100", "Digilent Arty A7-100T", "XC7A100T", "ArtyA7_100Platform",
                         63_400, 126_800, 135, 240, pixels_per_cycle=4),
    # 16 x 2: the Arty's 16 x 4 does not route here yet (docs/results.md, "The 16 x 4 default on
    # the ULX3S")
    "ulx3s_85f": Board("ulx3s_85f", "Radiona ULX3S (85F)", "LFE5U-85F", "ULX3S_85F_Platform",
                       83_640, 83_640, 104, 156, clock_mhz=25.0, family=ECP5, module="ulx3s"),
}
