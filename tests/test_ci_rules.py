"""CI cannot pass by skipping its data: a skip for want of Fashion-MNIST fails when $CI is set."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SKIPPING = '''
import pytest

def test_needs_data():
    pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")

def test_other_skip():
    pytest.skip("some other reason")
'''


def run_pytest(tmp_path, ci):
    (tmp_path / "test_skipping.py").write_text(SKIPPING)
    env = {k: v for k, v in os.environ.items() if k != "CI"} | ({"CI": "true"} if ci else {})
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "-p", "no:cacheprovider",
                           str(tmp_path / "test_skipping.py")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_a_missing_dataset_fails_in_ci_and_skips_elsewhere(tmp_path):
    local = run_pytest(tmp_path, ci=False)
    assert local.returncode == 0 and "2 skipped" in local.stdout, local.stdout
    ci = run_pytest(tmp_path, ci=True)
    assert ci.returncode == 1 and "1 failed" in ci.stdout and "1 skipped" in ci.stdout, ci.stdout
    assert "CI must not skip the real-image tests" in ci.stdout
