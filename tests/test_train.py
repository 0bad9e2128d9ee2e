"""The training CLI end to end: real learning, resume equivalence, DDP on two CPU processes, errors."""
import json
import os
import subprocess
import sys

import pytest
import torch

from training.bundle import read_bundle
from training.model import WideResNet
from training.train import MAX_THREADS, SRELU_DEFAULTS, main

FASHION = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_args(data_dir, out, *extra):
    return ["--dataset", "mnist", "--data-dir", data_dir, "--depth", "8", "--epochs", "2",
            "--batch-size", "50", "--out", str(out), "--threads", "1", *extra]


def run_cli(args, capsys):
    """Run the CLI in-process; returns (exit code, stderr)."""
    try:
        code = main(args)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    return code, capsys.readouterr().err


@pytest.mark.skipif(not os.path.exists(FASHION), reason="apt-get install dataset-fashion-mnist")
def test_short_real_run_beats_chance_and_writes_the_run_directory(tmp_path):
    out = tmp_path / "run"
    assert main(["--subset", "3000", "--depth", "8", "--epochs", "2", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["test_error"] < 0.4           # chance is 0.9 for 10 classes
    assert summary["epochs"] == 2 and summary["params"] == 74_512 == summary["weight_bits"]
    assert 0 <= summary["train_error"] < 1 and summary["wall_s"] > 0
    assert "test_error_before_bn_recalibration" in summary
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(l)["epoch"] for l in lines] == [1, 2]
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bundle = read_bundle(str(out / "bundle.npz"))
    assert bundle.manifest["metadata"]["test_error"] == summary["test_error"]


def test_resume_after_interruption_equals_an_uninterrupted_run(tiny_mnist, tmp_path):
    full, split = tmp_path / "full", tmp_path / "split"
    assert main(tiny_args(tiny_mnist, full)) == 0
    assert main(tiny_args(tiny_mnist, split, "--stop-after", "1")) == 0
    assert not (split / "summary.json").exists()
    assert torch.load(split / "checkpoint.pt", weights_only=False)["epoch"] == 1
    assert main(tiny_args(tiny_mnist, split, "--resume")) == 0
    a = torch.load(full / "checkpoint.pt", weights_only=False)
    b = torch.load(split / "checkpoint.pt", weights_only=False)
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for ha, hb in zip(a["history"], b["history"]):
        assert {k: v for k, v in ha.items() if k != "epoch_s"} == \
               {k: v for k, v in hb.items() if k != "epoch_s"}
    sa = json.loads((full / "summary.json").read_text())
    sb = json.loads((split / "summary.json").read_text())
    assert sa["test_error"] == sb["test_error"]
    assert (full / "bundle.npz").read_bytes() == (split / "bundle.npz").read_bytes()


def free_port():
    """A TCP port nobody listens on now: a fixed one can be taken, or still closing."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_with_two_gloo_processes(tiny_mnist, tmp_path):
    out = tmp_path / "ddp"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                        "--master_port", str(free_port()), "-m", "training.train",
                        *tiny_args(tiny_mnist, out)], cwd=ROOT, capture_output=True, text=True,
                       timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert "2 processes hold identical weights" in r.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processes"] == 2
    # 500 images / (50 per process x 2 processes) = 5 steps; BN recalibration saw 2 x 5 batches.
    assert summary["bn_recalibration_batches"] == 10
    read_bundle(str(out / "bundle.npz"))


@pytest.mark.parametrize("extra,message", [
    (["--epochs", "5"], "2, 6, 14, 30"),
    (["--depth", "9"], "6n+2"),
    (["--weights", "2bit"], "invalid choice"),
    (["--batch-size", "600"], "fewer than one minibatch"),
    (["--lr-schedule", "nonsense"], "--lr-schedule must be one of sgdr, cosine"),
    (["--act-bits", "0"], "--act-bits must be 2..8, got 0"),
    (["--act-bits", "1"], "--act-bits must be 2..8, got 1"),
    (["--act-bits", "9"], "--act-bits must be 2..8, got 9"),
    (["--act-bits", "4", "--act-scales", "guessed"], "invalid choice"),
    (["--residual-bits", "8"], "--residual-bits needs --act-bits"),
    (["--act-bits", "4", "--residual-bits", "17"], "--residual-bits must be 2..16, got 17"),
    (["--input-bits", "8"], "--input-bits needs --act-bits"),
    (["--act-bits", "4", "--input-bits", "1"], "--input-bits must be 2..16, got 1"),
    (["--act-bits", "4", "--input-bits", "17"], "--input-bits must be 2..16, got 17"),
    (["--init-from", "/nonexistent/run"], "no checkpoint.pt there"),
])
def test_cli_rejects_bad_arguments_in_one_line(tiny_mnist, tmp_path, capsys, extra, message):
    code, err = run_cli(tiny_args(tiny_mnist, tmp_path / "x", *extra), capsys)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x" / "checkpoint.pt").exists()


@pytest.mark.parametrize("option,values", [
    ("--subset", ["100000001", "0", "501"]),      # 501: more than the 500 images at hand
    ("--depth", ["206", "2"]),
    ("--width", ["17", "0"]),
    ("--srelu-temperature", ["1e5", "0", "-4", "nan"]),
    ("--epochs", ["10001", "0"]),
    ("--lr-max", ["11", "0", "inf", "nan"]),
    ("--warmup-steps", ["10000001", "-1"]),
    ("--clip-grad-norm", ["1e7", "-1", "nan"]),
    ("--cutout", [str(2**32), "13", "-1"]),       # 13: more than the 12x12 images at hand
    ("--batch-size", ["65537", "501", "0"]),      # 501: more than the 500 images at hand
    ("--weight-decay", ["1.5", "-0.1", "nan"]),
    ("--seed", [str(2**64), "-1"]),
    ("--stop-after", ["10001", "0"]),
    ("--threads", [str(MAX_THREADS + 1), "0"]),
])
def test_every_numeric_option_is_bounded_on_both_sides(tiny_mnist, tmp_path, capsys, option,
                                                        values):
    for value in values:
        code, err = run_cli(tiny_args(tiny_mnist, tmp_path / "x", option, value), capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1, (value, err)
        assert option in err and "error:" in err, (value, err)
    assert not (tmp_path / "x" / "checkpoint.pt").exists()


def test_cli_missing_dataset_names_the_file_and_fix(tmp_path, capsys):
    code, err = run_cli(["--dataset", "fashion-mnist", "--data-dir", str(tmp_path),
                         "--out", str(tmp_path / "o")], capsys)
    assert code == 2
    line = err.strip()
    assert len(line.splitlines()) == 1
    assert "train-images-idx3-ubyte" in line and "dataset-fashion-mnist" in line


def test_existing_run_is_never_overwritten_and_resume_checks_arguments(tiny_mnist, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(tiny_args(tiny_mnist, out, "--stop-after", "1")) == 0
    before = (out / "checkpoint.pt").read_bytes()
    code, err = run_cli(tiny_args(tiny_mnist, out), capsys)
    assert code == 2 and "--resume" in err
    code, err = run_cli(tiny_args(tiny_mnist, out, "--resume", "--seed", "3"), capsys)
    assert code == 2 and "--seed was 0" in err
    code, err = run_cli(tiny_args(tiny_mnist, tmp_path / "empty", "--resume"), capsys)
    assert code == 2 and "no checkpoint" in err
    assert (out / "checkpoint.pt").read_bytes() == before


def test_srelu_defaults_and_stabilizers_are_recorded_and_resumed(tiny_mnist, tmp_path):
    """--variant srelu: cosine, the authors' T and the chosen stabilizer by default; a resume
    that leaves them out continues with the run's own values; any epoch count with cosine."""
    out = tmp_path / "srelu"
    args = tiny_args(tiny_mnist, out, "--variant", "srelu")
    args[args.index("--epochs") + 1] = "3"
    assert main([*args, "--stop-after", "1", "--warmup-steps", "3"]) == 0
    stored = torch.load(out / "checkpoint.pt", weights_only=False)["args"]
    assert stored["lr_schedule"] == "cosine" and stored["srelu_temperature"] == 40.0
    assert stored["clip_grad_norm"] == SRELU_DEFAULTS["clip_grad_norm"] == 1.0
    assert stored["warmup_steps"] == 3
    assert main([*args, "--resume", "--warmup-steps", "3"]) == 0
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2, 3] and history[-1]["lr_end"] < 1e-3


def test_a_run_from_before_the_schedule_options_still_resumes(tiny_mnist, tmp_path):
    out = tmp_path / "old"
    assert main(tiny_args(tiny_mnist, out, "--stop-after", "1")) == 0
    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    for key in ("lr_schedule", "lr_max", "warmup_steps", "clip_grad_norm"):
        del ckpt["args"][key]
    ckpt["args"]["srelu_temperature"] = 25.0
    torch.save(ckpt, out / "checkpoint.pt")
    assert main(tiny_args(tiny_mnist, out, "--resume")) == 0


def test_a_checkpoint_of_another_network_is_refused_in_one_line(tiny_mnist, tmp_path, capsys):
    """A checkpoint whose arguments are this run's but whose weights are another network's (copied
    from another run, or its arguments edited), given to --resume or --init-from: refused before
    loading, naming the first key that differs, instead of torch's size-mismatch traceback."""
    out = tmp_path / "run"
    assert main(tiny_args(tiny_mnist, out, "--stop-after", "1")) == 0
    capsys.readouterr()
    path = out / "checkpoint.pt"
    ckpt = torch.load(path, weights_only=True)
    ckpt["model"] = WideResNet(8, 2, 1, 10, 12).state_dict()           # --width 2's
    torch.save(ckpt, path)
    before = path.read_bytes()
    code, err = run_cli(tiny_args(tiny_mnist, out, "--resume"), capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert (f"--resume: {path}: its weights do not fit this network (layers.conv0.weight: "
            "(32, 1, 3, 3) there, (16, 1, 3, 3) here); it is another network's") in err
    assert path.read_bytes() == before
    ckpt["model"] = WideResNet(14, 1, 1, 10, 12).state_dict()          # --depth 14's
    torch.save(ckpt, path)
    code, err = run_cli(tiny_args(tiny_mnist, tmp_path / "new", "--init-from", str(out)), capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert (f"--init-from {out}: its weights do not fit this network "
            "(layers.s1b2_a1_bn.running_mean: (16,) there, absent here)") in err
    assert not (tmp_path / "new" / "checkpoint.pt").exists()
