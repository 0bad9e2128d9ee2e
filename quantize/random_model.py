"""Random but valid models for hardware and converter tests, torch-free.

`random_bundle` builds an in-memory deployment bundle (docs/bundle.md) of any WRN-d-k shape with
random +-1 weights and realistic batch-norm moments; `random_qmodel` quantizes one into the
integer model that quantize.golden runs and the hardware implements.

Realistic moments matter: with arbitrary moments the activations of a deep random net explode
or vanish and the quantized tensors saturate or sit at zero, which tests nothing. So each BN's
moments are set, in op order, to the per-channel mean/variance of that BN's actual input over a
batch of images run through the float reference with the moments set so far (what BN
recalibration does for a trained net), then perturbed a little so no BN is an exact whitening.
"""
import copy

import numpy as np

from quantize.convert import quantize_bundle
from quantize.fixed_point import MULTIPLIER_BITS
from quantize.float_reference import run_float
from quantize.qmodel import make_qmodel
from training.bundle import FORMAT, VERSION, Bundle, pack_signs, validate
from training.container import complete_manifest
from training.graph import build_ops, model_config

MOMENT_IMAGES = 32        # images whose activations set the BN moments
MEAN_JITTER = 0.1         # BN mean perturbation, in units of the channel's std
VAR_JITTER = 0.1          # BN variance perturbation: a factor exp(N(0, 0.1)), about +-10 %
MIN_VAR = 1e-4            # floor for a (near) constant channel


def random_images(n, shape, seed=0):
    """n uniformly random uint8 images of per-image shape (C, H, W): n x C x H x W.

    seed: anything np.random.default_rng takes (an int, or a list such as [seed, stream]).
    """
    return np.random.default_rng(seed).integers(0, 256, (int(n), *map(int, shape)), np.uint8)


def _check_args(input_size, in_channels, num_classes):
    if int(input_size) < 4:
        raise ValueError(f"input_size must be >= 4 (three stages of stride 2 need it), "
                         f"got {input_size}")
    if int(in_channels) < 1 or int(num_classes) < 1:
        raise ValueError(f"in_channels and num_classes must be >= 1, got {in_channels}, "
                         f"{num_classes}")


def random_bundle(depth=8, width=1, in_channels=1, num_classes=10, input_size=12,
                  variant="bn", seed=0, weights="1bit", moment_images=None, padding="torch"):
    """An in-memory, validated `training.bundle.Bundle` of WRN-depth-width with random weights.

    depth: 6n+2; width k >= 1; variant "bn" or "srelu"; weights "1bit" (random +-1 signs) or
    "float" (He-init float weights: the comparison model, which the quantizer must refuse);
    padding: "torch" or "keras" (training.graph.PADDINGS).
    The affine input BN gets random weight (0.5..1.5) and bias (-0.5..0.5). Every BN's moments
    are the per-channel mean/variance of its input over `moment_images` (uint8
    N x C x H x W; default MOMENT_IMAGES random images from `seed`), measured layer by layer in
    op order, then perturbed (mean by N(0, 0.1) std, variance by a factor exp(N(0, 0.1))).
    seed: an int; same arguments -> identical bundle.
    """
    _check_args(input_size, in_channels, num_classes)
    seed = int(seed)
    config = model_config(depth=int(depth), width=int(width), in_channels=int(in_channels),
                          num_classes=int(num_classes), input_size=int(input_size),
                          weights=weights, variant=variant, padding=padding)
    ops = build_ops(config)
    rng = np.random.default_rng(seed)
    shape = (config["in_channels"], config["input_size"], config["input_size"])
    if moment_images is None:
        moment_images = random_images(MOMENT_IMAGES, shape, [seed, 1])
    moment_images = np.asarray(moment_images)
    if moment_images.ndim != 4 or moment_images.shape[1:] != shape or len(moment_images) < 2:
        raise ValueError(f"moment_images must be N x {' x '.join(map(str, shape))} with N >= 2, "
                         f"got {moment_images.shape}")

    arrays, entries, channels = {}, {}, {"image": config["in_channels"]}
    for op in ops:
        name = op["name"]
        if op["op"] in ("conv", "zero_channels"):
            channels[name] = c = op["out_channels"]
        else:
            channels[name] = c = channels[op["inputs"][0]]
        if op["op"] == "conv":
            wshape = (op["out_channels"], op["in_channels"], op["kernel"], op["kernel"])
            if op["binary"]:
                signs = np.where(rng.random(wshape) < 0.5, -1, 1).astype(np.int8)
                arrays[name + ".weight_bits"] = pack_signs(signs)
                entries[name + ".weight_bits"] = {"logical_shape": list(wshape),
                                                  "count": int(signs.size)}
            else:
                arrays[name + ".weight"] = (rng.standard_normal(wshape)
                                            * op["scale"]).astype(np.float32)
        elif op["op"] == "batchnorm":
            # Placeholders until the moments are measured below (identity BN).
            arrays[name + ".mean"] = np.zeros(c, np.float32)
            arrays[name + ".var"] = np.ones(c, np.float32)
            if op["affine"]:
                arrays[name + ".weight"] = rng.uniform(0.5, 1.5, c).astype(np.float32)
                arrays[name + ".bias"] = rng.uniform(-0.5, 0.5, c).astype(np.float32)

    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "model": config,
        "num_classes": config["num_classes"],
        "input_shape": list(shape),
        "variant": config["variant"],
        "weights": config["weights"],
        "ops": copy.deepcopy(ops),
        "tensors": entries,
        "metadata": {"generator": "quantize.random_model.random_bundle", "seed": seed},
        "activations": None,
    }
    path = f"<random {variant} WRN-{depth}-{width} seed={seed}>"
    shapes = validate(path, complete_manifest(manifest, arrays), arrays)
    bundle = Bundle(path, complete_manifest(manifest, arrays), arrays, shapes)

    for op in ops:
        if op["op"] != "batchnorm":
            continue
        # Later BNs cannot influence this BN's input, so their placeholders do not matter.
        src = op["inputs"][0]
        if src == "image":
            x = moment_images.astype(np.float64)
        else:
            x = run_float(bundle, moment_images, keep=True)[1][src]
        mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
        c = len(mean)
        mean = mean + MEAN_JITTER * np.sqrt(var) * rng.standard_normal(c)
        var = np.maximum(var * np.exp(VAR_JITTER * rng.standard_normal(c)), MIN_VAR)
        arrays[op["name"] + ".mean"] = mean.astype(np.float32)
        arrays[op["name"] + ".var"] = var.astype(np.float32)

    manifest = complete_manifest(manifest, arrays)
    return Bundle(path, manifest, arrays, validate(path, manifest, arrays))


def random_qmodel(depth=8, width=1, in_channels=1, num_classes=10, input_size=12, act_bits=8,
                  variant="bn", seed=0, calib_images=32, multiplier_bits=MULTIPLIER_BITS,
                  residual_bits=None, input_bits=None, padding="torch"):
    """A validated in-memory `QModel` of a random_bundle, calibrated on `calib_images` random
    uint8 images (drawn from `seed`, independent of the images that set the BN moments).
    Equals quantize_bundle(random_bundle(...same...), those images, act_bits,
    multiplier_bits=..., residual_bits=..., input_bits=...) + make_qmodel."""
    seed = int(seed)
    bundle = random_bundle(depth, width, in_channels, num_classes, input_size, variant, seed,
                           padding=padding)
    images = random_images(calib_images, bundle.manifest["input_shape"], [seed, 2])
    manifest, arrays = quantize_bundle(bundle, images, act_bits, multiplier_bits=multiplier_bits,
                                       residual_bits=residual_bits, input_bits=input_bits)
    return make_qmodel(manifest, arrays)
