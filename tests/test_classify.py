"""Photos in: calibration from a folder of image files when the dataset is not at hand
(`python -m quantize --calib-folder`), and `python -m quantize.classify`."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from quantize.__main__ import main as quantize_main
from quantize.classify import main as classify_main
from quantize.float_reference import run_float
from quantize.golden import run as run_golden
from quantize.images import load_image
from quantize.qmodel import read_qmodel
from tests.cli_checks import one_stderr_line
from training.bundle import read_bundle
from training.data import CLASS_NAMES
from training.export import export_bundle
from training.model import WideResNet


@pytest.fixture(scope="module")
def photo_run(tmp_path_factory):
    """A cifar10-named WRN-8-1 (Keras padding, 3 x 8 x 8) and a folder of 6 photos of odd
    sizes; no CIFAR-10 files anywhere."""
    root = tmp_path_factory.mktemp("photos")
    torch.manual_seed(3)
    model = WideResNet(8, 1, 3, 10, 8, padding="keras").eval()
    for _, bn in model.batchnorms():
        bn.running_var.uniform_(0.5, 2)
    run = root / "run"
    run.mkdir()
    export_bundle(model, run / "bundle.npz", {"dataset": "cifar10"})
    photos = root / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(20, 30), (33, 17), (8, 8), (64, 48), (9, 100), (40, 40)]):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(photos / f"p{i}.png")
    (photos / "notes.txt").write_text("not an image, and not read")
    return run, photos


def test_a_photo_is_resized_by_area_averaging(tmp_path):
    # a 16 x 16 image of 2 x 2 blocks, each block one value: to 8 x 8 each block's value
    blocks = np.arange(64, dtype=np.uint8).reshape(8, 8) * 3
    Image.fromarray(np.kron(blocks, np.ones((2, 2), np.uint8))).convert("RGB").save(tmp_path / "b.png")
    x = load_image(tmp_path / "b.png", (3, 8, 8))
    assert x.shape == (3, 8, 8) and x.dtype == np.uint8
    np.testing.assert_array_equal(x[0], blocks)
    np.testing.assert_array_equal(load_image(tmp_path / "b.png", (1, 8, 8))[0], blocks)


def test_calibration_from_a_folder_without_the_dataset(photo_run, capsys):
    run, photos = photo_run
    assert quantize_main([str(run), "--calib-folder", str(photos), "--sweep-bits", "8",
                          "--data-dir", str(photos)]) == 0
    out = capsys.readouterr().out
    assert "no test set at hand" in out and f"compared on the 6 images of {photos}" in out
    assert f"calibrating on 6 images from {photos}" in out
    report = json.loads((run / "quant" / "report.json").read_text())
    assert report["float_test_error"] is None and report["int_test_error"] is None
    assert report["calib_images"] == 6 and report["test_images"] == 6
    assert report["calib_from"] == f"images from {photos}"


def test_classify_prints_both_models_top_classes_by_name(photo_run, capsys):
    run, photos = photo_run
    if not (run / "quant" / "qmodel.npz").exists():
        quantize_main([str(run), "--calib-folder", str(photos), "--sweep-bits", "8"])
    capsys.readouterr()
    paths = [str(photos / "p0.png"), str(photos / "p3.png")]
    assert classify_main([str(run), *paths, "--top", "3"]) == 0
    out = capsys.readouterr().out
    images = np.stack([load_image(p, (3, 8, 8)) for p in paths])
    want_float = run_float(read_bundle(run / "bundle.npz"), images)
    qmodel = read_qmodel(run / "quant" / "qmodel.npz")
    want_int = run_golden(qmodel, images).logits
    names = CLASS_NAMES["cifar10"]
    for i, path in enumerate(paths):
        block = out.split(path + "\n")[1].splitlines()[1:4]
        for rank, line in enumerate(block):
            f, g = np.argsort(-want_float[i], kind="stable")[rank], np.argsort(-want_int[i], kind="stable")[rank]
            assert line.split()[0] == names[f] and f"{want_float[i][f]:.4f}" in line
            assert f" {names[g]} " in line and f" {int(want_int[i][g])} x " in line


@pytest.mark.parametrize("args, words", [
    (["--calib-folder", "EMPTY"], ["holds no image files"]),
    (["--calib-folder", "BAD"], ["bad.png: not an image file Pillow can read"]),
    (["--calib-folder", "PHOTOS", "--calib-images", "3"], ["give one or the other"]),
    (["--calib-folder", "PHOTOS", "--test-images", "3", "--data-dir", "PHOTOS"],
     ["--test-images 3: no test set at hand", "cifar10"]),
])
def test_a_bad_photo_folder_is_one_line(photo_run, tmp_path, capsys, args, words):
    run, photos = photo_run
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "bad.png").write_bytes(b"\x89PNG but no more")
    folders = dict(EMPTY=tmp_path / "empty", BAD=tmp_path / "bad", PHOTOS=photos)
    args = [str(folders.get(a, a)) for a in args]
    assert quantize_main([str(run), *args, "--out", str(tmp_path / "q")]) == 2
    one_stderr_line(capsys.readouterr().err, *words, prefix="python -m quantize: error: ")
    assert not (tmp_path / "q").exists()


def test_classify_refuses_more_top_classes_than_the_model_has(photo_run, capsys):
    run, photos = photo_run
    assert classify_main([str(run), str(photos / "p0.png"), "--top", "11"]) == 2
    one_stderr_line(capsys.readouterr().err, "--top 11", "10 classes", "--top 10",
                    prefix="python -m quantize.classify: error: ")
