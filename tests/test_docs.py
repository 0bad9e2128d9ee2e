"""Docs that cannot rot: docs/board.md's tables against the code they describe, and the doctests.

- the options table against hw.build's argument parser (names and defaults);
- the protocol tables against hw/link/protocol.py's constants and frames, and the
  link-rate figures recomputed from the code;
- the report fields table against hw.flow.report.build_report's keys;
- every docstring example (doctest) in the modules that have them.
"""
import argparse
import doctest
import importlib
import io
import os
import re
import zlib
from types import SimpleNamespace

import numpy as np
import pytest

from hw.board.boards import BOARDS
from hw.link import protocol as wire_protocol
from hw.link.protocol import ERROR_NAMES, encode_frame, frame_bytes, link_images_per_s, read_reply
from hw.link.uart import bit_timing

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BOARD_MD = os.path.join(ROOT, "docs", "board.md")


def read_doc(path=BOARD_MD):
    with open(path) as f:
        return f.read()


def section(text, heading):
    """The text under a `## heading` up to the next `## `."""
    start = text.index(f"## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start:] if end < 0 else text[start:end]


def table_after(text, header):
    """Rows (lists of stripped cells) of the Markdown table whose header row starts with `header`."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(header):
            rows = []
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                rows.append([c.strip() for c in row.strip().strip("|").split("|")])
            return rows
    raise AssertionError(f"no table starting {header!r}")


def unquote(cell):
    return cell.replace("`", "").strip()


# -- options -----------------------------------------------------------------------------------
def parser_options():
    from hw.build import build_parser
    return {a.option_strings[-1]: a for a in build_parser()._actions
            if a.option_strings and not isinstance(a, argparse._HelpAction)}


def documented_options():
    rows = table_after(read_doc(), "| option | default | meaning |")
    return {unquote(r[0]): (unquote(r[1]), r[2]) for r in rows}


def test_options_table_lists_the_parsers_options():
    assert set(documented_options()) == set(parser_options())


def test_options_table_defaults_are_the_parsers():
    import hw.build
    # What the code does with the options whose parser default is None (hw/build.py).
    none_means = {"--model": hw.build.DEFAULT_MODEL,
                  "--out": hw.build.default_out(SimpleNamespace(name="BOARD")),
                  "--baud": "board's maximum",
                  "--pixels": "the board's: " + ", ".join(f"{b.name} {b.pixels_per_cycle}" for b in BOARDS.values())}
    actions = parser_options()
    for option, (doc, _) in documented_options().items():
        action = actions[option]
        if isinstance(action, argparse._StoreTrueAction):
            assert doc == "off" and action.default is False, option
        elif action.default is None:
            assert option in none_means, f"{option}: say in none_means what None stands for"
            assert doc == none_means[option].replace(os.sep, "/"), option
        else:
            assert type(action.default)(doc) == action.default, (option, doc, action.default)


def test_none_defaults_mean_what_the_table_says(tmp_path, monkeypatch):
    import hw.build
    from common.cli import UsageError
    monkeypatch.chdir(tmp_path)               # no runs/default/quant here
    with pytest.raises(UsageError, match="no quantized model at runs/default/quant; make it with"):
        hw.build.load_model(None)
    for board in BOARDS.values():
        assert hw.build.default_out(board) == os.path.join("build", board.name)


def test_board_option_names_every_board():
    meaning = documented_options()["--board"][1]
    assert set(re.findall(r"`(\w+)`", meaning)) == set(BOARDS)


def test_baud_and_pixels_options_give_every_boards_default(tmp_path, monkeypatch):
    """The --baud row names each board's rate, and a build without --baud uses it; the same
    for --pixels."""
    import hw.build
    meaning = documented_options()["--baud"][1]
    assert dict(re.findall(r"`(\w+)` (\d+)", meaning)) == {b.name: str(b.max_baud) for b in BOARDS.values()}

    def stop(path):          # the model is loaded once the options are settled: stop there
        raise hw.build.UsageError("stopped at the model")
    monkeypatch.setattr(hw.build, "load_model", stop)
    for board in BOARDS.values():
        args = hw.build.build_parser().parse_args(["--board", board.name, "--out", str(tmp_path / board.name)])
        with pytest.raises(hw.build.UsageError, match="stopped at the model"):
            hw.build.build(args)
        assert args.baud == board.max_baud and args.pixels == board.pixels_per_cycle


def test_module_usage_names_every_option():
    import hw.build
    usage = hw.build.__doc__.split("\n\n")[1]
    assert set(re.findall(r"--[a-z][a-z-]*", usage)) == set(parser_options())


# -- protocol ----------------------------------------------------------------------------------
def byte(cell):
    """`0xA5` -> 0xA5."""
    m = re.fullmatch(r"0x([0-9A-Fa-f]{2})", unquote(cell))
    assert m, cell
    return int(m.group(1), 16)


def protocol():
    return section(read_doc(), "Protocol (8N1, `--baud`)")


def test_request_table_is_the_clients_frame():
    rows = table_after(protocol().split("Host to board")[1], "| bytes | value |")
    assert [r[0] for r in rows] == ["1", "2", "length", "4"]
    assert byte(rows[0][1]) == wire_protocol.START
    assert "little-endian" in rows[1][1] and "CRC-32 (zlib's) of the two length bytes and the pixels" in rows[3][1]
    image = (5 * np.arange(2 * 3 * 4) % 256).astype(np.uint8).reshape(2, 3, 4)
    data = encode_frame(image)
    assert data[0] == wire_protocol.START and data[1] | data[2] << 8 == 24
    assert data[-4:] == zlib.crc32(data[1:-4]).to_bytes(4, "little")
    assert len(data) == 1 + 2 + 24 + 4 == frame_bytes(image.shape, 10)["in"]


def test_answer_table_is_the_framings_answer():
    rows = table_after(protocol().split("Board to host")[1], "| bytes | value |")
    assert [r[0] for r in rows] == ["1", "1", f"{wire_protocol.LOGIT_BYTES} x N", "1", str(wire_protocol.CYCLE_BYTES), "4"]
    assert byte(rows[0][1]) == wire_protocol.ANSWER
    assert f"each {wire_protocol.LOGIT_BYTES} bytes little-endian two's complement" in rows[2][1]
    assert "clock cycles" in rows[4][1] and "unsigned little-endian" in rows[4][1]
    assert "CRC-32 (zlib's) of every byte after `0x5A`" in rows[5][1]
    logits = [-3, 70000, 0]
    body = bytes([3]) + b"".join(
        v.to_bytes(wire_protocol.LOGIT_BYTES, "little", signed=True) for v in logits) + bytes([1]) + \
        (66_638).to_bytes(wire_protocol.CYCLE_BYTES, "little")
    reply = bytes([byte(rows[0][1])]) + body + zlib.crc32(body).to_bytes(4, "little")
    assert len(reply) == frame_bytes((1, 1, 1), 3)["out"]
    got = read_reply(io.BytesIO(reply).read)
    assert got.logits == logits and got.cls == 1 and got.cycles == 66_638


def test_error_table_is_the_framings_error_codes():
    text = protocol()
    m = re.search(r"the board answers `(0x[0-9A-Fa-f]{2})` and a code byte", text)
    assert m and byte(m.group(1)) == wire_protocol.ERROR
    rows = table_after(text, "| code | error | when the answer comes |")
    documented = {int(r[0]): r[1] for r in rows}
    # Each constant and the words its row must contain.
    meaning = {"ERR_START": f"first byte is not `0x{wire_protocol.START:02X}`",
               "ERR_LENGTH": "length is not C x H x W", "ERR_CHECKSUM": "checksum mismatch",
               "ERR_TIMEOUT": "no byte for", "ERR_BUSY": "more than one frame ahead"}
    codes = {name: getattr(wire_protocol, name) for name in dir(wire_protocol) if name.startswith("ERR_")}
    assert set(codes) == set(meaning)
    assert set(documented) == set(codes.values())
    for name, code in codes.items():
        assert meaning[name] in documented[code], (name, code, documented[code])
    assert set(ERROR_NAMES) == set(codes.values())   # the client names every code


def test_every_protocol_byte_in_the_docs_is_a_framing_constant():
    constants = {wire_protocol.START, wire_protocol.ANSWER, wire_protocol.ERROR}
    for text in (protocol(), wire_protocol.__doc__):
        found = {int(h, 16) for h in re.findall(r"0x([0-9A-Fa-f]{2})\b", text)}
        assert found and found <= constants, found - constants


def test_the_frame_layout_is_written_in_one_module():
    """The gateware and the client point at hw/link/protocol.py instead of restating its bytes."""
    import hw.host.client
    import hw.link.framing
    for module in (hw.link.framing, hw.host.client):
        assert "hw/link/protocol.py" in module.__doc__
        assert not re.findall(r"0x[0-9A-Fa-f]{2}\b", module.__doc__), module.__name__


def number(text):
    return float(text.replace(",", ""))


def test_link_rate_sentences():
    """The figures of the link-rate sentences, recomputed: the frames' bytes, the link's rate
    with the host one frame ahead, the core's images/s (hw.core.latency, the make-train
    architecture: WRN-20-1 on 1x28x28, 10 classes) and what the two make end to end."""
    from hw.core.latency import latency_report
    from hw.flow.report import end_to_end_images_per_s
    from hw.compiler.schedule import build_schedule
    from quantize.random_model import random_qmodel
    text = " ".join(read_doc().split())
    m = re.search(r"At ([\d,]+) baud \(the Arty's default\) the link carries ([\d,.]+) images/s of "
                  r"(\d+)x(\d+) \((\d+) bytes in, (\d+) out per image, the host one frame ahead\); "
                  r"with the core's ([\d,.]+) images/s at (\d+) MHz \((\d+) lanes x (\d+) pixels\) "
                  r"that makes ([\d,.]+) images/s end to end", text)
    assert m, "the link-rate sentence in docs/board.md"
    baud, link, h, w, n_in, n_out, core, mhz, lanes, pixels, both = m.groups()
    assert int(number(baud)) == BOARDS["arty_a7"].max_baud
    frames = frame_bytes((1, int(h), int(w)), 10)
    assert frames == {"in": int(n_in), "out": int(n_out)}
    assert f"{link_images_per_s(frames, number(baud)):,.1f}" == link
    qm = random_qmodel(depth=20, width=1, in_channels=1, num_classes=10, input_size=int(h), seed=0)
    core_rate = latency_report(build_schedule(qm, int(lanes), int(pixels)), number(mhz)).images_per_s
    assert f"{core_rate:,.1f}" == core
    assert f"{end_to_end_images_per_s(link_images_per_s(frames, number(baud)), core_rate):,.1f}" == both
    m = re.search(r"At ([\d,]+) baud \(the ULX3S's default\) the link carries ([\d,.]+) images/s", text)
    assert m and int(number(m.group(1))) == BOARDS["ulx3s_85f"].max_baud
    assert f"{link_images_per_s(frames, number(m.group(1))):,.1f}" == m.group(2)


# -- report fields -----------------------------------------------------------------------------
def test_ecp5_report_fields_table_is_what_routing_adds():
    from hw.core.latency import latency_report
    from hw.compiler.memory_images import memory_bits
    from hw.core.plan import CorePlan
    from hw.flow.report import build_report
    from hw.compiler.schedule import build_schedule
    from quantize.random_model import random_qmodel
    qm = random_qmodel(depth=8, width=1, input_size=8, act_bits=8, seed=0)
    schedule = build_schedule(qm, 4, 1)
    plan = CorePlan(schedule)
    common = dict(bit_timing=bit_timing(100e6, 115200), requantizers=plan.requantizer_summary())
    args = (BOARDS["ulx3s_85f"], qm, latency_report(schedule), memory_bits(qm, schedule, plan.images))
    routed = dict(used={}, available={}, fmax_mhz=41.5, timing_met=False, worst_path=None)
    added = set(build_report(*args, post_route=routed, **common)) - set(build_report(*args, **common))
    rows = table_after(read_doc(), "| ECP5 key | meaning |")
    keys = {k for r in rows for k in re.findall(r"`(\w+)`", r[0])}
    assert keys == added


def test_report_fields_table_is_build_reports_keys():
    from hw.core.latency import latency_report
    from hw.compiler.memory_images import memory_bits
    from hw.core.plan import CorePlan
    from hw.flow.report import build_report
    from hw.compiler.schedule import build_schedule
    from quantize.random_model import random_qmodel
    qm = random_qmodel(depth=8, width=1, input_size=8, act_bits=8, seed=0)
    schedule = build_schedule(qm, 4, 1)
    plan = CorePlan(schedule)
    rep = build_report(BOARDS["arty_a7"], qm, latency_report(schedule),
                       memory_bits(qm, schedule, plan.images), bit_timing=bit_timing(100e6, 115200),
                       requantizers=plan.requantizer_summary())
    rows = table_after(read_doc(), "| key | meaning |")
    keys = {k for r in rows for k in re.findall(r"`(\w+)`", r[0])}
    assert keys == set(rep)
    documented = {unquote(r[0]): r[1] for r in rows}
    for field, value in (("capacity", rep["capacity"]), ("memory", rep["memory"]),
                         ("layers", rep["layers"][0]), ("frame_bytes", rep["frame_bytes"]),
                         ("requantizers", rep["requantizers"])):
        assert set(re.findall(r"`(\w+)`", documented[field])) == set(value), field


# -- doctests ----------------------------------------------------------------------------------
PACKAGES = ("common", "training", "quantize", "hw", "sim", "bench")
# Modules known to hold examples: the scan below must find at least these.
WITH_EXAMPLES = {"common.cli", "common.files", "hw.link.protocol", "hw.flow.report", "hw.core.latency",
                 "training.graph", "training.lr_schedule"}


def modules_with_examples():
    found = []
    for package in PACKAGES:
        for folder, _, names in sorted(os.walk(os.path.join(ROOT, package))):
            dotted = os.path.relpath(folder, ROOT).replace(os.sep, ".")
            for name in sorted(names):
                if not name.endswith(".py"):
                    continue
                with open(os.path.join(folder, name)) as f:
                    if ">>> " in f.read():
                        found.append(dotted if name == "__init__.py" else f"{dotted}.{name[:-3]}")
    return found


def test_the_scan_finds_the_examples():
    assert WITH_EXAMPLES <= set(modules_with_examples())


@pytest.mark.parametrize("name", modules_with_examples())
def test_doctests(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0, result


DOCS_WITH_EXAMPLES = {"hardware.md"}     # formulas stated in the docs, run as doctests


def docs_with_examples():
    folder = os.path.join(ROOT, "docs")
    return sorted(n for n in os.listdir(folder)
                  if n.endswith(".md") and ">>> " in open(os.path.join(folder, n)).read())


def test_the_doc_scan_finds_the_examples():
    assert DOCS_WITH_EXAMPLES <= set(docs_with_examples())


@pytest.mark.parametrize("name", docs_with_examples())
def test_doc_examples(name):
    result = doctest.testfile(os.path.join(ROOT, "docs", name), module_relative=False,
                              optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0, result


# -- the core's block diagram ------------------------------------------------------------------
def test_block_diagram_names_the_classes_the_accelerator_joins():
    """docs/hardware.md's diagram carries exactly the component classes hw/core/accelerator.py uses."""
    import inspect

    from amaranth.lib import wiring

    import hw.core.accelerator
    text = open(os.path.join(ROOT, "docs", "hardware.md")).read()
    block = text.split("## The core, as its classes", 1)[1].split("```")[1]
    drawn = set(re.findall(r"\b[A-Z][A-Za-z]+\b", block))
    parts = {name for name, obj in vars(hw.core.accelerator).items()
             if inspect.isclass(obj) and issubclass(obj, wiring.Component) and obj is not hw.core.accelerator.Accelerator}
    assert parts == drawn, (parts ^ drawn)


# -- the rooms of hw/ ----------------------------------------------------------------------------
def hw_imports(path):
    """The hw modules a file imports (at any depth of the file: function-level imports count)."""
    import ast
    found = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "hw":
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "hw")
    return found


def test_the_rooms_table_is_the_tree_and_its_imports():
    """docs/hardware.md's table of hw/'s rooms: every room is a folder (or file) that exists,
    every folder of hw/ is in it, and no room imports from a room its row does not name."""
    text = open(os.path.join(ROOT, "docs", "hardware.md")).read()
    rows = table_after(section(text, "Where things live"), "| room |")
    rooms = {unquote(r[0]).rstrip("/"): r[2] for r in rows}
    hw_dir = os.path.join(ROOT, "hw")
    folders = {f"hw/{n}" for n in os.listdir(hw_dir)
               if os.path.isfile(os.path.join(hw_dir, n, "__init__.py"))}
    assert folders <= set(rooms) and all(os.path.exists(os.path.join(ROOT, r)) for r in rooms)
    names = {r.split("/")[1].removesuffix(".py") for r in rooms}
    for room, allowed in rooms.items():
        files = [os.path.join(ROOT, room)] if room.endswith(".py") else \
            [os.path.join(ROOT, room, n) for n in os.listdir(os.path.join(ROOT, room)) if n.endswith(".py")]
        used = {m.split(".")[1] for f in files for m in hw_imports(f) if m.count(".") >= 1} - {room.split("/")[1]}
        assert used <= names, (room, used - names)
        named = {n for n in names if re.search(rf"\b{n}\b", allowed)}
        assert used <= named, f"{room} imports from {sorted(used - named)}, its row names {allowed!r}"


def test_the_host_client_imports_only_the_protocol():
    modules = hw_imports(os.path.join(ROOT, "hw", "host", "client.py"))
    assert modules == {"hw.link.protocol"}, modules


def test_every_hw_path_in_the_docs_exists():
    for name in ["README.md"] + [f"docs/{n}" for n in os.listdir(os.path.join(ROOT, "docs"))
                                 if n.endswith(".md") and n != "history.md"]:
        text = open(os.path.join(ROOT, name)).read()
        for path in set(re.findall(r"\bhw/[\w/]+\.py\b", text)):
            assert os.path.isfile(os.path.join(ROOT, path)), f"{name} names {path}"
