"""A run's model as ONNX: the float network that onnxruntime runs.

    python -m training.export_onnx RUN_DIR [--out RUN_DIR/model.onnx]

Built from RUN_DIR/bundle.npz alone (docs/bundle.md), op for op: BatchNormalization, Conv with
the 1-bit weights as +-scale float constants (Eq. 1), Relu or the shifted ReLU (Max with -1),
AveragePool with the op's padding per side and its count_include_pad, Pad for the appended zero
channels, Add, Mul for the srelu head's 1/T, GlobalAveragePool and Flatten. Input "image":
N x C x H x W float32 raw pixels 0..255, as the bundle takes them; output "logits": N x classes.
Opset 17, float32: its logits follow quantize/float_reference.py (float64) to within float32
rounding (tests/test_export_onnx.py states the tolerance).
"""
import os
import sys

import numpy as np

from common.cli import OneLineParser, path_arg, run_main
from common.files import write_bytes, writing
from training.bundle import BundleError, read_run_bundle
from training.graph import pads

PROG = "python -m training.export_onnx"
OPSET = 17


def window_attributes(op):
    """ONNX Conv's and AveragePool's kernel_shape, strides and pads ([top, left, bottom, right])
    of a conv or avgpool `op`."""
    top, bottom, left, right = pads(op)
    return dict(kernel_shape=[op["kernel"]] * 2, strides=[op["stride"]] * 2,
                pads=[top, left, bottom, right])


def channel_pads(op):
    """ONNX Pad's pads (N, C, H, W begins, then ends) of a zero_channels `op`: zeros after the
    existing channels."""
    return np.array([0, 0, 0, 0, 0, op["out_channels"] - op["in_channels"], 0, 0], np.int64)


def onnx_model(bundle):
    """The onnx.ModelProto of `bundle` (a training.bundle.Bundle)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, constants = [], []

    def const(name, array):
        constants.append(numpy_helper.from_array(np.asarray(array, np.float32), name))
        return name

    for op in bundle.ops:
        kind, name, x = op["op"], op["name"], op["inputs"]
        if kind == "conv":
            weight = bundle.conv_weight(name)        # scale * sign for 1-bit, as stored for float
            nodes.append(helper.make_node("Conv", [x[0], const(name + ".weight", weight)], [name],
                                          name=name, **window_attributes(op)))
        elif kind == "batchnorm":
            mean, var, w, b, eps = bundle.bn(name)
            w = np.ones_like(mean) if w is None else w
            b = np.zeros_like(mean) if b is None else b
            nodes.append(helper.make_node(
                "BatchNormalization", [x[0], const(name + ".weight", w), const(name + ".bias", b),
                                       const(name + ".mean", mean), const(name + ".var", var)],
                [name], name=name, epsilon=float(eps)))
        elif kind == "relu":
            nodes.append(helper.make_node("Relu", x, [name], name=name))
        elif kind == "srelu":
            nodes.append(helper.make_node("Max", [x[0], const(name + ".floor", op["floor"])],
                                          [name], name=name))
        elif kind == "avgpool":
            nodes.append(helper.make_node("AveragePool", x, [name], name=name,
                                          count_include_pad=int(op["count_include_pad"]),
                                          **window_attributes(op)))
        elif kind == "zero_channels":
            amounts = numpy_helper.from_array(channel_pads(op), name + ".pads")
            constants.append(amounts)
            nodes.append(helper.make_node("Pad", [x[0], amounts.name], [name], name=name,
                                          mode="constant"))
        elif kind == "add":
            nodes.append(helper.make_node("Add", x, [name], name=name))
        elif kind == "scale":
            nodes.append(helper.make_node("Mul", [x[0], const(name + ".factor", op["factor"])],
                                          [name], name=name))
        elif kind == "global_avgpool":
            nodes.append(helper.make_node("GlobalAveragePool", x, [name + ".pooled"], name=name + ".pool"))
            nodes.append(helper.make_node("Flatten", [name + ".pooled"], [name], name=name))
        else:
            raise ValueError(f"op {name!r}: no ONNX form for kind {kind!r}")
    c, h, w = bundle.manifest["input_shape"]
    graph = helper.make_graph(
        nodes, "bitwrn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", c, h, w])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT,
                                       ["N", bundle.manifest["num_classes"]])],
        constants)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="bitwrn")
    model.doc_string = (f"{bundle.manifest['variant']} WRN-{bundle.config['depth']}-"
                        f"{bundle.config['width']} from {os.path.basename(bundle.path)}: input "
                        "raw pixels 0..255 (N x C x H x W float32), output logits")
    onnx.checker.check_model(model)
    return model


def build_parser():
    p = OneLineParser(prog=PROG, description=__doc__.split("\n")[0])
    p.add_argument("run_dir", type=path_arg, metavar="RUN_DIR", help="run folder holding bundle.npz")
    p.add_argument("--out", type=path_arg, default=None, help="the ONNX file (default RUN_DIR/model.onnx)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)

    def work():
        out = args.out or os.path.join(args.run_dir, "model.onnx")
        data = onnx_model(read_run_bundle(args.run_dir)).SerializeToString()
        with writing(out, "nothing was written"):
            write_bytes(out, data)
        print(f"wrote {out} ({len(data):,} bytes, opset {OPSET}): input 'image' float32 pixels "
              "0..255, output 'logits'")
        return 0
    return run_main(PROG, work, errors=(BundleError,))


if __name__ == "__main__":
    sys.exit(main())
