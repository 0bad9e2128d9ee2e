"""common/files.py and common/cli.py's path check: output folders readable as the umask says,
one line for an empty path or a dangling symlink, a build folder the simulators can take."""
import argparse
import os
import stat

import pytest

from common.cli import path_arg
from common.files import replace_folder
from sim.runner import build_path_problem


@pytest.mark.parametrize("umask, mode", [(0o022, 0o755), (0o027, 0o750), (0o077, 0o700)])
def test_a_replaced_folder_follows_the_umask(tmp_path, umask, mode):
    """The new set of files used to land in mkdtemp's 0700 folder whatever the umask: results
    another user, or a web server, should read were private."""
    out = tmp_path / "report"
    old = os.umask(umask)
    try:
        with replace_folder(out) as new:
            (open(os.path.join(new, "report.json"), "w")).write("{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(out).st_mode) == mode
    assert (out / "report.json").read_text() == "{}"


def test_an_empty_path_and_a_dangling_symlink_are_refused(tmp_path):
    with pytest.raises(argparse.ArgumentTypeError, match="is empty"):
        path_arg("")
    with pytest.raises(argparse.ArgumentTypeError, match="is empty"):
        path_arg("  ")
    link = tmp_path / "model"
    link.symlink_to(tmp_path / "gone")
    with pytest.raises(argparse.ArgumentTypeError,
                       match=f"{link} is a symlink to {tmp_path / 'gone'}, which does not exist"):
        path_arg(str(link))
    (tmp_path / "gone").mkdir()
    assert path_arg(str(link)) == str(link)      # a live link is a path like any other


@pytest.mark.parametrize("name, bad", [("a b", "' '"), ("résultats", "'é'"), ("x$y", "'$'")])
def test_a_build_folder_the_simulators_cannot_take_is_named(tmp_path, name, bad):
    problem = build_path_problem(tmp_path / name / "sim")
    assert problem and bad in problem and "ASCII letters, digits" in problem
    assert build_path_problem(tmp_path / "build-1.2_x" / "sim") is None
