"""The boards `python -m hw.build` targets: amaranth-boards platform and FPGA capacity."""
from dataclasses import dataclass


@dataclass(frozen=True)
class Board:
    name: str
    title: str
    device: str
    platform: str          # class name in amaranth_boards.arty_a7
    luts: int
    ffs: int
    bram36: int
    dsp: int
    clock_mhz: float = 100.0   # the board's oscillator, which clocks the design

    @property
    def capacity(self):
        return dict(luts=self.luts, ffs=self.ffs, bram36=self.bram36, dsp=self.dsp)

    def make_platform(self):
        from amaranth_boards import arty_a7
        return getattr(arty_a7, self.platform)()


BOARDS = {
    "arty_a7": Board("arty_a7", "Digilent Arty A7-35T", "XC7A35T", "ArtyA7_35Platform",
                     20_800, 41_600, 50, 90),
    "arty_a7_100": Board("arty_a7_100", "Digilent Arty A7-100T", "XC7A100T", "ArtyA7_100Platform",
                         63_400, 126_800, 135, 240),
}
