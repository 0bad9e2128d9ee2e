"""The authors' Keras exports in, Keras padding through the float reference, the integer model
and the golden model; the hardware's refusal of it.

The .mat files here are written in exactly the authors' layout (TrainedModels/Tensorflow.keras:
`conv2d`, `conv2d_1`, ... as 0/1 uint8 [1, F, F, Cin, Cout]; batch norms under Keras's own
counters, the input one (4, C) = gamma, beta, mean, var, the others (2, C) = mean, var) from
models of our own. The Keras network is re-computed here from TensorFlow's definitions, loop by
loop, independently of training/ and quantize/.
"""
import math
from fractions import Fraction

import numpy as np
import pytest
import scipy.io
import torch

from hw.core.plan import CoreOptions
from quantize.convert import divide_exactly, quantize_bundle
from quantize.float_reference import run_float
from quantize.golden import run as run_golden
from quantize.qmodel import make_qmodel
from tests.cli_checks import one_stderr_line
from training.bundle import read_bundle, write_bundle
from training.export import bundle_from_model, model_from_bundle
from training.import_authors import AuthorsFileError, import_keras, main
from training.model import WideResNet


def keras_model(size, width=1, classes=10, seed=0):
    """A WRN-8-k with Keras padding, random signs and BN moments, as our bundle."""
    torch.manual_seed(seed)
    model = WideResNet(8, width, 3, classes, size, padding="keras").eval()
    for _, bn in model.batchnorms():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        if bn.affine:
            bn.weight.data.uniform_(0.5, 1.5)
            bn.bias.data.uniform_(-0.5, 0.5)
    manifest, arrays = bundle_from_model(model, {"dataset": "cifar10"})
    return manifest, arrays


def saved(path, manifest, arrays):
    write_bundle(path, manifest, arrays)
    return read_bundle(path)


def write_keras_mat(path, bundle, first_bn=84, first_conv=0, drop=(), change=None):
    """`bundle` in the authors' _allparams layout, Keras's counters starting at `first_conv`
    and `first_bn` (`drop`: variables left out; `change`: name -> array put in instead)."""
    out, convs, bns = {}, [op for op in bundle.ops if op["op"] == "conv"], \
        [op for op in bundle.ops if op["op"] == "batchnorm"]
    for i, op in enumerate(convs):
        signs = bundle.conv_signs(op["name"])                       # Cout Cin F F
        n = first_conv + i
        out["conv2d" + (f"_{n}" if n else "")] = ((signs.transpose(2, 3, 1, 0) + 1) // 2)[None].astype(np.uint8)
    for i, op in enumerate(bns):
        mean, var, w, b, _ = bundle.bn(op["name"])
        rows = [w, b, mean, var] if op["affine"] else [mean, var]
        out[f"batch_normalization_v1_{first_bn + i}"] = np.stack(rows).astype(np.float32)
    for name in drop:
        del out[name]
    out.update(change or {})
    scipy.io.savemat(path, out)
    return path


# ------------------------------------------------ TensorFlow's definitions, independently

def tf_same(n, k, s):
    """TensorFlow 'same': output ceil(n / s), padding total split with the odd one after."""
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return out, total // 2


def tf_conv(x, w, s):
    """x C x H x W, w Cout x Cin x k x k: Keras Conv2D(padding='same', use_bias=False)."""
    c, h, _ = x.shape
    k = w.shape[-1]
    out, before = tf_same(h, k, s)
    y = np.zeros((w.shape[0], out, out))
    for i in range(out):
        for j in range(out):
            for dy in range(k):
                for dx in range(k):
                    r, q = i * s + dy - before, j * s + dx - before
                    if 0 <= r < h and 0 <= q < h:
                        y[:, i, j] += w[:, :, dy, dx] @ x[:, r, q]
    return y


def tf_avgpool(x):
    """AveragePooling2D(3, 2, padding='same'): the mean over the window's pixels in the input."""
    c, h, _ = x.shape
    out, before = tf_same(h, 3, 2)
    y = np.zeros((c, out, out))
    for i in range(out):
        for j in range(out):
            rows = [r for r in range(i * 2 - before, i * 2 - before + 3) if 0 <= r < h]
            cols = [q for q in range(j * 2 - before, j * 2 - before + 3) if 0 <= q < h]
            y[:, i, j] = x[:, rows][:, :, cols].mean(axis=(1, 2))
    return y


def authors_resnet(variables, image):
    """The authors' ResNetModel.resnet (bn variant, depth 8) on one C x H x W image, from the
    .mat variables alone, as their inference notebook loads them."""
    convs = sorted((k for k in variables if k.startswith("conv2d")),
                   key=lambda k: int(k.split("_")[1]) if "_" in k else 0)
    bns = sorted((k for k in variables if k.startswith("batch")), key=lambda k: int(k.split("_")[-1]))

    def weight(i):
        w = variables[convs[i]][0].astype(np.float64) * 2 - 1      # F F Cin Cout
        return w.transpose(3, 2, 0, 1) * np.sqrt(2.0 / np.prod(w.shape[:3]))

    def bn(i, x):
        v = variables[bns[i]].astype(np.float64)
        gamma, beta = (v[0], v[1]) if len(v) == 4 else (1.0, 0.0)
        mean, var = v[-2], v[-1]
        return ((x - mean[:, None, None]) / np.sqrt(var[:, None, None] + 1e-5)
                * np.reshape(gamma, (-1, 1, 1)) + np.reshape(beta, (-1, 1, 1)))

    relu = lambda x: np.maximum(x, 0)                                   # noqa: E731
    residual = tf_conv(bn(0, image.astype(np.float64)), weight(0), 1)
    c = 1
    for stack in range(3):
        path = tf_conv(relu(bn(c, residual)), weight(c), 2 if stack else 1)
        path = tf_conv(relu(bn(c + 1, path)), weight(c + 1), 1)
        if stack:
            pooled = tf_avgpool(residual)
            residual = np.concatenate([pooled, np.zeros_like(pooled)])
        residual = path + residual
        c += 2
    out = bn(c + 1, tf_conv(relu(bn(c, residual)), weight(c), 1))
    return out.mean(axis=(1, 2))


# ------------------------------------------------ the tests

@pytest.mark.parametrize("size, first_conv", [(8, 0), (7, 40)],
                         ids=["even: pads bottom-right only", "odd: pads alike, convs from 40"])
def test_imported_keras_file_computes_the_authors_network(tmp_path, size, first_conv):
    manifest, arrays = keras_model(size)
    ours = saved(tmp_path / "ours.npz", manifest, arrays)
    mat = write_keras_mat(tmp_path / "m_allparams.mat", ours, first_bn=300, first_conv=first_conv)
    manifest2, arrays2, table = import_keras(str(mat), size)
    imported = saved(tmp_path / "in.npz", manifest2, arrays2)
    images = np.random.default_rng(1).integers(0, 256, (3, 3, size, size)).astype(np.uint8)
    got = run_float(imported, images)
    variables = scipy.io.loadmat(mat)
    want = np.stack([authors_resnet(variables, x) for x in images])
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
    # ours -> Keras layout -> import: the identical network, and the PyTorch model agrees
    np.testing.assert_array_equal(run_float(ours, images), got)
    with torch.no_grad():
        torch_logits = model_from_bundle(imported)(torch.from_numpy(images).float()).double().numpy()
    np.testing.assert_allclose(torch_logits, want, rtol=1e-4, atol=1e-4)
    assert [r["layer"] for r in table][:2] == (["conv2d", "conv2d_1"] if first_conv == 0
                                               else ["conv2d_40", "conv2d_41"])


@pytest.mark.parametrize("pixels", [9, 6, 4, 3, 2, 1])
def test_an_edge_windows_divide_is_the_mean_rounded_half_up_for_every_sum(pixels):
    for lo, hi in ((-128, 127), (0, 255), (-512, 511)):
        m, bias, shift = divide_exactly(lo, hi, pixels)
        for total in range(pixels * lo, pixels * hi + 1):
            want = math.floor(Fraction(total, pixels) + Fraction(1, 2))
            assert (total * m + bias) >> shift == want, (pixels, lo, hi, total)


def test_keras_padding_runs_in_the_golden_model_and_the_hardware_refuses_it(tmp_path):
    manifest, arrays = keras_model(8, width=2)
    bundle = saved(tmp_path / "b.npz", manifest, arrays)
    images = np.random.default_rng(2).integers(0, 256, (64, 3, 8, 8)).astype(np.uint8)
    qmodel = make_qmodel(*quantize_bundle(bundle, images, 8))
    pools = [op for op in qmodel.ops if op["op"] == "avgpool"]
    assert pools and all(op["count_include_pad"] is False for op in pools)
    # the pools' edge windows (2x3: 6 pixels, 2x2 corner: 4) are exact means, rounded half up
    golden = run_golden(qmodel, images, keep=True)
    for op in pools:
        src = golden.tensors[op["inputs"][0]]
        h = src.shape[2]
        out, before = tf_same(h, 3, 2)
        y = golden.tensors[op["name"]]
        for i in range(out):
            for j in range(out):
                rows = [r for r in range(i * 2 - before, i * 2 - before + 3) if 0 <= r < h]
                cols = [q for q in range(j * 2 - before, j * 2 - before + 3) if 0 <= q < h]
                total = src[:, :, rows][:, :, :, cols].sum(axis=(2, 3))
                n = len(rows) * len(cols)
                np.testing.assert_array_equal(y[:, :, i, j], np.floor_divide(2 * total + n, 2 * n))
    agreement = np.mean(golden.classes == run_float(bundle, images).argmax(1))
    assert agreement >= 0.9
    with pytest.raises(ValueError, match=r"pads \[0, 1, 0, 1\].*not in hardware"):
        CoreOptions(8, 1).plan(qmodel)


def _mat(tmp_path, **kw):
    manifest, arrays = keras_model(8)
    bundle = saved(tmp_path / "b.npz", manifest, arrays)
    return str(write_keras_mat(tmp_path / "x.mat", bundle, **kw))


@pytest.mark.parametrize("kw, message", [
    (dict(drop=["conv2d_3"]), r"conv2d_3 is missing"),
    (dict(change={"conv2d_2": np.ones((1, 3, 3, 16, 8), np.uint8)}),
     r"layer conv2d_2 has shape \[1, 3, 3, 16, 8\]; as s1b1_conv2 .* must be \[1, 3, 3, 16, 16\]"),
    (dict(change={"conv2d_1": np.full((1, 3, 3, 16, 16), 2, np.uint8)}),
     r"layer conv2d_1 holds 2; 1-bit weights are stored as 0 \(-1\) and 1 \(\+1\)"),
    (dict(change={"batch_normalization_v1_86": np.full((2, 16), np.nan, np.float32)}),
     r"layer batch_normalization_v1_86 holds a NaN"),
    (dict(drop=[f"batch_normalization_v1_{84 + i}" for i in range(9)]),
     r"8 convolutions and no batch norms \(a _01weights file\?\)"),
    (dict(drop=["batch_normalization_v1_90"]), r"batch_normalization_v1_90 is missing"),
    (dict(drop=["batch_normalization_v1_92"]), r"8 batch norms, a WRN-8-1 has 9"),
    (dict(change={"BinaryWeights": np.zeros(3)}), r"a MatConvNet export"),
])
def test_a_bad_authors_file_gets_one_line_naming_the_layer(tmp_path, capsys, kw, message):
    path = _mat(tmp_path, **kw)
    with pytest.raises(AuthorsFileError, match=message):
        import_keras(path, 8)
    assert main([path, "--out", str(tmp_path / "run"), "--input-size", "8"]) == 2
    one_stderr_line(capsys.readouterr().err, path, prefix="python -m training.import_authors: error: ")
    assert not (tmp_path / "run" / "bundle.npz").exists()


def test_not_a_mat_file_is_one_line(tmp_path):
    path = tmp_path / "model.mat"
    path.write_bytes(b"not a matlab file at all" * 10)
    with pytest.raises(AuthorsFileError, match="not a MATLAB .mat file"):
        import_keras(str(path), 32)
