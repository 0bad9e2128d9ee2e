"""Shared pytest hooks and fixtures: the simulator the hardware tests run on, CI's data, and
a tiny MNIST-format dataset.

`BITWRN_SIM` (verilator, the default, or icarus) picks the simulator for every test that goes
through sim.runner.run_cocotb. Under BITWRN_SIM=icarus without iverilog, those tests are skipped
with a reason (never passed silently); tests that simulate nothing still run.
"""
import os

import numpy as np
import pytest

from tests.formats import write_idx_set

from sim.runner import SIM_ENV, SimulatorMissing

ICARUS_MISSING = "iverilog not installed: apt-get install iverilog"


def pytest_report_header(config):
    return f"simulator: {os.environ.get(SIM_ENV) or 'verilator'} (${SIM_ENV})"


def _skip_when_simulator_missing():
    try:
        return (yield)
    except SimulatorMissing:
        pytest.skip(ICARUS_MISSING)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    return (yield from _skip_when_simulator_missing())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    return (yield from _skip_when_simulator_missing())


# A skip for want of Fashion-MNIST is fine on a laptop; in CI ($CI set) it would hide that the
# real-image tests never ran, so there it is a failure.
DATA_SKIP = "dataset-fashion-mnist"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if os.environ.get("CI") and report.skipped and DATA_SKIP in str(report.longrepr):
        report.outcome = "failed"
        report.longrepr = f"CI must not skip the real-image tests: {report.longrepr[-1]}"
    return report


@pytest.fixture(scope="module")
def tiny_mnist(tmp_path_factory):
    """A folder of MNIST-format files: 500 training and 100 test images of 12x12."""
    d = tmp_path_factory.mktemp("mnist")
    write_idx_set(str(d), np.random.default_rng(0), n_train=500, n_test=100, h=12, w=12)
    return str(d)
