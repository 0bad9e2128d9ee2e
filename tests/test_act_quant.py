"""Quantization-aware training of activations (training/act_points.py, training/fake_quant.py):
training rounds where, and as, the integer model does; the bundle carries the scales; quantize
uses them; bad options are one line."""
import json

import numpy as np
import pytest
import torch

from quantize.convert import calibrate, quantize_bundle
from common.bits import int_range
from quantize.fixed_point import shift_round
from quantize.golden import run as run_golden
from quantize.qmodel import make_qmodel
from quantize.random_model import random_bundle, random_images
from training.act_points import Rounding, act_plan
from training.bundle import BundleError, read_bundle, write_bundle
from training.export import bundle_from_model, export_bundle, model_from_bundle
from training.fake_quant import ActivationQuantizer
from training.model import WideResNet
from training.train import main

from tests.test_train import run_cli, tiny_args

ROUNDING_OPS = ("requant", "lut", "add", "avgpool")


def plan_rounding(plan, bundle, name):
    """The plan's rounding of converter op `name`: of an op's output, or of an add's input."""
    if name in plan.after:
        return plan.after[name]
    for add, roundings in plan.add_inputs.items():
        inputs = bundle.op(add)["inputs"]
        if name in inputs:
            return roundings[inputs.index(name)]
    raise AssertionError(f"the plan does not round {name}")


@pytest.mark.parametrize("variant", ["bn", "srelu"])
@pytest.mark.parametrize("depth", [8, 14])
@pytest.mark.parametrize("bits,residual_bits,input_bits", [(2, None, None), (4, None, None),
                                                           (8, None, None), (4, 8, 8)])
def test_the_plan_rounds_where_and_as_the_converter_stores(variant, depth, bits, residual_bits,
                                                           input_bits):
    """Every integer tensor the converter stores is a rounding point of the plan with the same
    scale and clamp, and the plan rounds nothing else."""
    bundle = random_bundle(depth=depth, variant=variant, seed=depth + bits)
    bounds = calibrate(bundle, random_images(8, bundle.manifest["input_shape"], 1))
    manifest, _ = quantize_bundle(bundle, None, bits, bounds=bounds, residual_bits=residual_bits,
                                  input_bits=input_bits)
    plan = act_plan(bundle.ops, bits, residual_bits, input_bits)
    keys = {k.name: k for k in plan.keys}
    stored = {op["name"]: op for op in manifest["ops"] if op["op"] in ROUNDING_OPS}
    wide_inputs = {bundle.op(a)["inputs"][i] for a, rs in plan.add_inputs.items()
                   for i, r in enumerate(rs) if r.lo is not None}
    assert set(stored) == set(plan.after) | wide_inputs
    assert set(keys) <= set(bounds)
    for name, op in stored.items():
        rounding = plan_rounding(plan, bundle, name)
        frac = keys[rounding.scale].frac(bounds[rounding.scale])
        assert op["out"]["frac"] == frac, name
        if op["op"] in ("requant", "add"):
            assert (op["lo"], op["hi"]) == rounding.limits(frac), name


@pytest.mark.parametrize("variant", ["bn", "srelu"])
def test_input_bits_widen_only_the_image_the_first_conv_reads(variant):
    """input_bits: the input BN's output is stored signed at that width; every other tensor a conv
    reads keeps act_bits, and the plan is otherwise the one without it."""
    ops = WideResNet(8, 1, variant=variant).ops
    plan, narrow = act_plan(ops, 4, 8, input_bits=8), act_plan(ops, 4, 8)
    keys = {k.name: k for k in plan.keys}
    assert plan.input_bits == 8 and narrow.input_bits == 4
    assert (plan.after["input_bn"].lo, plan.after["input_bn"].hi) == (-128, 127)
    assert (keys["input_bn"].bits, keys["input_bn"].signed) == (8, True)
    read = [op["inputs"][0] for op in ops if op["op"] == "conv"]
    assert read[0] == "input_bn"
    for name in read[1:]:
        key = keys[plan.after[name].scale]
        assert key.bits == 4 and (plan.after[name].lo, plan.after[name].hi) == \
            int_range(4, key.signed), name
    assert {k: v for k, v in plan.after.items() if k != "input_bn"} == \
        {k: v for k, v in narrow.after.items() if k != "input_bn"}
    assert plan.add_inputs == narrow.add_inputs


def test_a_view_of_the_image_stops_being_one_once_stored():
    """Scales and batchnorms of the image are views of it (stored at input_bits where a conv reads
    them); a view read twice is stored at residual_bits first, and a scale of that is no longer a
    view of the image (stored at act_bits)."""
    def op(kind, name, *inputs):
        return {"op": kind, "name": name, "inputs": list(inputs)}

    ops = [op("scale", "half", "image"), op("batchnorm", "bn", "half"), op("conv", "c0", "bn"),
           op("batchnorm", "twice", "image"), op("scale", "s", "twice"), op("conv", "c1", "s"),
           op("conv", "c2", "twice")]
    plan = act_plan(ops, 4, 6, input_bits=8)
    bits = {k.name: k.bits for k in plan.keys}
    assert bits == {"bn": 8, "twice": 6, "s": 4}
    assert (plan.after["bn"].lo, plan.after["bn"].hi) == (-128, 127)
    assert (plan.after["s"].lo, plan.after["s"].hi) == (-8, 7)


def test_rounding_matches_the_integer_shift_element_for_element():
    """On random grid values, ties included: the training rounding of x (on the 2^-f_in grid) to
    the 2^-f grid, clamped, is the integer model's shift_round + clamp, element for element."""
    rng = np.random.default_rng(0)
    quant = ActivationQuantizer(WideResNet(8, 1, 1, 10, 8).ops, 4)
    for f_in, f, signed in [(3, 1, True), (1, -2, True), (2, 2, False), (0, -1, True), (5, 0, False)]:
        lo, hi = int_range(4, signed)
        ints = rng.integers(-300, 300, 20_000)
        x = torch.tensor(ints * 2.0 ** -f_in, dtype=torch.float32)
        quant._exponent["k"] = (f, None)
        got = quant._round(Rounding("k", lo, hi), x).numpy() * 2.0 ** f
        want = np.clip(shift_round(ints, f_in - f), lo, hi)
        assert np.array_equal(got, want)
        if f_in > f:   # halfway values are among them
            assert np.sum(ints % (1 << (f_in - f)) == 1 << (f_in - f - 1)) > 100


def trained_qat_model(bits, scales, seed=0, size=12, **widths):
    """A WRN-8-1 in QAT mode whose BN moments and scales have seen a few random batches.
    widths: residual_bits, input_bits."""
    torch.manual_seed(seed)
    model = WideResNet(8, 1, 1, 10, size, act_bits=bits, act_scales=scales, **widths)
    model.train()
    images = torch.from_numpy(random_images(64, (1, size, size), seed)).float()
    with torch.no_grad():
        for start in range(0, 64, 16):
            model(images[start:start + 16])
    return model.eval()


def record_stored_tensors(quant):
    """Wrap the quantizer's hooks so each forward leaves {tensor name: rounded value}."""
    seen, output, add = {}, quant.output, quant.add

    def output_hook(name, y):
        seen[name] = output(name, y)
        return seen[name]

    def add_hook(name, a, b):
        seen[name] = add(name, a, b)
        return seen[name]

    quant.output, quant.add = output_hook, add_hook
    return seen


# At 8 bits a value spans more steps, so the 16-bit requant multipliers' rounding error (up to
# |x| 2^-(shift+1) of a step) moves more of them across a boundary, and BN gains spread that on.
@pytest.mark.parametrize("bits,scales,min_equal", [(4, "calibrated", 0.999), (3, "learned", 0.999),
                                                   (8, "calibrated", 0.95)])
def test_the_qat_forward_is_the_golden_model(bits, scales, min_equal, tmp_path):
    """The QAT model's float forward and the golden model of its exported bundle, quantized with
    the trained scales: the same stored integers (all but a few near-boundary elements) and the
    same classes."""
    model = trained_qat_model(bits, scales)
    export_bundle(model, tmp_path / "bundle.npz", {"dataset": "mnist"})
    bundle = read_bundle(tmp_path / "bundle.npz")
    assert bundle.activations["bits"] == bits and bundle.activations["scales"] == scales
    manifest, arrays = quantize_bundle(bundle, None, bits)
    assert manifest["source"]["scales"] == "trained"
    qmodel = make_qmodel(manifest, arrays)
    images = random_images(40, (1, 12, 12), 99)
    golden = run_golden(qmodel, images, keep=True)
    seen = record_stored_tensors(model.act_quant)
    with torch.no_grad():
        logits = model(torch.from_numpy(images).float()).numpy()
    compared = equal = 0
    for op in qmodel.ops:
        if op["name"] in model.act_quant.plan.after:   # the wide add inputs: inside the sums
            ours = seen[op["name"]].numpy() * 2.0 ** op["out"]["frac"]
            assert np.array_equal(ours, np.round(ours)), op["name"]   # on the grid
            diff = np.abs(ours - golden.tensors[op["name"]])
            # The first difference is one step at a near-boundary value; later ones follow it.
            assert diff.max() <= 1 or equal < compared, op["name"]
            compared += diff.size
            equal += int((diff == 0).sum())
    print(f"{equal} of {compared} stored values equal")
    assert compared > 40_000 and equal / compared >= min_equal, (equal, compared)
    print(f"classes agree on {np.mean(logits.argmax(1) == golden.classes):.1%}")
    assert np.mean(logits.argmax(1) == golden.classes) >= 0.95


def test_bundle_carries_the_scales_and_rejects_bad_ones(tmp_path):
    model = trained_qat_model(4, "calibrated")
    manifest, arrays = bundle_from_model(model)
    act = manifest["activations"]
    assert act["bits"] == 4 and set(act["bounds"]) == {k.name for k in model.act_quant.plan.keys}
    assert all(v > 0 for v in act["bounds"].values())
    for edit, words in [
        (lambda a: a.update(bits=9.0), "activations.bits is 9.0"),
        (lambda a: a.update(bits=1), "activations.bits is 1"),
        (lambda a: a.update(input_bits=17), "activations.input_bits is 17"),
        (lambda a: a.update(input_bits=8.0), "activations.input_bits is 8.0"),
        (lambda a: a["bounds"].pop("conv0"), "scale keys"),
        (lambda a: a["bounds"].update(conv0=-1.0), "activations.bounds['conv0'] is -1.0"),
        (lambda a: a.pop("scales"), "bits, scales and bounds"),
    ]:
        bad = dict(manifest, activations={**act, "bounds": dict(act["bounds"])})
        edit(bad["activations"])
        with pytest.raises(BundleError, match=words.replace("[", r"\[").replace("(", r"\(")):
            write_bundle(str(tmp_path / "bad.npz"), bad, arrays)
    untrained = WideResNet(8, 1, 1, 10, 12, act_bits=4)
    with pytest.raises(ValueError, match="never saw data"):
        bundle_from_model(untrained)
    assert bundle_from_model(WideResNet(8, 1, 1, 10, 12))[0]["activations"] is None


def test_the_bundle_keeps_input_bits(tmp_path):
    """Export, read back, rebuild: the image the first conv reads stays input_bits wide."""
    model = trained_qat_model(4, "calibrated", residual_bits=8, input_bits=8)
    export_bundle(model, tmp_path / "bundle.npz")
    bundle = read_bundle(tmp_path / "bundle.npz")
    assert (bundle.activations["bits"], bundle.activations["input_bits"]) == (4, 8)
    quant = model_from_bundle(bundle).act_quant
    assert quant.input_bits == 8 and quant.plan.after == model.act_quant.plan.after


def test_one_training_step_at_input_bits_exports_them(tmp_path):
    """A WRN trained one SGD step for 4-bit activations with an 8-bit image input rounds that
    input onto more levels than 4 bits hold, and its bundle says input_bits 8."""
    torch.manual_seed(0)
    model = WideResNet(8, 1, 1, 10, 12, act_bits=4, input_bits=8)
    seen = record_stored_tensors(model.act_quant)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    images = torch.from_numpy(random_images(32, (1, 12, 12), 0)).float()
    torch.nn.functional.cross_entropy(model(images), torch.arange(32) % 10).backward()
    optimizer.step()
    assert len(torch.unique(seen["input_bn"])) > 16
    export_bundle(model, tmp_path / "bundle.npz")
    assert read_bundle(tmp_path / "bundle.npz").activations["input_bits"] == 8


def test_init_from_fine_tunes_a_run_and_checks_it_fits(tiny_mnist, tmp_path, capsys):
    """--init-from starts from a run's weights (not from scratch), trains for --act-bits, and
    refuses a run of another network or a file that is not a checkpoint, in one line."""
    base = tmp_path / "base"
    assert main(tiny_args(tiny_mnist, base)) == 0
    tuned = tmp_path / "tuned"
    assert main(tiny_args(tiny_mnist, tuned, "--act-bits", "4", "--init-from", str(base),
                          "--lr-max", "0.01")) == 0
    bundle = read_bundle(tuned / "bundle.npz")
    assert bundle.activations["bits"] == 4 and bundle.metadata["init_from"] == str(base)
    start = torch.load(base / "checkpoint.pt", weights_only=True)["model"]["layers.conv0.weight"]
    end = torch.load(tuned / "checkpoint.pt", weights_only=True)["model"]["layers.conv0.weight"]
    scratch = WideResNet(8, 1, 1, 10, 12).layers["conv0"].weight
    assert (end - start).norm() < 0.5 * (scratch - start).norm()   # near the run it came from
    capsys.readouterr()

    code, err = run_cli(tiny_args(tiny_mnist, tmp_path / "d", "--depth", "14", "--init-from",
                                  str(base)), capsys)
    assert code == 2 and "has --depth 8, this one 14" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    code, err = run_cli(tiny_args(tiny_mnist, tmp_path / "j", "--init-from",
                                  str(tmp_path / "junk")), capsys)
    assert code == 2 and "cannot read" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("extra", [["--act-bits", "4", "--residual-bits", "8"],
                                   ["--act-bits", "4", "--input-bits", "8"],
                                   ["--act-bits", "3", "--act-scales", "learned"]])
def test_a_trained_qat_run_and_its_golden_model_agree(tiny_mnist, tmp_path, extra):
    """Train for low-bit activations, quantize with the trained scales: the trained network's
    forward (rebuilt from the bundle alone) and the golden model give the same class. Here >= 95%:
    these are random images with random labels, so many logits nearly tie, and the integer
    model's per-channel multipliers (one shift per layer) still move a few activations by one
    step. On Fashion-MNIST docs/results.md measures the agreement of the trained runs."""
    out = tmp_path / "run"
    assert main(tiny_args(tiny_mnist, out, *extra)) == 0
    bundle = read_bundle(out / "bundle.npz")
    manifest, arrays = quantize_bundle(bundle, None, bundle.activations["bits"])
    assert manifest["residual_bits"] == bundle.activations["residual_bits"]
    assert manifest["input_bits"] == bundle.activations["input_bits"]
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["residual_bits"], summary["input_bits"]) == \
        (bundle.activations["residual_bits"], bundle.activations["input_bits"])
    from training.data import load_dataset
    images = load_dataset("mnist", tiny_mnist).test_x
    golden = run_golden(make_qmodel(manifest, arrays), images)
    with torch.no_grad():
        ours = model_from_bundle(bundle)(torch.from_numpy(images).float()).argmax(1).numpy()
    assert np.mean(ours == golden.classes) >= 0.95
