"""Writers for tiny dataset files in their real on-disk formats (shared by the tests)."""
import gzip
import os

import numpy as np

from training.data import IDX_FILES


def idx_bytes(arr):
    """idx format: magic 0x0000080<ndim> (uint8 payload), big-endian uint32 dims, raw bytes."""
    arr = np.asarray(arr, dtype=np.uint8)
    head = (0x800 + arr.ndim).to_bytes(4, "big")
    head += b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
    return head + arr.tobytes()


def write_idx_set(d, rng, n_train=7, n_test=5, h=28, w=28, gz=(False, True, True, False)):
    """Write the 4 idx files (some plain, some gzipped) and return the arrays written."""
    arrs = [rng.integers(0, 256, (n_train, h, w), dtype=np.uint8),
            rng.integers(0, 10, n_train).astype(np.uint8),
            rng.integers(0, 256, (n_test, h, w), dtype=np.uint8),
            rng.integers(0, 10, n_test).astype(np.uint8)]
    for fname, arr, z in zip(IDX_FILES, arrs, gz):
        data = idx_bytes(arr)
        if z:
            with gzip.open(os.path.join(d, fname + ".gz"), "wb") as f:
                f.write(data)
        else:
            with open(os.path.join(d, fname), "wb") as f:
                f.write(data)
    return arrs
