"""Export a trained WideResNet into the deployment bundle (format: docs/bundle.md)."""
import copy

import torch

from training.bundle import FORMAT, VERSION, pack_signs, write_bundle
from training.container import complete_manifest
from training.model import WideResNet, binary_sign


def _f32(t):
    return t.detach().cpu().to(torch.float32).numpy().copy()


def activations_of(model):
    """The bundle's `activations`: None for float activations, else the trained widths, how the
    scales were found and each scale key's bound (the integer model derives the same scales)."""
    quant = model.act_quant
    if quant is None:
        return None
    bounds = quant.bound_values()
    unseen = [k for k, v in bounds.items() if not v > 0]
    if unseen:
        raise ValueError(f"activation scale(s) {', '.join(unseen)} never saw data: train the "
                         "model before exporting it")
    return dict(bits=quant.act_bits, residual_bits=quant.residual_bits,
                input_bits=quant.input_bits, scales=quant.scales, bounds=bounds)


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


def model_from_bundle(bundle):
    """The WideResNet (eval mode) whose forward the bundle describes, trained activation rounding
    included: 1-bit weights as +-1 (their scale is Eq. 1's constant), BN moments and the
    activations' bounds from the bundle. Inverse of bundle_from_model for the forward pass."""
    cfg, act = bundle.config, bundle.activations
    model = WideResNet(cfg["depth"], cfg["width"], cfg["in_channels"], cfg["num_classes"],
                       cfg["input_size"], cfg["weights"], cfg["variant"], cfg["srelu_temperature"],
                       act and act["bits"], act["scales"] if act else "calibrated",
                       act and act.get("residual_bits"), act and act.get("input_bits"),
                       cfg.get("padding", "torch"), cfg.get("input_relu", False))
    with torch.no_grad():
        for op in model.ops:
            name = op["name"]
            if op["op"] == "conv":
                weight = (bundle.conv_signs(name) if op["binary"]
                          else bundle.tensors[name + ".weight"])
                model.layers[name].weight.copy_(torch.from_numpy(weight.astype("float32")))
            elif op["op"] == "batchnorm":
                mean, var, w, b, _ = bundle.bn(name)
                bn = model.layers[name]
                bn.running_mean.copy_(torch.from_numpy(mean))
                bn.running_var.copy_(torch.from_numpy(var))
                if w is not None:
                    bn.weight.copy_(torch.from_numpy(w))
                    bn.bias.copy_(torch.from_numpy(b))
        if act:
            quant = model.act_quant
            bounds = torch.tensor([act["bounds"][k.name] for k in quant.plan.keys])
            quant.bounds.copy_(bounds)
            if quant.log2_bounds is not None:
                quant.log2_bounds.copy_(torch.log2(bounds.double()).float())
    return model.eval()
