"""Running one tool of the flow: the YoWASP launcher to use (`tool`), and `run_stage`, which runs
it in the build folder (YoWASP tools see their own /tmp: relative paths only) with a line of
progress every `progress_s` seconds (the stage, its elapsed time, and what the tool is doing),
a time limit, and no tool left running behind it however it ends.
"""
import os
import shutil
import subprocess
import sys
import time

def tool(name):
    """The YoWASP launcher `name` installed beside this Python (the venv's bin), else the one
    on PATH (else `name` as it is, for the error to name)."""
    local = os.path.join(os.path.dirname(sys.executable), name)
    return local if os.access(local, os.X_OK) else (shutil.which(name) or name)


class StageFailed(RuntimeError):
    """A tool exited with an error: `label`, `returncode`, `log` (the path of its output) and
    `last_line`, the last line it wrote there ("" when none)."""

    def __init__(self, label, returncode, log):
        self.label, self.returncode, self.log = label, returncode, log
        self.last_line = last_line(log)
        super().__init__(f"{label} failed (exit {returncode}); see {log}")


class StageTimeout(RuntimeError):
    """A tool ran past run_stage's `timeout_s` and was stopped (killed, and waited for)."""

    def __init__(self, label, timeout_s, log):
        self.label, self.timeout_s, self.log = label, timeout_s, log
        super().__init__(f"{label} ran past its time limit of {timeout_s:g} s and was stopped; "
                         f"its output so far: {log}")


def last_line(path):
    """The last non-blank line of a text file (its last 4 KiB), "" when none or unreadable."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - 4096))
            lines = f.read().decode(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""


def run_stage(label, argv, folder, log, progress_s=15.0, timeout_s=None, status=None):
    """Run one tool in `folder`, its output appended to FOLDER/`log`; returns its seconds.

    Every `progress_s` seconds one line gives `label` and the elapsed time, then ", " and
    `status()` when a callable is given (e.g. the pass the tool is in). After `timeout_s`
    seconds (None: no limit) the tool is killed and StageTimeout raised. A failure raises
    StageFailed (a RuntimeError) naming the log. However run_stage is left (a time limit, an
    error, Ctrl-C), no tool is left running behind it.
    """
    t0 = time.monotonic()
    deadline = None if timeout_s is None else t0 + timeout_s
    path = os.path.join(folder, log)
    with open(path, "a") as out:
        proc = subprocess.Popen(argv, cwd=folder, stdout=out, stderr=subprocess.STDOUT)
        try:
            while True:
                wait = progress_s if deadline is None else \
                    max(0.0, min(progress_s, deadline - time.monotonic()))
                try:
                    proc.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    if deadline is not None and time.monotonic() >= deadline:
                        raise StageTimeout(label, timeout_s, path) from None
                    line = f"  {label}: {time.monotonic() - t0:.0f} s"
                    print(line + (f", {status()}" if status else ""), flush=True)
        finally:
            if proc.poll() is None:      # stopped (time limit, interrupted): no tool left behind
                proc.kill()
                proc.wait()
    if proc.returncode != 0:
        raise StageFailed(label, proc.returncode, path)
    return time.monotonic() - t0
