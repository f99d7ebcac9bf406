"""``spikec report OUT``: render ``OUT/report.json`` as one self-contained ``OUT/report.html``.

The page has no script and no external resource: plots are inline SVG drawn here (no plotting
library, so it also runs in the Lava environment). Sections appear when the report has their
data: accuracy per pipeline stage, per-layer firing rates and synaptic operations (from
``spikec compile --data``), and, from ``spikec estimate`` (the ``estimate`` key), the mapping per
layer, core utilization and the energy breakdown.
"""
from __future__ import annotations

import html
import os
from pathlib import Path

from spikec.atomic import write_atomic
from spikec.errors import InputFileError
from spikec.report import read_report

_STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto;
       max-width: 1100px; color: #1d2330; padding: 0 16px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 32px;
     border-bottom: 1px solid #d5d9e0; padding-bottom: 4px; }
.meta { color: #5a6270; } .bad { color: #b00020; font-weight: 600; } .ok { color: #137333; }
table { border-collapse: collapse; margin: 8px 0; font-size: 12.5px; }
th, td { padding: 3px 8px; border-bottom: 1px solid #e6e8ec; text-align: right; }
th { background: #f3f5f8; } td.l, th.l { text-align: left; }
.plots { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
figure { margin: 0; } figcaption { font-size: 12px; color: #5a6270; }
svg text { font: 10px system-ui, sans-serif; fill: #1d2330; }
"""

PALETTE = ("#3b6ea8", "#d98c2b", "#4f9a5d", "#b5475a", "#7a5ea8", "#5aa6b5", "#a8a23b", "#888888")


# ----------------------------------------------------------------------------- SVG plots

def _num(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e4 or a < 1e-2:
        return f"{v:.2e}"
    return f"{v:.3g}"


def bar_chart(title: str, labels: list[str], values: list[float], *, unit: str = "",
              width: int = 520, colors: list[str] | None = None, percent: bool = False) -> str:
    """A vertical bar chart as an inline ``<svg>`` element (labels rotated under the bars)."""
    n = max(1, len(values))
    left, right, top, bottom = 70, 10, 26, 96
    height = 300
    plot_w, plot_h = width - left - right, height - top - bottom
    vmax = max([v for v in values if v is not None] + [0.0]) or 1.0
    bw = plot_w / n
    parts = [f'<svg class="plot" role="img" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}"><title>{html.escape(title)}</title>',
             f'<text x="{width / 2}" y="16" text-anchor="middle" font-weight="600">'
             f'{html.escape(title)}</text>',
             f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}" '
             'stroke="#99a"/>']
    for k in range(5):
        v = vmax * k / 4
        y = top + plot_h - plot_h * k / 4
        lab = f"{100 * v:.0f}%" if percent else _num(v)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" '
                     'stroke="#eceef2"/>')
        parts.append(f'<text x="{left - 4}" y="{y + 3:.1f}" text-anchor="end">{lab}</text>')
    for i, (lab, v) in enumerate(zip(labels, values)):
        v = v or 0.0
        h = plot_h * v / vmax
        x = left + i * bw + bw * 0.12
        color = (colors or PALETTE)[i % len(colors or PALETTE)] if colors else PALETTE[0]
        tip = f"{lab}: {_num(v)}{(' ' + unit) if unit else ''}"
        parts.append(f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bw * 0.76:.1f}" '
                     f'height="{h:.1f}" fill="{color}"><title>{html.escape(tip)}</title></rect>')
        cx, cy = left + i * bw + bw / 2, top + plot_h + 8
        short = lab if len(lab) <= 22 else "…" + lab[-21:]  # the end tells layers apart
        parts.append(f'<text x="{cx:.1f}" y="{cy:.1f}" text-anchor="end" '
                     f'transform="rotate(-45 {cx:.1f} {cy:.1f})">{html.escape(short)}</text>')
    if unit:
        parts.append(f'<text x="12" y="{top + plot_h / 2}" text-anchor="middle" '
                     f'transform="rotate(-90 12 {top + plot_h / 2})">{html.escape(unit)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{html.escape(caption)}</figcaption></figure>"


# ----------------------------------------------------------------------------- tables

def _cell(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return _num(v)
    return html.escape(str(v))


def table(headers: list[str], rows: list[list], left: int = 1) -> str:
    head = "".join(f'<th class="{"l" if i < left else ""}">{html.escape(h)}</th>'
                   for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f'<td class="{"l" if i < left else ""}">{_cell(v)}</td>'
                                    for i, v in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# ----------------------------------------------------------------------------- sections

def _accuracy_section(rep: dict) -> str:
    acc = rep.get("accuracy") or {}
    stages = [(k, acc.get(k)) for k in ("float", "folded", "quantized") if acc.get(k) is not None]
    if not stages:
        return "<h2>Accuracy</h2><p class=meta>No accuracy: compiled without --data.</p>"
    svg = bar_chart("Top-1 accuracy per pipeline stage", [s for s, _ in stages],
                    [v for _, v in stages], percent=True, width=360,
                    colors=list(PALETTE[:3]))
    rows = [[s, f"{100 * v:.2f}%"] for s, v in stages]
    spec = (rep.get("data") or {}).get("spec")
    of = f" of {html.escape(str(spec))}" if spec else ""
    caption = "float: traced model; folded: after BN folding; quantized: bit-exact simulation"
    return ("<h2>Accuracy per pipeline stage</h2>"
            f"<p class=meta>{acc.get('samples', 0):,} samples{of}"
            ". First layer whose spikes diverge from the float model: "
            f"{html.escape(str(rep.get('first_divergent_layer') or 'none'))}.</p>"
            f'<div class="plots">{_figure(svg, caption)}'
            f"{table(['stage', 'top-1'], rows)}</div>")


def _layers_section(rep: dict) -> str:
    layers = rep.get("layers") or []
    if not layers:
        return ""
    neuron = [e for e in layers if e.get("firing_rate") is not None]
    syn = [e for e in layers if e.get("synaptic_events")]
    plots = []
    if neuron:
        plots.append(_figure(bar_chart("Firing rate per layer", [e["name"] for e in neuron],
                                       [e["firing_rate"] for e in neuron],
                                       unit="spikes/neuron/step"),
                             "spikes / (neurons x T), bit-exact simulation"))
    if syn:
        plots.append(_figure(bar_chart("Synaptic operations per inference",
                                       [e["name"] for e in syn],
                                       [e["synaptic_events"] for e in syn], unit="SOPs"),
                             "input events x fan-out, per sample"))
    rows = [[e.get("name"), e.get("op"), e.get("neurons"), e.get("spikes"),
             e.get("synaptic_events"), e.get("ssa_ops"), e.get("firing_rate"),
             e.get("spike_agreement")] for e in layers]
    return ("<h2>Layers (compiled network)</h2>"
            + (f'<div class="plots">{"".join(plots)}</div>' if plots else
               "<p class=meta>No event counts: compiled without --data.</p>")
            + table(["layer", "op", "neurons", "spikes", "synaptic events", "SSA ops",
                     "firing rate", "spike agreement"], rows, left=2))


def _estimate_section(est: dict | None) -> str:
    if not est:
        return ("<h2>Hardware estimate</h2><p class=meta>No estimate yet: run "
                "<code>spikec estimate OUT --profile NAME</code>.</p>")
    fits = est.get("fits")
    e = est.get("energy_per_inference_j") or {}
    lat = est.get("latency") or {}
    status = ('<span class="ok">fits</span>' if fits else
              f'<span class="bad">does not fit</span>: {html.escape(str(est.get("reason")))}')
    head = (f"<h2>Hardware estimate: {html.escape(str(est.get('profile')))}</h2>"
            f"<p>{status} &mdash; {_cell(est.get('cores'))} cores on {_cell(est.get('chips'))} "
            f"chip(s) ({_cell(est.get('cores_per_chip'))} cores per chip). Events: "
            f"{html.escape(str((est.get('events') or {}).get('source')))}.</p>")
    summary = table(["quantity", "value"], [
        ["energy per inference, paper 45 nm formula (J)", e.get("paper_45nm")],
        ["energy per inference, profile model (J)", e.get("profile")],
        ["latency per time step (s)", est.get("latency_per_step_s")],
        ["latency per inference (s)", est.get("latency_per_inference_s")],
        ["time steps (+ pipeline depth)", f"{est.get('timesteps')} (+{est.get('pipeline_depth')})"],
        ["busiest core's layer", lat.get("busiest_layer")],
    ])
    layers = est.get("layers") or []
    plots = []
    if layers:
        plots.append(_figure(bar_chart("Core utilization (binding limit)",
                                       [x["name"] for x in layers],
                                       [x.get("utilization") or 0 for x in layers], percent=True),
                             "mean use of each layer's binding per-core limit"))
        plots.append(_figure(bar_chart("Cores per layer", [x["name"] for x in layers],
                                       [x["cores"] for x in layers], unit="cores"),
                             "neuro-cores each layer occupies"))
    prof = (est.get("energy") or {}).get("profile") or {}
    breakdown = prof.get("breakdown_j") or {}
    if breakdown:
        keys = list(breakdown)
        plots.append(_figure(bar_chart("Energy breakdown per inference (profile)", keys,
                                       [breakdown[k] for k in keys], unit="J",
                                       colors=list(PALETTE)),
                             f"cost model: {prof.get('cost_model')}"))
    paper = (est.get("energy") or {}).get("paper_45nm") or {}
    if paper:
        plots.append(_figure(bar_chart(
            "Energy per inference, paper 45 nm formula",
            ["first-layer MACs x 4.6 pJ", "conv/linear SOPs x 0.9 pJ", "SSA SOPs x 0.9 pJ"],
            [paper.get("first_layer_macs", 0) * 4.6e-12, paper.get("sops_synapses", 0) * 0.9e-12,
             paper.get("sops_ssa", 0) * 0.9e-12], unit="J", colors=list(PALETTE)),
            "Spikformer papers' counting"))
    rows = [[x["name"], x["kind"], x["cores"], x["neurons"], x["synapses"],
             x["synaptic_memory_bytes"], x.get("input_axons"), x.get("output_axons"),
             x.get("binding_limit"),
             None if x.get("utilization") is None else f"{100 * x['utilization']:.0f}%",
             x.get("energy_j")] for x in layers]
    chips = est.get("per_chip") or []
    chip_rows = [[c["chip"], c["cores"], f"{100 * c['core_utilization']:.0f}%", c["neurons"],
                  c["synapses"], c["synaptic_memory_bytes"]] for c in chips]
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in est.get("notes") or [])
    unknown = prof.get("not_counted") or []
    return (head + summary + f'<div class="plots">{"".join(plots)}</div>'
            + "<h3>Mapping per layer</h3>"
            + table(["layer", "kind", "cores", "neurons", "synapses", "memory bytes", "in axons",
                     "out axons", "binding limit", "utilization", "core energy J"], rows, left=2)
            + "<h3>Per chip</h3>"
            + table(["chip", "cores", "core use", "neurons", "synapses", "memory bytes"],
                    chip_rows)
            + (f"<p class=meta>Figures the profile does not give (counted as 0): "
               f"{html.escape(', '.join(unknown))}.</p>" if unknown else "")
            + (f"<ul>{notes}</ul>" if notes else ""))


def render(report: dict) -> str:
    """The HTML page of a report (a string; no external resources, no scripts)."""
    title = f"spikec report: {report.get('model', 'network')}"
    meta = (f"target {html.escape(str(report.get('target')))} &middot; T = "
            f"{html.escape(str(report.get('timesteps')))} &middot; spikec "
            f"{html.escape(str(report.get('spikec_version')))}")
    notes = report.get("notes") or []
    notes_html = ("<h2>Compiler notes</h2><ul>" + "".join(
        f"<li>{html.escape(str(n))}</li>" for n in notes) + "</ul>") if notes else ""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><p class=meta>{meta}</p>"
            + _accuracy_section(report) + _layers_section(report)
            + _estimate_section(report.get("estimate")) + _timing(report) + notes_html
            + "</body></html>\n")


def _timing(report: dict) -> str:
    from spikec.estimate.timing_html import timing_section

    return timing_section((report.get("estimate") or {}).get("timing"))


def write_report(out_dir: str | os.PathLike) -> Path:
    """Render ``OUT/report.json`` to ``OUT/report.html`` and return its path."""
    out = Path(out_dir)
    src = out / "report.json"
    if not src.is_file():
        raise InputFileError(f"{out}: no report.json (run spikec compile -o {out} first)")
    report = read_report(src)
    try:
        page = render(report)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise InputFileError(f"{src}: a field is missing or of the wrong type for the report "
                             f"({type(e).__name__}: {e})") from None
    dest = out / "report.html"
    if dest.is_dir():
        raise InputFileError(f"{dest}: a folder is in the way of the report page")
    write_atomic(dest, page.encode("utf-8"))
    return dest
