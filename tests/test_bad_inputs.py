"""Bad input, as a new user gives it: one line naming the problem and the fix, a non-zero exit
status, before any long work, and whatever was already on disk left as it was.

One test per row of the robustness table (issue 13) for `training.train`, `quantize` and
`hw.build`; the bundle's value checks are in test_bundle.py, `sim` and `hw.host.client` in
test_sim_cli.py and test_hw_client.py.
"""
import hashlib
import os

import pytest
import torch

import hw.build
import hw.flow.board_build
import quantize.__main__ as quantize_cli
import training.train as train_cli
from quantize.qmodel import write_qmodel
from quantize.random_model import random_qmodel
from tests.cli_checks import one_stderr_line
from tests.test_quantize_cli import make_run
from tests.test_train import tiny_args


def run(main, args, capsys):
    """(exit status, stderr) of an entry point run in-process."""
    try:
        status = main([str(a) for a in args])
    except SystemExit as e:          # argparse's own errors
        status = e.code
    return status, capsys.readouterr().err.strip()


def one_line(err, *words):
    """One line on stderr holding `words`, progress bars aside."""
    one_stderr_line(err, *words, progress_bars=True)


def snapshot(folder):
    """Every file below `folder` with its content's hash: 'unchanged' means equal snapshots."""
    files = {}
    for root, _, names in os.walk(folder):
        for n in names:
            path = os.path.join(root, n)
            with open(path, "rb") as f:
                files[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return files


@pytest.fixture
def read_only(tmp_path):
    """An existing folder this process cannot write in: chmod for a normal user; for root,
    whom file modes do not stop, a folder of the read-only sysfs."""
    if os.geteuid() != 0:
        d = tmp_path / "ro"
        d.mkdir()
        d.chmod(0o555)
        yield str(d)
        d.chmod(0o755)
    else:
        yield "/sys/kernel"




# -- python -m training.train ------------------------------------------------------------------

def test_1_train_out_is_a_file(tiny_mnist, tmp_path, capsys):
    f = tmp_path / "notes.txt"
    f.write_text("mine")
    status, err = run(train_cli.main, tiny_args(tiny_mnist, f), capsys)
    assert status == 2 and f.read_text() == "mine"
    one_line(err, "is a file, not a folder", "--out")


def test_2_train_out_under_a_read_only_parent(tiny_mnist, read_only, capsys):
    status, err = run(train_cli.main, tiny_args(tiny_mnist, os.path.join(read_only, "run")), capsys)
    assert status == 2
    one_line(err, "cannot write in", "choose another --out")


def test_3_train_out_read_only_fails_before_the_first_epoch(tiny_mnist, read_only, capsys):
    status, err = run(train_cli.main, tiny_args(tiny_mnist, read_only), capsys)
    assert status == 2
    one_line(err, "cannot write in", read_only)
    assert "epoch" not in capsys.readouterr().out


def test_4_resume_from_a_torch_file_of_another_shape(tiny_mnist, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    torch.save({"weights": torch.zeros(3)}, out / "checkpoint.pt")
    before = snapshot(out)
    status, err = run(train_cli.main, tiny_args(tiny_mnist, out, "--resume"), capsys)
    assert status == 2 and snapshot(out) == before
    one_line(err, "is not a checkpoint of this trainer", "delete it to start over")


@pytest.mark.parametrize("extra,words", [
    (["--device", "tpu"], ["--device tpu: unknown device", "cpu"]),
    (["--device", "cuda:7"], ["--device cuda:7"]),
    (["--threads", "-1"], ["--threads: must be an integer 1.."]),
    (["--threads", "0"], ["--threads: must be an integer 1.."]),
    (["--cutout", "1000"], ["--cutout 1000 is larger than the 12x12 images", "at most 12"]),
])
def test_5_6_7_train_device_threads_cutout(tiny_mnist, tmp_path, capsys, extra, words):
    status, err = run(train_cli.main, tiny_args(tiny_mnist, tmp_path / "run", *extra), capsys)
    assert status == 2 and not (tmp_path / "run" / "checkpoint.pt").exists()
    one_line(err, *words)


def test_8_a_finished_run_without_checkpoint_is_not_overwritten(tiny_mnist, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "bundle.npz").write_bytes(b"an earlier model")
    (out / "summary.json").write_text("{}")
    before = snapshot(out)
    status, err = run(train_cli.main, tiny_args(tiny_mnist, out), capsys)
    assert status == 2 and snapshot(out) == before
    one_line(err, "already holds a run (bundle.npz, summary.json)", "choose another --out")


# -- python -m quantize ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def quant_run(tmp_path_factory, tiny_mnist):
    run_dir = tmp_path_factory.mktemp("qrun") / "run"
    make_run(str(run_dir))
    return str(run_dir)


def quantize_args(run_dir, tiny_mnist, out):
    return [run_dir, "--data-dir", tiny_mnist, "--calib-images", "50", "--sweep-bits", "8",
            "--out", out]


def test_11_quantize_out_is_a_file_or_read_only(quant_run, tiny_mnist, tmp_path, read_only, capsys):
    f = tmp_path / "q"
    f.write_text("mine")
    status, err = run(quantize_cli.main, quantize_args(quant_run, tiny_mnist, f), capsys)
    assert status == 2 and f.read_text() == "mine"
    one_line(err, "is a file, not a folder")
    status, err = run(quantize_cli.main, quantize_args(quant_run, tiny_mnist, read_only), capsys)
    assert status == 2
    one_line(err, "cannot write in")
    # A folder of other files would be replaced as a whole: refused too.
    other = tmp_path / "photos"
    other.mkdir()
    (other / "cat.jpg").write_bytes(b"meow")
    status, err = run(quantize_cli.main, quantize_args(quant_run, tiny_mnist, other), capsys)
    assert status == 2 and (other / "cat.jpg").read_bytes() == b"meow"
    one_line(err, "holds other files (cat.jpg)")


def test_12_quantize_failing_while_writing_leaves_the_old_set(quant_run, tiny_mnist, tmp_path, capsys,
                                                              monkeypatch):
    out = tmp_path / "quant"
    assert run(quantize_cli.main, quantize_args(quant_run, tiny_mnist, out), capsys)[0] == 0
    before = snapshot(out)
    assert set(before) == set(quantize_cli.OUTPUTS)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")
    # qmodel.npz is written, then the report fails: the folder must hold the old set.
    monkeypatch.setattr(quantize_cli, "write_report", disk_full)
    status, err = run(quantize_cli.main, quantize_args(quant_run, tiny_mnist, out), capsys)
    assert status == 2 and snapshot(out) == before
    one_line(err, "No space left on device", "unchanged")
    assert [e for e in os.listdir(tmp_path) if not e.endswith(".lock")] == ["quant"]   # no temporary left


# -- python -m hw.build ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    q = random_qmodel(depth=8, width=1, input_size=8, seed=0)
    path = tmp_path_factory.mktemp("hwq") / "quant"
    write_qmodel(path / "qmodel.npz", q.manifest, q.tensors)
    return path


def test_13_build_out_is_a_file_or_read_only(model_dir, tmp_path, read_only, capsys):
    f = tmp_path / "b"
    f.write_text("mine")
    status, err = run(hw.build.main, ["--model", model_dir, "--no-estimate", "--out", f], capsys)
    assert status == 2 and f.read_text() == "mine"
    one_line(err, "is a file, not a folder")
    status, err = run(hw.build.main, ["--model", model_dir, "--no-estimate", "--out",
                                      os.path.join(read_only, "b")], capsys)
    assert status == 2
    one_line(err, "cannot write in")


def refused_before_synthesis(q, options, tmp_path, capsys, monkeypatch):
    """hw.build of model `q` with `options`: exit 1, nothing written, no synthesis; its stderr."""
    model = tmp_path / "model"
    write_qmodel(model / "qmodel.npz", q.manifest, q.tensors)

    def no_synthesis(*args, **kwargs):
        raise AssertionError("synthesis started")
    monkeypatch.setattr(hw.flow.board_build, "estimate", no_synthesis)
    out = tmp_path / "b"
    status, err = run(hw.build.main, ["--model", model, *options, "--out", out], capsys)
    assert status == 1 and not out.exists()
    return err


def test_14_a_model_that_cannot_fit_is_refused_before_synthesis(tmp_path, capsys, monkeypatch):
    q = random_qmodel(depth=8, width=4, input_size=28, seed=0, calib_images=4)
    err = refused_before_synthesis(q, [], tmp_path, capsys, monkeypatch)
    one_line(err, "cannot fit the Digilent Arty A7-35T", "RAMB36", "> 50", "--board arty_a7_100")


def test_14b_more_dsps_than_the_part_has_are_refused_before_synthesis(tmp_path, capsys, monkeypatch):
    """32 lanes x 4 pixels: 65 requantizers and, on the Arty, 64 DSP48E1s of accumulators."""
    q = random_qmodel(depth=8, width=1, input_size=12, seed=0, calib_images=4)
    err = refused_before_synthesis(q, ["--lanes", "32", "--pixels", "4"], tmp_path, capsys,
                                   monkeypatch)
    one_line(err, "cannot fit the Digilent Arty A7-35T",
             "at least 129 DSP48 (65 requantizers, 64 accumulator pairs) > 90", "--pixels 3")


def test_15_a_failed_rebuild_keeps_the_old_build_and_a_rebuild_is_a_whole_set(model_dir, tmp_path,
                                                                             capsys, monkeypatch):
    out = tmp_path / "b"
    args = ["--model", model_dir, "--no-estimate", "--out", out]
    assert run(hw.build.main, args, capsys)[0] == 0
    (out / "core").mkdir()
    (out / "core" / "stat.json").write_text("{} from an earlier estimate")
    before = snapshot(out)

    def killed(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(hw.flow.board_build, "write_report", killed)     # Ctrl-C while writing
    status, err = run(hw.build.main, args, capsys)
    assert status == 130 and snapshot(out) == before
    one_line(err, "interrupted", "--out holds the previous build")
    monkeypatch.undo()
    assert run(hw.build.main, args, capsys)[0] == 0
    assert not (out / "core").exists()            # no stale estimate beside a new report
    assert [e for e in os.listdir(tmp_path) if not e.endswith(".lock")] == ["b"]


# -- the rules as a class: locks, signals, paths ------------------------------------------------

def test_a_folder_being_written_is_locked(quant_run, tiny_mnist, tmp_path, capsys):
    from common.files import folder_lock
    out = tmp_path / "quant"
    with folder_lock(str(out), "--out"):          # another process, as far as the lock knows
        status, err = run(quantize_cli.main, quantize_args(quant_run, tiny_mnist, out), capsys)
    assert status == 2 and not out.exists()
    one_line(err, "is being written by process", "wait for it to finish")
    assert run(quantize_cli.main, quantize_args(quant_run, tiny_mnist, out), capsys)[0] == 0


def test_paths_with_spaces_and_unicode(quant_run, tiny_mnist, tmp_path, capsys):
    out = tmp_path / "mes résultats" / "quant ü"
    assert run(quantize_cli.main, quantize_args(quant_run, tiny_mnist, out), capsys)[0] == 0
    assert set(os.listdir(out)) == set(quantize_cli.OUTPUTS)


def _wait_for(predicate, proc, seconds):
    import time
    end = time.monotonic() + seconds
    while time.monotonic() < end and proc.poll() is None:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_sigterm_stops_a_build_and_its_yosys_and_keeps_the_old_build(model_dir, tmp_path, capsys):
    import signal
    import subprocess
    import sys
    out = tmp_path / "b"
    assert run(hw.build.main, ["--model", model_dir, "--no-estimate", "--out", out], capsys)[0] == 0
    before = snapshot(out)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.Popen([sys.executable, "-m", "hw.build", "--model", str(model_dir), "--out", str(out)],
                            cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # The estimate's folder appears once yosys is about to run.
    started = _wait_for(lambda: any(os.path.exists(os.path.join(tmp_path, e, "core", "core.v"))
                                    for e in os.listdir(tmp_path) if e.endswith(".new")), proc, 120)
    assert started, proc.communicate()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    one_line(err, "interrupted", "previous build")
    assert snapshot(out) == before
    assert [e for e in os.listdir(tmp_path) if not e.endswith(".lock")] == ["b"]
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(tmp_path) not in ps                          # no yosys left running in it


def test_sigterm_during_training_keeps_a_resumable_checkpoint(tiny_mnist, tmp_path):
    import signal
    import subprocess
    import sys
    out = tmp_path / "run"
    args = [sys.executable, "-m", "training.train", *tiny_args(tiny_mnist, str(out), "--lr-schedule", "cosine")]
    args[args.index("--epochs") + 1] = "400"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.Popen(args, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert _wait_for(lambda: (out / "checkpoint.pt").exists(), proc, 120), proc.communicate()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    one_line(err, "interrupted", "continue with --resume")
    epochs = torch.load(out / "checkpoint.pt", weights_only=True)["epoch"]
    assert epochs >= 1
    resumed = subprocess.run([*args, "--resume", "--stop-after", str(epochs + 1)], cwd=root,
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == epochs + 1


def test_a_symlinked_out_keeps_pointing_at_the_new_set(quant_run, tiny_mnist, tmp_path, capsys):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    for _ in range(2):                          # a first output, then a replacement
        status, _ = run(quantize_cli.main, quantize_args(quant_run, tiny_mnist, tmp_path / "link"), capsys)
        assert status == 0
    assert (tmp_path / "link").is_symlink() and set(os.listdir(tmp_path / "link")) == set(quantize_cli.OUTPUTS)
    assert sorted(e for e in os.listdir(tmp_path) if not e.startswith(".")) == ["link", "real"]


def test_a_full_disk_while_checkpointing_is_one_line(tiny_mnist, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    assert run(train_cli.main, tiny_args(tiny_mnist, out, "--stop-after", "1"), capsys)[0] == 0
    before = snapshot(out)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(train_cli, "save_checkpoint", disk_full)
    status, err = run(train_cli.main, tiny_args(tiny_mnist, out, "--resume"), capsys)
    assert status == 2
    one_line(err, "No space left on device", "previous checkpoint is intact", "--resume")
    assert snapshot(out)["checkpoint.pt"] == before["checkpoint.pt"]


def test_a_build_dir_being_simulated_is_locked(tmp_path, capsys):
    from common.files import folder_lock
    from tests.test_sim_cli import main as sim_main
    q = random_qmodel(depth=8, width=1, input_size=8, seed=3)
    manifest = dict(q.manifest, source=dict(q.manifest["source"], metadata={"dataset": "mnist"}))
    write_qmodel(tmp_path / "quant" / "qmodel.npz", manifest, q.tensors)
    import numpy as np
    from tests.formats import write_idx_set
    write_idx_set(str(tmp_path), np.random.default_rng(0), n_train=20, n_test=4, h=8, w=8)
    build = tmp_path / "build"
    with folder_lock(str(build), "--build-dir"):
        status, err = run(sim_main, ["--model", tmp_path / "quant", "--data-dir", tmp_path,
                                     "--build-dir", build], capsys)
    assert status == 2 and not build.exists()
    one_line(err, "--build-dir", "is being written by process")


def test_a_full_disk_at_the_end_of_training_is_one_line_and_resumable(tiny_mnist, tmp_path, capsys,
                                                                      monkeypatch):
    out = tmp_path / "run"

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")
    with monkeypatch.context() as m:
        m.setattr(train_cli, "export_bundle", disk_full)
        status, err = run(train_cli.main, tiny_args(tiny_mnist, out), capsys)
    assert status == 2 and (out / "checkpoint.pt").exists() and not (out / "bundle.npz").exists()
    one_line(err, "cannot write the run's final files", "No space left on device", "--resume")
    assert run(train_cli.main, tiny_args(tiny_mnist, out, "--resume"), capsys)[0] == 0
    assert (out / "bundle.npz").exists() and (out / "summary.json").exists()


def test_a_real_write_failure_while_checkpointing_is_one_line(tiny_mnist, tmp_path):
    """No mock: RLIMIT_FSIZE fails every write past 128 KiB with EFBIG, as a full disk fails it
    with ENOSPC. The data are only read; the checkpoint (about 600 KB) cannot be written."""
    import resource
    import signal
    import subprocess
    import sys

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (128 << 10, 128 << 10))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # a failed write, not a killed process
    out = tmp_path / "run"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, "-m", "training.train",
                        *tiny_args(tiny_mnist, str(out), "--subset", "200")],
                       cwd=root, capture_output=True, text=True, timeout=600, preexec_fn=small_files,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    one_line(r.stderr, "cannot write epoch 1's checkpoint", "File too large",
             "previous checkpoint is intact", "--resume")
    assert [e for e in os.listdir(out) if "checkpoint" in e] == []     # no half-written file
