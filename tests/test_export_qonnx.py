"""`python -m quantize.export_qonnx`: the integer model as QONNX (BipolarQuant weights, Quant
activations at the integer model's widths and power-of-two scales), executed by qonnx's own
executor and compared with the golden model, every logit as an integer."""
import numpy as np
import onnx
import pytest

from quantize.export_qonnx import main, qonnx_model, run_qonnx
from quantize.golden import run as run_golden
from quantize.qmodel import write_qmodel
from quantize.random_model import random_images, random_qmodel
from tests.cli_checks import one_stderr_line


@pytest.mark.parametrize("kw", [dict(), dict(variant="srelu"), dict(padding="keras", input_size=8),
                                dict(act_bits=4, residual_bits=8)],
                         ids=["bn 8-bit", "srelu", "keras padding", "4-bit, 8-bit residual"])
def test_qonnx_gives_the_golden_models_integer_logits(kw):
    qmodel = random_qmodel(depth=8, width=2, in_channels=3, seed=6, **dict(dict(input_size=12), **kw))
    images = random_images(64, qmodel.input_shape, 11)
    logits = run_qonnx(qonnx_model(qmodel), images) / qmodel.manifest["logits_scale"]
    golden = run_golden(qmodel, images)
    ints = np.round(logits).astype(np.int64)
    assert np.abs(logits - ints).max() < 0.01              # integers, not values near them
    np.testing.assert_array_equal(ints, golden.logits)


def test_the_graph_holds_qonnx_quant_nodes_at_the_models_widths():
    qmodel = random_qmodel(depth=8, width=1, input_size=8, act_bits=4, residual_bits=8)
    graph = qonnx_model(qmodel).graph
    kinds = [n.op_type for n in graph.node]
    assert kinds.count("BipolarQuant") == sum(op["op"] == "conv" for op in qmodel.ops)
    constants = {c.name: onnx.numpy_helper.to_array(c) for c in graph.initializer}
    quant = {n.name: n for n in graph.node if n.op_type == "Quant"}
    relu = quant["s1b1_a1_relu"]
    assert constants[relu.input[3]] == 4 and constants[relu.input[1]] == 2.0 ** -qmodel.op("s1b1_a1_relu")["out"]["frac"]
    assert constants[quant["s1b1_add"].input[3]] == 8
    assert all(n.domain == "qonnx.custom_op.general" for n in graph.node if "Quant" in n.op_type)


def test_the_cli_writes_the_file_and_refuses_a_run_without_an_integer_model(tmp_path, capsys):
    qmodel = random_qmodel(depth=8, width=1, input_size=8)
    write_qmodel(tmp_path / "run" / "quant" / "qmodel.npz", qmodel.manifest, qmodel.tensors)
    assert main([str(tmp_path / "run")]) == 0
    model = onnx.load(tmp_path / "run" / "quant" / "model.qonnx")
    images = random_images(4, qmodel.input_shape, 2)
    np.testing.assert_array_equal(np.round(run_qonnx(model, images) / qmodel.manifest["logits_scale"]),
                                  run_golden(qmodel, images).logits)
    assert main([str(tmp_path / "other")]) == 2
    one_stderr_line(capsys.readouterr().err, "no integer model at", "python -m quantize",
                    prefix="python -m quantize.export_qonnx: error: ")


def test_an_accumulator_float32_cannot_hold_is_refused():
    qmodel = random_qmodel(depth=8, width=1, input_size=8)
    wide = dict(qmodel.manifest)
    wide["ops"] = [dict(op, out=dict(op["out"], bits=26)) if op["name"] == "conv0_acc" else op
                   for op in qmodel.ops]
    with pytest.raises(ValueError, match="conv0_acc needs a 26-bit accumulator"):
        qonnx_model(type(qmodel)(wide, qmodel.tensors, shapes=qmodel.shapes))
