"""Whole models of the newer families on Lava 0.10's fixed_pt models, spike for spike against
spikec's bit-exact simulator: a tiny QKFormer (T = 1; Q-K token attention, SSA, the per-sample
``proj_lif``, max-pools moved after their neurons) and a few of Meta-SpikeFormer's registry blocks
(``MetaMini``: SepConv and RepConv composed into single convs, ``q @ (k^T @ v)``, membrane
shortcuts; per-token head). The whole tiny body builds hundreds of Lava processes, too many here.

The compiled graphs come from ``python tests/test_whole_zoo.py`` (Lava's environment has no torch):
random weights, randomised batch-norm statistics, compiled for loihi2.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from lava_probes import probe_pairs

from spikec.backends.lava import build_plan
from spikec.backends.lava.runtime import network
from spikec.ir import loads
from spikec.sim import Simulator

pytestmark = pytest.mark.lava

DATA = Path(__file__).resolve().parents[1] / "data" / "whole_zoo"


def _mismatches(name: str, ssa: str, n: int) -> tuple[int, int, dict]:
    graph = loads(gzip.decompress((DATA / f"{name}.spkc.gz").read_bytes()), name)
    data = np.load(DATA / f"{name}.npy")[:n]
    plan, arrays, _ = build_plan(graph, ssa=ssa, conv="sparse")
    res = network.run(plan, arrays, {graph.inputs[0].name: data})
    names = [p["value"] for p in plan["probes"]]
    sim = Simulator(graph).run(data, record=names)
    bad, checked = 0, 0
    for _, got, want in probe_pairs(graph, plan, res["values"], sim.values):
        bad += int(np.count_nonzero(got != want))
        checked += got.size
    return bad, checked, sim.values


@pytest.mark.parametrize("name, ssa, n", [
    ("qkformer", "host", 1), ("qkformer", "decompose", 1),
    ("meta_mini", "host", 1), ("meta_mini", "decompose", 1),
])
def test_whole_model_matches_lava(name, ssa, n):
    bad, checked, values = _mismatches(name, ssa, n)
    print(f"{name} ssa={ssa}: {bad} mismatches of {checked} probed values, {n} images")
    assert checked > 0 and bad == 0
    assert any(v.any() for v in values.values())
