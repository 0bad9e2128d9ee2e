"""Deployment bundle: export/read round trip, atomic write, corruption checks, float reference."""
import gzip
import io
import json
import os
import zipfile

import numpy as np
import pytest
import torch

from training.bundle import BundleError, pack_signs, read_bundle, unpack_signs, write_bundle
from training.container import sha256
from training.export import bundle_from_model, export_bundle, model_from_bundle
from training.model import WideResNet, binary_sign
from quantize.float_reference import run_float

FMNIST_TEST = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
CONFIGS = [("bn", "1bit"), ("srelu", "1bit"), ("bn", "float")]


def random_images(n, size=12, seed=0, channels=1):
    return np.random.default_rng(seed).integers(0, 256, (n, channels, size, size), np.uint8)


def make_model(variant="bn", weights="1bit", calib=None, seed=0, **kw):
    """A small model with non-trivial BN moments and input-BN affine parameters."""
    torch.manual_seed(seed)
    cfg = dict(depth=8, width=1, in_channels=1, num_classes=10, input_size=12)
    cfg.update(kw)
    m = WideResNet(variant=variant, weights=weights, **cfg)
    with torch.no_grad():
        m.layers["input_bn"].weight.uniform_(0.5, 1.5)
        m.layers["input_bn"].bias.uniform_(-0.5, 0.5)
    bns = [bn for _, bn in m.batchnorms()]
    for bn in bns:
        bn.momentum = None  # cumulative average: running moments = the calibration batches' moments
    m.train()
    if calib is None:
        calib = random_images(96, cfg["input_size"], seed=seed + 1)
    with torch.no_grad():
        for batch in np.array_split(calib, 3):
            m(torch.from_numpy(batch).float())
    for bn in bns:
        bn.momentum = 0.1
    return m.eval()


@pytest.fixture
def bundle_path(tmp_path):
    path = tmp_path / "bundle.npz"
    export_bundle(make_model(), path, {"dataset": "test", "epochs": 0})
    return path


def rewrite(src, dst, manifest=None, replace=None, drop=()):
    """Copy a bundle zip member by member, editing it; keeps valid zip CRCs (unlike a byte flip)."""
    replace = dict(replace or {})
    if manifest is not None:
        replace["manifest"] = np.frombuffer(json.dumps(manifest).encode(), np.uint8)
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            key = info.filename[:-4]
            if key in drop:
                continue
            if key in replace:
                buf = io.BytesIO()
                np.lib.format.write_array(buf, replace[key])
                zout.writestr(info.filename, buf.getvalue())
            else:
                zout.writestr(info.filename, zin.read(info))


def assert_one_line_error(path, match):
    with pytest.raises(BundleError, match=match) as e:
        read_bundle(path)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and "fix:" in msg
    return msg


# ---------------------------------------------------------------- format and round trip

def test_pack_signs_bit_order():
    signs = np.array([1, -1, -1, 1, 1, 1, 1, 1, -1], np.int8)  # 9 weights -> 2 bytes
    bits = pack_signs(signs)
    assert bits.tolist() == [0b10011111, 0b00000000]  # first weight in the MSB, 1 = +1
    assert unpack_signs(bits, (9,)).tolist() == signs.tolist()
    assert binary_sign(torch.tensor([0.0, -0.0, 1e-30, -1e-30])).tolist() == [1, 1, 1, -1]


@pytest.mark.parametrize("variant,weights", CONFIGS)
def test_round_trip(tmp_path, variant, weights):
    model = make_model(variant, weights)
    path = tmp_path / "bundle.npz"
    meta = {"dataset": "fashion-mnist", "epochs": 2, "test_error": 0.125}
    export_bundle(model, path, meta)
    b = read_bundle(path)
    assert b.manifest["format"] == "bitwrn-bundle" and b.manifest["version"] == 4
    assert b.config == model.config and b.ops == model.ops and b.metadata == meta
    assert b.manifest["input_shape"] == [1, 12, 12]
    assert (b.manifest["variant"], b.manifest["weights"]) == (variant, weights)
    for name, conv in model.convs():
        w = conv.weight.detach()
        assert b.op(name)["scale"] == conv.scale
        if weights == "1bit":
            assert np.array_equal(b.conv_signs(name), binary_sign(w).numpy().astype(np.int8))
            assert np.array_equal(b.conv_weight(name), conv.scale * binary_sign(w).double().numpy())
            # ... which is exactly the weight the trained forward pass applies
            used = conv.effective_weight().detach().numpy()
            assert np.array_equal(b.conv_weight(name).astype(np.float32), used)
            entry = b.manifest["tensors"][name + ".weight_bits"]
            assert entry["count"] == w.numel() and entry["logical_shape"] == list(w.shape)
        else:
            assert np.array_equal(b.tensors[name + ".weight"], w.numpy())
    for name, bn in model.batchnorms():
        mean, var, weight, bias, eps = b.bn(name)
        assert np.array_equal(mean, bn.running_mean.numpy())
        assert np.array_equal(var, bn.running_var.numpy())
        assert eps == bn.eps and (weight is None) == (not bn.affine)
        if bn.affine:
            assert np.array_equal(weight, bn.weight.detach().numpy())
            assert np.array_equal(bias, bn.bias.detach().numpy())
    bn_ops = [o["name"] for o in b.ops if o["op"] == "batchnorm"]
    assert [n for n, _ in model.batchnorms()] == bn_ops
    with np.load(path) as z:  # plain np.load reads it too (np.savez member layout)
        assert "manifest" in z.files


def test_write_refuses_inconsistent_bundle(tmp_path):
    manifest, arrays = bundle_from_model(make_model())
    del arrays["s1b1_conv1.weight_bits"]
    with pytest.raises(BundleError, match="s1b1_conv1"):
        write_bundle(tmp_path / "b.npz", manifest, arrays)
    assert os.listdir(tmp_path) == []


def test_atomic_write_keeps_old_bundle(bundle_path, monkeypatch):
    before = bundle_path.read_bytes()
    manifest, arrays = bundle_from_model(make_model(seed=5))
    real, calls = np.lib.format.write_array, []

    def fail_midway(f, arr, *a, **kw):  # write a few members, then die half-way through one
        calls.append(1)
        if len(calls) == 4:
            f.write(b"partial")
            raise OSError("simulated disk full")
        return real(f, arr, *a, **kw)

    monkeypatch.setattr(np.lib.format, "write_array", fail_midway)
    with pytest.raises(OSError, match="disk full"):
        write_bundle(bundle_path, manifest, arrays)
    assert bundle_path.read_bytes() == before
    assert os.listdir(bundle_path.parent) == ["bundle.npz"]  # no temp file left
    read_bundle(bundle_path)


# ---------------------------------------------------------------- validation errors

def test_missing_file(tmp_path):
    assert_one_line_error(tmp_path / "nope.npz", "not found")


@pytest.mark.parametrize("keep", [0, 10, 0.5, -1])
def test_truncated(bundle_path, keep):
    data = bundle_path.read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else keep % len(data)
    bundle_path.write_bytes(data[:n])
    assert_one_line_error(bundle_path, "corrupt")


def test_not_a_zip(bundle_path):
    bundle_path.write_text("hello\nworld\n")
    assert_one_line_error(bundle_path, "corrupt")


def _member_data_span(path, member):
    """Byte range of a stored member's data within the zip file."""
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(member)
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        head = f.read(30)
    start = info.header_offset + 30 + int.from_bytes(head[26:28], "little") \
        + int.from_bytes(head[28:30], "little")
    return start, start + info.compress_size


@pytest.mark.parametrize("member", ["s2b1_conv1.weight_bits.npy", "input_bn.var.npy",
                                    "manifest.npy"])
def test_flipped_byte(bundle_path, member):
    data = bytearray(bundle_path.read_bytes())
    start, end = _member_data_span(bundle_path, member)
    data[end - 1] ^= 0x10  # last byte of the array payload
    bundle_path.write_bytes(bytes(data))
    assert_one_line_error(bundle_path, "corrupt")


def test_sha_and_shape_mismatch(bundle_path, tmp_path):
    b = read_bundle(bundle_path)
    bits = b.tensors["s1b1_conv1.weight_bits"].copy()
    bits[0] ^= 1
    rewrite(bundle_path, tmp_path / "sha.npz", replace={"s1b1_conv1.weight_bits": bits})
    assert_one_line_error(tmp_path / "sha.npz", "sha256")
    rewrite(bundle_path, tmp_path / "shape.npz", replace={"input_bn.mean": np.zeros(2, np.float32)})
    assert_one_line_error(tmp_path / "shape.npz", "input_bn.mean")
    rewrite(bundle_path, tmp_path / "dtype.npz",
            replace={"input_bn.mean": b.tensors["input_bn.mean"].astype(np.float64)})
    assert_one_line_error(tmp_path / "dtype.npz", "float64")


def test_manifest_errors(bundle_path, tmp_path):
    m = read_bundle(bundle_path).manifest

    def bad(name, match, edit=None, **kw):
        mm = json.loads(json.dumps(m))
        if edit:
            edit(mm)
        rewrite(bundle_path, tmp_path / name, manifest=mm, **kw)
        return assert_one_line_error(tmp_path / name, match)

    msg = bad("v5.npz", "unsupported bundle version 5", lambda mm: mm.update(version=5))
    assert "supports version(s) 1, 2, 3, 4" in msg
    bad("noact.npz", r"lacks field\(s\) activations", lambda mm: mm.pop("activations"))
    bad("fmt.npz", "format", lambda mm: mm.update(format="other"))
    bad("nomanifest.npz", "manifest", drop=("manifest",))
    bad("missing.npz", "listed in the manifest is missing", drop=("s1b1_conv2.weight_bits",))
    bad("input.npz", "neither 'image' nor", lambda mm: mm["ops"][3].update(inputs=["nope"]))
    bad("order.npz", "neither 'image' nor",
        lambda mm: mm["ops"][1].update(inputs=[mm["ops"][5]["name"]]))

    def wrong_count(mm):
        e = mm["tensors"]["conv0.weight_bits"]
        e["count"], e["logical_shape"] = 8 * 16 * 9, [8, 1, 3, 3]
    bad("count.npz", "conv0.weight_bits", wrong_count)

    def drop_bn_tensor(mm):
        del mm["tensors"]["head_bn.var"]
    bad("bnvar.npz", "head_bn.var", drop_bn_tensor, drop=("head_bn.var",))
    bad("attr.npz", "lacks attribute", lambda mm: mm["ops"][1].pop("stride"))
    bad("malformed.npz", "malformed manifest", lambda mm: mm["ops"][3].update(inputs=5))
    # Types, not just equality: True == 1 and 1.0 == 1 in Python.
    bad("vtrue.npz", "unsupported bundle version True", lambda mm: mm.update(version=True))
    bad("vfloat.npz", r"unsupported bundle version 1\.0", lambda mm: mm.update(version=1.0))
    # padding: one integer or [top, bottom, left, right], each below the kernel; and the
    # model's own (a PyTorch-padded model with Keras padding in one op is refused)
    bad("pad3.npz", r"padding is \[0, 1, 0\], not an integer or a list",
        lambda mm: mm["ops"][1].update(padding=[0, 1, 0]))
    bad("padbig.npz", r"padding is 3, not an integer or a list .* 0..kernel-1",
        lambda mm: mm["ops"][1].update(padding=3))
    bad("padkeras.npz", r"padding is \[0, 1, 0, 1\], the model's graph has 1",
        lambda mm: mm["ops"][1].update(padding=[0, 1, 0, 1]))
    bad("padmode.npz", r"padding must be one of \('torch', 'keras', 'matconvnet'\)",
        lambda mm: mm["model"].update(padding="caffe"))


def test_a_manifest_must_be_the_graph_its_model_describes(bundle_path, tmp_path):
    """Numbers no WRN has and headers that contradict the graph, each refused in one line (a
    model that is a number used to pass and end in a TypeError inside quantize)."""
    m = read_bundle(bundle_path).manifest

    def bad(name, match, edit):
        mm = json.loads(json.dumps(m))
        edit(mm)
        rewrite(bundle_path, tmp_path / name, manifest=mm)
        return assert_one_line_error(tmp_path / name, match)

    bad("model.npz", "model is 3, not an object", lambda mm: mm.update(model=3))
    bad("depth.npz", "model.depth is 'twenty'", lambda mm: mm["model"].update(depth="twenty"))
    bad("huge.npz", r"model.input_size is 1180591620717411303424, not an integer 1..4096",
        lambda mm: mm["model"].update(input_size=2 ** 70))
    bad("variant.npz", "variant is 'resnet', the model", lambda mm: mm.update(variant="resnet"))
    bad("shape.npz", r"input_shape is \[1, 12, 4096\], the model",
        lambda mm: mm.update(input_shape=[1, 12, 4096]))
    bad("stride.npz", "op #1 'conv0': stride is 1000000000, the model's graph has 1",
        lambda mm: mm["ops"][1].update(stride=10 ** 9))
    bad("extra.npz", "ops, the model's graph has", 
        lambda mm: mm["ops"].append(dict(op="relu", name="extra", inputs=[mm["ops"][-1]["name"]])))
    bad("eps.npz", r"eps is 1e\+308, not a finite number > 0 and <= 1",
        lambda mm: mm["ops"][0].update(eps=1e308))


def test_a_manifest_nested_beyond_any_manifest_is_one_line(bundle_path, tmp_path):
    """json.loads raises RecursionError (not ValueError) on deep nesting: it used to escape."""
    deep = np.frombuffer(b"[" * 100_000 + b"]" * 100_000, np.uint8)
    rewrite(bundle_path, tmp_path / "deep.npz", replace={"manifest": deep})
    assert_one_line_error(tmp_path / "deep.npz", "nested too deeply")


def test_older_versions_still_read(tmp_path):
    """Version 1 has no `activations` (float: null), version 2 no `activations.input_bits` (the
    image the first conv reads is `bits` wide), version 3 no `model.padding` (PyTorch's)."""
    path = tmp_path / "bundle.npz"
    export_bundle(make_model(act_bits=4, residual_bits=8), path)
    m = read_bundle(path).manifest
    v3 = json.loads(json.dumps(m))
    v3["version"] = 3
    del v3["model"]["padding"]
    rewrite(path, tmp_path / "v3.npz", manifest=v3)
    assert model_from_bundle(read_bundle(tmp_path / "v3.npz")).config["padding"] == "torch"
    v2 = json.loads(json.dumps(m))
    v2["version"] = 2
    del v2["activations"]["input_bits"]
    rewrite(path, tmp_path / "v2.npz", manifest=v2)
    quant = model_from_bundle(read_bundle(tmp_path / "v2.npz")).act_quant
    assert (quant.act_bits, quant.residual_bits, quant.input_bits) == (4, 8, 4)
    v1 = json.loads(json.dumps(m))
    v1["version"] = 1
    del v1["activations"]
    rewrite(path, tmp_path / "v1.npz", manifest=v1)
    assert read_bundle(tmp_path / "v1.npz").activations is None


def _op(manifest, kind, index=0):
    return [op for op in manifest["ops"] if op["op"] == kind][index]


@pytest.mark.parametrize("name,edit,match", [
    ("nan_scale", lambda mm: _op(mm, "conv").update(scale=float("nan")), "conv0.*scale is nan"),
    ("zero_scale", lambda mm: _op(mm, "conv", 2).update(scale=0), "scale is 0, not a finite number > 0"),
    ("neg_eps", lambda mm: _op(mm, "batchnorm").update(eps=-1e-5), "eps is -1e-05"),
    ("bool_stride", lambda mm: _op(mm, "conv").update(stride=True), "stride is True, not an integer"),
    ("float_kernel", lambda mm: _op(mm, "conv").update(kernel=3.0), "kernel is 3.0, not an integer"),
])
def test_bad_attribute_values_name_the_op(bundle_path, tmp_path, name, edit, match):
    """NaN, zero, negative or mistyped numbers in the manifest: one line naming op and value."""
    mm = json.loads(json.dumps(read_bundle(bundle_path).manifest))
    edit(mm)
    rewrite(bundle_path, tmp_path / f"{name}.npz", manifest=mm)
    assert_one_line_error(tmp_path / f"{name}.npz", match)


@pytest.mark.parametrize("value", [-0.5, float("nan"), float("inf")])
def test_bad_bn_variance_names_the_tensor_and_channel(bundle_path, tmp_path, value):
    b = read_bundle(bundle_path)
    key = "s1b1_bn1.var" if "s1b1_bn1.var" in b.tensors else sorted(k for k in b.tensors if k.endswith(".var"))[1]
    var = b.tensors[key].copy()
    var[3] = value
    mm = json.loads(json.dumps(b.manifest))
    mm["tensors"][key]["sha256"] = sha256(var)
    rewrite(bundle_path, tmp_path / "var.npz", manifest=mm, replace={key: var})
    assert_one_line_error(tmp_path / "var.npz", f"tensor '{key}' channel 3 is")


# ---------------------------------------------------------------- float reference

def torch_outputs(model, images):
    """Logits and the outputs of every conv/BN module (via hooks), for comparison."""
    outs, hooks = {}, []
    for name, mod in model.layers.items():
        hooks.append(mod.register_forward_hook(
            lambda _m, _i, o, name=name: outs.__setitem__(name, o.detach().double().numpy())))
    with torch.no_grad():
        logits = model(torch.from_numpy(images).float()).double().numpy()
    for h in hooks:
        h.remove()
    return logits, outs


@pytest.mark.parametrize("variant,weights", CONFIGS)
def test_float_reference_matches_torch(tmp_path, variant, weights):
    model = make_model(variant, weights)
    export_bundle(model, tmp_path / "b.npz")
    b = read_bundle(tmp_path / "b.npz")
    images = random_images(20, seed=7)
    want, outs = torch_outputs(model, images)
    got, kept = run_float(b, images, keep=True, chunk=8)
    assert got.shape == (20, 10) and np.abs(got - want).max() <= 1e-4
    assert set(kept) == {op["name"] for op in b.ops}
    for name, t in kept.items():
        assert t.shape == (20, *b.shapes[name]), name
        if name in outs:  # float32 torch vs float64: relative agreement
            assert np.abs(t - outs[name]).max() <= 1e-4 * max(1.0, np.abs(t).max()), name
    assert np.array_equal(kept["logits"], got)
    assert np.allclose(run_float(tmp_path / "b.npz", images.astype(np.float32)), got,
                       rtol=0, atol=1e-12)  # path input, float pixels, default chunking
    with pytest.raises(ValueError, match="images must be"):
        run_float(b, images[:, :, :10])


def test_float_reference_fashion_mnist(tmp_path):
    if not os.path.exists(FMNIST_TEST):
        pytest.skip(f"{FMNIST_TEST} not installed")
    with gzip.open(FMNIST_TEST, "rb") as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28).copy()
    model = make_model(depth=20, input_size=28, calib=x[1000:1096])
    export_bundle(model, tmp_path / "b.npz")
    images = x[:200]
    want, _ = torch_outputs(model, images)
    got = run_float(tmp_path / "b.npz", images)
    assert np.abs(got - want).max() <= 1e-4
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.99
