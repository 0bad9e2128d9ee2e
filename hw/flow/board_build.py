"""A board build, from one `BuildConfig`: the board top, then the family's flow into a folder.

- a Xilinx board: the amaranth-boards build plan (top.v, top.xdc, top.tcl, build_top.sh), Vivado's
  run and reports where it is installed (hw/flow/vivado.py), the yosys estimate of the core
  (hw/flow/yosys.py) against the board (hw/flow/fit.py) and its netlist's logic depth
  (hw/flow/netlist_depth.py);
- an ECP5 board: a PLL to the requested clock, then synthesis, place and route and the bitstream
  with the YoWASP tools (hw/flow/nextpnr.py);
then latency and throughput at the clock (hw/core/latency.py) and the report (hw/flow/report.py).
"""
import os
from dataclasses import dataclass

from hw.blocks.pipeline import KEEP_OWN_COPIES
from hw.board.boards import Board
from hw.core.latency import latency_report
from hw.core.plan import CoreOptions
from hw.flow.fit import fit_message
from hw.flow.nextpnr import PLACERS, ROUTERS, place_and_route
from hw.flow.netlist_depth import depth_from_file
from hw.flow.report import build_report, write_report
from hw.flow.vivado import run_vivado
from hw.flow.yosys import NETLIST, estimate
from hw.link.protocol import FRAME_TIMEOUT_MS


@dataclass(frozen=True)
class BuildConfig:
    board: Board
    options: CoreOptions
    clock_mhz: float = 100.0          # the design's clock: the PLL's output on an ECP5 board
    baud: int = None                  # None: the board's USB-UART maximum
    frame_timeout_ms: float = FRAME_TIMEOUT_MS   # a frame ends after the line is quiet this long
    seed: int = 1                     # nextpnr's placement seed (ECP5 boards)
    router: str = ROUTERS[0]          # nextpnr's router and placer (ECP5 boards)
    placer: str = PLACERS[0]
    estimate: bool = True             # the yosys estimate (Xilinx boards)
    estimate_timeout_s: float = 1800.0
    program: bool = False             # load the bitstream (ECP5 boards)

    @property
    def link_baud(self):
        return self.board.max_baud if self.baud is None else self.baud

    @property
    def uart_clock_mhz(self):
        """The clock the UART counts bit times in: the PLL's on an ECP5 board, else the board's."""
        return self.clock_mhz if self.board.family.pll_clock else self.board.clock_mhz


def board_top(config, plan):
    """The board's top for `plan`: a PLL to --clock-mhz where the family has one. ValueError
    where the clock cannot be made or the UART cannot count the rate."""
    from hw.board.top import BoardTop, PllBoardTop
    board = config.board
    if board.family.pll_clock:
        from hw.board.ecp5_pll import pll_parameters
        return PllBoardTop(plan, pll_parameters(board.clock_mhz, config.clock_mhz), config.link_baud,
                           config.frame_timeout_ms)
    return BoardTop(plan, board.clock_mhz * 1e6, config.link_baud, config.frame_timeout_ms)


def frame_timeout(config, top):
    """The report's frame timeout: as asked, and in the framer's clock cycles."""
    return dict(frame_timeout_ms=config.frame_timeout_ms, frame_timeout_cycles=top.core.timeout_cycles)


def build_into(folder, out, config, qmodel, plan, top, memory):
    """The board's flow in `folder` (which becomes `out`); returns (the fit message or None, the
    report)."""
    if config.board.family.routed:
        return build_routed(folder, out, config, qmodel, plan, top, memory)
    return build_vivado_files(folder, out, config, qmodel, plan, top, memory)


def build_vivado_files(folder, out, config, qmodel, plan, top, memory):
    """The board files, Vivado's run where it is installed, the estimate and the report."""
    board = config.board
    board_files = board.make_platform().build(top, name="top", do_build=False)
    board_files.extract(folder)
    print(f"{out}: top.v, top.xdc, top.tcl, build_top.sh for the {board.title}")
    vivado, vivado_note = run_vivado(folder, out)

    resources = seconds = message = depth = None
    if config.estimate:
        print("estimating the core's resources with yosys synth_xilinx ...", flush=True)
        # The board top's own accelerator: the design is built once.
        core = os.path.join(folder, "core")
        resources, seconds = estimate(top.core.accel, core, config.estimate_timeout_s, netlist=True)
        message = fit_message(resources, board, config.options.lanes, config.options.pixels_per_cycle)
        print("measuring the netlist's register-to-register logic depth ...", flush=True)
        depth = depth_from_file(os.path.join(core, NETLIST), "core").to_dict()
    rep = build_report(board, qmodel, latency_report(plan.schedule, config.clock_mhz), memory,
                       bit_timing=top.bit_timing, resources=resources, **frame_timeout(config, top),
                       estimate_seconds=seconds, requantizers=plan.requantizer_summary(),
                       path_depth=depth, vivado=vivado, vivado_note=vivado_note)
    write_report(folder, rep)
    return message, rep


def build_routed(folder, out, config, qmodel, plan, top, memory):
    """The platform's files, then synthesis, place and route and the bitstream with the YoWASP
    tools, and the report at the PLL's clock; returns (None, the report)."""
    board = config.board
    platform = board.make_platform()
    platform.build(top, name="top", do_build=False,
                   script_after_read=KEEP_OWN_COPIES).extract(folder)
    clock = top.pll_params.f_out_mhz
    print(f"{out}: top.il, top.ys, top.lpf for the {board.title}, clocked at {clock:g} MHz "
          f"by the PLL from {board.clock_mhz:g} MHz", flush=True)
    routed = place_and_route(folder, "top", board.family.nextpnr_options(platform), clock, config.seed,
                             config.router, config.placer)
    p = top.pll_params
    routed["pll"] = dict(f_in_mhz=p.f_in_mhz, f_out_mhz=clock, f_vco_mhz=p.f_vco_mhz,
                         clki_div=p.clki_div, clkfb_div=p.clkfb_div, clkop_div=p.clkop_div)
    rep = build_report(board, qmodel, latency_report(plan.schedule, clock), memory,
                       bit_timing=top.bit_timing, **frame_timeout(config, top),
                       requantizers=plan.requantizer_summary(), post_route=routed,
                       vivado_note="not a Vivado board: the open flow's figures are in post_route")
    write_report(folder, rep)
    if config.program:      # the board's own programming command (amaranth-boards)
        from amaranth.build.run import LocalBuildProducts
        platform.toolchain_program(LocalBuildProducts(folder), "top")
    return None, rep
