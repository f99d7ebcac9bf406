"""Design-space exploration: estimate one network over a grid of profile values.

``--sweep FIELD=V1,V2,...`` (repeatable) names any numeric profile figure, as ``section.field``
or as a field name found in one section only (``neurons_per_core``, ``weight_bits``); the grid is
the product of all sweeps. Where a point changes a number format (``formats.*``) and a
``requantize`` function is given, the network is compiled again for that point and simulated, so
the row carries the accuracy of the re-quantized network; otherwise only the mapping sees the
new format (e.g. ``weight_bits`` sizes synaptic memory) and ``accuracy`` is left empty.
"""
from __future__ import annotations

import itertools
import math
from typing import Callable

from spikec.errors import CapacityError, ProfileError
from spikec.estimate.estimator import estimate

#: Columns of a sweep table.
COLUMNS = ("fits", "chips", "cores", "energy_profile_j", "energy_paper_45nm_j",
           "latency_per_step_s", "accuracy")


def parse_sweeps(items) -> list[tuple[str, list]]:
    """``["neurons_per_core=1024,2048", ...]`` -> ``[("neurons_per_core", [1024, 2048]), ...]``."""
    out = []
    for item in items:
        if "=" not in item:
            raise ProfileError(f"--sweep {item!r}: expected FIELD=V1,V2,...")
        name, vals = item.split("=", 1)
        values = []
        for v in vals.split(","):
            v = v.strip()
            try:
                values.append(int(v))
            except ValueError:
                try:
                    values.append(float(v))
                except ValueError:
                    raise ProfileError(f"--sweep {name}: {v!r} is not a number") from None
            if not math.isfinite(values[-1]):
                raise ProfileError(f"--sweep {name}: {v!r} is not a finite number")
        if not values:
            raise ProfileError(f"--sweep {name}: no values")
        out.append((name.strip(), values))
    return out


def check_sweeps(profile, sweeps: list[tuple[str, list]], rate: float = 0.1) -> None:
    """Fail before any work, naming the field: every value of every swept field must make a
    valid profile on its own (finite, in range), and ``rate`` must be a firing rate."""
    from spikec.estimate.events import check_rate

    check_rate(rate)
    for name, values in sweeps:
        for v in values:
            profile.override(name, v)


def run_sweep(graph, profile, sweeps: list[tuple[str, list]], *, counts=None, chips=None,
              cost: str = "profile", rate: float = 0.1, ssa: str = "host",
              requantize: Callable | None = None, base_accuracy: float | None = None,
              progress=None, runner=None) -> list[dict]:
    """One row per grid point: the point's values and the estimate's headline numbers.

    ``counts``: EventCounts (or a function of the Mapping) for the base network;
    ``ssa``: the SSA lowering of a graph (a re-quantized one too; a ``Network`` keeps its own);
    ``requantize(profile) -> (graph, counts, accuracy)`` for points that change a format;
    ``base_accuracy``: the measured accuracy of the base network (points with its formats);
    ``runner``: a ``spikec.shards.Runner`` to evaluate the points on local workers or a cluster
    (``counts`` and ``requantize`` must then pickle: module-level functions or partials); the
    rows come back in grid order either way.
    """
    names = [n for n, _ in sweeps]
    check_sweeps(profile, sweeps, rate)
    points = [dict(zip(names, combo)) for combo in itertools.product(*[v for _, v in sweeps])]
    args = (graph, profile, counts, chips, cost, rate, ssa, requantize, base_accuracy)
    if runner is None:
        rows = []
        for point in points:
            rows.append(sweep_point(point, *args))
            if progress:
                progress(1)
        return rows
    from spikec.shards import Task

    return runner.run([Task(sweep_point, (point, *args)) for point in points], progress)


def sweep_point(point: dict, graph, profile, counts, chips, cost, rate, ssa, requantize,
                base_accuracy) -> dict:
    """The row of one grid point (module level, so that workers can run it)."""
    prof = profile.with_overrides(point)
    formats_changed = prof.formats != profile.formats
    g, c, acc, note = graph, counts, None, ""
    if not formats_changed:
        acc = base_accuracy  # same integer network: same accuracy
    if formats_changed and requantize is not None:
        g, c, acc = requantize(prof)
    elif formats_changed:
        note = "formats changed: mapping only (no re-quantization available)"
    row = {"point": point}
    try:
        est = estimate(g, prof, counts=c, chips=chips, cost=cost, rate=rate, ssa=ssa)
        j = est.to_json()
        row.update({"fits": j["fits"], "chips": j["chips"], "cores": j["cores"],
                    "energy_profile_j": j["energy_per_inference_j"]["profile"],
                    "energy_paper_45nm_j": j["energy_per_inference_j"]["paper_45nm"],
                    "latency_per_step_s": j["latency_per_step_s"], "reason": j["reason"]})
    except CapacityError as e:
        row.update({"fits": False, "chips": None, "cores": None, "energy_profile_j": None,
                    "energy_paper_45nm_j": None, "latency_per_step_s": None,
                    "reason": str(e)})
    row["accuracy"] = acc
    if note:
        row["note"] = note
    return row


def sweep_table_rows(rows: list[dict]) -> tuple[list[str], list[list]]:
    """Headers and cells for ``spikec.table.format_table``."""
    names = list(rows[0]["point"]) if rows else []
    headers = names + ["fits", "chips", "cores", "energy (profile) J", "energy (45nm) J",
                       "latency/step s", "accuracy"]
    cells = []
    for r in rows:
        cells.append([r["point"][n] for n in names] + [
            "yes" if r["fits"] else "no", _dash(r["chips"]), _dash(r["cores"]),
            _dash(r["energy_profile_j"]), _dash(r["energy_paper_45nm_j"]),
            _dash(r["latency_per_step_s"]), _dash(r["accuracy"])])
    return headers, cells


def _dash(v):
    return "-" if v is None else v


def plot_sweep(rows: list[dict], path) -> None:
    """Cores, energy, latency and accuracy per grid point, as a PNG (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [", ".join(f"{k}={v}" for k, v in r["point"].items()) for r in rows]
    x = list(range(len(rows)))
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), constrained_layout=True)
    panels = [("cores", "cores", None), ("energy per inference (J)", "energy_profile_j",
                                         "energy_paper_45nm_j"),
              ("latency per step (s)", "latency_per_step_s", None), ("accuracy", "accuracy", None)]
    for ax, (title, key, key2) in zip(axes.ravel(), panels):
        y = [r.get(key) for r in rows]
        ax.bar([i - (0.2 if key2 else 0) for i in x], [v or 0 for v in y],
               width=0.4 if key2 else 0.6, label="profile" if key2 else None, color="#3b6ea8")
        if key2:
            ax.bar([i + 0.2 for i in x], [r.get(key2) or 0 for r in rows], width=0.4,
                   label="paper 45 nm", color="#d98c2b")
            ax.legend(fontsize=8)
        for i, r in enumerate(rows):
            if not r["fits"]:
                ax.annotate("does not fit", (i, 0), ha="center", va="bottom", fontsize=7,
                            color="#b00")
            if key == "accuracy" and r.get("accuracy") is None:
                ax.annotate("n/a", (i, 0), ha="center", va="bottom", fontsize=7)
        vals = [v for v in y + [r.get(key2) for r in rows if key2] if v]
        if key2 and vals and max(vals) > 100 * min(vals):
            ax.set_yscale("log")  # the papers' 45 nm figure and a chip's can be decades apart
        ax.set_title(title, fontsize=10)
        ax.set_xticks(x)
        ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=7)
    fig.savefig(path, dpi=110)
    plt.close(fig)
