"""The quantization report: report.json (for tools), report.md (a table for people), report.png.

`build_report(qmodel, float_test_error, sweep, ...)` turns a quantized model plus the measured
accuracies into a JSON-ready dict; `render(report)` makes the Markdown text and the PNG bytes
in memory, and `write_report(out_dir, report)` writes the three files, each atomically, only
after everything rendered (a failing run never leaves a half-new report behind).

Per layer (one row per integer op of the quantized model): output shape, width ("bits",
"signed"), accumulator width for convs, the real value of one LSB, and how its multiplier is
built: 'lut' (a table on raw pixels), 'shift' (M is a power of two), 'constant' (one constant M
for all channels: shift-add of its canonical-signed-digit terms, no multiplier), 'per-channel'
(a real multiplier). Only 'per-channel' needs a multiplier in hardware.
"""

import numpy as np

from common.files import figure_png, write_report_files
from quantize.convert import multiplier_kind
from quantize.fixed_point import MULTIPLIER_BITS, csd_terms

# Ops whose output is an accumulator (kept inside the compute unit) rather than a feature map
# that is stored in activation RAM.
ACCUMULATOR_OPS = ("conv", "global_sum")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _int(x):
    return None if x is None else int(x)


def _float(x):
    return None if x is None else float(x)


def layer_rows(qmodel):
    """One dict per integer op: name, op, shape, bits, signed, lo, hi, scale, frac, acc_bits
    (convs), multiplier (kind), multiplier_value (the common M of a shift/constant), csd_terms
    (its nonzero canonical-signed-digit count), needs_multiplier, shift."""
    rows = []
    for op in qmodel.ops:
        out, kind = op["out"], multiplier_kind(op, qmodel.tensors)
        terms = value = None
        if op["op"] == "avgpool":
            value = int(op["multiplier"])
        elif kind in ("shift", "constant"):
            value = int(qmodel.tensors[op["multiplier"]][0])
        if value is not None:
            terms = csd_terms(value)
        if op["op"] in ("requant", "avgpool"):
            shift = int(op["shift"])
        elif op["op"] == "add":
            shift = [int(s) for s in op["shifts"]]
        else:
            shift = None
        rows.append(dict(
            name=op["name"], op=op["op"], inputs=list(op["inputs"]),
            shape=[int(s) for s in qmodel.shapes[op["name"]]],
            bits=int(out["bits"]), signed=bool(out["signed"]),
            lo=int(out["lo"]), hi=int(out["hi"]),
            scale=float(out["scale"]), frac=_int(out["frac"]),
            acc_bits=int(out["bits"]) if op["op"] == "conv" else None,
            multiplier=kind, multiplier_value=value, csd_terms=terms, needs_multiplier=kind == "per-channel",
            shift=shift,
        ))
    return rows


def activation_buffer_bits(row):
    """Bits of one image's stored feature map (C*H*W*bits); None for accumulators."""
    if row["op"] in ACCUMULATOR_OPS:
        return None
    return int(np.prod(row["shape"])) * row["bits"]


def build_report(qmodel, float_test_error, sweep, *, test_images, calib_images, wall_s,
                 calib_percentile=100.0, extra=None):
    """The report dict.

    sweep: list of {"act_bits", "int_test_error", "class_agreement"}, one per evaluated width;
    the entry for qmodel.act_bits supplies the top-level int_test_error / class_agreement.
    Errors are fractions of the test set; deltas are in percentage points.
    """
    sweep = sorted(({"act_bits": int(s["act_bits"]),
                     "residual_bits": int(s.get("residual_bits", s["act_bits"])),
                     "input_bits": int(s.get("input_bits", s["act_bits"])),
                     "scales": s.get("scales", "calibrated"),
                     "int_test_error": _float(s["int_test_error"]),
                     "class_agreement": float(s["class_agreement"]),
                     "delta_pp": None if float_test_error is None else
                     100.0 * (float(s["int_test_error"]) - float(float_test_error))}
                    for s in sweep), key=lambda s: -s["act_bits"])
    main = [s for s in sweep if s["act_bits"] == qmodel.act_bits]
    if not main:
        raise ValueError(f"the sweep has no entry for the model's {qmodel.act_bits} bits")
    layers = layer_rows(qmodel)
    buffers = [(activation_buffer_bits(r), r["name"]) for r in layers]
    buffers = [b for b in buffers if b[0] is not None]
    largest = max(buffers) if buffers else (0, None)
    report = dict(
        act_bits=int(qmodel.act_bits),
        residual_bits=int(qmodel.residual_bits),
        input_bits=int(qmodel.input_bits),
        scales=main[0]["scales"],
        variant=qmodel.manifest["variant"],
        num_classes=int(qmodel.num_classes),
        input_shape=list(qmodel.input_shape),
        float_test_error=_float(float_test_error),
        int_test_error=main[0]["int_test_error"],
        class_agreement=main[0]["class_agreement"],
        delta_pp=main[0]["delta_pp"],
        act_bits_sweep=sweep,
        weight_bits=int(qmodel.weight_bits()),
        max_activation_buffer_bits=int(largest[0]),
        max_activation_buffer_layer=largest[1],
        max_accumulator_bits=max((r["acc_bits"] for r in layers if r["acc_bits"]), default=0),
        needs_multiplier=[r["name"] for r in layers if r["needs_multiplier"]],
        layers=layers,
        logits_scale=float(qmodel.manifest["logits_scale"]),
        test_images=int(test_images),
        calib_images=int(calib_images),
        calib_percentile=float(calib_percentile),
        multiplier_bits=int(qmodel.manifest.get("source", {}).get("multiplier_bits", MULTIPLIER_BITS)),
        wall_s=float(wall_s),
    )
    report.update(extra or {})
    return report


# ---------------------------------------------------------------- Markdown

def _scale_text(row):
    if row["frac"] is not None:
        return f"2^{-row['frac']}"
    return f"{row['scale']:.4g}"


def _multiplier_text(row):
    kind = row["multiplier"]
    if kind is None:
        return "-"
    if kind == "per-channel":
        return "per-channel (multiplier)"
    if kind == "shift" and row["multiplier_value"] is not None:
        return f"shift (M={row['multiplier_value']})"
    if kind == "constant" and row["csd_terms"] is not None:
        return f"constant M={row['multiplier_value']} ({row['csd_terms']} CSD terms)"
    return kind


def _shift_text(shift):
    if shift is None:
        return "-"
    if isinstance(shift, list):
        return ", ".join(map(str, shift))
    return str(shift)


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _pct(x):
    return "-" if x is None else f"{100 * x:.2f}%"


def _bits_text(bits):
    if bits >= 8 * 1024 * 1024:
        return f"{bits:,} bits ({bits / 8 / 1024 / 1024:.2f} MiB)"
    if bits >= 8 * 1024:
        return f"{bits:,} bits ({bits / 8 / 1024:.1f} KiB)"
    return f"{bits:,} bits"


def layers_markdown(report):
    rows = []
    for r in report["layers"]:
        rows.append([
            r["name"], r["op"], "x".join(map(str, r["shape"])),
            f"{'s' if r['signed'] else 'u'}{r['bits']}", f"{r['lo']}..{r['hi']}",
            r["acc_bits"] if r["acc_bits"] is not None else "-",
            _scale_text(r), _multiplier_text(r), _shift_text(r["shift"]),
        ])
    return _table(["layer", "op", "output (CxHxW)", "width", "range", "acc bits", "LSB scale",
                   "multiplier", "shift"], rows)


def accuracy_markdown(report):
    rows = [["float (bundle reference)", _pct(report["float_test_error"]), "-", "-"]]
    for s in report["act_bits_sweep"]:
        mark = " (written)" if s["act_bits"] == report["act_bits"] else ""
        how = "trained scales" if s.get("scales") == "trained" else "calibrated scales"
        wider = [f"{s[key]}-bit {what}" for key, what in (("residual_bits", "residual stream"),
                                                          ("input_bits", "image"))
                 if s.get(key, s["act_bits"]) != s["act_bits"]]
        stream = f" ({', '.join(wider)})" if wider else ""
        rows.append([f"integer, {s['act_bits']}-bit activations{stream}, {how}{mark}", _pct(s["int_test_error"]),
                     "-" if s["delta_pp"] is None else f"{s['delta_pp']:+.2f}",
                     _pct(s["class_agreement"])])
    return _table(["model", "test error", "delta (pp)", "agreement with float"], rows)


def render_markdown(report):
    mult = report["needs_multiplier"]
    if mult:
        mult_line = (f"**Layers that need a multiplier** ({len(mult)}; per-channel M): "
                     + ", ".join(f"`{n}`" for n in mult) + ".")
    else:
        mult_line = ("**No layer needs a multiplier**: every requantization is a shift, a "
                     "shift-add of a constant's CSD terms, or a table, then add and clamp.")
    title = report.get("title") or f"{report['variant']} model"
    parts = [
        f"# Quantization report: {title}",
        "",
        f"{report['act_bits']}-bit activations written to the quantized model; "
        f"{report['test_images']:,} test images, "
        + ("scales trained with the network; " if report.get("scales") == "trained" else
           f"calibrated on {report['calib_images']:,} training images (percentile "
           f"{report['calib_percentile']:g}); ") +
        f"{report['multiplier_bits']}-bit multipliers; {report['wall_s']:.1f} s.",
        "",
        "## Accuracy",
        "",
        accuracy_markdown(report),
        "",
        "## Memory and arithmetic",
        "",
        f"- Weight memory: {_bits_text(report['weight_bits'])} (1 bit per conv weight).",
        f"- Largest activation buffer: {_bits_text(report['max_activation_buffer_bits'])} "
        f"(`{report['max_activation_buffer_layer']}`, C*H*W*bits of one image's stored feature map).",
        f"- Widest accumulator: {report['max_accumulator_bits']} bits.",
        f"- {mult_line}",
        "",
        f"## Layers ({report['act_bits']}-bit model)",
        "",
        "width: s = signed, u = unsigned, bits; range: the clamp / worst-case range; "
        "acc bits: conv accumulator width; LSB scale: real value of one integer step; "
        "multiplier: lut = per-channel table on raw pixels, shift = power of two, "
        "constant = shift-add of CSD terms (no multiplier), per-channel = real multiplier; "
        "shift: requant/avgpool right shift, add: per-input alignment shifts (negative = left).",
        "",
        layers_markdown(report),
        "",
    ]
    return "\n".join(parts)


# ---------------------------------------------------------------- plot

def render_png(report):
    """A bar chart of every layer's output width: conv accumulators vs stored activations."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = report["layers"]
    names = [r["name"] for r in layers]
    bits = [r["bits"] for r in layers]
    colors = ["tab:orange" if r["op"] in ACCUMULATOR_OPS else
              ("tab:red" if r["needs_multiplier"] else "tab:blue") for r in layers]
    fig, ax = plt.subplots(figsize=(max(7.0, 0.28 * len(layers) + 2), 4.8))
    bars = ax.bar(range(len(layers)), bits, color=colors)
    ax.bar_label(bars, fontsize=6, padding=1)
    ax.axhline(report["act_bits"], color="k", ls="--", lw=0.8)
    ax.set_xticks(range(len(layers)))
    ax.set_xticklabels(names, rotation=90, fontsize=7)
    ax.set_ylabel("output width (bits)")
    ax.set_ylim(0, max(bits + [report["act_bits"]]) * 1.4)
    ax.grid(True, axis="y", alpha=0.3)
    from matplotlib.patches import Patch
    from matplotlib.lines import Line2D
    ax.legend(handles=[Patch(color="tab:orange", label="accumulator (conv, global sum)"),
                       Patch(color="tab:blue", label="stored activation, no multiplier"),
                       Patch(color="tab:red", label="stored activation, per-channel multiplier"),
                       Line2D([0], [0], color="k", ls="--", lw=0.8,
                              label=f"act_bits = {report['act_bits']}")],
              fontsize=7, loc="upper center", ncol=2)
    sweep = ", ".join(f"{s['act_bits']}b {_pct(s['int_test_error'])}"
                      for s in report["act_bits_sweep"])
    ax.set_title(f"{report.get('title') or report['variant']}: float "
                 f"{_pct(report['float_test_error'])} | int {sweep}", fontsize=9)
    return figure_png(fig, dpi=110)


def render(report):
    """(markdown text, png bytes), both in memory."""
    return render_markdown(report), render_png(report)


def write_report(out_dir, report, rendered=None):
    """Write report.png, report.md and report.json into out_dir, each atomically.

    Everything is rendered before the first file is touched; report.json goes last, so a
    report.json on disk always belongs to a complete set.
    """
    markdown, png = rendered or render(report)
    write_report_files(out_dir, [("report.png", png), ("report.md", markdown), ("report.json", report)])
