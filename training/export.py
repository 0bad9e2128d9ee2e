"""Export a trained WideResNet into the deployment bundle (format: docs/bundle.md)."""
import copy

import torch

from training.bundle import FORMAT, VERSION, pack_signs, write_bundle
from training.container import complete_manifest
from training.model import binary_sign


def _f32(t):
    return t.detach().cpu().to(torch.float32).numpy().copy()


def activations_of(model):
    """The bundle's `activations`: None for float activations, else the trained width, how the
    scales were found and each scale key's bound (the integer model derives the same scales)."""
    quant = model.act_quant
    if quant is None:
        return None
    bounds = quant.bound_values()
    unseen = [k for k, v in bounds.items() if not v > 0]
    if unseen:
        raise ValueError(f"activation scale(s) {', '.join(unseen)} never saw data: train the "
                         "model before exporting it")
    return dict(bits=quant.act_bits, residual_bits=quant.residual_bits, scales=quant.scales,
                bounds=bounds)


def bundle_from_model(model, metadata=None):
    """(manifest, arrays) for `model`; the graph is the model's own op list, as trained."""
    cfg = dict(model.config)
    arrays, tensors = {}, {}
    for op in model.ops:
        name = op["name"]
        if op["op"] == "conv":
            conv = model.layers[name]
            if op["binary"]:
                # binary_sign is the sign the forward pass used, so bits == trained network.
                signs = binary_sign(conv.weight.detach().cpu()).numpy()
                key = name + ".weight_bits"
                arrays[key] = pack_signs(signs)
                tensors[key] = {"logical_shape": list(signs.shape), "count": int(signs.size)}
            else:
                arrays[name + ".weight"] = _f32(conv.weight)
        elif op["op"] == "batchnorm":
            bn = model.layers[name]
            if bn.running_mean is None:
                raise ValueError(f"batchnorm {name!r} has no running statistics to export")
            arrays[name + ".mean"] = _f32(bn.running_mean)
            arrays[name + ".var"] = _f32(bn.running_var)
            if op["affine"]:
                arrays[name + ".weight"] = _f32(bn.weight)
                arrays[name + ".bias"] = _f32(bn.bias)
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "model": cfg,
        "num_classes": cfg["num_classes"],
        "input_shape": [cfg["in_channels"], cfg["input_size"], cfg["input_size"]],
        "variant": cfg["variant"],
        "weights": cfg["weights"],
        "ops": copy.deepcopy(model.ops),
        "tensors": tensors,
        "metadata": dict(metadata or {}),
        "activations": activations_of(model),
    }
    return complete_manifest(manifest, arrays), arrays


def export_bundle(model, path, metadata=None):
    """Write `model` to `path` atomically; returns the manifest written."""
    manifest, arrays = bundle_from_model(model, metadata)
    return write_bundle(path, manifest, arrays)

