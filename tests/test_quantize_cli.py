"""python -m quantize end to end on a tiny untrained run: files, report contents, errors."""
import json
import os
import shutil

import numpy as np
import pytest
import torch

from quantize.__main__ import main
from quantize.convert import quantize_bundle
from quantize.golden import run as run_golden
from quantize.qmodel import make_qmodel, read_qmodel
from quantize.report import build_report, layer_rows
from tests.formats import write_idx_set
from training.bundle import read_bundle
from training.data import load_dataset
from training.export import export_bundle
from training.model import WideResNet

REPORT_KEYS = {"act_bits", "float_test_error", "int_test_error", "class_agreement",
               "weight_bits", "max_activation_buffer_bits", "layers", "act_bits_sweep",
               "needs_multiplier", "test_images", "calib_images", "wall_s"}
OUTPUTS = ("qmodel.npz", "report.json", "report.md", "report.png")


def make_run(run_dir, variant="bn", seed=0):
    """A WRN-8-1 on 12x12 single-channel images with BN moments from random inputs."""
    torch.manual_seed(seed)
    model = WideResNet(depth=8, width=1, in_channels=1, num_classes=10, input_size=12,
                       variant=variant)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(32, 1, 12, 12) * 255)
    model.eval()
    os.makedirs(run_dir, exist_ok=True)
    export_bundle(model, os.path.join(run_dir, "bundle.npz"), dict(dataset="mnist", epochs=0))
    return model


def run_cli(args, capsys):
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as e:  # argparse's own errors
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("quant")
    data = root / "mnist"
    data.mkdir()
    write_idx_set(str(data), np.random.default_rng(0), n_train=200, n_test=50, h=12, w=12)
    run = root / "run"
    model = make_run(str(run))
    return dict(root=root, data=str(data), run=str(run), model=model)


@pytest.fixture(scope="module")
def done(tiny):
    """One successful CLI run, shared by the tests that read its outputs."""
    out = tiny["root"] / "out"
    code = main([tiny["run"], "--data-dir", tiny["data"], "--calib-images", "100",
                 "--out", str(out)])
    assert code == 0
    return dict(tiny, out=out, report=json.loads((out / "report.json").read_text()))


def test_cli_writes_all_files(done):
    for name in OUTPUTS:
        assert (done["out"] / name).is_file(), name
    assert (done["out"] / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (done["out"] / "report.md").read_text()
    assert "| layer | op |" in md and "agreement with float" in md
    assert not [f for f in os.listdir(done["out"]) if f.endswith(".tmp")]


def test_report_keys_and_values(done):
    r = done["report"]
    assert REPORT_KEYS <= set(r)
    assert r["act_bits"] == 8
    for key in ("float_test_error", "int_test_error", "class_agreement"):
        assert 0.0 <= r[key] <= 1.0, key
    assert [s["act_bits"] for s in r["act_bits_sweep"]] == [8, 6, 4]
    for s in r["act_bits_sweep"]:
        assert 0.0 <= s["int_test_error"] <= 1.0 and 0.0 <= s["class_agreement"] <= 1.0
    assert r["test_images"] == 50 and r["calib_images"] == 100 and r["wall_s"] > 0
    assert r["weight_bits"] == done["model"].weight_count()
    assert r["max_activation_buffer_bits"] > 0


def test_layers_name_every_op_and_flag_multipliers(done):
    r = done["report"]
    q = read_qmodel(done["out"] / "qmodel.npz")
    assert [row["name"] for row in r["layers"]] == [op["name"] for op in q.ops]
    for row in r["layers"]:
        assert row["bits"] >= 1 and isinstance(row["signed"], bool)
        assert (row["acc_bits"] is not None) == (row["op"] == "conv")
        assert row["needs_multiplier"] == (row["multiplier"] == "per-channel")
    assert r["needs_multiplier"] == [row["name"] for row in r["layers"]
                                     if row["needs_multiplier"]]
    assert r["needs_multiplier"]  # BN-ReLU with per-channel BN scales does need them
    # The largest stored feature map, as C*H*W*bits over non-accumulator ops.
    stored = [np.prod(row["shape"]) * row["bits"] for row in r["layers"]
              if row["op"] not in ("conv", "global_sum")]
    assert r["max_activation_buffer_bits"] == max(stored)


def test_qmodel_round_trips_and_golden_matches_report(done):
    q = read_qmodel(done["out"] / "qmodel.npz")
    assert q.act_bits == 8 and q.weight_bits() == done["report"]["weight_bits"]
    again = make_qmodel(q.manifest, q.tensors)
    assert again.manifest["ops"] == q.manifest["ops"]
    data = load_dataset("mnist", done["data"])
    classes = run_golden(q, data.test_x).classes
    assert float(np.mean(classes != data.test_y)) == done["report"]["int_test_error"]


def test_srelu_needs_no_multiplier(tiny, tmp_path):
    model = make_run(str(tmp_path), variant="srelu", seed=1)
    bundle = read_bundle(tmp_path / "bundle.npz")
    images = load_dataset("mnist", tiny["data"]).train_x[:40]
    q = make_qmodel(*quantize_bundle(bundle, images, 8))
    rows = layer_rows(q)
    assert not [r["name"] for r in rows if r["needs_multiplier"]]
    assert {r["multiplier"] for r in rows} <= {None, "lut", "shift", "constant"}
    report = build_report(q, 0.5, [dict(act_bits=8, int_test_error=0.5, class_agreement=1.0)],
                          test_images=1, calib_images=40, wall_s=0.1)
    assert report["needs_multiplier"] == [] and report["weight_bits"] == model.weight_count()


@pytest.mark.parametrize("extra, message", [
    (["--act-bits", "1"], "--act-bits"),
    (["--act-bits", "17"], "--act-bits"),
    (["--calib-images", "0"], "--calib-images"),
    (["--calib-percentile", "0"], "--calib-percentile"),
    (["--sweep-bits", "8,1"], "--sweep-bits"),
    (["--multiplier-bits", "1"], "--multiplier-bits"),
    (["--multiplier-bits", "17"], "--multiplier-bits"),
    (["--calib-percentile", "inf"], "--calib-percentile: must be a number > 0 and <= 100"),
    # past the data at hand: these used to be cut to it without a word
    (["--calib-images", "201"], "--calib-images 201: the mnist training set has 200 images"),
    (["--test-images", "51"], "--test-images 51: the mnist test set has 50 images; give --test-images 50"),
])
def test_bad_arguments(tiny, capsys, extra, message):
    code, _, err = run_cli([tiny["run"], "--data-dir", tiny["data"], *extra], capsys)
    assert code == 2
    assert err.startswith("python -m quantize: error:") and message in err
    assert len(err.strip().splitlines()) == 1


def test_missing_run_dir(tmp_path, capsys):
    code, _, err = run_cli([tmp_path / "nope"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert str(tmp_path / "nope" / "bundle.npz") in err and "training.train" in err


def test_errors_leave_an_existing_report_untouched(done, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(done["out"], out)
    before = {name: (out / name).read_bytes() for name in OUTPUTS}

    # missing dataset files
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run_cli([done["run"], "--data-dir", empty, "--out", out], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("python -m quantize: error: mnist: missing")

    # corrupt (truncated) bundle
    bad = tmp_path / "bad"
    bad.mkdir()
    raw = open(os.path.join(done["run"], "bundle.npz"), "rb").read()
    (bad / "bundle.npz").write_bytes(raw[:len(raw) // 2])
    code, _, err = run_cli([bad, "--data-dir", done["data"], "--out", out], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "bundle.npz" in err and "corrupt" in err

    # a failure after all the work, while rendering: still nothing written
    import quantize.__main__ as cli

    def broken(report):
        raise RuntimeError("plot failed")
    orig, cli.render = cli.render, broken
    try:
        with pytest.raises(RuntimeError):
            main([done["run"], "--data-dir", done["data"], "--calib-images", "20",
                  "--sweep-bits", "", "--test-images", "10", "--out", str(out)])
    finally:
        cli.render = orig
    capsys.readouterr()

    assert {name: (out / name).read_bytes() for name in OUTPUTS} == before
    assert sorted(os.listdir(out)) == sorted(OUTPUTS)
