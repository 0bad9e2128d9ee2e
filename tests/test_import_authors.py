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
from training.import_authors import AuthorsFileError, import_authors, main
from training.model import WideResNet


def keras_model(size, width=1, classes=10, seed=0, **graph):
    """A WRN-8-k with Keras padding (or `graph`), random signs and BN moments, as our bundle."""
    torch.manual_seed(seed)
    model = WideResNet(8, width, 3, classes, size, **(graph or dict(padding="keras"))).eval()
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


def naive_conv(x, w, stride, before, out):
    """x C x H x W, w Cout x Cin x k x k: cross-correlation, output `out` x `out`, the input's
    first pixel at window offset `before` (zeros outside the input)."""
    h, k = x.shape[1], w.shape[-1]
    y = np.zeros((w.shape[0], out, out))
    for i in range(out):
        for j in range(out):
            for dy in range(k):
                for dx in range(k):
                    r, q = i * stride + dy - before, j * stride + dx - before
                    if 0 <= r < h and 0 <= q < h:
                        y[:, i, j] += w[:, :, dy, dx] @ x[:, r, q]
    return y


def tf_conv(x, w, s):
    """Keras Conv2D(padding='same', use_bias=False)."""
    out, before = tf_same(x.shape[1], w.shape[-1], s)
    return naive_conv(x, w, s, before, out)


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
    manifest2, arrays2, table = import_authors(str(mat), size)
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
     r"layer conv2d_2 has shape \[3, 3, 16, 8\]; as s1b1_conv2 of a WRN-8-1 it must be \[3, 3, 16, 16\]"),
    (dict(change={"conv2d_1": np.full((1, 3, 3, 16, 16), 2, np.uint8)}),
     r"layer conv2d_1 holds 2; 1-bit weights are stored as 0 \(-1\) and 1 \(\+1\)"),
    (dict(change={"batch_normalization_v1_86": np.full((2, 16), np.nan, np.float32)}),
     r"layer batch_normalization_v1_86 holds a NaN"),
    (dict(drop=[f"batch_normalization_v1_{84 + i}" for i in range(9)]),
     r"8 convolutions and no batch norms \(a _01weights file\?\)"),
    (dict(drop=["batch_normalization_v1_90"]), r"batch_normalization_v1_90 is missing"),
    (dict(drop=["batch_normalization_v1_92"]), r"8 batch norms, a WRN-8-1 has 9"),
])
def test_a_bad_authors_file_gets_one_line_naming_the_layer(tmp_path, capsys, kw, message):
    path = _mat(tmp_path, **kw)
    with pytest.raises(AuthorsFileError, match=message):
        import_authors(path, 8)
    assert main([path, "--out", str(tmp_path / "run"), "--input-size", "8"]) == 2
    one_stderr_line(capsys.readouterr().err, path, prefix="python -m training.import_authors: error: ")
    assert not (tmp_path / "run" / "bundle.npz").exists()


def test_not_a_mat_file_is_one_line(tmp_path):
    path = tmp_path / "model.mat"
    path.write_bytes(b"not a matlab file at all" * 10)
    with pytest.raises(AuthorsFileError, match="not a MATLAB .mat file"):
        import_authors(str(path), 32)


# ------------------------------------------------ MatConvNet

def write_matconvnet_mat(path, bundle, change=None):
    """`bundle` (a "matconvnet" WRN) in the authors' MatConvNet layout: cell arrays
    BinaryWeights {1 x L} of 0/1 [F, F, Cin, Cout], Moments {(L+1) x 1} of [mean, sigma],
    BNG and BNB {(L+1) x 1} of [C, 1], and LayerWeights, Stride, Padding."""
    convs = [op for op in bundle.ops if op["op"] == "conv"]
    bns = [op for op in bundle.ops if op["op"] == "batchnorm"]

    def cells(arrays, shape):
        out = np.empty(shape, dtype=object)
        for i, a in enumerate(arrays):
            out.flat[i] = a
        return out
    moments, gains, biases = [], [], []
    for op in bns:
        mean, var, w, b, eps = bundle.bn(op["name"])
        moments.append(np.stack([mean, np.sqrt(var.astype(np.float64) + eps)], 1).astype(np.float32))
        gains.append((np.ones_like(mean) if w is None else w).reshape(-1, 1))
        biases.append((np.zeros_like(mean) if b is None else b).reshape(-1, 1))
    out = dict(
        BinaryWeights=cells([((bundle.conv_signs(op["name"]).transpose(2, 3, 1, 0) + 1) // 2).astype(np.uint8)
                             for op in convs], (1, len(convs))),
        Moments=cells(moments, (len(bns), 1)), BNG=cells(gains, (len(bns), 1)),
        BNB=cells(biases, (len(bns), 1)),
        LayerWeights=np.array([[op["scale"]] for op in convs], np.float32),
        Stride=np.array([[op["stride"] for op in convs]], np.uint8),
        Padding=np.array([[op["padding"] for op in convs]], np.uint8))
    out.update(change or {})
    scipy.io.savemat(path, out)
    return path


def vl_conv(x, w, stride, pad):
    """vl_nnconv: cross-correlation, zero padding `pad` on every side, floor((H + 2p - k) / s) + 1."""
    return naive_conv(x, w, stride, pad, (x.shape[1] + 2 * pad - w.shape[-1]) // stride + 1)


def vl_avgpool(x):
    """vl_nnpool(x, 3, 'method', 'avg', 'stride', 2, 'pad', 1): the window clipped to the image
    and its sum divided by the pixels left (pooling_cpu.cpp's acc_sum)."""
    c, h, _ = x.shape
    out = (h + 2 - 3) // 2 + 1
    y = np.zeros((c, out, out))
    for i in range(out):
        for j in range(out):
            r1, q1 = max(i * 2 - 1, 0), max(j * 2 - 1, 0)
            r2, q2 = min(i * 2 - 1 + 3, h), min(j * 2 - 1 + 3, h)
            y[:, i, j] = x[:, r1:r2, q1:q2].sum(axis=(1, 2)) / ((r2 - r1) * (q2 - q1))
    return y


def authors_matlab(variables, image):
    """Their Test_1_bit_per_weight_models.m on one C x H x W image, from the .mat alone."""
    cell = lambda k: list(np.asarray(variables[k], dtype=object).reshape(-1, order="F"))   # noqa: E731
    weights, moments, gains, biases = (cell(k) for k in ("BinaryWeights", "Moments", "BNG", "BNB"))
    scales = variables["LayerWeights"].reshape(-1)
    stride, pad = variables["Stride"].reshape(-1), variables["Padding"].reshape(-1)

    def bnorm(i, x):
        m = moments[i].astype(np.float64)
        g, b = gains[i].reshape(-1, 1, 1), biases[i].reshape(-1, 1, 1)
        return g * (x - m[:, 0, None, None]) / m[:, 1, None, None] + b
    x = image.astype(np.float64)
    for layer in range(len(weights)):
        x = np.maximum(0, bnorm(layer, x))
        w = (weights[layer].astype(np.float64) * 2 - 1).transpose(3, 2, 0, 1) * scales[layer]
        x = vl_conv(x, w, int(stride[layer]), int(pad[layer]))
        if layer % 2 == 0:                   # their ConvLayer is 1-based: odd layers
            if layer == 0:
                residual = x
            else:
                if residual.shape[1] > x.shape[1]:
                    pooled = vl_avgpool(residual)
                    residual = np.concatenate([pooled, np.zeros_like(pooled)])
                residual = residual + x
                x = residual
    return bnorm(len(weights), x).mean(axis=(1, 2))


@pytest.mark.parametrize("size", [8, 7])
def test_imported_matconvnet_file_computes_the_authors_matlab_network(tmp_path, size):
    manifest, arrays = keras_model(size, padding="matconvnet", input_relu=True)
    ours = saved(tmp_path / "ours.npz", manifest, arrays)
    mat = write_matconvnet_mat(tmp_path / "mcn.mat", ours)
    manifest2, arrays2, table = import_authors(str(mat), size)
    imported = saved(tmp_path / "in.npz", manifest2, arrays2)
    assert imported.config["padding"] == "matconvnet" and imported.config["input_relu"] is True
    images = np.random.default_rng(3).integers(0, 256, (3, 3, size, size)).astype(np.uint8)
    got = run_float(imported, images)
    want = np.stack([authors_matlab(scipy.io.loadmat(mat), x) for x in images])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)    # sigma stored as float32
    with torch.no_grad():
        torch_logits = model_from_bundle(imported)(torch.from_numpy(images).float()).double().numpy()
    np.testing.assert_allclose(torch_logits, want, rtol=1e-4, atol=1e-4)
    assert table[0]["layer"] == "BinaryWeights{1}" and table[-1]["layer"] == "Moments{9}"


@pytest.mark.parametrize("change, message", [
    (dict(LayerWeights=np.full((8, 1), 0.5, np.float32)), r"LayerWeights is \[0.5, 0.5"),
    (dict(Stride=np.ones((1, 8), np.uint8)), r"Stride is \[1.0, 1.0"),
    (dict(BNG=None), r"BNG\{2\}/BNB\{2\} is not 1/0"),
])
def test_a_bad_matconvnet_file_gets_one_line(tmp_path, change, message):
    manifest, arrays = keras_model(8, padding="matconvnet", input_relu=True)
    bundle = saved(tmp_path / "b.npz", manifest, arrays)
    if "BNG" in change:                        # the second BN with a gain of 2
        bns = [op for op in bundle.ops if op["op"] == "batchnorm"]
        gains = np.empty((len(bns), 1), dtype=object)
        for i, op in enumerate(bns):
            gains[i, 0] = np.full((bundle.bn(op["name"])[0].size, 1), 2.0 if i == 1 else 1.0)
        change = dict(BNG=gains)
    path = write_matconvnet_mat(tmp_path / "m.mat", bundle, change)
    with pytest.raises(AuthorsFileError, match=message):
        import_authors(str(path), 8)
