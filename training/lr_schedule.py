"""Learning-rate schedules, stepped per batch: SGDR (ICLR 2018) or one cosine (the 2019 runs).

- sgdr: cosine warm restarts, cycles of 2, 4, 8, ... epochs from 0.1 to 1e-4 (training/sgdr.py);
  the epoch count must end a cycle.
- cosine: one half cosine from 0.1 down to 1e-5 over all epochs, no restarts, as in the
  authors' shifted-ReLU notebooks; any epoch count.

`warmup_steps` > 0 ramps the rate linearly from 0 over the first steps of training (a
stabilizer, not part of the published recipe).
"""
import math

from training import sgdr

SCHEDULES = ("sgdr", "cosine")
LR_PEAK = sgdr.LR_MAX           # 0.1: where both schedules start
COSINE_LR_MIN = 1e-5


def check_schedule(schedule, epochs):
    if schedule not in SCHEDULES:
        raise ValueError(f"--lr-schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    if schedule == "sgdr":
        sgdr.check_epochs(epochs)
    elif epochs < 1:
        raise ValueError(f"--epochs must be >= 1, got {epochs}")


def cosine(position, epochs, lr_max=LR_PEAK, lr_min=COSINE_LR_MIN):
    """One half cosine over `epochs`.

    >>> cosine(0, 6), round(cosine(3, 6), 6), cosine(6, 6)
    (0.1, 0.050005, 1e-05)
    """
    phase = min(max(position / epochs, 0.0), 1.0)
    return lr_min + 0.5 * (lr_max - lr_min) * (1.0 + math.cos(math.pi * phase))


def learning_rate(schedule, position, epochs, lr_peak=LR_PEAK, step=None, warmup_steps=0):
    """The rate at fractional epoch `position` (epoch + batch / batches), the whole schedule
    scaled to start at `lr_peak`, ramped up linearly over the first `warmup_steps` steps
    (`step` counts from 0).

    >>> learning_rate("cosine", 0, 6, step=0, warmup_steps=100), learning_rate("cosine", 0, 6, step=49, warmup_steps=100)
    (0.001, 0.05)
    >>> learning_rate("sgdr", 2.0, 6) == sgdr.learning_rate(2.0)
    True
    """
    rate = sgdr.learning_rate(position) if schedule == "sgdr" else cosine(position, epochs)
    rate *= lr_peak / LR_PEAK
    if warmup_steps and step is not None and step < warmup_steps:
        rate *= (step + 1) / warmup_steps
    return rate
