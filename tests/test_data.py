"""Dataset readers, checked against tiny files written in each real on-disk format."""

import gzip
import os
import pickle

import numpy as np
import pytest
import scipy.io

from tests.formats import idx_bytes, write_idx_set
from training.data import DATASETS, DEFAULT_DIRS, IDX_FILES, Dataset, DatasetError, load_dataset


# ---------------------------------------------------------------- writers for the real formats

def write_cifar(d, rng, hundred=False, n=3):
    """Write CIFAR python batches with the real dict keys; return (train_x, train_y, test_x, test_y)
    as rows of 3072 bytes, like the files."""
    if hundred:
        folder, names, key, nc = "cifar-100-python", ["train", "test"], b"fine_labels", 100
    else:
        folder = "cifar-10-batches-py"
        names, key, nc = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"], b"labels", 10
    os.makedirs(os.path.join(d, folder))
    xs, ys = [], []
    for name in names:
        x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, nc, n)]
        batch = {b"batch_label": name.encode(), b"data": x, key: y,
                 b"filenames": [b"img%d.png" % i for i in range(n)]}
        if hundred:
            batch[b"coarse_labels"] = [v // 5 for v in y]
        with open(os.path.join(d, folder, name), "wb") as f:
            pickle.dump(batch, f, protocol=2)
        xs.append(x)
        ys.append(np.array(y))
    return np.concatenate(xs[:-1]), np.concatenate(ys[:-1]), xs[-1], ys[-1]


# ---------------------------------------------------------------- MNIST-style idx

@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
@pytest.mark.parametrize("gz", [(False, True, True, False), (True, True, True, True),
                                (False, False, False, False)])
def test_idx_roundtrip(tmp_path, name, gz):
    tx, ty, vx, vy = write_idx_set(tmp_path, np.random.default_rng(1), gz=gz)
    ds = load_dataset(name, tmp_path)
    assert isinstance(ds, Dataset) and ds.name == name
    assert ds.num_classes == 10 and ds.flip is False
    assert ds.train_x.shape == (7, 1, 28, 28) and ds.test_x.shape == (5, 1, 28, 28)
    assert ds.train_x.dtype == np.uint8 and ds.train_y.dtype == np.int64
    np.testing.assert_array_equal(ds.train_x[:, 0], tx)
    np.testing.assert_array_equal(ds.train_y, ty)
    np.testing.assert_array_equal(ds.test_x[:, 0], vx)
    np.testing.assert_array_equal(ds.test_y, vy)


def test_idx_missing_file_message(tmp_path):
    write_idx_set(tmp_path, np.random.default_rng(0), gz=(True,) * 4)
    os.remove(tmp_path / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(DatasetError) as e:
        load_dataset("fashion-mnist", tmp_path)
    msg = str(e.value)
    assert "\n" not in msg
    assert "fashion-mnist" in msg
    assert str(tmp_path / "t10k-labels-idx1-ubyte") in msg
    assert "train-images" not in msg.split("fix:")[0]  # only the missing file is named
    assert "apt-get install dataset-fashion-mnist" in msg and "--data-dir" in msg


def test_missing_directory_and_default(tmp_path):
    with pytest.raises(DatasetError, match="does not exist.*--data-dir"):
        load_dataset("mnist", tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="cifar10: no data directory.*CIFAR-10 python"):
        load_dataset("cifar10")
    assert DEFAULT_DIRS["fashion-mnist"] == "/usr/share/datasets/fashion-mnist"


def test_idx_truncated(tmp_path):
    write_idx_set(tmp_path, np.random.default_rng(0), gz=(False,) * 4)
    p = tmp_path / "train-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(DatasetError, match=r"corrupt file .*train-images-idx3-ubyte: size"):
        load_dataset("mnist", tmp_path)
    p.write_bytes(b"\x00\x00\x08")  # shorter than the header
    with pytest.raises(DatasetError, match="truncated header"):
        load_dataset("mnist", tmp_path)


def test_idx_bad_magic(tmp_path):
    write_idx_set(tmp_path, np.random.default_rng(0), gz=(False,) * 4)
    p = tmp_path / "train-labels-idx1-ubyte"
    p.write_bytes(b"\x00\x00\x08\x03" + p.read_bytes()[4:])  # image magic on a label file
    with pytest.raises(DatasetError, match=r"train-labels-idx1-ubyte: bad magic 0x00000803"):
        load_dataset("mnist", tmp_path)


def test_idx_corrupt_gzip(tmp_path):
    write_idx_set(tmp_path, np.random.default_rng(0), gz=(True,) * 4)
    p = tmp_path / "t10k-images-idx3-ubyte.gz"
    p.write_bytes(b"this is not gzip data at all")
    with pytest.raises(DatasetError, match=r"t10k-images-idx3-ubyte\.gz: cannot read"):
        load_dataset("fashion-mnist", tmp_path)
    data = gzip.compress(idx_bytes(np.zeros((5, 28, 28))))
    p.write_bytes(data[: len(data) // 2])  # truncated gzip stream
    with pytest.raises(DatasetError, match=r"t10k-images-idx3-ubyte\.gz"):
        load_dataset("fashion-mnist", tmp_path)


def test_idx_label_out_of_range_and_count_mismatch(tmp_path):
    write_idx_set(tmp_path, np.random.default_rng(0), gz=(False,) * 4)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes([0, 1, 2, 3, 10]))
    with pytest.raises(DatasetError, match="label out of range"):
        load_dataset("mnist", tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes([0, 1]))
    with pytest.raises(DatasetError, match="2 labels for 5 images"):
        load_dataset("mnist", tmp_path)


def test_idx_header_dims_whose_product_overflows_int64(tmp_path):
    """2**31 * 2**31 * 4 = 2**64 wraps to 0 in int64: a 16-byte header-only file matched it."""
    write_idx_set(tmp_path, np.random.default_rng(0), gz=(False,) * 4)
    header = (0x803).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in (2**31, 2**31, 4))
    (tmp_path / "train-images-idx3-ubyte").write_bytes(header)
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte: size 16 bytes, header "
                                           r"\(2147483648, 2147483648, 4\) implies 18446744073709551632"):
        load_dataset("mnist", tmp_path)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_huge_file_or_gzip_bomb_is_refused_without_reading_it(tmp_path, gz):
    """A header for 5 images of 28x28, then 256 MiB (a sparse file, or a stream of gzip members
    of zeros): reading stops one byte past the 3,920 the header implies."""
    import tracemalloc
    write_idx_set(tmp_path, np.random.default_rng(0), gz=(gz,) * 4)
    good = idx_bytes(np.zeros((5, 28, 28)))
    p = tmp_path / ("t10k-images-idx3-ubyte" + (".gz" if gz else ""))
    if gz:
        p.write_bytes(gzip.compress(good) + gzip.compress(bytes(1 << 20), 1) * 256)
    else:
        p.write_bytes(good)
        os.truncate(p, 1 << 28)
    tracemalloc.start()
    try:
        with pytest.raises(DatasetError, match=r"t10k-images-idx3-ubyte(\.gz)?: size over 3936 "
                                               r"bytes, header \(5, 28, 28\) implies 3936"):
            load_dataset("mnist", tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20


@pytest.mark.parametrize("file,dims,words", [
    ("train-images-idx3-ubyte", (0, 28, 28), "header (0, 28, 28) holds no images"),
    ("train-images-idx3-ubyte", (7, 0, 28), "header (7, 0, 28) gives the images a side of 0"),
    ("train-labels-idx1-ubyte", (0,), "header (0,) holds no labels"),
])
def test_idx_empty_headers_are_refused(tmp_path, file, dims, words):
    write_idx_set(tmp_path, np.random.default_rng(0), gz=(False,) * 4)
    (tmp_path / file).write_bytes(idx_bytes(np.zeros(dims)))
    with pytest.raises(DatasetError) as e:
        load_dataset("mnist", tmp_path)
    assert f"{file}: {words}" in str(e.value) and "\n" not in str(e.value)


def test_idx_train_and_test_images_of_different_sizes(tmp_path):
    write_idx_set(tmp_path, np.random.default_rng(0), gz=(False,) * 4)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(np.zeros((5, 12, 14))))
    with pytest.raises(DatasetError) as e:
        load_dataset("mnist", tmp_path)
    assert (f"t10k-images-idx3-ubyte: its images are 12x14, those of "
            f"{tmp_path / 'train-images-idx3-ubyte'} 28x28") in str(e.value)
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------- CIFAR

@pytest.mark.parametrize("hundred", [False, True])
@pytest.mark.parametrize("point_inside", [False, True])
def test_cifar_roundtrip(tmp_path, hundred, point_inside):
    tx, ty, vx, vy = write_cifar(tmp_path, np.random.default_rng(2), hundred)
    name = "cifar100" if hundred else "cifar10"
    d = tmp_path / ("cifar-100-python" if hundred else "cifar-10-batches-py") if point_inside \
        else tmp_path
    ds = load_dataset(name, str(d))
    assert ds.num_classes == (100 if hundred else 10) and ds.flip is True
    n_train = 3 if hundred else 15
    assert ds.train_x.shape == (n_train, 3, 32, 32) and ds.test_x.shape == (3, 3, 32, 32)
    assert ds.train_x.dtype == np.uint8 and ds.train_y.dtype == np.int64
    np.testing.assert_array_equal(ds.train_y, ty)
    np.testing.assert_array_equal(ds.test_y, vy)
    # row layout: 1024 red bytes (32 rows of 32), then green, then blue
    np.testing.assert_array_equal(ds.train_x[1, 0, 2, 5], tx[1, 2 * 32 + 5])
    np.testing.assert_array_equal(ds.train_x[1, 2, 31, 0], tx[1, 2048 + 31 * 32])
    np.testing.assert_array_equal(ds.test_x.reshape(3, -1), vx)


def test_cifar_missing(tmp_path):
    write_cifar(tmp_path, np.random.default_rng(0))
    os.remove(tmp_path / "cifar-10-batches-py" / "data_batch_3")
    with pytest.raises(DatasetError) as e:
        load_dataset("cifar10", tmp_path)
    msg = str(e.value)
    assert "\n" not in msg
    assert str(tmp_path / "cifar-10-batches-py" / "data_batch_3") in msg
    assert "CIFAR-10 python version" in msg and "--data-dir" in msg
    with pytest.raises(DatasetError, match=r"cifar100: missing .*cifar-100-python.*--data-dir"):
        load_dataset("cifar100", tmp_path)


class _Payload:
    """Unpickling this calls os.system: what a tampered dataset file could do."""
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_cifar_reader_never_runs_code_from_the_file(tmp_path, monkeypatch):
    write_cifar(tmp_path, np.random.default_rng(0))
    p = tmp_path / "cifar-10-batches-py" / "test_batch"
    p.write_bytes(pickle.dumps({b"data": _Payload(), b"labels": [0]}, protocol=2))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetError, match=r"test_batch: cannot unpickle .*names posix.system") as e:
        load_dataset("cifar10", tmp_path)
    assert "\n" not in str(e.value) and not (tmp_path / "PWNED").exists()


def test_cifar_corrupt(tmp_path):
    write_cifar(tmp_path, np.random.default_rng(0))
    p = tmp_path / "cifar-10-batches-py" / "test_batch"
    good = p.read_bytes()
    p.write_bytes(good[: len(good) // 2])
    with pytest.raises(DatasetError, match=r"corrupt file .*test_batch: cannot unpickle"):
        load_dataset("cifar10", tmp_path)
    p.write_bytes(b"garbage\x00\xff")
    with pytest.raises(DatasetError, match=r"test_batch: cannot unpickle") as e:
        load_dataset("cifar10", tmp_path)
    assert "\n" not in str(e.value)
    p.write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}))
    with pytest.raises(DatasetError, match=r"test_batch: data uint8\(2, 3072\) / labels \(1,\)"):
        load_dataset("cifar10", tmp_path)
    p.write_bytes(pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [10]}))
    with pytest.raises(DatasetError, match="label out of range"):
        load_dataset("cifar10", tmp_path)
    p.write_bytes(pickle.dumps({b"labels": [0]}))
    with pytest.raises(DatasetError, match="not a CIFAR batch"):
        load_dataset("cifar10", tmp_path)


@pytest.mark.parametrize("key,value,words", [
    (b"labels", ["cat"], "labels are <U3 values, not integers"),
    (b"labels", [2**70], "labels are object values, not integers"),
    (b"labels", [0.5], "labels are float64 values, not integers"),
    (b"labels", [[0], [1, 2]], "labels are not an array (ValueError"),
    (b"data", [[0] * 3072, [0]], "data are not an array (ValueError"),
])
def test_cifar_labels_and_data_of_the_wrong_kind(tmp_path, key, value, words):
    write_cifar(tmp_path, np.random.default_rng(0))
    batch = {b"data": np.zeros((1, 3072), np.uint8), b"labels": [0], key: value}
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DatasetError) as e:
        load_dataset("cifar10", tmp_path)
    assert f"test_batch: {words}" in str(e.value) and "\n" not in str(e.value)


# ---------------------------------------------------------------- SVHN

def write_svhn(path, rng, n):
    x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)  # H x W x C x N, as in the files
    y = rng.integers(1, 11, (n, 1)).astype(np.uint8)  # 1..10, 10 = digit 0
    y[0] = 10
    scipy.io.savemat(path, {"X": x, "y": y})
    return x, y


def test_svhn_roundtrip(tmp_path):
    rng = np.random.default_rng(3)
    tx, ty = write_svhn(tmp_path / "train_32x32.mat", rng, 6)
    vx, vy = write_svhn(tmp_path / "test_32x32.mat", rng, 4)
    ds = load_dataset("svhn", tmp_path)
    assert ds.flip is False and ds.num_classes == 10
    assert ds.train_x.shape == (6, 3, 32, 32) and ds.test_x.shape == (4, 3, 32, 32)
    assert ds.train_x.dtype == np.uint8 and ds.train_y.dtype == np.int64
    for i in range(6):
        for c in range(3):
            np.testing.assert_array_equal(ds.train_x[i, c], tx[:, :, c, i])
    np.testing.assert_array_equal(ds.train_y, ty[:, 0] % 10)
    np.testing.assert_array_equal(ds.test_y, vy[:, 0] % 10)
    assert ds.train_y[0] == 0 and ds.train_y.max() <= 9


def test_svhn_missing_and_corrupt(tmp_path):
    rng = np.random.default_rng(0)
    write_svhn(tmp_path / "train_32x32.mat", rng, 2)
    with pytest.raises(DatasetError, match=r"svhn: missing .*test_32x32\.mat; fix: .*--data-dir"):
        load_dataset("svhn", tmp_path)
    (tmp_path / "test_32x32.mat").write_bytes(b"not a mat file")
    with pytest.raises(DatasetError, match=r"test_32x32\.mat: cannot read"):
        load_dataset("svhn", tmp_path)
    scipy.io.savemat(tmp_path / "test_32x32.mat", {"X": np.zeros((32, 32, 3, 2), np.uint8),
                                                    "y": np.array([[0], [3]], np.uint8)})
    with pytest.raises(DatasetError, match=r"label out of range 1..10"):
        load_dataset("svhn", tmp_path)
    for y, kind in ((np.array(["a", "b"]), "<U1"), (np.array([[1.5], [2.0]]), "float64")):
        scipy.io.savemat(tmp_path / "test_32x32.mat", {"X": np.zeros((32, 32, 3, 2), np.uint8),
                                                        "y": y})
        with pytest.raises(DatasetError, match=rf"test_32x32\.mat: labels are {kind} values, "
                                               "not integers"):
            load_dataset("svhn", tmp_path)


# ---------------------------------------------------------------- common behaviour

def test_unknown_dataset():
    with pytest.raises(DatasetError) as e:
        load_dataset("imagenet")
    assert "imagenet" in str(e.value)
    for n in DATASETS:
        assert n in str(e.value)


def test_subset_deterministic(tmp_path):
    write_idx_set(tmp_path, np.random.default_rng(0), n_train=50, n_test=8, gz=(False,) * 4)
    full = load_dataset("mnist", tmp_path)
    a = load_dataset("mnist", tmp_path, subset=10, seed=5)
    b = load_dataset("mnist", tmp_path, subset=10, seed=5)
    c = load_dataset("mnist", tmp_path, subset=10, seed=6)
    assert a.train_x.shape == (10, 1, 28, 28) and a.test_x.shape == (8, 1, 28, 28)
    np.testing.assert_array_equal(a.train_x, b.train_x)
    np.testing.assert_array_equal(a.train_y, b.train_y)
    assert not np.array_equal(a.train_x, c.train_x)
    # a subset is made of real (image, label) pairs of the full set
    for img, lab in zip(a.train_x, a.train_y):
        k = np.flatnonzero((full.train_x == img).all(axis=(1, 2, 3)))
        assert len(k) == 1 and full.train_y[k[0]] == lab
    assert load_dataset("mnist", tmp_path, subset=3).test_x.shape[0] == 3


def test_real_fashion_mnist():
    d = DEFAULT_DIRS["fashion-mnist"]
    if not any(os.path.exists(os.path.join(d, IDX_FILES[0] + s)) for s in ("", ".gz")):
        pytest.skip(f"Fashion-MNIST not installed in {d} (apt-get install dataset-fashion-mnist)")
    ds = load_dataset("fashion-mnist")
    assert ds.train_x.shape == (60000, 1, 28, 28) and ds.test_x.shape == (10000, 1, 28, 28)
    assert ds.train_y.shape == (60000,) and ds.test_y.shape == (10000,)
    assert ds.num_classes == 10 and ds.flip is False
    np.testing.assert_array_equal(np.bincount(ds.train_y), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(ds.test_y), [1000] * 10)
    assert ds.train_x.max() == 255 and ds.train_x.min() == 0
