"""Offline readers for the image datasets used by bitwrn (numpy only, no downloads).

Every loader returns raw uint8 images N x C x H x W (0..255, not normalized: the network's
first layer is a learned BN on raw pixels) and int64 labels. Any missing or corrupt file raises
DatasetError with a one-line message naming the dataset, the file(s) and the fix.
"""

import gzip
import math
import os
import pickle
import zlib
from dataclasses import dataclass

import numpy as np

DATASETS = ("mnist", "fashion-mnist", "cifar10", "cifar100", "svhn")

# Each dataset's class names, in label order (its own metadata files give the same lists).
CLASS_NAMES = {
    "mnist": [str(d) for d in range(10)],
    "svhn": [str(d) for d in range(10)],
    "fashion-mnist": ["T-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
                      "sneaker", "bag", "ankle boot"],
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                "truck"],
    "cifar100": (
        "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus "
        "butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach "
        "couch crab crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster "
        "house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree "
        "motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear "
        "pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket "
        "rose sea seal shark shrew skunk skyscraper snail snake spider squirrel streetcar "
        "sunflower sweet_pepper table tank telephone television tiger tractor train trout tulip "
        "turtle wardrobe whale willow_tree wolf woman worm").split(),
}

# Where Debian's dataset-fashion-mnist package installs the idx files; the others have no
# packaged copy, so they need --data-dir.
DEFAULT_DIRS = {"fashion-mnist": "/usr/share/datasets/fashion-mnist"}

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_IDX_LIST = ", ".join(f + "[.gz]" for f in IDX_FILES)
FIXES = {
    "fashion-mnist": "apt-get install dataset-fashion-mnist, or pass --data-dir DIR containing "
                     + _IDX_LIST,
    "mnist": "download the MNIST idx files and pass --data-dir DIR containing " + _IDX_LIST,
    "cifar10": "download the CIFAR-10 python version (cifar-10-python.tar.gz), extract it and "
               "pass --data-dir DIR containing cifar-10-batches-py",
    "cifar100": "download the CIFAR-100 python version (cifar-100-python.tar.gz), extract it and "
                "pass --data-dir DIR containing cifar-100-python",
    "svhn": "download train_32x32.mat and test_32x32.mat (SVHN format 2) and pass --data-dir DIR "
            "containing them",
}


class DatasetError(Exception):
    """A dataset could not be loaded; the message is one line and says how to fix it."""


@dataclass
class Dataset:
    name: str
    train_x: np.ndarray  # uint8 N x C x H x W, raw 0..255
    train_y: np.ndarray  # int64 N
    test_x: np.ndarray
    test_y: np.ndarray
    num_classes: int
    flip: bool  # horizontal-flip augmentation applies (natural images only, not digits)


def _one_line(text):
    return " ".join(str(text).split())


def _missing(name, paths):
    return DatasetError(_one_line(f"{name}: missing {', '.join(map(str, paths))}; "
                                  f"fix: {FIXES[name]}"))


def _corrupt(name, path, what):
    return DatasetError(_one_line(f"{name}: corrupt file {path}: {what}; "
                                  f"fix: replace it with a fresh copy ({FIXES[name]})"))


def _array(name, path, value, what):
    """np.asarray(value), or a one-line DatasetError: a tampered file can hold ragged lists."""
    try:
        return np.asarray(value)
    except (ValueError, TypeError, OverflowError) as e:
        raise _corrupt(name, path, f"{what} are not an array ({type(e).__name__}: {e})") from e


def _labels(name, path, value):
    """Labels as int64; text, floats and ints beyond int64 (an object array) are refused rather
    than parsed, truncated or left to numpy's own exceptions."""
    y = _array(name, path, value, "labels")
    if y.dtype.kind not in "iu":
        raise _corrupt(name, path, f"labels are {y.dtype} values, not integers")
    return y.astype(np.int64)


def _check_labels(name, path, y, num_classes):
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise _corrupt(name, path, f"label out of range 0..{num_classes - 1} "
                                   f"(found {y.min()}..{y.max()})")


# ---------------------------------------------------------------- MNIST / Fashion-MNIST (idx)

def _read_at_most(f, n):
    """Up to n bytes of f, read in pieces: f.read(n) allocates n bytes at once, and the n a
    header claims can be far more than the file holds."""
    buf = bytearray()
    while len(buf) < n:
        piece = f.read(min(n - len(buf), 1 << 24))
        if not piece:
            break
        buf += piece
    return buf


def _read_idx(name, path, ndim):
    """Parse an idx file with uint8 payload: magic 0x0000080<ndim>, ndim big-endian uint32 dims.
    The header is read first and no more than the payload it implies plus one byte after it, so
    a huge file or a gzip bomb is refused without reading (or decompressing) it all."""
    head = 4 + 4 * ndim
    try:
        with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
            header = f.read(head)
            if len(header) < head:
                raise _corrupt(name, path, f"truncated header ({len(header)} bytes)")
            magic = int.from_bytes(header[:4], "big")
            if magic != 0x800 + ndim:
                raise _corrupt(name, path, f"bad magic 0x{magic:08x}, "
                                           f"expected 0x{0x800 + ndim:08x}")
            dims = tuple(int.from_bytes(header[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
            if dims[0] == 0:
                raise _corrupt(name, path, f"header {dims} holds no "
                                           f"{'images' if ndim > 1 else 'labels'}")
            if 0 in dims[1:]:
                raise _corrupt(name, path, f"header {dims} gives the images a side of 0")
            want = math.prod(dims)   # exact: numpy's int64 product wraps for 32-bit dims
            body = _read_at_most(f, want + 1)
    except (OSError, EOFError, zlib.error) as e:  # bad gzip: OSError; truncated gzip: EOFError
        raise _corrupt(name, path, f"cannot read/decompress ({type(e).__name__}: {e})") from e
    if len(body) != want:
        size = head + len(body) if len(body) < want else f"over {head + want}"
        raise _corrupt(name, path, f"size {size} bytes, header {dims} implies {head + want}")
    # a bytearray: the array is writable and needs no copy
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def _load_idx(name, d):
    paths, missing = [], []
    for f in IDX_FILES:
        plain = os.path.join(d, f)
        cands = [p for p in (plain, plain + ".gz") if os.path.isfile(p)]
        paths.append(cands[0] if cands else None)
        if not cands:
            missing.append(plain + "[.gz]")
    if missing:
        raise _missing(name, missing)
    out = []
    for split in (0, 2):
        x = _read_idx(name, paths[split], 3)
        y = _read_idx(name, paths[split + 1], 1).astype(np.int64)
        if len(x) != len(y):
            raise _corrupt(name, paths[split + 1], f"{len(y)} labels for {len(x)} images")
        _check_labels(name, paths[split + 1], y, 10)
        out += [x[:, None], y]  # add the single channel axis -> N x 1 x H x W
    if out[0].shape[2:] != out[2].shape[2:]:    # one network reads both
        raise _corrupt(name, paths[2], "its images are {}x{}, those of {} {}x{}".format(
            *out[2].shape[2:], paths[0], *out[0].shape[2:]))
    return (*out, 10)


# ---------------------------------------------------------------- CIFAR-10 / CIFAR-100 (pickle)

class _BatchUnpickler(pickle.Unpickler):
    """A pickle may name any Python callable and have it called. A CIFAR batch holds only a
    dict of bytes, ints, lists and one numpy array: only the globals that rebuild an array (and
    bytes, as protocol 2 writes them from Python 3) are admitted, so a tampered file cannot run
    code."""
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which a CIFAR batch never does")
        return super().find_class(module, name)


def _read_cifar_batch(name, path, label_key, num_classes):
    try:
        with open(path, "rb") as f:   # Python-2 pickles: bytes keys
            d = _BatchUnpickler(f, encoding="bytes").load()
    except Exception as e:  # unpickling can fail with many exception types
        raise _corrupt(name, path, f"cannot unpickle ({type(e).__name__}: {e})") from e
    if not isinstance(d, dict) or b"data" not in d or label_key not in d:
        raise _corrupt(name, path, f"not a CIFAR batch (no dict with b'data', {label_key!r})")
    x, y = _array(name, path, d[b"data"], "data"), _labels(name, path, d[label_key])
    if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072 or y.shape != (len(x),):
        raise _corrupt(name, path, f"data {x.dtype}{x.shape} / labels {y.shape}, expected "
                                   f"uint8 (N, 3072) / (N,)")
    _check_labels(name, path, y, num_classes)
    # each row is the R plane, then G, then B, each 32x32 row-major -> C x H x W directly
    return x.reshape(-1, 3, 32, 32), y


def _load_cifar(name, d):
    folder, train, test, key, nc = {
        "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)],
                    "test_batch", b"labels", 10),
        "cifar100": ("cifar-100-python", ["train"], "test", b"fine_labels", 100),
    }[name]
    # accept the folder that contains the extracted archive, or the extracted folder itself
    if os.path.isdir(os.path.join(d, folder)):
        d = os.path.join(d, folder)
    paths = [os.path.join(d, f) for f in train + [test]]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise _missing(name, missing)
    parts = [_read_cifar_batch(name, p, key, nc) for p in paths]
    train_x = np.concatenate([p[0] for p in parts[:-1]])
    train_y = np.concatenate([p[1] for p in parts[:-1]])
    return train_x, train_y, parts[-1][0], parts[-1][1], nc


# ---------------------------------------------------------------- SVHN (MATLAB .mat)

def _read_svhn(name, path):
    import scipy.io  # imported lazily: only SVHN needs scipy
    try:
        m = scipy.io.loadmat(path)
        x, y = m["X"], m["y"]
    except Exception as e:
        raise _corrupt(name, path, f"cannot read .mat ({type(e).__name__}: {e})") from e
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[2] != 3 or y.size != x.shape[3]:
        raise _corrupt(name, path, f"X {x.dtype}{x.shape} / y {y.shape}, expected "
                                   f"uint8 (32, 32, 3, N) / N labels")
    y = _labels(name, path, y).reshape(-1)
    if y.size and (y.min() < 1 or y.max() > 10):
        raise _corrupt(name, path, f"label out of range 1..10 (found {y.min()}..{y.max()})")
    y[y == 10] = 0  # SVHN stores digit 0 as class 10
    # H x W x C x N -> N x C x H x W
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)), y


def _load_svhn(name, d):
    paths = [os.path.join(d, f) for f in ("train_32x32.mat", "test_32x32.mat")]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise _missing(name, missing)
    return (*_read_svhn(name, paths[0]), *_read_svhn(name, paths[1]), 10)


# ---------------------------------------------------------------- entry point

_LOADERS = {"mnist": _load_idx, "fashion-mnist": _load_idx,
            "cifar10": _load_cifar, "cifar100": _load_cifar, "svhn": _load_svhn}


def load_dataset(name, data_dir=None, subset=None, seed=0):
    """Load a dataset by name from local files.

    data_dir: the directory holding the files (default: the packaged location, where one exists).
    subset: if given, keep a random subset (fixed by `seed`) of min(subset, len(train)) training
    and min(subset, len(test)) test images, e.g. for quick runs and tests.
    """
    key = str(name).lower().replace("_", "-")
    if key not in _LOADERS:
        raise DatasetError(f"unknown dataset {name!r}; supported: {', '.join(DATASETS)}")
    d = data_dir if data_dir is not None else DEFAULT_DIRS.get(key)
    if d is None:
        raise DatasetError(_one_line(f"{key}: no data directory given; fix: {FIXES[key]}"))
    d = os.path.expanduser(os.fspath(d))
    if not os.path.isdir(d):
        raise DatasetError(_one_line(f"{key}: data directory {d} does not exist; "
                                     f"fix: {FIXES[key]}"))
    train_x, train_y, test_x, test_y, nc = _LOADERS[key](key, d)
    if subset is not None:
        if int(subset) <= 0:
            raise ValueError(f"subset must be positive, got {subset}")
        rng = np.random.default_rng(seed)
        # sorted indices: a deterministic subset that keeps the files' order
        i = np.sort(rng.permutation(len(train_x))[:int(subset)])
        j = np.sort(rng.permutation(len(test_x))[:int(subset)])
        train_x, train_y, test_x, test_y = train_x[i], train_y[i], test_x[j], test_y[j]
    return Dataset(key, train_x, train_y, test_x, test_y, nc, flip=key in ("cifar10", "cifar100"))
