"""Where the integer model rounds activations: the plan that quantization-aware training follows.

`quantize/convert.py` stores a float tensor as integers only where the hardware keeps it (an
activation's output, a residual sum, a tensor read twice, a conv output entering an add), each at
a power-of-two scale 2^-frac set by one tracked magnitude bound. This module lists those points
from the op list alone, torch-free, so training can round at exactly the same places, with the same
ranges and the same scale rule; tests/test_act_quant.py checks it against the converter's output.
"""
import math
from dataclasses import dataclass

from common.bits import int_range

LOGIT_BITS = 16      # the integer logits' width when they are requantized (quantize/convert.py)
WIDTHS = (2, 16)     # the activation and residual widths a bundle or quantized model may hold


def power_of_two_frac(bound, bits, signed):
    """Largest f with bound * 2^f inside the width (scale 2^-f): saturation only beyond it."""
    top = int_range(bits, signed)[1]
    if bound <= 0:
        return bits - 1
    return math.floor(math.log2(top / bound))


@dataclass(frozen=True)
class ScaleKey:
    """A tensor whose magnitude bound sets a power-of-two scale, and the width it must fit."""
    name: str
    bits: int
    signed: bool

    def frac(self, bound):
        return power_of_two_frac(bound, self.bits, self.signed)


@dataclass(frozen=True)
class Rounding:
    """Round a float tensor half up onto the grid 2^-frac of `scale` (a ScaleKey name), then clamp
    to [lo, hi] in grid units (None: no clamp). `floor`: a shifted ReLU's floor, which raises lo to
    floor * 2^frac rounded half up."""
    scale: str
    lo: int = None
    hi: int = None
    floor: float = None

    def limits(self, frac):
        if self.lo is None:
            return None, None
        if self.floor is None:
            return self.lo, self.hi
        return max(self.lo, math.floor(self.floor * 2.0 ** frac + 0.5)), self.hi


@dataclass
class ActPlan:
    """keys: the scale keys in op order. after[name]: the Rounding of op `name`'s output.
    add_inputs[name]: per input of add `name`, the Rounding applied before the sum."""
    act_bits: int
    residual_bits: int
    input_bits: int
    keys: list
    after: dict
    add_inputs: dict


def act_plan(ops, act_bits, residual_bits=None, input_bits=None):
    """The rounding points of the integer model of `ops` (see quantize/convert.py: Converter
    mirrors this op by op). The tensors a conv reads (activation outputs) are `act_bits` wide; a
    conv's input that is still a view of the raw image (the input BN's output) `input_bits` wide;
    the residual stream (the adds, a tensor read twice) `residual_bits` wide (both default:
    act_bits)."""
    residual_bits = residual_bits or act_bits
    input_bits = input_bits or act_bits
    keys, after, add_inputs = {}, {}, {}
    consumers = {}
    for op in ops:
        for i in op["inputs"]:
            consumers[i] = consumers.get(i, 0) + 1
    stored = {"image": True}   # an integer tensor at a power-of-two scale (raw pixels: scale 1)
    scale_of = {"image": None}  # the ScaleKey name of a stored tensor's grid
    # A view is an affine function of an integer tensor; "uniform" if that affine is one positive
    # factor for all channels with no offset (conv and scale keep it, batchnorm does not).
    uniform = {"image": True}
    # On the raw pixels: the image, or a batchnorm / scale of it not stored since (the input BN).
    # The converter stores such a view as a table of the pixel values, input_bits wide.
    on_image = {"image": True}

    def key(name, bits=act_bits, signed=True):
        keys.setdefault(name, ScaleKey(name, bits, signed))
        return name

    def store(name, bits):
        """Store a view at its own scale, signed (quantize.convert.Converter.stored)."""
        if not stored[name]:
            after[name] = Rounding(key(name, bits), *int_range(bits, True))
            stored[name], scale_of[name], on_image[name] = True, name, False

    for op in ops:
        kind, name, inputs = op["op"], op["name"], op["inputs"]
        stored[name], scale_of[name], uniform[name], on_image[name] = False, None, False, False
        if kind in ("batchnorm", "scale"):
            uniform[name] = kind == "scale" and uniform[inputs[0]]
            on_image[name] = on_image[inputs[0]]
        elif kind == "conv":
            store(inputs[0], input_bits if on_image[inputs[0]] else act_bits)
            uniform[name] = True
        elif kind == "relu":
            after[name] = Rounding(key(name, signed=False), *int_range(act_bits, False))
        elif kind == "srelu":
            after[name] = Rounding(key(name), *int_range(act_bits, True), floor=op["floor"])
        elif kind in ("avgpool", "zero_channels"):
            store(inputs[0], residual_bits)
            stored[name], scale_of[name] = True, scale_of[inputs[0]]
            if kind == "avgpool":   # the exact divide by 9, rounded half up on the input's grid
                after[name] = Rounding(scale_of[name])
        elif kind == "add":
            key(name, residual_bits)
            wide = int_range(residual_bits + 1, True)
            # Stored inputs are shifted onto the sum's grid (rounded, no clamp); a view (a conv
            # output) is requantized onto it, one bit wider.
            add_inputs[name] = [Rounding(name) if stored[i] else Rounding(name, *wide)
                                for i in inputs]
            after[name] = Rounding(name, *int_range(residual_bits, True))
        elif kind == "global_avgpool":
            if not uniform[inputs[0]]:   # per-channel affine left: the logits are requantized
                after[name] = Rounding(key(name, LOGIT_BITS), *int_range(LOGIT_BITS, True))
            continue
        else:
            raise ValueError(f"unknown op kind {kind!r}")
        if name in after:
            stored[name], scale_of[name] = True, scale_of[name] or after[name].scale
        if consumers.get(name, 0) > 1:
            store(name, residual_bits)
    return ActPlan(act_bits, residual_bits, input_bits, list(keys.values()), after, add_inputs)
