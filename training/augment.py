"""Training-time augmentation on uint8 batches N x C x H x W (numpy only).

Follows McDonnell (ICLR 2018): pad with uniform random integers 0..255 (not zeros) and crop back to
the input size, horizontal flip for natural images, optional cutout filled with random integers.
All randomness comes from the numpy Generator passed in, so a caller that seeds one per epoch gets
reproducible (and resumable) batches. Functions return new arrays and never modify their input.
"""

import numpy as np


def _check(x):
    if not isinstance(x, np.ndarray) or x.ndim != 4 or x.dtype != np.uint8:
        raise ValueError(f"expected a uint8 array N x C x H x W, got "
                         f"{getattr(x, 'dtype', type(x))} {getattr(x, 'shape', '')}")


def random_pad_crop(x, rng, pad=4):
    """Pad every image by `pad` px per side with random 0..255 (per pixel and channel), then crop a
    random window of the original H x W per image (offset uniform in [-pad, pad] per axis)."""
    _check(x)
    n, c, h, w = x.shape
    if pad == 0:
        return x.copy()
    padded = rng.integers(0, 256, size=(n, c, h + 2 * pad, w + 2 * pad), dtype=np.uint8)
    padded[:, :, pad:pad + h, pad:pad + w] = x
    oy = rng.integers(0, 2 * pad + 1, size=n)  # top-left corner of the window in padded coords
    ox = rng.integers(0, 2 * pad + 1, size=n)
    # view of every H x W window (N x C x 2pad+1 x 2pad+1 x H x W, no copy), then pick one window
    # per image: a single gather of contiguous rows, much faster than per-pixel fancy indexing
    windows = np.lib.stride_tricks.sliding_window_view(padded, (h, w), axis=(2, 3))
    return windows[np.arange(n), :, oy, ox]  # -> N x C x H x W


def random_flip(x, rng, p=0.5):
    """Mirror each image left-right with probability p."""
    _check(x)
    out = x.copy()
    m = rng.random(len(x)) < p
    out[m] = x[m][..., ::-1]
    return out


def cutout(x, rng, size=18):
    """Overwrite one size x size patch per image with random 0..255 (per pixel and channel).

    The patch centre is uniform over the image, so the patch may overhang the border; only the part
    inside the image changes. Patch rows are [cy - size//2, cy - size//2 + size), same for columns.
    """
    _check(x)
    n, c, h, w = x.shape
    y0 = rng.integers(0, h, size=n) - size // 2
    x0 = rng.integers(0, w, size=n) - size // 2
    ri, ci = np.arange(h), np.arange(w)
    in_r = (ri >= y0[:, None]) & (ri < y0[:, None] + size)  # N x H
    in_c = (ci >= x0[:, None]) & (ci < x0[:, None] + size)  # N x W
    mask = (in_r[:, :, None] & in_c[:, None, :])[:, None]  # N x 1 x H x W, same for every channel
    noise = rng.integers(0, 256, size=x.shape, dtype=np.uint8)
    return np.where(mask, noise, x)


def augment(x, rng, flip, cutout_size=0, pad=4):
    """Pad+crop, then flip (if `flip`), then cutout (if cutout_size > 0): the reference order."""
    out = random_pad_crop(x, rng, pad)
    if flip:
        out = random_flip(out, rng)
    if cutout_size > 0:
        out = cutout(out, rng, cutout_size)
    return out
