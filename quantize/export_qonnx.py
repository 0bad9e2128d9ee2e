"""A run's integer model as QONNX: what FINN and Brevitas exchange, executed by the qonnx package.

    python -m quantize.export_qonnx RUN_DIR [--model RUN_DIR/quant/qmodel.npz] [--out RUN_DIR/quant/model.qonnx]

Built from the integer model (docs/quantized-model.md), op for op, in real units: every tensor
is its integers times a power-of-two scale. The weights are `BipolarQuant` nodes (+-1); each
stored activation ends in a `Quant` node at its width and scale 2^-f; the input table is a Gather
of its values; the accumulators carry the +-1 sums at their input's scale (float32 holds them
exactly: the export refuses an accumulator wider than 25 bits); each requantization
(i * M + B) >> s runs in int64 (Mul, Add, and Mod and Div for the floor), as does the pool's
divide, so the logits are the golden model's, integer for integer. Input "image": N x C x H x W
float32 pixels 0..255; output "logits_out": N x classes, the golden model's integer logits times
logits_scale.
"""
import os
import sys

import numpy as np

from common.cli import OneLineParser, UsageError, path_arg, run_main
from common.files import write_bytes, writing
from quantize.float_reference import pool_divisors
from quantize.qmodel import QModelError, pool_constants, read_qmodel
from training.export_onnx import channel_pads, window_attributes

PROG = "python -m quantize.export_qonnx"
OPSET = 17
QONNX_DOMAIN = "qonnx.custom_op.general"
WIDE_BITS = 32          # a rounding shift inside an add: no clamp at any width the model has


class _Builder:
    def __init__(self, qmodel):
        from onnx import helper, numpy_helper
        self.helper, self.numpy_helper = helper, numpy_helper
        self.qmodel, self.nodes, self.constants = qmodel, [], []
        self.scale = {}                 # tensor name -> its values' real step (int x scale)

    def const(self, name, array, dtype=np.float32):
        if any(c.name == name for c in self.constants):      # a second one would replace the first
            raise ValueError(f"constant {name!r} made twice")
        self.constants.append(self.numpy_helper.from_array(np.asarray(array, dtype), name))
        return name

    def node(self, kind, inputs, output, domain="", **attrs):
        self.nodes.append(self.helper.make_node(kind, inputs, [output], name=output,
                                                domain=domain, **attrs))
        return output

    def quant(self, x, out, step, bits, signed):
        """Quant at `step` (a power of two), `bits` wide: floor(x / step) clamped, times step."""
        return self.node("Quant", [x, self.const(out + ".scale", step), self.const(out + ".zero", 0.0),
                                   self.const(out + ".bits", bits)], out, domain=QONNX_DOMAIN,
                         signed=int(signed), narrow=0, rounding_mode="FLOOR")

    def requant(self, x, name, multiplier, bias, shift, op):
        """(i * M + B) >> s on the integers i of `x` (per channel or per position arrays of
        integers, broadcast against it), in int64 where it is exact, then the op's Quant (its
        width and step: the integers are on its grid, so it only clamps) and clamp."""
        from onnx import TensorProto
        out = op["out"]
        step = out["scale"]
        shape = np.shape(multiplier)
        i = self.node("Mul", [x, self.const(name + ".unit", 1.0 / self.scale[x])], name + ".int")
        i = self.node("Cast", [i], name + ".i64", to=TensorProto.INT64)
        y = self.node("Mul", [i, self.const(name + ".m", multiplier, np.int64)], name + ".times_m")
        y = self.node("Add", [y, self.const(name + ".b", np.broadcast_to(bias, shape), np.int64)],
                      name + ".plus_b")
        # floor division by 2^s: ONNX's integer Div truncates, so the remainder (Mod, fmod=0:
        # of the divisor's sign, >= 0) comes off first
        divisor = self.const(name + ".divisor", np.broadcast_to(2 ** np.asarray(shift, np.int64), shape),
                             np.int64)
        rest = self.node("Mod", [y, divisor], name + ".rest", fmod=0)
        y = self.node("Div", [self.node("Sub", [y, rest], name + ".whole"), divisor], name + ".shifted")
        y = self.node("Cast", [y], name + ".f32", to=TensorProto.FLOAT)
        y = self.node("Mul", [y, self.const(name + ".step", step)], name + ".real")
        full = (-(1 << (out["bits"] - 1)), (1 << (out["bits"] - 1)) - 1) if out["signed"] else \
            (0, (1 << out["bits"]) - 1)
        clamp = (op["lo"], op["hi"]) if "lo" in op else full     # an avgpool has no clamp
        q = self.quant(y, name if clamp == full else name + ".q", step, out["bits"], out["signed"])
        if clamp != full:
            q = self.node("Clip", [q, self.const(name + ".lo", clamp[0] * step),
                                   self.const(name + ".hi", clamp[1] * step)], name)
        self.scale[name] = step
        return q

    def channels(self, values, ndim):
        return np.reshape(np.asarray(values, np.int64), (1, -1) + (1,) * (ndim - 2))


FLOAT32_INTEGER_BITS = 25      # signed: every integer of |v| <= 2^24 is a float32


def qonnx_model(qmodel):
    """The onnx.ModelProto of `qmodel` (a quantize.qmodel.QModel) with QONNX nodes."""
    from onnx import TensorProto, helper
    wide = [op["name"] for op in qmodel.ops
            if op["op"] in ("conv", "global_sum") and op["out"]["bits"] > FLOAT32_INTEGER_BITS]
    if wide:
        raise ValueError(f"{wide[0]} needs a {qmodel.op(wide[0])['out']['bits']}-bit accumulator; "
                         f"ONNX's float32 Conv holds integers of {FLOAT32_INTEGER_BITS} bits exactly")
    b = _Builder(qmodel)
    t = qmodel.tensors
    for op in qmodel.ops:
        kind, name, x = op["op"], op["name"], op["inputs"]
        ndim = len(qmodel.shapes[name]) + 1
        if kind == "lut":
            table = t[op["table"]].astype(np.float64)            # C x 256
            c = table.shape[0]
            index = b.node("Cast", [x[0]], name + ".pixel", to=TensorProto.INT64)
            index = b.node("Add", [index, b.const(name + ".rows", np.arange(c).reshape(1, c, 1, 1) * 256,
                                                  np.int64)], name + ".index")
            values = b.node("Gather", [b.const(name + ".table", table.reshape(-1) * op["out"]["scale"]),
                                       index], name + ".values")
            b.quant(values, name, op["out"]["scale"], op["out"]["bits"], op["out"]["signed"])
            b.scale[name] = op["out"]["scale"]
        elif kind == "conv":
            signs = b.node("BipolarQuant", [b.const(name + ".weight", qmodel.conv_signs(op)),
                                            b.const(name + ".one", 1.0)], name + ".signs",
                           domain=QONNX_DOMAIN)
            b.node("Conv", [x[0], signs], name, **window_attributes(op))
            b.scale[name] = b.scale[x[0]]                        # the +-1 sums
        elif kind == "requant":
            s = op["shift"]
            half = (1 << (s - 1)) if s > 0 else 0
            b.requant(x[0], name, b.channels(t[op["multiplier"]], ndim),
                      b.channels(t[op["bias"]].astype(np.int64) + half, ndim), s, op)
        elif kind == "avgpool":
            c = qmodel.shapes[x[0]][0]
            k = op["kernel"]
            total = b.node("Conv", [x[0], b.const(name + ".ones", np.ones((c, 1, k, k)))], name + ".sum",
                           group=c, **window_attributes(op))
            pixels = np.broadcast_to(pool_divisors(op, qmodel.shapes[x[0]][1:]),
                                     (1, 1, *qmodel.shapes[name][1:]))
            table = pool_constants(op)
            b.scale[total] = b.scale[x[0]]
            b.requant(total, name, *(np.vectorize(lambda n, j=j: table[n][j])(pixels) for j in range(3)), op)
        elif kind == "zero_channels":
            b.node("Pad", [x[0], b.const(name + ".pads", channel_pads(op), np.int64)], name,
                   mode="constant")
            b.scale[name] = b.scale[x[0]]
        elif kind == "add":
            step = op["out"]["scale"]
            aligned = []
            for i, (src, shift) in enumerate(zip(x, op["shifts"])):
                if shift > 0:     # a rounding right shift: half a new step added, then FLOOR
                    new = b.scale[src] * 2.0 ** shift
                    up = b.node("Add", [src, b.const(f"{name}.half{i}", new / 2)], f"{name}.up{i}")
                    src = b.quant(up, f"{name}.in{i}", new, WIDE_BITS, True)
                aligned.append(src)
            total = b.node("Add", aligned, name + ".sum")
            b.scale[total] = step
            b.requant(total, name, np.ones(1, np.int64), np.zeros(1, np.int64), 0, op)
        elif kind == "global_sum":
            b.node("ReduceSum", [x[0], b.const(name + ".axes", [2, 3], np.int64)], name, keepdims=0)
            b.scale[name] = b.scale[x[0]]
        else:
            raise ValueError(f"op {name!r}: no QONNX form for integer op {kind!r}")
    logits = qmodel.manifest["logits"]
    # the output in the golden model's units: its integer logits times logits_scale
    b.node("Mul", [logits, b.const("logits_out.unit", qmodel.manifest["logits_scale"] / b.scale[logits])],
           "logits_out")
    c, h, w = qmodel.input_shape
    graph = helper.make_graph(
        b.nodes, "bitwrn-qonnx",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", c, h, w])],
        [helper.make_tensor_value_info("logits_out", TensorProto.FLOAT, ["N", qmodel.num_classes])],
        b.constants)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET),
                                                    helper.make_opsetid(QONNX_DOMAIN, 1)],
                              producer_name="bitwrn")
    return model


def run_qonnx(model, images):
    """Logits of `images` (N x C x H x W) by qonnx's own executor (qonnx.core.onnx_exec)."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes
    wrapper = ModelWrapper(model)
    wrapper.set_tensor_shape("image", list(np.shape(images)))     # the batch at hand
    wrapper = wrapper.transform(InferShapes())
    return execute_onnx(wrapper, {"image": np.asarray(images, np.float32)})["logits_out"]


def build_parser():
    p = OneLineParser(prog=PROG, description=__doc__.split("\n")[0])
    p.add_argument("run_dir", type=path_arg, metavar="RUN_DIR", help="run folder holding quant/qmodel.npz")
    p.add_argument("--model", type=path_arg, default=None, help="integer model (default RUN_DIR/quant/qmodel.npz)")
    p.add_argument("--out", type=path_arg, default=None, help="the file (default RUN_DIR/quant/model.qonnx)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)

    def work():
        path = args.model or os.path.join(args.run_dir, "quant", "qmodel.npz")
        if not os.path.isfile(path):
            raise UsageError(f"no integer model at {path}: python -m quantize {args.run_dir} makes one")
        out = args.out or os.path.join(os.path.dirname(path), "model.qonnx")
        data = qonnx_model(read_qmodel(path)).SerializeToString()
        with writing(out, "nothing was written"):
            write_bytes(out, data)
        print(f"wrote {out} ({len(data):,} bytes): input 'image' float32 pixels 0..255, output "
              "'logits_out' (the integer logits times logits_scale); run it with "
              "qonnx.core.onnx_exec.execute_onnx")
        return 0
    return run_main(PROG, work, errors=(QModelError, ValueError))


if __name__ == "__main__":
    sys.exit(main())
