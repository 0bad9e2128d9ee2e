"""`python -m sim`: argument and input errors (fast) and a real run on a tiny model (slow)."""
import numpy as np
import pytest

from quantize.qmodel import write_qmodel
from quantize.random_model import random_qmodel
from sim.__main__ import main
from tests.cli_checks import one_stderr_line
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


@pytest.fixture(scope="module")
def keras(tmp_path_factory):
    """A quantized 3x8x8 model with Keras padding (stride 2 pads bottom and right only) and a
    folder of two photos."""
    from PIL import Image
    root = tmp_path_factory.mktemp("sim_keras")
    q = random_qmodel(depth=8, width=1, in_channels=3, input_size=8, seed=4, padding="keras")
    write_qmodel(root / "quant" / "qmodel.npz", q.manifest, q.tensors)
    (root / "photos").mkdir()
    rng = np.random.default_rng(1)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (24, 30, 3), dtype=np.uint8)).save(root / "photos" / f"{i}.png")
    return root


def one_line(capsys, *words):
    """stderr is exactly one line, `python -m sim: error: ...`, holding every word."""
    return one_stderr_line(capsys.readouterr().err, *words, prefix="python -m sim: error: ")


@pytest.fixture
def no_simulator(monkeypatch):
    """Any simulator run fails the test: the checks must come before it."""
    import sim.check

    def refuse(*args, **kwargs):
        raise AssertionError("a simulation was started")
    monkeypatch.setattr(sim.check, "check_layers", refuse)
    monkeypatch.setattr(sim.check, "check_network", refuse)


@pytest.mark.parametrize("args,words", [
    (["--lanes", "6"], ["--lanes must be a power of two, got 6"]),
    (["--images", "0"], ["argument --images: must be an integer 1..", "got '0'"]),
    (["--images", "100000"], ["--images 100000: the mnist test set has", "or fewer"]),
    (["--pixels", "0"], ["argument --pixels: must be an integer 1..65535", "got '0'"]),
    (["--pixels", "10000"], ["10000 pixels per cycle: the model's largest feature map has"]),
    (["--lanes", "1024"], ["1024 lanes: the model's widest layer has", "--lanes 64 or fewer"]),
    (["--stall", "1.5"], ["--stall", "0..0.9", "1.5"]),
    (["--stall", "nan"], ["--stall", "0..0.9", "nan"]),
    (["--stall", "inf"], ["--stall", "0..0.9", "inf"]),
    (["--stall=-inf"], ["--stall", "0..0.9", "-inf"]),
    (["--build-dir", "a b/ü"], ["--build-dir", "holds ' ', 'ü', which the simulators' makefiles"]),
    (["--layer", "s1b1_add", "--no-layers"], ["--layer s1b1_add", "--no-layers", "one or the other"]),
    (["--requantizers", "shift-add"], ["per-channel multipliers, as in a bn model): use --requantizers dsp"]),
    (["--board", "ulx3s_85f"], ["--board ulx3s_85f: no simulation model", "give --netlist",
                                "arty_a7 or arty_a7_100", "leave --board out"]),
    (["--netlist"], ["--netlist simulates a board's netlist: give --board", "ulx3s_85f"]),
    (["--board", "de10", "--netlist"], ["--board de10: no such board; give one of arty_a7"]),
])
def test_bad_arguments(tiny, tmp_path, capsys, monkeypatch, no_simulator, args, words):
    monkeypatch.chdir(tmp_path)
    try:
        code = main(["--model", str(tiny / "quant"), "--data-dir", str(tiny), *args])
    except SystemExit as e:        # argparse's own refusals
        code = e.code
    assert code == 2
    one_line(capsys, *words)


def test_missing_model_is_one_line(tmp_path, capsys, monkeypatch, no_simulator):
    monkeypatch.chdir(tmp_path)
    assert main(["--model", str(tmp_path / "nowhere")]) == 2
    one_line(capsys, "python -m quantize")
    assert not (tmp_path / "build").exists()     # nothing made for a run that cannot start


@pytest.mark.parametrize("build_dir,inside,words", [
    ("taken", "", ["--build-dir", "taken is a file, not a folder"]),
    ("taken/sim", "", ["--build-dir taken/sim", "taken in its path is a file, not a folder"]),
    ("out", "network", ["--build-dir out", "network is a file, not a folder"]),
    ("out", "layers", ["--build-dir out", "layers is a file, not a folder"]),
])
def test_build_dir_that_is_a_file(tiny, tmp_path, capsys, monkeypatch, no_simulator,
                                  build_dir, inside, words):
    monkeypatch.chdir(tmp_path)
    file = tmp_path / "taken"
    if inside:
        (tmp_path / "out").mkdir()
        file = tmp_path / "out" / inside
    file.write_text("keep me\n")
    code = main(["--model", str(tiny / "quant"), "--data-dir", str(tiny), "--build-dir", build_dir])
    assert code == 2
    one_line(capsys, *words)
    assert file.read_text() == "keep me\n"
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted(["taken"] if not inside else ["out", inside])


def test_a_file_named_layers_is_fine_with_no_layers(tiny, tmp_path, capsys, monkeypatch):
    """--no-layers builds only network/: a file called layers there is not in the way."""
    import sim.check
    from sim.runner import CocotbFailure

    def network_fails(*args, **kwargs):
        raise CocotbFailure("stop here")
    monkeypatch.setattr(sim.check, "check_network", network_fails)
    (tmp_path / "layers").write_text("keep me\n")
    code = main(["--model", str(tiny / "quant"), "--data-dir", str(tiny), "--no-layers",
                 "--build-dir", str(tmp_path)])
    assert code == 1 and (tmp_path / "layers").read_text() == "keep me\n"
    one_line(capsys, "stop here")


@pytest.mark.parametrize("stage,args", [("check_layers", []), ("check_network", ["--no-layers"])])
def test_failed_simulator_build_is_one_line_exit_1(tiny, tmp_path, capsys, monkeypatch, stage, args):
    import sim.check
    from sim.runner import CocotbFailure

    def build_fails(*a, **kwargs):
        raise CocotbFailure("Verilator build of accelerator failed: Process 'make' terminated "
                            "with error 2\n  more compiler output")
    monkeypatch.setattr(sim.check, stage, build_fails)
    code = main(["--model", str(tiny / "quant"), "--data-dir", str(tiny), "--build-dir",
                 str(tmp_path / "b"), *args])
    assert code == 1
    sub = "layers" if stage == "check_layers" else "network"
    one_line(capsys, "the simulation failed", "Verilator build of accelerator failed",
             f"see {tmp_path / 'b' / sub / 'sim.log'}")


@pytest.mark.slow
def test_real_run_prints_verdicts_and_summary(tiny, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)   # a relative --build-dir, as users type it
    code = main(["--model", str(tiny / "quant"), "--data-dir", str(tiny), "--images", "2",
                 "--lanes", "8", "--layer", "s1b1_add", "--build-dir", "build/sim"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert any(line.strip() == "s1b1_add: bit-exact" for line in out)
    assert out[-1] == "2/2 images bit-exact"


@pytest.mark.slow      # the same DSP48E1 core runs in tests/test_hw_accelerator.py
def test_a_real_run_of_the_arty_core(tiny, tmp_path, capsys, monkeypatch):
    """--board arty_a7: the layer and the network as the Arty build elaborates them (the
    accumulators DSP48E1s, simulated with yosys's model), bit-exact."""
    monkeypatch.chdir(tmp_path)
    code = main(["--model", str(tiny / "quant"), "--data-dir", str(tiny), "--images", "1",
                 "--lanes", "8", "--layer", "s1b1_add", "--board", "arty_a7"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0 and out[-1] == "1/1 images bit-exact"
    assert any(line.strip() == "s1b1_add: bit-exact" for line in out)
    for part in ("layers", "network"):
        assert "DSP48E1 #(" in (tmp_path / "build" / "sim" / part / "accelerator.v").read_text()


def test_an_unknown_simulator_is_one_line(tiny, capsys, monkeypatch):
    monkeypatch.setenv("BITWRN_SIM", "modelsim")
    code = main(["--model", str(tiny / "quant"), "--data-dir", str(tiny)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "must be one of verilator, icarus" in err


@pytest.mark.parametrize("args,words", [
    (["--layer", "s2b1_a2_relu"], ["--layer s2b1_a2_relu: s2b1_conv1_acc pads [0, 1, 0, 1]",
                                   "pads every side alike"]),
    (["--layer", "s2b1_pool"], ["--layer s2b1_pool: s2b1_pool pads [0, 1, 0, 1]"]),
    (["--no-layers"], ["s2b1_conv1_acc pads [0, 1, 0, 1]", "its other layers in python -m sim --layer"]),
    (["--images", "3"], ["--images 3:", "photos holds 2 images; give --images 2 or fewer"]),
    (["--data-dir", "."], ["--image-folder replaces the dataset", "one or the other"]),
])
def test_a_keras_model_and_an_image_folder_bad_arguments(keras, tmp_path, capsys, monkeypatch,
                                                         no_simulator, args, words):
    monkeypatch.chdir(tmp_path)
    code = main(["--model", str(keras / "quant"), "--image-folder", str(keras / "photos"),
                 "--images", "1", *args])
    assert code == 2
    one_line(capsys, *words)


def test_a_keras_models_other_layers_are_bit_exact_from_a_photo(keras, tmp_path, capsys):
    code = main(["--model", str(keras / "quant"), "--image-folder", str(keras / "photos"),
                 "--images", "1", "--lanes", "8", "--layer", "s1b1_add", "--layer", "s3b1_add",
                 "--build-dir", str(tmp_path / "b")])
    out = [line.strip() for line in capsys.readouterr().out.splitlines()]
    assert code == 0
    assert "s1b1_add: bit-exact" in out and "s3b1_add: bit-exact" in out
    for step in ("s2b1_a2_relu", "s2b1_pool", "s3b1_a2_relu", "s3b1_pool"):
        assert any(line.startswith(f"{step}: not computable by the accelerator") for line in out)
    assert out[-1] == "whole network: not run, 4 of its steps are not computable by the accelerator"
    assert not (tmp_path / "b" / "network").exists() or not any((tmp_path / "b" / "network").iterdir())
