"""The cycle-level timing section of ``spikec report`` (``estimate.timing`` of report.json): a
cores x chip steps heatmap of busy time and a histogram of the latency per sample, as inline
SVG (no plotting library, no script: the page rules of ``spikec.htmlreport``)."""
from __future__ import annotations

import html

HEAT = ((247, 251, 255), (8, 69, 148))  # light -> dark blue


def _color(f: float) -> str:
    a, b = HEAT
    return "#%02x%02x%02x" % tuple(int(round(x + (y - x) * f)) for x, y in zip(a, b))


def busy_heatmap(busy_s: list[list[float]], title: str, width: int = 760) -> str:
    """Cores (rows) x chip steps (columns) of mean busy time per core, as an ``<svg>``."""
    steps = len(busy_s)
    cores = len(busy_s[0]) if steps else 0
    left, top, right, bottom = 56, 26, 80, 30
    cw = max(2.0, (width - left - right) / max(1, steps))
    ch = max(1.0, min(8.0, 420 / max(1, cores)))
    height = int(top + bottom + ch * cores)
    vmax = max((v for row in busy_s for v in row), default=0.0) or 1.0
    parts = [f'<svg class="plot" role="img" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}"><title>{html.escape(title)}</title>',
             f'<text x="{width / 2}" y="16" text-anchor="middle" font-weight="600">'
             f'{html.escape(title)}</text>']
    for s, row in enumerate(busy_s):
        for c, v in enumerate(row):
            parts.append(f'<rect x="{left + s * cw:.1f}" y="{top + c * ch:.1f}" '
                         f'width="{cw:.1f}" height="{ch:.1f}" fill="{_color(v / vmax)}"/>')
    parts.append(f'<text x="{left - 6}" y="{top + 8}" text-anchor="end">core 0</text>')
    parts.append(f'<text x="{left - 6}" y="{top + ch * cores}" text-anchor="end">'
                 f'{cores - 1}</text>')
    parts.append(f'<text x="{left + cw * steps / 2}" y="{height - 8}" text-anchor="middle">'
                 f'chip step (0 .. {steps - 1})</text>')
    x = left + cw * steps + 12
    for i in range(5):  # legend
        f = 1 - i / 4
        parts.append(f'<rect x="{x}" y="{top + i * 16}" width="12" height="12" '
                     f'fill="{_color(f)}"/><text x="{x + 16}" y="{top + i * 16 + 10}">'
                     f'{vmax * f * 1e6:.3g} us</text>')
    parts.append("</svg>")
    return "".join(parts)


def histogram(edges: list[float], counts: list[int], title: str, width: int = 520) -> str:
    """Bars of ``counts`` between ``edges`` (seconds, shown in ms) as an ``<svg>``."""
    left, right, top, bottom, height = 50, 10, 26, 40, 260
    n = max(1, len(counts))
    bw = (width - left - right) / n
    cmax = max(counts, default=0) or 1
    ph = height - top - bottom
    parts = [f'<svg class="plot" role="img" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}"><title>{html.escape(title)}</title>',
             f'<text x="{width / 2}" y="16" text-anchor="middle" font-weight="600">'
             f'{html.escape(title)}</text>']
    for i, c in enumerate(counts):
        h = ph * c / cmax
        parts.append(f'<rect x="{left + i * bw:.1f}" y="{top + ph - h:.1f}" '
                     f'width="{max(1.0, bw - 1):.1f}" height="{h:.1f}" fill="#3b6ea8"/>')
    parts.append(f'<text x="{left - 4}" y="{top + 8}" text-anchor="end">{cmax}</text>')
    parts.append(f'<text x="{left - 4}" y="{top + ph}" text-anchor="end">0</text>')
    if edges:
        parts.append(f'<text x="{left}" y="{height - 22}">{edges[0] * 1e3:.4g} ms</text>')
        parts.append(f'<text x="{width - right}" y="{height - 22}" text-anchor="end">'
                     f'{edges[-1] * 1e3:.4g} ms</text>')
    parts.append(f'<text x="{width / 2}" y="{height - 6}" text-anchor="middle">latency per '
                 f'sample (samples per bin)</text></svg>')
    return "".join(parts)


def timing_section(timing: dict | None) -> str:
    """The report's "Cycle-level timing" section ("" without ``--timing cycle`` results)."""
    if not timing or not timing.get("core_busy_s"):
        return ""
    lat = timing["latency_per_sample_s"]
    rows = "".join(f"<td>{lat[k] * 1e3:.4g} ms</td>" for k in ("p50", "p95", "p99", "max"))
    heat = busy_heatmap(timing["core_busy_s"], "busy time per core and chip step (mean)")
    hist = timing.get("latency_histogram") or {}
    fig = histogram(hist.get("edges_s") or [], hist.get("counts") or [],
                    f"latency per sample ({timing['samples']} samples)")
    return (f"<h2>Cycle-level timing ({timing['samples']} samples, {timing['chip_steps']} chip "
            f"steps)</h2><table><thead><tr><th class=l></th><th>p50</th><th>p95</th>"
            f"<th>p99</th><th>max</th></tr></thead><tbody><tr><td class=l>latency per "
            f"sample</td>{rows}</tr></tbody></table>"
            f'<div class="plots"><figure>{heat}<figcaption>each core\'s generation + receive '
            f'work; the step ends at the barrier after the slowest</figcaption></figure>'
            f"<figure>{fig}<figcaption>per-sample latency incl. pipeline fill and drain"
            f"</figcaption></figure></div>")
