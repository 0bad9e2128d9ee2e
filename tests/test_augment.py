"""Augmentation: random (not zero) padding, shifted crops, flips, cutout, reproducibility."""


import numpy as np
import pytest

from training.augment import augment, cutout, random_flip, random_pad_crop

PAD = 4


def rand_batch(seed, shape=(125, 1, 28, 28)):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def find_window(out, img, pad=PAD, allow_flip=False):
    """All (dy, dx, flipped) such that `out` shows `img` shifted by (dy, dx), i.e. the input pixels
    that stay inside the window match exactly. With random images only the true one matches."""
    h, w = img.shape[-2:]
    hits = []
    for flipped in (False, True) if allow_flip else (False,):
        src = img[..., ::-1] if flipped else img
        for dy in range(-pad, pad + 1):
            for dx in range(-pad, pad + 1):
                # out[r, c] == src[r + dy, c + dx] wherever that source pixel exists
                o = out[..., max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)]
                s = src[..., max(0, dy):h + min(0, dy), max(0, dx):w + min(0, dx)]
                if np.array_equal(o, s):
                    hits.append((dy, dx, flipped))
    return hits


def test_pad_crop_is_a_shifted_window():
    x = rand_batch(0)
    out = random_pad_crop(x, np.random.default_rng(1), pad=PAD)
    assert out.shape == x.shape and out.dtype == np.uint8
    shifts = []
    for i in range(len(x)):
        hits = find_window(out[i], x[i])
        assert len(hits) == 1, f"image {i}: {hits}"
        shifts.append(hits[0][:2])
    shifts = np.array(shifts)
    assert shifts.min() == -PAD and shifts.max() == PAD  # the full offset range is used
    assert len({tuple(s) for s in shifts}) > 40  # and spread over many of the 81 offsets


def test_padding_is_uniform_random_not_zero():
    x = np.zeros((125, 1, 28, 28), np.uint8)
    out = random_pad_crop(x, np.random.default_rng(2), pad=PAD)
    # with zero images, every non-zero pixel comes from the padding
    border_imgs = (out != 0).any(axis=(1, 2, 3)).sum()
    assert border_imgs >= 110  # only offset (0, 0) (p = 1/81) shows no border
    vals = out[out != 0]
    assert vals.size > 5000
    assert vals.min() <= 3 and vals.max() >= 252
    assert len(np.unique(vals)) == 255  # every value 1..255 occurs
    assert abs(vals.mean() - 128) < 5  # uniform over 1..255 has mean 128


def test_padding_independent_per_channel():
    x = np.zeros((50, 3, 32, 32), np.uint8)
    out = random_pad_crop(x, np.random.default_rng(3), pad=PAD)
    border = out.any(axis=1)  # pixels where some channel is padding
    assert border.sum() > 1000
    r, g, b = (out[:, c][border] for c in range(3))
    assert (r != g).mean() > 0.9 and (g != b).mean() > 0.9


def test_pad_zero_is_identity_copy():
    x = rand_batch(4)
    out = random_pad_crop(x, np.random.default_rng(0), pad=0)
    np.testing.assert_array_equal(out, x)
    assert not np.shares_memory(out, x)


def test_flip_rate_and_exactness():
    x = rand_batch(5, (2000, 1, 8, 8))
    out = random_flip(x, np.random.default_rng(6))
    flipped = (out == x[..., ::-1]).all(axis=(1, 2, 3))
    same = (out == x).all(axis=(1, 2, 3))
    assert (flipped ^ same).all()  # each image is either untouched or exactly mirrored
    # Binomial(2000, 0.5): sd 22; 5 sd bound
    assert abs(flipped.sum() - 1000) < 112
    assert random_flip(x, np.random.default_rng(0), p=0.0).tobytes() == x.tobytes()
    assert (random_flip(x, np.random.default_rng(0), p=1.0) == x[..., ::-1]).all()


def test_augment_flips_only_when_asked():
    x = rand_batch(7, (200, 3, 32, 32))
    no = augment(x, np.random.default_rng(8), flip=False, pad=0)
    np.testing.assert_array_equal(no, x)
    yes = augment(x, np.random.default_rng(8), flip=True, pad=0)
    n_flipped = (yes == x[..., ::-1]).all(axis=(1, 2, 3)).sum()
    assert 60 < n_flipped < 140  # Binomial(200, 0.5), sd 7
    # with crops: flip=False never produces a mirrored window, flip=True sometimes does
    for flip in (False, True):
        out = augment(x[:40], np.random.default_rng(9), flip=flip)
        kinds = []
        for i in range(40):
            hits = find_window(out[i], x[i], allow_flip=True)
            assert len(hits) == 1
            kinds.append(hits[0][2])
        assert any(kinds) == flip


def patch_bbox(changed):
    rows, cols = np.flatnonzero(changed.any(1)), np.flatnonzero(changed.any(0))
    return rows.min(), rows.max() + 1, cols.min(), cols.max() + 1


def test_cutout_patch_random_and_clipped():
    size, h = 18, 28
    x = np.zeros((300, 1, h, h), np.uint8)
    x_before = x.copy()
    out = cutout(x, np.random.default_rng(10), size=size)
    np.testing.assert_array_equal(x, x_before)  # input untouched
    clipped = inside = 0
    for i in range(len(x)):
        changed = out[i, 0] != 0  # a patch pixel stays 0 with p = 1/256 only
        r0, r1, c0, c1 = patch_bbox(changed)
        assert r1 - r0 <= size and c1 - c0 <= size
        # a patch side is shorter than `size` only where it is cut by the image border
        assert r1 - r0 == size or r0 == 0 or r1 == h
        assert c1 - c0 == size or c0 == 0 or c1 == h
        assert changed[r0:r1, c0:c1].mean() > 0.95
        if r1 - r0 < size or c1 - c0 < size:
            clipped += 1
        else:
            inside += 1
    assert clipped > 100 and inside > 10  # both overhanging and fully inside patches occur
    vals = out[out != 0]
    assert vals.min() <= 3 and vals.max() >= 252 and abs(vals.mean() - 128) < 5


def test_cutout_same_patch_all_channels():
    x = np.zeros((20, 3, 32, 32), np.uint8)
    out = cutout(x, np.random.default_rng(11), size=18)
    masks = out != 0
    # the patch covers the same pixels in every channel (up to random zeros), values differ
    assert (masks[:, 0] ^ masks[:, 1]).mean() < 0.01
    inside = masks.all(axis=1)
    assert (out[:, 0][inside] != out[:, 1][inside]).mean() > 0.9


@pytest.mark.parametrize("flip,cut", [(False, 0), (True, 18)])
def test_augment_reproducible_and_pure(flip, cut):
    x = rand_batch(12, (125, 3, 32, 32))
    x_before = x.copy()
    a = augment(x, np.random.default_rng(42), flip, cut)
    b = augment(x, np.random.default_rng(42), flip, cut)
    c = augment(x, np.random.default_rng(43), flip, cut)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(x, x_before)
    assert a.shape == x.shape and a.dtype == np.uint8 and not np.shares_memory(a, x)


def test_augment_order_crop_flip_cutout():
    # augment = cutout(flip(pad_crop(x))) drawing from one generator in that order
    x = rand_batch(13, (30, 3, 32, 32))
    r = np.random.default_rng(14)
    want = cutout(random_flip(random_pad_crop(x, r, 4), r), r, 18)
    np.testing.assert_array_equal(augment(x, np.random.default_rng(14), True, 18, 4), want)
    r = np.random.default_rng(14)
    np.testing.assert_array_equal(augment(x, np.random.default_rng(14), False, 0, 4),
                                  random_pad_crop(x, r, 4))


def test_rejects_non_uint8():
    with pytest.raises(ValueError):
        augment(np.zeros((2, 1, 4, 4), np.float32), np.random.default_rng(0), False)
    with pytest.raises(ValueError):
        cutout(np.zeros((1, 4, 4), np.uint8), np.random.default_rng(0))
