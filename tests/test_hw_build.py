"""Board build (hw/build.py): CLI errors, generated files and report, resource estimate, and the
UART + framing path in Verilator against the golden model."""
import json
import os
import subprocess
import sys

import pytest

from hw.client import encode_frame
from hw.framing import (ANSWER, ERR_CHECKSUM, ERR_LENGTH, ERR_START, ERR_TIMEOUT, ERROR,
                        FramedAccelerator)
from hw.plan import CorePlan
from hw.schedule import build_schedule
from quantize.golden import run
from quantize.qmodel import write_qmodel
from quantize.random_model import random_images, random_qmodel
from sim.runner import run_cocotb

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
    assert report["pixels"] == 2 and report["add_sub_lanes"] == 4 * 4 * 2     # the default
    mem = report["memory"]
    assert mem["weight_rom_bits"] >= mem["model_weight_bits"] > 0
    # Deepest tensor: 16 channels of 8x8 = 4 groups x 64 pixels; a word: 4 lanes x 8 bits.
    assert mem["activation_ram_bits"] == mem["activation_buffers"] * (4 * 64) * (4 * 8)
    assert report["fits"] is None and report["luts"] is None
    assert report["capacity"] == {"luts": 20800, "ffs": 41600, "bram36": 50, "dsp": 90}
    assert report["images_per_s"] == pytest.approx(100e6 / report["cycles_per_image"])
    assert report["layers"] and all({"name", "cycles", "utilization"} <= set(l)
                                    for l in report["layers"])
    # 0xA5 + 2 length + 64 pixels + checksum in, 0x5A + classes + 10 x 4 + class out.
    assert report["frame_bytes"] == {"in": 68, "out": 43}
    assert report["link_images_per_s"] == pytest.approx(115200 / (10 * (68 + 43)))
    assert "vivado" in r.stdout.lower()       # built, or said it is not installed


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


def test_estimate_parser_and_fit_verdict():
    from hw.build import fit_message, resources_from_stat
    from hw.boards import BOARDS
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


# -- the UART + framing path in Verilator ------------------------------------------------------
def answer(logits, cls):
    out = [ANSWER, len(logits)]
    for v in logits:
        out += list(int(v).to_bytes(4, "little", signed=True))
    return out + [int(cls)]


def frame(image, checksum_delta=0, length=None):
    """The host client's request bytes, optionally corrupted."""
    data = list(encode_frame(image))
    if length is not None:
        data[1:3] = [length & 0xFF, length >> 8]
    data[-1] = (data[-1] + checksum_delta) & 0xFF
    return data


def test_framed_accelerator_answers_like_the_golden_model(tmp_path):
    qm = tiny_model(seed=3)
    divisor = 4
    dut = FramedAccelerator(CorePlan(build_schedule(qm, 8)), divisor)
    images = random_images(3, qm.input_shape, seed=21)
    golden = run(qm, images)
    good = [answer(golden.logits[i], golden.classes[i]) for i in range(3)]
    exchanges = [
        dict(name="valid", send=frame(images[0]), expect=good[0], last_class=int(golden.classes[0])),
        dict(name="bad checksum", send=frame(images[1], checksum_delta=1),
             expect=[ERROR, ERR_CHECKSUM], error=ERR_CHECKSUM),
        dict(name="valid after bad checksum", send=frame(images[1]), expect=good[1],
             last_class=int(golden.classes[1])),
        dict(name="bad length", send=frame(images[2], length=63), expect=[ERROR, ERR_LENGTH]),
        dict(name="bad start byte", send=[0x00, 0xA5, 0x40], expect=[ERROR, ERR_START]),
        dict(name="valid after bad start", send=frame(images[2]), expect=good[2],
             last_class=int(golden.classes[2])),
        dict(name="truncated frame", send=frame(images[0])[:10], expect=[ERROR, ERR_TIMEOUT],
             error=ERR_TIMEOUT),
        dict(name="valid after timeout", send=frame(images[0]), expect=good[0],
             last_class=int(golden.classes[0])),
    ]
    plan = dict(divisor=divisor, exchanges=exchanges, timeout_cycles=400_000)
    (tmp_path / "frames.json").write_text(json.dumps(plan))
    run_cocotb(dut, "framed", "sim.benches.framed", tmp_path / "build", test_dir=tmp_path,
               params={"frames": tmp_path / "frames.json"})


def test_a_core_that_does_not_fit_exits_1_with_the_numbers(model_dir, tmp_path, monkeypatch, capsys):
    import hw.build
    huge = dict(luts=25000, ffs=1000, bram36=60, dsp=0, carry4=9)

    def fake_estimate(accel, folder, timeout_s=None):
        accel._MustUse__silence = True       # not elaborated: no "created but never used"
        return huge, 1.0
    monkeypatch.setattr(hw.build, "estimate", fake_estimate)
    status = hw.build.main(["--model", str(model_dir), "--lanes", "4", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert status == 1 and "\n" not in err
    assert "LUT 25000 > 20800" in err and "BRAM36 60 > 50" in err and "--lanes 2" in err
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["fits"] is False and report["luts"] == 25000
    assert "Does not fit" in (tmp_path / "report.md").read_text()
