"""Atomic file writes: a reader sees the old file or the new one, never half of either."""
import io
import json
import math
import os
import tempfile
from contextlib import contextmanager


@contextmanager
def atomic_path(path):
    """Yield a temporary path in the target's folder; on success it replaces `path`."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would make results private
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


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
