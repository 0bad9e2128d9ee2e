"""Learning-rate schedules and stabilizers (training/lr_schedule.py) and the srelu head temperature."""
import math

import pytest

from training import lr_schedule, sgdr
from training.graph import model_config, srelu_temperature_for


def test_cosine_runs_once_from_the_peak_to_1e_5_over_any_epoch_count():
    for epochs in (1, 5, 7, 14):
        rates = [lr_schedule.learning_rate("cosine", epochs * i / 100, epochs) for i in range(101)]
        assert rates[0] == pytest.approx(0.1) and rates[-1] == pytest.approx(1e-5)
        assert all(a > b for a, b in zip(rates, rates[1:]))             # no restart
        assert rates[50] == pytest.approx((0.1 + 1e-5) / 2)


def test_sgdr_is_unchanged_and_the_peak_scales_the_whole_schedule():
    for position in (0, 0.5, 2.0, 3.7, 13.9):
        assert lr_schedule.learning_rate("sgdr", position, 14) == sgdr.learning_rate(position)
        assert lr_schedule.learning_rate("sgdr", position, 14, lr_peak=0.03) == \
            pytest.approx(0.3 * sgdr.learning_rate(position))


def test_warmup_ramps_linearly_then_leaves_the_schedule_alone():
    plain = [lr_schedule.learning_rate("cosine", s / 480, 6, step=s) for s in range(300)]
    warm = [lr_schedule.learning_rate("cosine", s / 480, 6, step=s, warmup_steps=200) for s in range(300)]
    assert warm[0] == pytest.approx(plain[0] / 200) and warm[99] == pytest.approx(plain[99] / 2)
    assert warm[200:] == plain[200:]


@pytest.mark.parametrize("schedule,epochs,ok", [("sgdr", 6, True), ("sgdr", 5, False),
                                                ("cosine", 5, True), ("cosine", 0, False),
                                                ("linear", 6, False)])
def test_schedule_and_epochs_are_checked(schedule, epochs, ok):
    if ok:
        lr_schedule.check_schedule(schedule, epochs)
    else:
        with pytest.raises(ValueError):
            lr_schedule.check_schedule(schedule, epochs)


def test_temperatures_follow_the_authors():
    assert srelu_temperature_for("1bit", 10) == 40 and srelu_temperature_for("float", 10) == 80
    assert srelu_temperature_for("1bit", 100) == 25 == srelu_temperature_for("float", 100)
    assert srelu_temperature_for("1bit", 2) == 40 and srelu_temperature_for("float", 1000) == 25
    between = [srelu_temperature_for("float", c) for c in (10, 20, 50, 100)]
    assert all(a > b for a, b in zip(between, between[1:]))
    assert model_config(variant="srelu", weights="float")["srelu_temperature"] == 80
    assert model_config(variant="srelu", srelu_temperature=12.5)["srelu_temperature"] == 12.5


@pytest.mark.parametrize("t", [0.0, -3.0, math.nan, math.inf])
def test_a_bad_temperature_is_refused(t):
    with pytest.raises(ValueError, match="positive"):
        model_config(variant="srelu", srelu_temperature=t)
