"""Register-to-register logic depth of a 7-series netlist from yosys `synth_xilinx -flatten`.

There is no open place-and-route for the Arty A7's XC7A35T, so this module measures timing risk
from the synthesized netlist instead: the number of cells a signal passes between two clocked
elements. It reads the JSON that `write_json` writes (`JSON_SCRIPT` after synth_xilinx) and,
over every path from a start point to an end point, finds the longest in:

* LUT levels: LUT1..LUT6 (and INV, LUT6_2) cells in series. MUXF7/MUXF8 are counted apart
  (`muxf`): they sit in the same slice as their LUTs and cost far less than a LUT and its route.
* CARRY4 cells in series: a carry chain ripples CI->CO from one CARRY4 to the next, so a 32-bit
  adder between registers is 8 CARRY4s (after one LUT level that makes the propagate bits).

Start points are the outputs of flip-flops, latches, block RAMs (RAMB18E1/RAMB36E1, FIFOs),
DSP48E1s, SRLs and LUT RAMs, and the top module's input ports; end points are their data inputs
(clock pins excluded) and the top module's output ports. SRL and LUT RAM outputs are also
reached combinationally from their address pins (asynchronous read), so paths run through those.

These figures are a proxy for delay, not a timing analysis: there are no cell or route delays,
fan-out, placement or clock skew here, and Vivado synthesizes the design again anyway (and ABC,
which maps yosys's LUTs for its own delay model, may use more, smaller LUTs than the fewest
levels possible). Roughly, on a -1 part a LUT and its route take 0.5-1 ns and a CARRY4 in a chain
0.1-0.3 ns, so at 100 MHz a path of more than about eight LUT levels deserves a look. Paths that
start or end at a block RAM or DSP48E1 are flagged (`touches_bram_dsp`): a block RAM read
without its output register takes about 2-2.5 ns from the clock, and DSP inputs that skip its
pipeline registers need ns of setup, which leaves much less room for logic. `logic_levels` adds
LUTs, MUXFs and CARRY4s, as Vivado's "Logic Levels" counts cells.

Unknown cell types are treated conservatively: as combinational, one LUT level from every
non-clock input to every output, and listed in `unknown_types`. A combinational loop raises
CombinationalLoop naming the cells on it.
"""
import json
from collections import deque
from dataclasses import asdict, dataclass


LUTS = {"LUT1", "LUT2", "LUT3", "LUT4", "LUT5", "LUT6", "LUT6_2", "INV"}
MUXFS = {"MUXF7", "MUXF8"}
CARRIES = {"CARRY4"}
BUFFERS = {"BUFG", "BUFGCTRL", "BUFGCE", "BUFH", "BUFHCE", "BUFR", "BUFIO", "IBUF", "IBUFG",
           "OBUF", "OBUFT", "IOBUF"}
IGNORED = {"GND", "VCC", "$scopeinfo"}   # constant drivers; Amaranth scope records
BLOCK_RAMS = ("RAMB18E1", "RAMB36E1", "FIFO18E1", "FIFO36E1")
DSPS = ("DSP48E1",)
SHIFT_REGISTERS = ("SRL16E", "SRLC16E", "SRLC32E")
PORT = "port"

# A path's cost: (LUT levels, MUXF7/F8, CARRY4).
ZERO = (0, 0, 0)
WEIGHTS = {"lut": (1, 0, 0), "muxf": (0, 1, 0), "carry": (0, 0, 1), "buffer": ZERO,
           "dsp": ZERO}      # an unregistered pass through a DSP: flagged, not counted


class CombinationalLoop(ValueError):
    """The netlist has a combinational loop (the message names its cells)."""


@dataclass(frozen=True)
class TimingPath:
    """One start-to-end path. Names are as yosys writes them: cell names may be generated
    ($abc$..., $auto$...); the signals carry the Amaranth hierarchy (engine.acc[3])."""
    lut_levels: int
    muxf: int
    carry4: int
    start_cell: str     # cell (or input port) the path leaves
    start_type: str     # FDRE, RAMB36E1, DSP48E1, ..., or "port"
    start_signal: str   # the net it leaves on
    end_cell: str
    end_type: str
    end_pin: str        # D, CE, ADDRARDADDR[3], ... or the output port's bit
    end_signal: str     # the register it writes (Q of a flip-flop), else the net at end_pin
    cells: tuple        # the combinational cells on the path, start to end
    touches_bram_dsp: bool   # starts, ends or passes at a block RAM or DSP

    @property
    def logic_levels(self):
        """LUTs + MUXFs + CARRY4s, as Vivado's "Logic Levels" counts cells."""
        return self.lut_levels + self.muxf + self.carry4

    def to_dict(self):
        return dict(asdict(self), cells=list(self.cells), logic_levels=self.logic_levels)


@dataclass(frozen=True)
class NetlistDepth:
    """The depth figures of one netlist; None where it has no such path."""
    deepest: TimingPath            # most LUT levels (then CARRY4s, then MUXFs)
    longest_carry: TimingPath      # most CARRY4s in series (then LUT levels)
    deepest_bram_dsp: TimingPath   # most LUT levels among paths from or to a block RAM / DSP
    endpoint_histogram: dict       # LUT levels -> number of end points (pins) that deep
    unknown_types: tuple           # cell types treated as one LUT level each

    def to_dict(self):
        paths = ("deepest", "longest_carry", "deepest_bram_dsp")
        d = {k: (getattr(self, k).to_dict() if getattr(self, k) else None) for k in paths}
        return dict(d, endpoint_histogram={str(k): v for k, v in self.endpoint_histogram.items()},
                    unknown_types=list(self.unknown_types))

    @classmethod
    def from_dict(cls, d):
        """The NetlistDepth that to_dict() wrote (e.g. read back from a report.json)."""
        paths = {k: TimingPath(**{f: (tuple(v) if f == "cells" else v) for f, v in d[k].items()
                                  if f != "logic_levels"}) if d[k] else None
                 for k in ("deepest", "longest_carry", "deepest_bram_dsp")}
        return cls(**paths, endpoint_histogram={int(k): v for k, v in d["endpoint_histogram"].items()},
                   unknown_types=tuple(d["unknown_types"]))

    def lines(self):
        """A few lines for a person: the three paths and the histogram."""
        out = []
        for title, p in (("deepest path", self.deepest), ("longest carry chain", self.longest_carry),
                         ("deepest path at a block RAM/DSP", self.deepest_bram_dsp)):
            out.append(f"{title}: " + (describe(p) if p else "none"))
        hist = ", ".join(f"{lv}: {n}" for lv, n in self.endpoint_histogram.items())
        out.append(f"end points by LUT levels: {hist or 'none'}")
        if self.unknown_types:
            out.append(f"unknown cell types, counted as one LUT level: {', '.join(self.unknown_types)}")
        return out


def describe(p):
    return (f"{p.lut_levels} LUT levels, {p.carry4} CARRY4, {p.muxf} MUXF "
            f"from {p.start_signal} ({p.start_type}) to {p.end_signal} ({p.end_type} {p.end_pin})")


def is_bram_or_dsp(cell_type):
    return cell_type.startswith(BLOCK_RAMS + DSPS)


# -- cells -------------------------------------------------------------------------------------
def is_clock_pin(pin):
    return pin == "C" or "CLK" in pin


def param(cell, name, default):
    """A cell parameter: an int where yosys wrote a binary string, else the string."""
    v = cell.get("parameters", {}).get(name, default)
    return int(v, 2) if isinstance(v, str) and v and set(v) <= {"0", "1"} else v


def cell_kind(cell):
    """How a cell takes part in timing paths: lut, muxf, carry, buffer, ignore (constants,
    scope records), sequential, async_read (SRL / LUT RAM: sequential, plus address ->
    output), dsp, or unknown."""
    t = cell["type"]
    for kind, types in (("lut", LUTS), ("muxf", MUXFS), ("carry", CARRIES),
                        ("buffer", BUFFERS), ("ignore", IGNORED)):
        if t in types:
            return kind
    if t.startswith(SHIFT_REGISTERS) or (t.startswith("RAM") and not t.startswith("RAMB")):
        return "async_read"
    if t.startswith(DSPS):
        return "dsp"
    if t.startswith(("FD", "LD") + BLOCK_RAMS):
        return "sequential"
    return "unknown"


def is_address_pin(pin):
    return pin.startswith(("A", "DPRA"))


# DSP48E1 input -> the parameter of the register it goes into (the cell's defaults are 1).
DSP_INPUT_REGISTERS = {"A": "AREG", "ACIN": "AREG", "B": "BREG", "BCIN": "BREG", "C": "CREG",
                       "D": "DREG", "CARRYIN": "CARRYINREG", "CARRYINSEL": "CARRYINSELREG",
                       "OPMODE": "OPMODEREG", "ALUMODE": "ALUMODEREG", "INMODE": "INMODEREG"}
MULTIPLIER_INPUTS = {"A", "ACIN", "B", "BCIN", "D"}


def dsp_input_registered(cell, pin):
    """Whether a DSP48E1 input ends at a register inside the DSP, rather than running on
    to P and PCOUT: all do with PREG=1; else its own input register or, into the multiplier,
    MREG. Clock enables and resets end at registers."""
    if pin.startswith(("CE", "RST")) or param(cell, "PREG", 1):
        return True
    if param(cell, DSP_INPUT_REGISTERS.get(pin, ""), 0):
        return True
    multiplies = param(cell, "USE_MULT", "MULTIPLY") != "NONE"
    return pin in MULTIPLIER_INPUTS and multiplies and bool(param(cell, "MREG", 1))


def pins(cell, direction):
    """(pin, bit index, bit) of a cell's non-clock pins of one direction; constants left out."""
    for pin, bits in cell["connections"].items():
        if cell["port_directions"].get(pin) != direction or is_clock_pin(pin):
            continue
        for i, bit in enumerate(bits):
            if isinstance(bit, int):
                yield pin, i, bit


def pin_label(pin, i, width):
    return f"{pin}[{i}]" if width > 1 else pin


def carry_arcs(cell):
    """CARRY4: output bit i (O[i], CO[i]) depends on CI, CYINIT and S/DI bits 0..i."""
    conn = cell["connections"]
    ins = list(pins(cell, "input"))
    for pin, i, bit in pins(cell, "output"):
        yield bit, [b for p, j, b in ins if len(conn[p]) == 1 or j <= i]


def split_clocked_inputs(kind, cell, inputs):
    """A clocked cell's inputs as (end points, inputs that also run on to its outputs):
    SRL and LUT RAM address pins (asynchronous read), DSP48E1 inputs with no register."""
    if kind == "sequential":
        return inputs, []
    if kind == "async_read":
        return inputs, [x for x in inputs if is_address_pin(x[0])]
    registered = [x for x in inputs if dsp_input_registered(cell, x[0])]
    return registered, [x for x in inputs if not dsp_input_registered(cell, x[0])]


# -- the graph ---------------------------------------------------------------------------------
class Graph:
    """Bits as nodes: `arcs[bit]` = (cell, weight, input bits) for a combinationally driven
    bit; `starts[bit]` = (cell, type) for a start point; `ends` = (bit, cell, type, pin)."""

    def __init__(self, module):
        self.cells = module["cells"]
        self.arcs, self.starts, self.ends = {}, {}, []
        self.unknown = set()
        for name, cell in self.cells.items():
            self.add_cell(name, cell)
        for name, port in module["ports"].items():
            self.add_port(name, port)

    def add_cell(self, name, cell):
        kind, t = cell_kind(cell), cell["type"]
        if kind == "ignore":
            return
        if kind == "carry":
            for out, ins in carry_arcs(cell):
                self.arcs[out] = (name, WEIGHTS["carry"], ins)
            return
        inputs = list(pins(cell, "input"))
        outputs = [b for _, _, b in pins(cell, "output")]
        if kind in ("sequential", "async_read", "dsp"):
            ends, inputs = split_clocked_inputs(kind, cell, inputs)
            for bit in outputs:
                self.starts[bit] = (name, t)
            for pin, i, bit in ends:
                self.ends.append((bit, name, t, pin_label(pin, i, len(cell["connections"][pin]))))
            if not inputs:
                return
        if kind == "unknown":
            self.unknown.add(t)
        weight = WEIGHTS.get(kind, WEIGHTS["lut"])    # async reads and unknown cells: a LUT
        ins = [b for _, _, b in inputs]
        for bit in outputs:
            self.arcs[bit] = (name, weight, ins)

    def add_port(self, name, port):
        for i, bit in enumerate(port["bits"]):
            if not isinstance(bit, int):
                continue
            if port["direction"] in ("input", "inout"):
                self.starts.setdefault(bit, (name, PORT))
            if port["direction"] in ("output", "inout"):
                self.ends.append((bit, name, PORT, pin_label(name, i, len(port["bits"]))))

    def topological_order(self):
        """Combinationally driven bits, each after the bits it depends on (Kahn's algorithm);
        CombinationalLoop if some are left over."""
        users = {}
        pending = {}
        for bit, (_, _, ins) in self.arcs.items():
            comb_ins = [b for b in ins if b in self.arcs]
            pending[bit] = len(comb_ins)
            for b in comb_ins:
                users.setdefault(b, []).append(bit)
        ready = deque(b for b, n in pending.items() if n == 0)
        order = []
        while ready:
            bit = ready.popleft()
            order.append(bit)
            for user in users.get(bit, ()):
                pending[user] -= 1
                if pending[user] == 0:
                    ready.append(user)
        if len(order) < len(self.arcs):
            raise CombinationalLoop(self.loop_message({b for b, n in pending.items() if n}))
        return order

    def loop_message(self, left):
        """Walk back from a bit on or behind a loop until a bit repeats: that stretch is a loop."""
        seen, walk = {}, []
        bit = next(iter(left))
        while bit not in seen:
            seen[bit] = len(walk)
            walk.append(bit)
            bit = next(b for b in self.arcs[bit][2] if b in left)
        loop = list(reversed(walk[seen[bit]:]))
        names = [f"{self.arcs[b][0]} ({self.cells[self.arcs[b][0]]['type']})" for b in loop]
        return "combinational loop through " + " -> ".join(names + names[:1])


def longest_paths(graph, order, rank, start_ok=lambda bit: True):
    """For each bit reachable from an accepted start: (best cost, the input bit it came from,
    None at a start), best by `rank` of (LUT, MUXF, CARRY4) cost. One pass over `order`."""
    best = {b: (ZERO, None) for b in graph.starts if start_ok(b)}
    for bit in order:
        _, weight, ins = graph.arcs[bit]
        here = best.get(bit)
        for b in ins:
            came = best.get(b)
            if came is None:
                continue
            cost = tuple(c + w for c, w in zip(came[0], weight))
            if here is None or rank(cost) > rank(here[0]):
                here = (cost, b)
        if here is not None:
            best[bit] = here
    return best


def by_luts(cost):
    return cost[0], cost[2], cost[1]


def by_carry(cost):
    return cost[2], cost[0], cost[1]


# -- names -------------------------------------------------------------------------------------
def bit_names(module):
    """bit -> the net name a person would search for, among names yosys did not generate: one
    Amaranth did not make up either ($signal$6) first, an internal signal before a port, then
    the deepest in the hierarchy (where the signal is made), then the shortest."""
    chosen = {}
    for name, net in module["netnames"].items():
        if net.get("hide_name"):
            continue
        key = (name.lstrip("\\").startswith("$"), name in module["ports"], -name.count("."),
               len(name), name)
        width = len(net["bits"])
        for i, bit in enumerate(net["bits"]):
            if isinstance(bit, int) and (bit not in chosen or key < chosen[bit][0]):
                label = f"{name}[{i + net.get('offset', 0)}]" if width > 1 else name
                chosen[bit] = (key, label)
    return {bit: label for bit, (_, label) in chosen.items()}


def end_signal(graph, names, end):
    """A flip-flop's end point is best named by the register it writes; others by their net,
    or by the cell when yosys made the net's name."""
    bit, cell, ctype, pin = end
    if ctype == PORT:
        return pin
    outs = [b for _, _, b in pins(graph.cells[cell], "output")]
    register = names.get(outs[0]) if len(outs) == 1 else None
    return register or names.get(bit, cell)


def build_path(graph, best, names, end):
    bit, cell, ctype, pin = end
    cost = best[bit][0]
    cells = []
    while best[bit][1] is not None:
        cells.append(graph.arcs[bit][0])
        bit = best[bit][1]
    start_cell, start_type = graph.starts[bit]
    types = [start_type, ctype] + [graph.cells[c]["type"] for c in cells]
    return TimingPath(lut_levels=cost[0], muxf=cost[1], carry4=cost[2],
                      start_cell=start_cell, start_type=start_type,
                      start_signal=names.get(bit, start_cell), end_cell=cell, end_type=ctype,
                      end_pin=pin, end_signal=end_signal(graph, names, end),
                      cells=tuple(reversed(cells)),
                      touches_bram_dsp=any(map(is_bram_or_dsp, types)))


def deepest_end(ends, best, rank):
    reached = [e for e in ends if e[0] in best]
    return max(reached, key=lambda e: rank(best[e[0]][0]), default=None)


# -- entry points ------------------------------------------------------------------------------
def netlist_depth(netlist, top):
    """NetlistDepth of module `top` of a yosys JSON netlist (the parsed dict)."""
    modules = netlist.get("modules", {})
    if top not in modules:
        raise ValueError(f"no module {top!r} in the netlist (it has {', '.join(modules) or 'none'})")
    module = modules[top]
    graph = Graph(module)
    order = graph.topological_order()
    names = bit_names(module)

    def path(best, ends, rank):
        end = deepest_end(ends, best, rank)
        return build_path(graph, best, names, end) if end else None

    by_lut = longest_paths(graph, order, by_luts)
    by_chain = longest_paths(graph, order, by_carry)
    from_bram_dsp = longest_paths(graph, order, by_luts,
                                  lambda b: is_bram_or_dsp(graph.starts[b][1]))
    to_bram_dsp = [e for e in graph.ends if is_bram_or_dsp(e[2])]
    bram_dsp = [p for p in (path(from_bram_dsp, graph.ends, by_luts),
                            path(by_lut, to_bram_dsp, by_luts)) if p]
    histogram = {}
    for end in graph.ends:
        if end[0] in by_lut:
            level = by_lut[end[0]][0][0]
            histogram[level] = histogram.get(level, 0) + 1
    return NetlistDepth(
        deepest=path(by_lut, graph.ends, by_luts),
        longest_carry=path(by_chain, graph.ends, by_carry),
        deepest_bram_dsp=max(bram_dsp, key=lambda p: by_luts((p.lut_levels, p.muxf, p.carry4)),
                             default=None),
        endpoint_histogram=dict(sorted(histogram.items())),
        unknown_types=tuple(sorted(graph.unknown)))


def depth_from_file(path, top):
    """NetlistDepth of module `top` in the JSON netlist at `path` (from JSON_SCRIPT)."""
    with open(path) as f:
        return netlist_depth(json.load(f), top)
