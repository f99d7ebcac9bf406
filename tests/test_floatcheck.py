"""tests/floatcheck.py, the one comparison of spikes from float computations that sum in different
orders: near-threshold root flips and their cascades pass, anything else fails."""
from __future__ import annotations

import numpy as np
import pytest

from spikec import interp
from spikec.ir import ops as O
from spikec.ir.graph import Graph

from floatcheck import EPS32, assert_close_where_unflipped, check_spikes, lif_membrane


def two_layers() -> tuple[Graph, np.ndarray]:
    """x -> LIF a -> linear -> LIF b, T = 3, 2 samples; sample 0's neuron 0 of ``a`` reaches
    H = 1.0 exactly (the threshold) at step 0, every other membrane of ``a`` is far from it."""
    ops = [O.Input("x", (), shape=(4,), encoding="sequence", kind="real"),
           O.LIF("a", ("x",)),
           O.Linear("fc", ("a",), weight=np.full((3, 4), 1.5, np.float32)),
           O.LIF("b", ("fc",)),
           O.Output("y", ("b",))]
    x = np.full((2, 3, 4), 0.5, np.float32)
    x[0, 0, 0] = 2.0                           # H = 0 + (2 - 0) / 2 = 1.0
    return Graph(ops, timesteps=3), x


def test_lif_membrane_is_the_interpreters_lif():
    g, x = two_layers()
    ref = interp.run(g, x, record="all")
    h, s = lif_membrane(g.op("a"), ref.values["x"])
    assert h[0, 0, 0] == 1.0 and np.array_equal(s, ref.values["a"].astype(bool))


def test_equal_spikes_count_nothing():
    g, x = two_layers()
    ref = interp.run(g, x, record="all")
    flips = check_spikes(g, ref, {"a": ref.values["a"], "b": ref.values["b"]})
    assert flips.total == 0 and flips.compared == 3 * 2 * (4 + 3) and not flips.flipped.any()


def test_a_near_flip_and_its_cascade_pass():
    g, x = two_layers()
    ref = interp.run(g, x, record="all")
    a, b = ref.values["a"].copy(), ref.values["b"].copy()
    a[0, 0, 0] = 1 - a[0, 0, 0]      # the neuron at the threshold, as another sum order may
    a[1, 0, 0] = 1 - a[1, 0, 0]      # ... and its own next step (its state changed)
    b[0, 0, :] = 1 - b[0, 0, :]      # and downstream, same sample, same step
    flips = check_spikes(g, ref, {"a": a, "b": b})
    assert (flips.roots, flips.cascade) == (1, 4)
    assert flips.flipped.tolist() == [True, False]
    assert flips.per_layer == {"a": (1, 1), "b": (0, 3)}
    assert "5/42 spikes flipped" in str(flips)
    # logits: compared on the flip-free sample only
    want = np.array([[0.0, 1.0], [0.0, 1.0]])
    assert_close_where_unflipped(np.array([[1.0, 0.0], [0.0, 1.0]]), want, flips, rtol=0, atol=1e-6)
    with pytest.raises(AssertionError):
        assert_close_where_unflipped(np.array([[0.0, 1.0], [1.0, 0.0]]), want, flips, rtol=0, atol=1e-6)


@pytest.mark.parametrize("where, words", [
    (("a", (0, 1, 0)), r"a: spike at step 0, sample 1, neuron \(0,\) differs with membrane 0.25"),
    (("b", (0, 1, 2)), r"b: spike at step 0, sample 1, neuron \(2,\)"),  # downstream of nothing
])
def test_a_far_flip_fails_and_names_itself(where, words):
    g, x = two_layers()
    ref = interp.run(g, x, record="all")
    spikes = {"a": ref.values["a"].copy(), "b": ref.values["b"].copy()}
    name, idx = where
    spikes[name][idx] = 1 - spikes[name][idx]
    with pytest.raises(AssertionError, match=words):
        check_spikes(g, ref, spikes)


def test_a_cascade_needs_an_earlier_flip_in_its_own_sample():
    g, x = two_layers()
    ref = interp.run(g, x, record="all")
    a, b = ref.values["a"].copy(), ref.values["b"].copy()
    a[0, 0, 0] = 1 - a[0, 0, 0]      # root in sample 0 ...
    b[0, 1, 0] = 1 - b[0, 1, 0]      # ... does not excuse sample 1
    with pytest.raises(AssertionError, match="sample 1"):
        check_spikes(g, ref, {"a": a, "b": b})


def test_too_many_roots_fail():
    g, x = two_layers()
    x[1, 0, 1] = 2.0 + EPS32 / 2     # a second neuron within EPS32 of the threshold
    ref = interp.run(g, x, record="all")
    a = ref.values["a"].copy()
    a[0, 0, 0], a[0, 1, 1] = 1 - a[0, 0, 0], 1 - a[0, 1, 1]
    assert check_spikes(g, ref, {"a": a}).roots == 2
    with pytest.raises(AssertionError, match="more than 1 near-threshold root"):
        check_spikes(g, ref, {"a": a}, max_roots=1)
