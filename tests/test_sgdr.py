import math

import pytest

from training.sgdr import LR_MAX, LR_MIN, check_epochs, learning_rate


@pytest.mark.parametrize("restart", [0, 2, 6, 14, 30, 62, 126])
def test_each_cycle_restarts_at_lr_max(restart):
    assert learning_rate(restart) == pytest.approx(0.1)


@pytest.mark.parametrize("cycle_end", [2, 6, 14, 30, 62, 126, 254])
def test_each_cycle_ends_at_lr_min(cycle_end):
    assert learning_rate(cycle_end - 1e-9) == pytest.approx(1e-4, abs=1e-9)


def test_cosine_midpoints_and_cycle_lengths_double():
    mid = (LR_MAX + LR_MIN) / 2
    assert learning_rate(1.0) == pytest.approx(mid)      # cycle 2 epochs long
    assert learning_rate(4.0) == pytest.approx(mid)      # then 4
    assert learning_rate(10.0) == pytest.approx(mid)     # then 8
    quarter = LR_MIN + 0.5 * (LR_MAX - LR_MIN) * (1 + math.cos(math.pi / 4))
    assert learning_rate(0.5) == pytest.approx(quarter)


def test_decreases_within_a_cycle_per_batch():
    lrs = [learning_rate(2 + b / 480) for b in range(4 * 480)]
    assert all(a > b for a, b in zip(lrs, lrs[1:]))


@pytest.mark.parametrize("bad", [1, 3, 5, 10, 100])
def test_epochs_must_end_a_cycle(bad):
    with pytest.raises(ValueError, match="2, 6, 14, 30"):
        check_epochs(bad)
