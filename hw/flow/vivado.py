"""Vivado where it is installed: the Arty build's build_top.sh run (`run_vivado`), and the figures
from the reports of an amaranth Xilinx build.

amaranth's Xilinx platform has Vivado write, among others, `{name}_timing.rpt`
(report_timing_summary after route_design) and `{name}_utilization_place.rpt` (report_utilization
after place_design), and the same two after synthesis (`{name}_timing_synth.rpt`,
`{name}_utilization_synth.rpt`). `read_reports(folder, name)` reads one pair into a dict:

* from the timing summary's "Design Timing Summary" table: `wns_ns` (worst negative slack,
  setup; negative means a path misses the clock), `tns_ns` (total negative slack),
  `failing_endpoints` and `total_endpoints` (setup), `whs_ns` / `ths_ns` and
  `hold_failing_endpoints` (hold); None where Vivado writes NA. `timing_met` is Vivado's own
  verdict: True for "All user specified timing constraints are met.", False for "Timing
  constraints are not met.", None when the design has no timing constraints.
* from the utilization report: `used`, `available` and `percent` of `luts` (Slice LUTs), `ffs`
  (Slice Registers), `bram36` (Block RAM Tile: a RAMB18 counts half) and `dsp` (DSPs), the keys
  of the yosys estimate (hw.flow.report).

A missing file, or a report whose tables are not laid out as Vivado writes them, raises
ReportError naming the file.
"""
import os
import re
import shutil
import subprocess

REPORTS = {"implemented": ("{name}_timing.rpt", "{name}_utilization_place.rpt"),
           "synthesized": ("{name}_timing_synth.rpt", "{name}_utilization_synth.rpt")}

# Design Timing Summary column -> key
TIMING_COLUMNS = {"WNS(ns)": "wns_ns", "TNS(ns)": "tns_ns", "TNS Failing Endpoints": "failing_endpoints",
                  "TNS Total Endpoints": "total_endpoints", "WHS(ns)": "whs_ns", "THS(ns)": "ths_ns",
                  "THS Failing Endpoints": "hold_failing_endpoints"}
VERDICTS = {"All user specified timing constraints are met.": True,
            "Timing constraints are not met.": False,
            "There are no user specified timing constraints.": None}
# report_utilization "Site Type" row -> key
SITES = {"Slice LUTs": "luts", "Slice Registers": "ffs", "Block RAM Tile": "bram36", "DSPs": "dsp"}


class ReportError(ValueError):
    """A Vivado report is missing or not laid out as expected (the message names the file)."""


def find_reports(folder, name, stage="implemented"):
    """{"timing": path, "utilization": path} of build `name` in `folder` at `stage`
    ("implemented": after place and route; "synthesized"); ReportError naming what is missing."""
    if stage not in REPORTS:
        raise ValueError(f"stage {stage!r}: one of {', '.join(REPORTS)}")
    paths = dict(zip(("timing", "utilization"),
                     (os.path.join(folder, f.format(name=name)) for f in REPORTS[stage])))
    missing = [p for p in paths.values() if not os.path.isfile(p)]
    if missing:
        raise ReportError(f"no Vivado report {' or '.join(missing)} (has Vivado run "
                          f"{os.path.join(folder, 'build_' + name + '.sh')} to the end?)")
    return paths


def read_reports(folder, name, stage="implemented"):
    """The timing and utilization figures of build `name` in `folder` (module docstring)."""
    paths = find_reports(folder, name, stage)
    return dict(stage=stage, timing_report=paths["timing"], utilization_report=paths["utilization"],
                **parse_timing_summary(read_text(paths["timing"]), paths["timing"]),
                **parse_utilization(read_text(paths["utilization"]), paths["utilization"]))


def read_text(path):
    with open(path, errors="replace") as f:
        return f.read()


def number(text):
    """A report figure as int or float; None for Vivado's NA. Vivado writes a utilization
    under 0.01 % as "<0.01": read as 0.01, the bound it gives."""
    if text == "NA":
        return None
    value = float(text.lstrip("<"))
    return int(value) if re.fullmatch(r"-?\d+", text) else value


def parse_timing_summary(text, path):
    """WNS, TNS, WHS, THS, failing endpoints and the verdict of a report_timing_summary text."""
    lines = text.splitlines()
    try:
        at = next(i for i, line in enumerate(lines) if line.strip() == "| Design Timing Summary")
        head = next(i for i in range(at, min(at + 8, len(lines))) if "WNS(ns)" in lines[i])
    except StopIteration:
        raise ReportError(f"{path}: no Design Timing Summary table (not a report_timing_summary "
                          "report?)") from None
    columns = re.split(r"\s{2,}", lines[head].strip())
    values = next((line.split() for line in lines[head + 2:head + 5] if line.strip()), [])
    if len(values) != len(columns) or not set(TIMING_COLUMNS) <= set(columns):
        raise ReportError(f"{path}: the Design Timing Summary has columns {columns} and values "
                          f"{values}, not the layout expected")
    try:
        figures = {TIMING_COLUMNS[c]: number(v) for c, v in zip(columns, values) if c in TIMING_COLUMNS}
    except ValueError:
        raise ReportError(f"{path}: Design Timing Summary values {values} are not numbers") from None
    verdicts = [VERDICTS[line.strip()] for line in lines[head:] if line.strip() in VERDICTS]
    if not verdicts:
        raise ReportError(f"{path}: no verdict line after the Design Timing Summary "
                          f"(one of: {'; '.join(VERDICTS)})")
    return dict(figures, timing_met=verdicts[0])


def table_cells(line):
    return [c.strip() for c in line.strip().strip("|").split("|")]


def parse_utilization(text, path):
    """used / available / percent of Slice LUTs, Slice Registers, Block RAM Tile and DSPs from a
    report_utilization text: each row read by its table's header (newer Vivados add a
    Prohibited column)."""
    used, available, percent = {}, {}, {}
    header = None
    for line in text.splitlines():
        if not line.startswith("|"):
            continue
        cells = table_cells(line)
        if cells[0] == "Site Type":
            header = cells
            continue
        key = SITES.get(cells[0].rstrip("*").strip())    # "Slice LUTs*" after synthesis
        if key is None or key in used:
            continue
        if header is None or not {"Used", "Available", "Util%"} <= set(header) \
                or len(cells) != len(header):
            raise ReportError(f"{path}: the {cells[0]!r} row is not in a Site Type | Used | ... | "
                              "Available | Util% table")
        row = dict(zip(header, cells))
        try:
            used[key], available[key], percent[key] = (number(row[c]) for c in ("Used", "Available", "Util%"))
        except ValueError:
            raise ReportError(f"{path}: the {cells[0]!r} row {cells} is not numbers") from None
    missing = [site for site, key in SITES.items() if key not in used]
    if missing:
        raise ReportError(f"{path}: no {', '.join(missing)} row (not a report_utilization report?)")
    return dict(used=used, available=available, percent=percent)


def run_vivado(folder, out):
    """build_top.sh where `vivado` is on PATH, then its timing and utilization reports
    (`read_reports`); returns (the figures or None, None or why there are none)."""
    if not shutil.which("vivado"):
        print(f"vivado is not installed: no bitstream; run build_top.sh in {out} where it is")
        return None, "vivado is not on PATH: build_top.sh did not run"
    print("running Vivado (build_top.sh) ...", flush=True)
    subprocess.run(["bash", "build_top.sh"], cwd=folder, check=True)
    try:
        figures = read_reports(folder, "top")
    except ReportError as e:
        return None, f"Vivado ran, but its reports could not be read: {e}"
    # The reports' names, not paths: `folder` is renamed to --out at the end.
    return dict(figures, timing_report=os.path.basename(figures["timing_report"]),
                utilization_report=os.path.basename(figures["utilization_report"])), None
