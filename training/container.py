"""The file container shared by the deployment bundle and the quantized model.

One `.npz`-layout zip of `.npy` members (zipfile CRC-checks each member): `manifest` (UTF-8
JSON stored as a uint8 array) plus one array per tensor, each listed in the manifest's
"tensors" with its shape, dtype and sha256. NumPy only. Writes are atomic.
"""
import hashlib
import io
import json
import zipfile
import zlib

import numpy as np

from common.files import atomic_path

MANIFEST = "manifest"
MAX_SIZE = 4096     # any depth, width, channel count, class count or image side: none is near it


def sha256(arr):
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()


def little_endian(arr):
    """C-contiguous, little-endian: the stored byte layout that the sha256 is taken over."""
    arr = np.ascontiguousarray(arr)
    return arr.astype(arr.dtype.newbyteorder("<")) if arr.dtype.byteorder == ">" else arr


def complete_manifest(manifest, arrays):
    """Return a copy of manifest whose "tensors" has shape/dtype/sha256 for every array.

    Extra per-tensor fields already present (logical_shape, count) are kept.
    """
    m = dict(manifest)
    given = manifest.get("tensors", {})
    m["tensors"] = {}
    for key, arr in arrays.items():
        arr = little_endian(arr)
        m["tensors"][key] = {**given.get(key, {}), "shape": list(arr.shape),
                             "dtype": arr.dtype.name, "sha256": sha256(arr)}
    return m


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def write_container(path, manifest, arrays, validate):
    """Complete, validate (validate(manifest, arrays) raises on a bad one) and write atomically:
    the old file at `path` stays intact if anything fails. Returns the manifest as written."""
    if MANIFEST in arrays:
        raise ValueError(f"tensor key {MANIFEST!r} is reserved")
    arrays = {k: little_endian(v) for k, v in arrays.items()}
    manifest = complete_manifest(manifest, arrays)
    text = json.dumps(manifest, default=_json_default)
    manifest = json.loads(text)  # validate exactly what a reader will see
    validate(manifest, arrays)
    members = {MANIFEST: np.frombuffer(text.encode("utf-8"), np.uint8), **arrays}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as zf:
            for key, arr in members.items():
                # Same member layout as np.savez, so np.load(path) also reads the file.
                with zf.open(key + ".npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, arr, allow_pickle=False)
    return manifest


def read_container(path, error, what):
    """(manifest, tensors) of a container; `error(problem)` builds the exception to raise.

    Checks the zip, the manifest JSON and every tensor's shape, dtype and sha256; the caller
    checks the format name, version and contents.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            tensors = {}
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    raise error(f"unexpected zip member {info.filename!r}")
                # zf.read checks the member CRC; allow_pickle=False refuses object arrays.
                tensors[info.filename[:-4]] = np.lib.format.read_array(
                    io.BytesIO(zf.read(info)), allow_pickle=False)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error, ValueError,
            OSError, NotImplementedError) as e:
        raise error(f"not a readable {what} zip, truncated or corrupt "
                    f"({type(e).__name__}: {e})") from e
    raw = tensors.pop(MANIFEST, None)
    if raw is None:
        raise error(f"no {MANIFEST!r} member (not a {what}?)")
    try:
        manifest = json.loads(np.asarray(raw, np.uint8).tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise error(f"manifest is not valid UTF-8 JSON ({e})") from e
    except RecursionError:    # a manifest is a few levels deep; thousands is a forged file
        raise error("manifest JSON is nested too deeply to be a manifest") from None
    if not isinstance(manifest, dict):
        raise error("manifest is not a JSON object")
    return manifest, tensors


def check_tensors(entries, tensors, error):
    """Every listed tensor present with its shape, dtype and sha256; nothing unlisted."""
    if not isinstance(entries, dict):
        raise error("manifest 'tensors' is not an object")
    for key, e in entries.items():
        if key not in tensors:
            raise error(f"tensor {key!r} listed in the manifest is missing from the file")
        arr = tensors[key]
        if list(arr.shape) != list(e.get("shape", [])) or arr.dtype.name != e.get("dtype"):
            raise error(f"tensor {key!r} is {arr.dtype.name}{list(arr.shape)}, manifest "
                        f"says {e.get('dtype')}{e.get('shape')}")
        if sha256(little_endian(arr)) != e.get("sha256"):
            raise error(f"tensor {key!r} sha256 differs from the manifest (corrupt)")
    extra = sorted(set(tensors) - set(entries))
    if extra:
        raise error(f"member(s) {', '.join(extra)} not listed in the manifest")


class OpGraph:
    """Mixin for files whose manifest holds an op list (the bundle, the quantized model)."""

    @property
    def ops(self):
        return self.manifest["ops"]

    def op(self, name):
        for op in self.ops:
            if op["name"] == name:
                return op
        raise KeyError(f"no op named {name!r} in {self.path}")
