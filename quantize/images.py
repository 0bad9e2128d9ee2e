"""Ordinary image files (PNG, JPEG, ...) as a model's input: uint8 N x C x H x W, 0..255.

For calibration without the training set (`python -m quantize --calib-folder`) and for
classifying photos (`python -m quantize.classify`). Each file is converted to the model's
channels (RGB for 3, grey for 1) and resized to its H x W with Pillow's area-averaging filter
(Image.BOX, so a large photo is averaged down rather than aliased).
"""
import os

import numpy as np

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
MODES = {1: "L", 3: "RGB"}


class ImageFileError(ValueError):
    """An image file that cannot be used; the message names the file."""


def load_image(path, shape):
    """One file as C x H x W uint8 for an input of `shape` (C, H, W)."""
    from PIL import Image, UnidentifiedImageError
    c, h, w = shape
    if c not in MODES:
        raise ImageFileError(f"the model takes {c}-channel images; image files give 1 (grey) or "
                             "3 (RGB)")
    try:
        with Image.open(path) as im:
            im = im.convert(MODES[c]).resize((w, h), Image.BOX)
            pixels = np.asarray(im, np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ImageFileError(f"{path}: not an image file Pillow can read ({e}); give PNG or "
                             "JPEG files") from None
    return pixels[None] if c == 1 else pixels.transpose(2, 0, 1)


def load_images(paths, shape):
    """Files as N x C x H x W uint8."""
    return np.stack([load_image(p, shape) for p in paths]) if paths else \
        np.zeros((0, *shape), np.uint8)


def folder_images(folder):
    """The image files directly in `folder`, by name; refused if there are none."""
    if not os.path.isdir(folder):
        raise ImageFileError(f"{folder}: no such folder")
    paths = sorted(os.path.join(folder, f) for f in os.listdir(folder)
                   if f.lower().endswith(SUFFIXES) and os.path.isfile(os.path.join(folder, f)))
    if not paths:
        raise ImageFileError(f"{folder} holds no image files ({', '.join(SUFFIXES)}): give a "
                             "folder of photos")
    return paths
