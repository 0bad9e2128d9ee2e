"""SGDR: cosine warm restarts (Loshchilov & Hutter) as used by the paper, stepped per batch.

Cycles last 2, 4, 8, ... epochs; each goes from LR_MAX down to LR_MIN by a half cosine.
Training must stop at the end of a cycle, so the total epoch count is 2, 6, 14, 30, ...
"""
import math

LR_MAX = 0.1
LR_MIN = 1e-4
FIRST_CYCLE_EPOCHS = 2
ALLOWED_EPOCHS = (2, 6, 14, 30, 62, 126, 254)


def check_epochs(epochs):
    if epochs not in ALLOWED_EPOCHS:
        raise ValueError(f"--epochs must end a warm-restart cycle: one of "
                         f"{', '.join(map(str, ALLOWED_EPOCHS))} (got {epochs})")
    return epochs


def learning_rate(epoch_position, lr_max=LR_MAX, lr_min=LR_MIN):
    """Learning rate at a fractional epoch position (epoch + batch / batches_per_epoch)."""
    cycle_start, cycle_len = 0.0, FIRST_CYCLE_EPOCHS
    while epoch_position >= cycle_start + cycle_len:
        cycle_start += cycle_len
        cycle_len *= 2
    phase = (epoch_position - cycle_start) / cycle_len
    return lr_min + 0.5 * (lr_max - lr_min) * (1.0 + math.cos(math.pi * phase))
