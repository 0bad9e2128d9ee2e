"""`python -m sim`: argument and input errors (fast) and a real run on a tiny model (slow)."""
import numpy as np
import pytest

from quantize.qmodel import write_qmodel
from quantize.random_model import random_qmodel
from sim.__main__ import main
from tests.formats import write_idx_set


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A quantized 8x8 model that names the mnist dataset, and tiny mnist files of 8x8 images."""
    root = tmp_path_factory.mktemp("sim_cli")
    q = random_qmodel(depth=8, width=1, input_size=8, seed=3)
    manifest = dict(q.manifest)
    manifest["source"] = dict(manifest["source"], metadata={"dataset": "mnist"})
    write_qmodel(root / "quant" / "qmodel.npz", manifest, q.tensors)
    write_idx_set(str(root), np.random.default_rng(0), n_train=20, n_test=4, h=8, w=8)
    return root


@pytest.mark.parametrize("args,message", [
    (["--lanes", "6"], "power of two"),
    (["--images", "0"], "--images"),
    (["--stall", "1.5"], "--stall"),
    (["--requantizers", "shift-add"], "per-channel multipliers, as in a bn model): use --requantizers dsp"),
])
def test_bad_arguments(tiny, capsys, args, message):
    code = main(["--model", str(tiny / "quant"), "--data-dir", str(tiny), *args])
    assert code == 2 and message in capsys.readouterr().err


def test_missing_model_is_one_line(tmp_path, capsys):
    assert main(["--model", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "python -m quantize" in err


@pytest.mark.slow
def test_real_run_prints_verdicts_and_summary(tiny, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)   # a relative --build-dir, as users type it
    code = main(["--model", str(tiny / "quant"), "--data-dir", str(tiny), "--images", "2",
                 "--lanes", "8", "--layer", "s1b1_add", "--build-dir", "build/sim"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert any(line.strip() == "s1b1_add: bit-exact" for line in out)
    assert out[-1] == "2/2 images bit-exact"
