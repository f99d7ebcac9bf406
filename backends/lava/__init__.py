"""Lava backend for Loihi 2: a runnable Lava bundle of a fixed-point graph.

``write_bundle(fixed_graph, out_dir, ssa='host'|'decompose', report=None) -> facts`` is the hook
``spikec compile --target loihi2`` calls; see docs/lava-backend.md. The plan builder imports numpy
and spikec only; ``runtime/`` (copied into every bundle) imports numpy, scipy and lava only.
"""
from .bundle import BUNDLE_DIR, build_plan, bundle_files, read_manifest, write_bundle
from .ssa import LOWERINGS, costs as ssa_costs

__all__ = ["write_bundle", "build_plan", "bundle_files", "read_manifest", "BUNDLE_DIR",
           "LOWERINGS", "ssa_costs"]
