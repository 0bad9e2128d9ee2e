"""`python -m training.export_onnx`: the bundle as a float ONNX model that onnxruntime runs.

Tolerance: onnxruntime computes in float32, the float reference in float64; every logit is
within 1e-4 of the image's largest |logit| (measured: under 5e-6 on these models), and the
classes agree."""
import numpy as np
import onnx
import onnxruntime
import pytest

from quantize.float_reference import run_float
from quantize.random_model import random_bundle, random_images
from tests.cli_checks import one_stderr_line
from training.bundle import write_bundle
from training.export_onnx import main, onnx_model

TOLERANCE = 1e-4


def run_onnx(model, images):
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"image": images.astype(np.float32)})[0]


@pytest.mark.parametrize("kw", [dict(variant="bn"), dict(variant="srelu"),
                                dict(padding="keras", input_size=8), dict(padding="keras", input_size=7)],
                         ids=["bn", "srelu", "keras even", "keras odd"])
def test_onnxruntime_gives_the_float_references_logits(kw):
    kw = dict(dict(input_size=12), **kw)
    bundle = random_bundle(8, 2, 3, 10, seed=2, **kw)
    images = random_images(100, bundle.manifest["input_shape"], 9)
    got, want = run_onnx(onnx_model(bundle), images), run_float(bundle, images)
    assert got.shape == want.shape == (100, 10)
    assert np.all(np.abs(got - want) <= TOLERANCE * np.abs(want).max(axis=1, keepdims=True))
    np.testing.assert_array_equal(got.argmax(1), want.argmax(1))


def test_the_onnx_graph_carries_the_ops_padding_and_pool_divisor():
    bundle = random_bundle(8, 1, 3, 10, 8, seed=1, padding="keras")
    nodes = {n.name: n for n in onnx_model(bundle).graph.node}
    attrs = lambda n: {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}  # noqa: E731
    assert attrs(nodes["s2b1_conv1"])["pads"] == [0, 0, 1, 1]       # top, left, bottom, right
    assert attrs(nodes["s1b1_conv1"])["pads"] == [1, 1, 1, 1]
    pool = attrs(nodes["s2b1_pool"])
    assert pool["pads"] == [0, 0, 1, 1] and pool["count_include_pad"] == 0
    torch_padded = {n.name: n for n in onnx_model(random_bundle(8, 1, 1, 10, 8, seed=1)).graph.node}
    assert attrs(torch_padded["s2b1_pool"]) == dict(kernel_shape=[3, 3], strides=[2, 2],
                                                    pads=[1, 1, 1, 1], count_include_pad=1)


def test_the_cli_writes_a_model_and_refuses_a_missing_bundle(tmp_path, capsys):
    bundle = random_bundle(8, 1, 1, 10, 8, seed=3)
    (tmp_path / "run").mkdir()
    write_bundle(tmp_path / "run" / "bundle.npz", bundle.manifest, bundle.tensors)
    assert main([str(tmp_path / "run")]) == 0
    model = onnx.load(tmp_path / "run" / "model.onnx")
    images = random_images(5, (1, 8, 8), 1)
    np.testing.assert_allclose(run_onnx(model, images), run_float(bundle, images), rtol=1e-4, atol=1e-4)
    assert main([str(tmp_path / "nowhere")]) == 2
    one_stderr_line(capsys.readouterr().err, "no bundle at", prefix="python -m training.export_onnx: error: ")
