"""Float64 reference execution of a deployment bundle, NumPy only.

Runs the op graph exactly as docs/bundle.md specifies it, from the bundle alone (no torch, no
training.model): the yardstick that the integer model and the hardware are compared against.
Internally activations are C x N x H x W (channels outermost, so a conv is one matmul
weights (out x in*k*k) @ im2col columns (in*k*k x N*H*W), the fastest layout measured here);
inputs and the returned intermediates are N x C x H x W like PyTorch.
"""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from training.bundle import Bundle, read_bundle
from training.graph import pads

# Images per chunk are chosen so that the largest im2col matrix stays near this size: small
# enough to stay cache/TLB friendly (measured fastest here; 32 images for WRN-20-1 at 28x28).
IM2COL_BYTES = 32 << 20


def auto_chunk(bundle):
    """Images per chunk: the largest conv's im2col (in*k*k x Ho*Wo float64 per image) fits."""
    per_image = max((op["in_channels"] * op["kernel"] ** 2 * 8
                     * int(np.prod(bundle.shapes[op["name"]][1:]))
                     for op in bundle.ops if op["op"] == "conv"), default=1)
    return max(1, IM2COL_BYTES // per_image)


def padded(x, op):
    """C x N x H x W zero-padded as the conv or avgpool `op` pads its input."""
    top, bottom, left, right = pads(op)
    if not (top or bottom or left or right):
        return x
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))


def windows(x, op):
    """C x N x H x W -> view C x N x Ho x Wo x k x k of the zero-padded k x k windows of `op`."""
    k, stride = op["kernel"], op["stride"]
    return sliding_window_view(padded(x, op), (k, k), axis=(2, 3))[:, :, ::stride, ::stride]


def window_sum(x, op):
    """C x N x H x W -> sums of the zero-padded k x k windows of `op` at its stride (dtype kept).

    Summing k*k strided slices is ~3x faster than summing a window view.
    """
    k, stride = op["kernel"], op["stride"]
    xp = padded(x, op)
    ho, wo = ((n - k) // stride + 1 for n in xp.shape[2:])
    acc = np.zeros(x.shape[:2] + (ho, wo), x.dtype)
    for dy in range(k):
        for dx in range(k):
            acc += xp[:, :, dy:dy + stride * (ho - 1) + 1:stride, dx:dx + stride * (wo - 1) + 1:stride]
    return acc


def pool_divisors(op, size):
    """What each window of the avgpool `op` over an H x W input is divided by: k*k where the
    padding counts (count_include_pad; an integer model's op leaves it out then), else the
    pixels of the window inside the input."""
    if op.get("count_include_pad", True):
        return op["kernel"] ** 2
    return window_sum(np.ones((1, 1, *size), np.int64), op)


def _prepare(bundle):
    """Per-op constants in float64, computed once per run."""
    consts = {}
    for op in bundle.ops:
        name = op["name"]
        if op["op"] == "conv":
            w = bundle.conv_weight(name)                     # out x in x k x k
            consts[name] = w.reshape(w.shape[0], -1)         # out x (in*k*k), C order
        elif op["op"] == "batchnorm":
            mean, var, w, b, eps = bundle.bn(name)
            consts[name] = tuple(None if a is None else a.astype(np.float64)[:, None, None, None]
                                 for a in (mean, var, w, b)) + (eps,)
    return consts


def _run_op(op, xs, consts):
    kind, x = op["op"], xs[0]
    if kind == "conv":
        win = windows(x, op)                                 # C N Ho Wo kh kw
        _, n, ho, wo = win.shape[:4]
        cols = win.transpose(0, 4, 5, 1, 2, 3).reshape(-1, n * ho * wo)  # rows (in, kh, kw)
        return (consts[op["name"]] @ cols).reshape(-1, n, ho, wo)
    if kind == "batchnorm":
        mean, var, w, b, eps = consts[op["name"]]
        y = x - mean                                         # in place below: no temporaries
        y /= np.sqrt(var + eps)
        if w is not None:
            y *= w
            y += b
        return y
    if kind == "relu":
        return np.maximum(x, 0.0)
    if kind == "srelu":
        return np.maximum(x, op["floor"])
    if kind == "avgpool":
        return window_sum(x, op) / pool_divisors(op, x.shape[2:])
    if kind == "zero_channels":
        zeros = np.zeros((op["out_channels"] - op["in_channels"],) + x.shape[1:], x.dtype)
        return np.concatenate([x, zeros])                    # zeros after existing channels
    if kind == "add":
        return x + xs[1]
    if kind == "scale":
        return x * op["factor"]
    if kind == "global_avgpool":
        return x.mean(axis=(2, 3)).T                         # -> N x C
    raise ValueError(f"unknown op kind {kind!r}")


def _nchw(a):
    return a.transpose(1, 0, 2, 3) if a.ndim == 4 else a


def run_float(bundle, images, keep=False, chunk=None):
    """Logits (N x classes, float64) of `images` (N x C x H x W, uint8 or float pixels 0..255).

    bundle: a Bundle or a path. keep=True also returns {op name: N x C x H x W (or N x C)
    float64} for every op's output, as (logits, intermediates). chunk: images per step
    (default: auto_chunk, bounded im2col memory).
    """
    if not isinstance(bundle, Bundle):
        bundle = read_bundle(bundle)
    images = np.asarray(images)
    want = tuple(bundle.manifest["input_shape"])
    if images.ndim != 4 or images.shape[1:] != want:
        raise ValueError(f"images must be N x {' x '.join(map(str, want))}, got {images.shape}")
    consts, chunk = _prepare(bundle), chunk or auto_chunk(bundle)
    logits, kept = [], {op["name"]: [] for op in bundle.ops} if keep else None
    for start in range(0, len(images), chunk):
        t = {"image": images[start:start + chunk].astype(np.float64).transpose(1, 0, 2, 3)}
        for op in bundle.ops:
            t[op["name"]] = _run_op(op, [t[i] for i in op["inputs"]], consts)
            if keep:
                kept[op["name"]].append(_nchw(t[op["name"]]))
        logits.append(t["logits"])
    classes = bundle.manifest["num_classes"]
    out = np.concatenate(logits) if logits else np.zeros((0, classes))
    if not keep:
        return out
    return out, {k: np.concatenate(v) if v else np.zeros((0,) + bundle.shapes[k])
                 for k, v in kept.items()}
