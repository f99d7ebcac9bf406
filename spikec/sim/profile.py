"""Where the simulator's time goes: seconds per op kind and per layer (``simulate --profile-time``).

``Simulator.run`` records the wall-clock seconds of every op's kernel in ``SimResult.seconds``
(event accounting included: it runs inside the kernels). ``TimeProfile`` sums them over batches;
``format_time_profile`` prints the kinds and the most expensive layers, so that the next
bottleneck is visible.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from spikec.table import format_table


@dataclass
class TimeProfile:
    """Seconds per op, summed over the batches of one run.

    Attributes
    ----------
    seconds : op name -> wall-clock seconds of its kernel.
    kinds : op name -> opcode.
    shapes : op name -> per-sample shape of its value.
    samples : samples simulated.
    """

    seconds: dict[str, float] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    shapes: dict[str, tuple] = field(default_factory=dict)
    samples: int = 0

    def add(self, graph, result) -> None:
        """Add one batch's ``SimResult`` of ``graph``."""
        specs = graph.specs
        for op in graph.ops:
            s = result.seconds.get(op.name)
            if s is None:
                continue
            self.seconds[op.name] = self.seconds.get(op.name, 0.0) + s
            self.kinds[op.name] = op.OPCODE
            self.shapes[op.name] = tuple(specs[op.name].shape)
        self.samples += result.samples

    def to_dict(self, top: int = 10) -> dict:
        """``{total_seconds, seconds_per_sample, samples, kinds: [...], layers: [...]}``: kinds
        (``kind, ops, seconds, share``) by decreasing time, the ``top`` layers likewise."""
        total = sum(self.seconds.values())
        by_kind: dict[str, list] = {}
        for name, s in self.seconds.items():
            entry = by_kind.setdefault(self.kinds[name], [0, 0.0])
            entry[0] += 1
            entry[1] += s
        kinds = [{"kind": k, "ops": n, "seconds": round(s, 6), "share": _share(s, total)}
                 for k, (n, s) in sorted(by_kind.items(), key=lambda kv: -kv[1][1])]
        layers = [{"name": name, "kind": self.kinds[name], "shape": list(self.shapes[name]),
                   "seconds": round(s, 6), "share": _share(s, total)}
                  for name, s in sorted(self.seconds.items(), key=lambda kv: -kv[1])[:top]]
        return {"total_seconds": round(total, 6), "samples": self.samples,
                "seconds_per_sample": round(total / self.samples, 9) if self.samples else None,
                "kinds": kinds, "layers": layers}


def _share(s: float, total: float) -> float:
    return round(s / total, 4) if total else 0.0


def format_time_profile(profile: dict) -> str:
    """The kinds and top layers of ``TimeProfile.to_dict()`` as two text tables."""
    kinds = [[k["kind"], k["ops"], f"{k['seconds']:.3f}", f"{100 * k['share']:.1f}%"]
             for k in profile["kinds"]]
    layers = [[l["name"], l["kind"], "x".join(map(str, l["shape"])), f"{l['seconds']:.3f}",
               f"{100 * l['share']:.1f}%"] for l in profile["layers"]]
    per = profile["seconds_per_sample"]
    head = (f"time profile: {profile['total_seconds']:.3f} s in op kernels for "
            f"{profile['samples']} samples" + (f" ({1e3 * per:.2f} ms per sample)" if per else ""))
    return "\n".join([head, format_table(["op kind", "ops", "seconds", "share"], kinds), "",
                      format_table(["layer", "kind", "shape", "seconds", "share"], layers)])
