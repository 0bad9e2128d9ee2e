"""Board build (hw/build.py): CLI errors, generated files and report, resource estimate and the
Arty's netlist path depth, Vivado's reports (a stand-in `vivado`), run_stage's time limit and
progress lines (hw/flow/run.py), the UART's bit timing (hw/link/uart.py, in Amaranth's simulator),
and the UART + framing path in Verilator against the golden model and hw.core.latency."""
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
import zlib
from fractions import Fraction

import numpy as np
import pytest
from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from hw.link.framing import FramedAccelerator
from hw.link.protocol import (ANSWER, BITS_PER_BYTE, ERR_BUSY, ERR_CHECKSUM, ERR_LENGTH, ERR_START,
                              ERR_TIMEOUT, ERROR, FRAME_TIMEOUT_MS, encode_frame, min_frame_timeout_ms)
from hw.core.latency import latency_report
from hw.core.plan import CorePlan
from hw.compiler.schedule import build_schedule
from hw.link.uart import UARTRx, UARTTx, bit_timing
from quantize.golden import run
from quantize.qmodel import write_qmodel
from quantize.random_model import random_images, random_qmodel
from sim.link_session import noisy_session, soak, tally
from sim.runner import run_cocotb
from sim.usb_host import usb_packets
from tests.cli_checks import one_stderr_line

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPORT_KEYS = {"board", "fits", "luts", "ffs", "bram36", "dsp", "clock_mhz", "cycles_per_image",
               "images_per_s", "layers", "link_images_per_s", "baud", "capacity"}


def tiny_model(seed=0):
    return random_qmodel(depth=8, width=1, input_size=8, act_bits=8, seed=seed)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    qm = tiny_model()
    path = tmp_path_factory.mktemp("qmodel") / "quant"
    write_qmodel(path / "qmodel.npz", qm.manifest, qm.tensors)
    return path


def cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "hw.build", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


# -- command line ------------------------------------------------------------------------------
def test_unknown_board_lists_the_supported_ones(model_dir):
    r = cli("--board", "nexys", "--model", str(model_dir), "--no-estimate")
    assert r.returncode == 2
    line = r.stderr.strip()
    assert "\n" not in line and "error:" in line
    assert "nexys" in line and "arty_a7" in line and "arty_a7_100" in line


def test_missing_model_says_how_to_make_it(tmp_path):
    r = cli("--model", str(tmp_path / "nothing"), "--no-estimate", "--out", str(tmp_path / "o"))
    assert r.returncode == 2
    assert "\n" not in r.stderr.strip() and "make train && make quantize" in r.stderr


def test_bad_lanes_is_one_line(model_dir, tmp_path):
    r = cli("--model", str(model_dir), "--lanes", "6", "--no-estimate", "--out", str(tmp_path))
    assert r.returncode == 2 and "\n" not in r.stderr.strip() and "lanes" in r.stderr


@pytest.mark.parametrize("args,words", [
    (["--baud", "13000000"], ["--baud", "integer 300..12000000 (the USB-UARTs' range)", "13000000"]),
    (["--board", "ulx3s_85f", "--baud", "6000000"],
     ["--baud 6000000", "USB-UART maximum of 3000000", "--baud 3000000 or less"]),
    (["--board", "ulx3s_85f", "--clock-mhz", "10"],
     ["--baud 3000000", "4 clock cycles per bit", "10 MHz", "--baud 2500000 or less", "--clock-mhz"]),
    (["--baud", "0"], ["--baud", "integer 300..12000000", "'0'"]),
    (["--clock-mhz", "1e9"], ["--clock-mhz 1e+09 is outside", "Xilinx 7-series", "4.69 to 464 MHz"]),
    (["--board", "ulx3s_85f", "--clock-mhz", "1000"], ["Lattice ECP5", "3.125 to 400 MHz"]),
    (["--seed", "-1"], ["--seed", "0..2147483647", "C int"]),
    (["--estimate-timeout", "1e300"], ["--estimate-timeout", "a week"]),
    (["--lanes", "1024"], ["1024 lanes: the model's widest layer has", "or fewer"]),
    (["--pixels", "100000"], ["--pixels", "integer 1..65535"]),
])
def test_an_option_past_what_the_board_or_tools_take_is_one_line_before_any_work(model_dir, tmp_path, args, words):
    out = tmp_path / "out"
    r = cli("--model", str(model_dir), "--no-estimate", "--out", str(out), *args)
    line = r.stderr.strip()
    assert r.returncode == 2 and "\n" not in line, r.stderr
    assert all(w in line for w in words), line
    assert not out.exists()


def test_shift_add_requantizers_refuse_a_bn_model_before_writing(model_dir, tmp_path):
    out = tmp_path / "out"
    r = cli("--model", str(model_dir), "--requantizers", "shift-add", "--no-estimate", "--out", str(out))
    assert r.returncode == 2 and "\n" not in r.stderr.strip()
    assert "use --requantizers dsp" in r.stderr and not out.exists()


def test_build_writes_board_files_and_report(model_dir, tmp_path):
    out = tmp_path / "arty"
    r = cli("--board", "arty_a7", "--model", str(model_dir), "--lanes", "4", "--no-estimate",
            "--out", str(out))
    assert r.returncode == 0, r.stderr
    for name in ("top.v", "top.xdc", "top.tcl", "build_top.sh", "report.json", "report.md",
                 "layers.png"):
        assert (out / name).is_file(), name
    xdc = (out / "top.xdc").read_text()
    assert "E3" in xdc and "D10" in xdc and "A9" in xdc        # clock, UART tx, UART rx pins
    assert "xc7a35" in (out / "top.tcl").read_text()
    report = json.loads((out / "report.json").read_text())
    assert REPORT_KEYS <= set(report)
    assert report["board"] == "arty_a7" and report["estimated"] is False
    assert report["pixels_per_cycle"] == 4 and report["add_sub_lanes"] == 4 * 4 * 4     # the Arty's default
    mem = report["memory"]
    assert mem["weight_rom_bits"] >= mem["model_weight_bits"] > 0
    # Deepest tensor: 16 channels of 8x8 = 4 groups x 64 pixels; a word: 4 lanes x 8 bits.
    assert mem["activation_ram_bits"] == mem["activation_buffers"] * (4 * 64) * (4 * 8)
    assert report["fits"] is None and report["luts"] is None
    assert report["requantizers"]["multiplier"] == {"a_bits": 25, "b_bits": 18, "post_adder": True}
    assert report["capacity"] == {"luts": 20800, "ffs": 41600, "bram36": 50, "dsp": 90}
    assert report["images_per_s"] == pytest.approx(100e6 / report["cycles_per_image"])
    assert report["layers"] and all({"name", "cycles", "utilization"} <= set(l)
                                    for l in report["layers"])
    # 0xA5 + 2 length + 64 pixels + 4 CRC in, 0x5A + classes + 10 x 4 + class + 4 cycles + 4 CRC out.
    assert report["frame_bytes"] == {"in": 71, "out": 51}
    # The Arty's default: 12 Mbaud, 25/3 cycles per bit at 100 MHz; the host one frame ahead.
    assert report["baud"] == 12_000_000 and report["uart_cycles_per_bit"] == "25/3"
    assert report["uart_rate_error_ppm"] == 0
    assert report["frame_timeout_ms"] == 20 and report["frame_timeout_cycles"] == 2_000_000
    link_s, core_s = 10 * 71 / 12e6, report["cycles_per_image"] / 100e6
    assert report["link_images_per_s"] == pytest.approx(1 / link_s)
    assert report["end_to_end_images_per_s"] == pytest.approx(1 / max(link_s, core_s))
    assert "vivado" in r.stdout.lower()       # built, or said it is not installed
    assert report["xc7_path_depth"] is None                   # no estimate, no netlist
    if not shutil.which("vivado"):
        assert report["vivado"] is None and "not on PATH" in report["vivado_note"]
        assert "not on PATH" in (out / "report.md").read_text()


def test_vivados_reports_are_read_into_the_report(model_dir, tmp_path):
    """A stand-in `vivado` on PATH that leaves the "violated" fixture reports where Vivado
    writes them (tests/fixtures/vivado/README.md gives their numbers)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "vivado"
    fixtures = os.path.join(ROOT, "tests", "fixtures", "vivado", "violated")
    fake.write_text(f"#!/bin/sh\ncp '{fixtures}/top_timing.rpt' '{fixtures}/top_utilization_place.rpt' .\n")
    fake.chmod(0o755)
    out = tmp_path / "arty"
    r = subprocess.run([sys.executable, "-m", "hw.build", "--model", str(model_dir), "--lanes", "4",
                        "--no-estimate", "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                       timeout=600, env=dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}"))
    assert r.returncode == 0, r.stderr
    v = json.loads((out / "report.json").read_text())["vivado"]
    assert (v["wns_ns"], v["tns_ns"], v["failing_endpoints"], v["total_endpoints"]) == \
        (-2.318, -187.442, 212, 31876)
    assert v["timing_met"] is False and v["whs_ns"] == -0.054
    assert v["used"] == {"luts": 14873, "ffs": 11742, "bram36": 27.5, "dsp": 34}
    assert v["percent"]["luts"] == 71.5
    assert (v["timing_report"], v["utilization_report"]) == ("top_timing.rpt", "top_utilization_place.rpt")
    assert "Vivado: WNS -2.318 ns, timing NOT met" in r.stdout
    assert "| LUT | 14873 | 20800 |" in (out / "report.md").read_text()


# -- resource estimate ---------------------------------------------------------------------------
@pytest.mark.slow
def test_resource_estimate_of_a_tiny_core(model_dir, tmp_path):
    out = tmp_path / "est"
    r = cli("--board", "arty_a7_100", "--model", str(model_dir), "--lanes", "4", "--out", str(out))
    assert r.returncode == 0, r.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["estimated"] is True and report["fits"] is True
    assert 100 < report["luts"] < report["capacity"]["luts"]
    assert report["ffs"] > 50 and report["bram36"] >= 1 and report["carry4"] > 0
    assert "| LUT |" in (out / "report.md").read_text()


@pytest.mark.slow
def test_arty_build_reports_the_netlists_path_depth(model_dir, tmp_path):
    out = tmp_path / "arty"
    r = cli("--board", "arty_a7", "--model", str(model_dir), "--lanes", "4", "--pixels", "1",
            "--out", str(out))
    assert r.returncode == 0, r.stderr
    report = json.loads((out / "report.json").read_text())
    deepest = report["xc7_path_depth"]["deepest"]
    assert deepest["lut_levels"] > 0 and deepest["carry4"] >= 0
    assert deepest["logic_levels"] == deepest["lut_levels"] + deepest["muxf"] + deepest["carry4"]
    assert len(deepest["cells"]) >= deepest["lut_levels"]
    # Its ends are cells (or ports) of the netlist yosys wrote, and its signals the nets there.
    with open(out / "core" / "netlist.json") as f:
        core = json.load(f)["modules"]["core"]
    nets = {name.lstrip("\\") for name in core["netnames"]}
    for end in ("start", "end"):
        where = core["ports"] if deepest[f"{end}_type"] == "port" else core["cells"]
        assert deepest[f"{end}_cell"] in where, end
        if deepest[f"{end}_type"] != "port":
            assert core["cells"][deepest[f"{end}_cell"]]["type"] == deepest[f"{end}_type"]
        signal = deepest[f"{end}_signal"]
        assert signal.split("[")[0].lstrip("\\") in nets or signal in core["cells"], signal
    assert all(c in core["cells"] for c in deepest["cells"])
    histogram = report["xc7_path_depth"]["endpoint_histogram"]
    assert max(map(int, histogram)) == deepest["lut_levels"]
    assert f"deepest path {deepest['lut_levels']} LUT levels, {deepest['carry4']} CARRY4" in r.stdout
    assert f"deepest path: {deepest['lut_levels']} LUT levels" in (out / "report.md").read_text()


# -- run_stage (hw/flow/run.py), which runs the estimate's yosys --------------------------------
class Toggle(wiring.Component):
    o: Out(1)

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.o.eq(~self.o)
        return m


def test_run_stage_stops_a_tool_at_its_time_limit(tmp_path):
    from hw.flow.run import StageTimeout, run_stage
    code = "import os, time; open('pid', 'w').write(str(os.getpid())); time.sleep(30)"
    t0 = time.monotonic()
    with pytest.raises(StageTimeout, match="sleeper ran past its time limit of 2 s and was stopped"):
        run_stage("sleeper", [sys.executable, "-c", code], str(tmp_path), "sleeper.log",
                  progress_s=0.5, timeout_s=2)
    assert time.monotonic() - t0 < 10
    pid = int((tmp_path / "pid").read_text())
    with pytest.raises(ProcessLookupError):     # killed and reaped: no such process
        os.kill(pid, 0)


def test_run_stage_progress_lines_carry_the_status(tmp_path, capsys):
    from hw.flow.run import run_stage
    calls = []

    def status():
        calls.append(1)
        return f"pass {len(calls)}"
    seconds = run_stage("sleeper", [sys.executable, "-c", "import time; time.sleep(1.5)"],
                        str(tmp_path), "sleeper.log", progress_s=0.25, status=status)
    lines = capsys.readouterr().out.splitlines()
    assert seconds >= 1.5 and len(lines) >= 2
    assert lines == [f"  sleeper: {line.split()[1]} s, pass {i + 1}" for i, line in enumerate(lines)]
    run_stage("quick", [sys.executable, "-c", "import time; time.sleep(0.6)"], str(tmp_path),
              "quick.log", progress_s=0.25)
    assert all(re.fullmatch(r"  quick: \d+ s", line) for line in capsys.readouterr().out.splitlines())


def test_run_stage_failure_names_the_log_and_its_last_line(tmp_path):
    from hw.flow.run import StageFailed, run_stage
    code = "import sys; print('working'); print('ERROR: the last words'); sys.exit(3)"
    with pytest.raises(StageFailed) as e:
        run_stage("tool", [sys.executable, "-c", code], str(tmp_path), "tool.log")
    assert e.value.returncode == 3 and e.value.last_line == "ERROR: the last words"
    assert str(tmp_path / "tool.log") in str(e.value)


def fake_yosys(tmp_path, body):
    script = tmp_path / "fake-yosys"
    script.write_text("#!/bin/sh\n" + body + "\n")
    script.chmod(0o755)
    return str(script)


def test_estimate_past_its_time_limit_is_a_usage_error(tmp_path, monkeypatch, capsys):
    import hw.flow.yosys
    from common.cli import UsageError
    monkeypatch.setattr(hw.flow.yosys, "tool", lambda name: fake_yosys(tmp_path, "exec sleep 30"))
    with pytest.raises(UsageError, match="ran past --estimate-timeout 1.5 s and was stopped; raise "
                                         "it, pass --no-estimate"):
        hw.flow.yosys.estimate(Toggle(), str(tmp_path / "core"), timeout_s=1.5, progress_s=0.5)
    lines = capsys.readouterr().out.splitlines()
    assert lines and all(re.fullmatch(r"  yosys: \d+ s, starting", line) for line in lines)


def test_estimate_names_yosys_error_and_its_log(tmp_path, monkeypatch):
    import hw.flow.yosys
    monkeypatch.setattr(hw.flow.yosys, "tool", lambda name: fake_yosys(
        tmp_path, "echo 'core.v:3: ERROR: syntax error'; exit 1"))
    folder = tmp_path / "core"
    with pytest.raises(RuntimeError) as e:
        hw.flow.yosys.estimate(Toggle(), str(folder))
    assert str(e.value) == f"yosys failed (core.v:3: ERROR: syntax error); see {folder / 'yosys.log'}"


def test_estimate_parser_and_fit_verdict():
    from hw.flow.fit import fit_message
    from hw.flow.yosys import resources_from_stat
    from hw.board.boards import BOARDS
    stat = {"modules": {"\\core": {"num_cells_by_type": {
        "LUT2": 10, "LUT6": 5, "FDRE": 7, "FDSE": 1, "RAMB36E1": 2, "RAMB18E1": 3,
        "DSP48E1": 1, "CARRY4": 4, "MUXF7": 2}}}}
    res = resources_from_stat(stat)
    assert res == {"luts": 15, "ffs": 8, "bram36": 3.5, "dsp": 1, "carry4": 4}
    board = BOARDS["arty_a7"]
    assert fit_message(res, board, lanes=16) is None
    msg = fit_message(dict(res, luts=30000), board, lanes=16)
    assert "30000" in msg and "20800" in msg and "--lanes 8" in msg and "arty_a7_100" in msg
    assert "--pixels 1" in fit_message(dict(res, luts=30000), board, lanes=16, pixels=2)
    assert "--pixels" not in msg


# -- the UART's bit timing, in Amaranth's simulator ---------------------------------------------
CLOCK_HZ, BAUD = 100_000_000, 12_000_000      # 25/3 cycles per bit


def test_bit_timing_is_the_exact_fraction_and_states_its_error():
    t = bit_timing(CLOCK_HZ, BAUD)
    assert t.cycles == Fraction(25, 3) and t.bit_lengths(3) == [8, 8, 9]
    assert t.edges(30) == [k * CLOCK_HZ // BAUD for k in range(31)]
    assert t.rate_error_ppm == 0 and t.jitter_cycles == pytest.approx(2 / 3)
    assert bit_timing(CLOCK_HZ, 115_200).cycles == Fraction(15625, 18)
    assert bit_timing(CLOCK_HZ, 10_000_000).jitter_cycles == 0       # 10 cycles: no jitter
    assert bit_timing(CLOCK_HZ, 25_000_000).cycles == 4               # the fastest allowed
    with pytest.raises(ValueError, match="10/3 clock cycles per bit; the UART needs at least 4"):
        bit_timing(CLOCK_HZ, 30_000_000)
    # 100,000,007 Hz / 115,200 baud needs a denominator of 115,200: the nearest fraction kept
    # is off by a fraction of a ppm, and the report says how much.
    odd = bit_timing(100_000_007, 115_200)
    exact = Fraction(100_000_007, 115_200)
    assert odd.cycles != exact and odd.cycles.denominator <= 4096
    assert odd.rate_error_ppm == pytest.approx(float(exact / odd.cycles - 1) * 1e6)
    assert 0 < abs(odd.rate_error_ppm) < 1


def line_bits(data):
    """8N1: start bit, the bits LSB first, stop bit, for each byte."""
    return [b for byte in data for b in [0] + [(byte >> i) & 1 for i in range(8)] + [1]]


def test_the_transmitter_puts_edge_k_at_floor_k_cycles_per_bit():
    """Three bytes offered back to back: every change of `tx` falls at floor(j * 25/3) cycles
    after the first start bit, j the bit's place in the whole burst."""
    from amaranth.sim import Simulator
    data = [0x55, 0x0F, 0xA6]
    tx = UARTTx(bit_timing(CLOCK_HZ, BAUD))
    levels = []

    async def feed(ctx):
        ctx.set(tx.data.valid, 1)
        for byte in data:
            ctx.set(tx.data.payload, byte)
            await ctx.tick().until(tx.data.ready)      # taken at this clock edge
        ctx.set(tx.data.valid, 0)

    async def record(ctx):
        async for _, _, level in ctx.tick().sample(tx.tx):
            levels.append(level)

    sim = Simulator(tx)
    sim.add_clock(1 / CLOCK_HZ)
    sim.add_testbench(feed)
    sim.add_process(record)
    sim.run_until((len(data) + 1) * BITS_PER_BYTE * 9 / CLOCK_HZ)
    changes = [i for i in range(1, len(levels)) if levels[i] != levels[i - 1]]
    bits = line_bits(data)
    want = [j * CLOCK_HZ // BAUD for j in range(len(bits)) if bits[j] != (bits[j - 1] if j else 1)]
    assert [c - changes[0] for c in changes] == want


@pytest.mark.parametrize("host_rate", [0.97, 1.0, 1.03])
def test_the_receiver_takes_bytes_from_a_host_off_by_3_percent(host_rate):
    """Bytes back to back at 12 Mbaud x host_rate, edges at exact times between clock edges."""
    from amaranth.sim import Simulator
    data = [random.Random(7).randrange(256) for _ in range(12)]
    rx = UARTRx(bit_timing(CLOCK_HZ, BAUD))
    bit_s = 1 / (BAUD * host_rate)
    got = []

    async def host(ctx):
        await ctx.delay(0.33e-6)
        for bit in line_bits(data):
            ctx.set(rx.rx, bit)
            await ctx.delay(bit_s)

    async def sink(ctx):
        ctx.set(rx.data.ready, 1)
        async for _, _, valid, payload in ctx.tick().sample(rx.data.valid, rx.data.payload):
            if valid:
                got.append(payload)

    sim = Simulator(rx)
    sim.add_clock(1 / CLOCK_HZ)
    sim.add_testbench(host)
    sim.add_process(sink)
    sim.run_until(0.33e-6 + (len(data) + 1) * BITS_PER_BYTE * bit_s)
    assert got == data


def test_the_framings_crc_is_zlibs():
    """hw.link.framing.crc_next, byte after byte from CRC_INIT, inverted: zlib.crc32 of the
    bytes (the host's CRC), on random data and on the frame of an image."""
    import zlib

    from amaranth import Module, Signal
    from amaranth.sim import Simulator

    from hw.link.framing import CRC_INIT, crc_next
    data = bytes(random.Random(5).randrange(256) for _ in range(40)) + encode_frame(
        np.arange(24, dtype=np.uint8).reshape(1, 4, 6))
    m = Module()
    crc, byte = Signal(32, init=CRC_INIT), Signal(8)
    m.d.sync += crc.eq(crc_next(m, crc, byte, "step"))
    got = []

    async def bench(ctx):
        for b in data:
            ctx.set(byte, b)
            await ctx.tick()
            got.append(ctx.get(~crc) & 0xFFFFFFFF)

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert got == [zlib.crc32(data[:i + 1]) for i in range(len(data))]


# -- the UART + framing path in Verilator ------------------------------------------------------
def answer(logits, cls, cycles):
    body = [len(logits)]
    for v in logits:
        body += list(int(v).to_bytes(4, "little", signed=True))
    body += [int(cls)] + list(int(cycles).to_bytes(4, "little"))
    return [ANSWER] + body + list(zlib.crc32(bytes(body)).to_bytes(4, "little"))


def frame(image, checksum_delta=0, length=None):
    """The host client's request bytes, optionally corrupted (`checksum_delta` added to the
    CRC's first byte)."""
    data = list(encode_frame(image))
    if length is not None:
        data[1:3] = [length & 0xFF, length >> 8]
    data[-4] = (data[-4] + checksum_delta) & 0xFF
    return data


def one(name, data, expect, **checks):
    """An exchange of one burst and one reply."""
    return dict(name=name, frames=[data], expect=[expect], **checks)


def test_framed_accelerator_answers_like_the_golden_model(tmp_path):
    """100 MHz, 12 Mbaud (25/3 cycles per bit), the host's UART in real time: every error and
    its recovery, frames overlapping the computation, and each answer's cycle count (the frame
    timeout at its shortest, 4 byte times, so that the timeouts take little simulated time)."""
    qm = tiny_model(seed=3)
    schedule = build_schedule(qm, 8)
    timing = bit_timing(CLOCK_HZ, BAUD)
    dut = FramedAccelerator(CorePlan(schedule), timing, min_frame_timeout_ms(BAUD))
    images = random_images(4, qm.input_shape, seed=21)
    golden = run(qm, images)
    cycles = latency_report(schedule).cycles_per_image
    good = [answer(golden.logits[i], golden.classes[i], cycles) for i in range(4)]
    cls = [int(c) for c in golden.classes]
    # A third frame finds both slots held while the first image is still being computed: its
    # cycles outlast the second frame and the third's start byte on the line.
    assert cycles > (len(frame(images[0])) + 1) * BITS_PER_BYTE * timing.cycles
    exchanges = [
        one("valid", frame(images[0]), good[0], last_class=cls[0]),
        one("bad checksum", frame(images[1], checksum_delta=1), [ERROR, ERR_CHECKSUM],
            error=ERR_CHECKSUM),
        one("valid after bad checksum", frame(images[1]), good[1], last_class=cls[1]),
        one("bad length", frame(images[2], length=63), [ERROR, ERR_LENGTH]),
        one("bad start byte", [0x00, 0xA5, 0x40], [ERROR, ERR_START]),
        one("valid after bad start", frame(images[2]), good[2], last_class=cls[2]),
        one("truncated frame", frame(images[0])[:10], [ERROR, ERR_TIMEOUT], error=ERR_TIMEOUT),
        one("valid after timeout", frame(images[0]), good[0], last_class=cls[0]),
        dict(name="two frames back to back", frames=[frame(images[3]), frame(images[1])],
             expect=[good[3], good[1]], last_class=cls[1]),
        dict(name="a third frame while two are held", frames=[frame(i) for i in images[:3]],
             expect=[good[0], good[1], [ERROR, ERR_BUSY]], error=ERR_BUSY, last_class=cls[1]),
        dict(name="one frame ahead", frames=[frame(i) for i in images[1:]], ahead=1,
             expect=good[1:], last_class=cls[3]),
        one("host 2% fast", frame(images[2]), good[2], host_baud_scale=1.02, quiet_bits=40),
    ]
    plan = dict(clock_ps=10 ** 12 // CLOCK_HZ, baud=BAUD, reply_timeout_cycles=200_000, check=True,
                exchanges=exchanges)
    (tmp_path / "frames.json").write_text(json.dumps(plan))
    run_cocotb(dut, "framed", "sim.benches.framed", tmp_path / "build", test_dir=tmp_path,
               params={"frames": tmp_path / "frames.json"})


def test_a_usb_host_with_ms_gaps_inside_frames_is_answered(tmp_path):
    """The default frame timeout (20 ms) against a USB-UART's delivery (sim/usb_host.py): frames
    in 64-byte packets with gaps of up to 4 ms, and one with a 5 ms pause in its middle, answered
    like the golden model (error 4 after a quiet line: the framed test above, at the shortest
    timeout, so that it costs little simulated time)."""
    qm = tiny_model(seed=3)
    schedule = build_schedule(qm, 8)
    timing = bit_timing(CLOCK_HZ, BAUD)
    dut = FramedAccelerator(CorePlan(schedule), timing)
    assert dut.timeout_cycles == FRAME_TIMEOUT_MS * CLOCK_HZ // 1000
    images = random_images(3, qm.input_shape, seed=22)
    golden = run(qm, images)
    cycles = latency_report(schedule).cycles_per_image
    good = [answer(golden.logits[i], golden.classes[i], cycles) for i in range(3)]
    size = len(frame(images[0]))
    exchanges = [
        dict(name="5 ms pause inside the frame", frames=[frame(images[0])], expect=[good[0]],
             packets=usb_packets(size, "full", seed=1, long_pause_ms=5)),
        dict(name="two frames in USB packets", frames=[frame(i) for i in images[1:]], ahead=1,
             expect=good[1:], packets=usb_packets(2 * size, "full", seed=2)),
        one("a third", frame(images[2]), good[2]),
    ]
    plan = dict(clock_ps=10 ** 12 // CLOCK_HZ, baud=BAUD, check=True, exchanges=exchanges,
                reply_timeout_cycles=dut.timeout_cycles + 200_000)
    (tmp_path / "frames.json").write_text(json.dumps(plan))
    run_cocotb(dut, "framed", "sim.benches.framed", tmp_path / "build", test_dir=tmp_path,
               params={"frames": tmp_path / "frames.json"})


def test_the_client_over_a_noisy_line_takes_no_wrong_answer(tmp_path):
    """Bits flipped both ways at 1e-3 and bytes dropped at 1e-4: the client's own retry code
    (one frame ahead) against the framed accelerator (sim/link_session.py). Every image is
    answered exactly as the golden model says or reported once as an error; the faults cost
    retries, not answers."""
    qm = tiny_model(seed=3)
    images = random_images(12, qm.input_shape, seed=23)
    result = noisy_session(qm, images, str(tmp_path), clock_hz=CLOCK_HZ, baud=BAUD,
                           frame_timeout_ms=0.05, retries=3, seed=4, rx_flip=1e-3, tx_flip=1e-3,
                           rx_drop=1e-4, reply_timeout_s=0.001)
    counts = tally(result, run(qm, images))
    assert counts["images"] == 12 and counts["wrong"] == 0
    assert counts["correct"] >= 9 and counts["correct"] + counts["failed"] == 12
    # Retries, bounded: a frame goes out at most 1 + 3 times for its own failures and as often
    # again beside the frame before it, whose retries resend the frames behind it.
    assert counts["sent"] > 12 and all(1 <= n <= 2 * (1 + 3) for n in result["sends"])


@pytest.mark.slow       # minutes: cocotb drives every bit; make test's short one: noisy above
def test_frames_with_a_busy_usb_host_and_faults_are_answered_right(tmp_path):
    """100 frames in high-speed USB packets with gaps of up to 3 ms (sim/usb_host.py), bits
    flipped both ways at 1e-4 and bytes dropped at 1e-5, through the client's retries and the
    framed accelerator (frame timeout 5 ms): every answer the golden model's, none wrong, and no
    image needs more than its retries."""
    frames = 100
    qm = tiny_model(seed=5)
    images = random_images(frames, qm.input_shape, seed=24)
    packets = usb_packets(len(encode_frame(images[0])) * frames * 2, "high", seed=6)
    result = noisy_session(qm, images, str(tmp_path), clock_hz=CLOCK_HZ, baud=BAUD,
                           frame_timeout_ms=5.0, retries=3, seed=7, rx_flip=1e-4, tx_flip=1e-4,
                           rx_drop=1e-5, packets=packets, reply_timeout_s=0.01)
    counts = tally(result, run(qm, images))
    assert counts["wrong"] == 0 and counts["correct"] + counts["failed"] == frames
    assert counts["failed"] <= frames // 100 and max(result["sends"]) <= 2 * (1 + 3)


@pytest.mark.slow       # about an hour on one core: python -m bench.link_soak is the same run
def test_a_soak_of_10000_frames_with_gaps_and_faults_is_answered_right(tmp_path):
    """sim/link_session.py's soak: 10,000 frames in USB packets with gaps, bits flipped both
    ways at 1e-5, bytes dropped at 1e-6, every answer checked against the golden model."""
    result, golden = soak(10_000, str(tmp_path))
    counts = tally(result, golden)
    assert counts["images"] == 10_000 and counts["wrong"] == 0
    assert counts["correct"] + counts["failed"] == 10_000 and counts["failed"] <= 10
    assert max(result["sends"]) <= 2 * (1 + 3)


def test_a_model_whose_weights_exceed_the_boards_block_ram_exits_1_before_planning(tmp_path, capsys):
    import hw.build
    big = random_qmodel(depth=8, width=10, input_size=4, calib_images=4)   # 160-640 channels
    write_qmodel(tmp_path / "quant" / "qmodel.npz", big.manifest, big.tensors)
    bits = sum(op["in_channels"] * op["out_channels"] * op["kernel"] ** 2
               for op in big.ops if op["op"] == "conv")
    assert bits > 50 * 36 * 1024                                 # the Arty's 50 RAMB36
    status = hw.build.main(["--model", str(tmp_path / "quant"), "--out", str(tmp_path / "out")])
    err = one_stderr_line(capsys.readouterr().err, f"{bits:,} bits", "1,843,200", "50 RAMB36",
                          prefix="python -m hw.build: the model cannot fit the Digilent Arty A7-35T")
    assert status == 1 and f"{bits / 1e6:.1f} Mbit" in err
    assert not (tmp_path / "out").exists()


def test_a_model_with_keras_padding_is_refused_in_one_line(tmp_path, capsys):
    import hw.build
    keras = random_qmodel(depth=8, width=1, input_size=8, calib_images=4, padding="keras")
    write_qmodel(tmp_path / "quant" / "qmodel.npz", keras.manifest, keras.tensors)
    status = hw.build.main(["--model", str(tmp_path / "quant"), "--out", str(tmp_path / "out")])
    one_stderr_line(capsys.readouterr().err, "s2b1_conv1_acc pads [0, 1, 0, 1]", "pads every side alike",
                    prefix="python -m hw.build: error: ")
    assert status == 2 and not (tmp_path / "out").exists()


def test_a_core_that_does_not_fit_exits_1_with_the_numbers(model_dir, tmp_path, monkeypatch, capsys):
    import hw.build
    import hw.flow.board_build
    huge = dict(luts=25000, ffs=1000, bram36=60, dsp=0, carry4=9)

    def fake_estimate(accel, folder, timeout_s=None, netlist=False):
        accel._MustUse__silence = True       # not elaborated: no "created but never used"
        if netlist:                          # a netlist with no paths
            os.makedirs(folder)
            with open(os.path.join(folder, "netlist.json"), "w") as f:
                json.dump({"modules": {"core": {"ports": {}, "cells": {}, "netnames": {}}}}, f)
        return huge, 1.0
    monkeypatch.setattr(hw.flow.board_build, "estimate", fake_estimate)
    status = hw.build.main(["--model", str(model_dir), "--lanes", "4", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert status == 1 and "\n" not in err
    assert "LUT 25000 > 20800" in err and "BRAM36 60 > 50" in err and "--lanes 2" in err
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["fits"] is False and report["luts"] == 25000
    assert "Does not fit" in (tmp_path / "report.md").read_text()
