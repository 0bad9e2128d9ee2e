"""Atomic file writes: a reader sees the old file or the new one, never half of either; output
folders checked before the work starts and replaced as a set."""
import fcntl
import io
import json
import math
import os
import shutil
import tempfile
from contextlib import contextmanager

from common.cli import UsageError


def _umask():
    umask = os.umask(0)     # the only way to read it is to set it
    os.umask(umask)
    return umask


@contextmanager
def atomic_path(path):
    """Yield a temporary path in the target's folder; on success it replaces `path`."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would make results private
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def writing(what, fix):
    """The one disk-full handler: an OSError while the block writes `what` (a full disk, a quota,
    a folder gone read-only) becomes one UsageError line that says what was kept (`fix`).
    Writers that raise their own errors on a full disk (torch.save's RuntimeError) write into
    memory first and to disk with write_bytes, so that the OSError is the one that reaches here."""
    try:
        yield
    except OSError as e:
        raise UsageError(f"cannot write {what} ({e.strerror or e}); {fix}") from None


def write_text(path, text):
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)


def finite(obj):
    """JSON has no NaN or infinity: they become null (in nested dicts and lists too).

    >>> finite({"error": float("nan"), "rows": [1.5, float("inf")]})
    {'error': None, 'rows': [1.5, None]}
    """
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def write_json(path, obj):
    write_text(path, json.dumps(finite(obj), indent=2, sort_keys=True, allow_nan=False) + "\n")


def write_bytes(path, data):
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def figure_png(fig, dpi=100):
    """A matplotlib figure as PNG bytes, rendered in memory; the figure is closed."""
    import matplotlib.pyplot as plt
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


def write_report_files(folder, files):
    """Write (name, content) pairs into `folder` in order, each atomically: bytes as they are,
    str as text, anything else as JSON. Name last the file whose presence means the set is
    complete (a report's JSON)."""
    for name, content in files:
        path = os.path.join(folder, name)
        if isinstance(content, bytes):
            write_bytes(path, content)
        elif isinstance(content, str):
            write_text(path, content)
        else:
            write_json(path, content)


def _nearest_existing(path):
    path = os.path.abspath(path)
    while not os.path.lexists(path):
        path = os.path.dirname(path)
    return path


def check_output_folder(path, flag, marker=None):
    """Raise UsageError (one line naming `flag`) unless `path` is a folder this process can
    write, or one it can create. Meant for the start of a command, before any long work.

    `marker`: the files an earlier output of this tool holds; an existing non-empty folder
    with none of them is refused too, since `replace_folder` would replace it as a whole.
    """
    if os.path.lexists(path) and not os.path.isdir(path):
        raise UsageError(f"{flag} {path} is a file, not a folder: choose another {flag}")
    where = _nearest_existing(path)
    if not os.path.isdir(where):
        raise UsageError(f"{flag} {path}: {where} in its path is a file, not a folder: choose "
                         f"another {flag}")
    try:    # os.access is not enough: root, read-only mounts, ACLs
        fd, probe = tempfile.mkstemp(dir=where, prefix=".bitwrn-probe.")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UsageError(f"{flag} {path}: cannot write in {where} ({e.strerror}): choose another "
                         f"{flag}") from None
    if marker and os.path.isdir(path):
        entries = [e for e in os.listdir(path) if not e.startswith(".")]
        if entries and not any(m in entries for m in marker):
            raise UsageError(f"{flag} {path} holds other files ({', '.join(sorted(entries)[:3])}) "
                             f"and would be replaced as a whole: choose a new or empty {flag}")


@contextmanager
def replace_folder(path):
    """Yield a new empty folder beside `path`; when the block succeeds it takes `path`'s place
    (the old folder is moved aside first and deleted after), so `path` holds the old set of
    files or the new set, never a mix. When the block fails, `path` is left as it was. A symlink
    to a folder keeps pointing where it did: its target is what gets replaced."""
    path = os.path.realpath(path)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    new = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(path)}.", suffix=".new")
    os.chmod(new, 0o777 & ~_umask())    # mkdtemp's 0700 would hide the results from other users
    try:
        yield new
        old = None
        if os.path.lexists(path):
            old = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(path)}.", suffix=".old")
            os.rmdir(old)
            os.rename(path, old)
        os.rename(new, path)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if os.path.lexists(new):
            shutil.rmtree(new, ignore_errors=True)


@contextmanager
def folder_lock(path, flag):
    """Hold an exclusive lock on output folder `path` (a lock file beside it, since the folder
    itself may be replaced) while the block runs; a second process that wants the same folder
    gets a UsageError at once instead of writing over the first one's files. The OS drops the
    lock when the process dies, however it dies."""
    path = os.path.realpath(path)
    lock = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.lock")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(lock, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            owner = f.read().strip() or "another process"
            raise UsageError(f"{flag} {path} is being written by {owner}: wait for it to finish, "
                             f"or choose another {flag}") from None
        f.seek(0)
        f.truncate()
        f.write(f"process {os.getpid()}")
        f.flush()
        try:
            yield
        finally:
            f.truncate(0)
