"""Data layouts that travel between the core's components."""
from amaranth import signed, unsigned
from amaranth.lib import data

COUNT = range(1 << 10)      # loop counters, map coordinates, channel groups

# The controller's tap: output and input group, kernel position; first / last tap of a word.
TAP = data.StructLayout({"og": COUNT, "ig": COUNT, "ky": COUNT, "kx": COUNT, "first": 1, "last": 1})
# An output pixel the engine works on (y runs past the last row when the pixel is unused).
OUTPUT_PIXEL = data.StructLayout({"y": range(1 << 11), "x": COUNT})
# Where a LOAD or DUMP word belongs: channel group, row, column.
POSITION = data.StructLayout({"g": COUNT, "y": COUNT, "x": COUNT})
# What an engine output word is: its group and pixel, and whether the pixel exists.
TAG = data.StructLayout({"og": 10, "y": 10, "x": 10, "valid": 1})


def write_request(plan):
    """A feature-map write: enable, word address, word."""
    return data.StructLayout({"en": 1, "addr": unsigned(plan.addr_bits), "data": plan.word})


def finished_words(plan):
    """The engine's output: per pixel the word's tag and its `lanes` accumulators, `valid` for
    the one cycle they are final."""
    word = data.StructLayout({"tag": TAG, "acc": data.ArrayLayout(signed(plan.acc_bits), plan.lanes)})
    return data.StructLayout({"valid": 1, "out_pixels": data.ArrayLayout(word, plan.pixels_per_cycle)})
