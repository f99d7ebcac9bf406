"""The rewrite driver (spikec.passes.rewrite): rules as data, a fixpoint, no op edited in place,
verification at the end (and after every rule under SPIKEC_VERIFY_EACH_RULE=1)."""
from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest

from spikec.errors import IRError
from spikec.ir import ops as O
from spikec.ir.graph import Graph, ops_equal
from spikec.passes import fold_batchnorm, fold_scale, simplify_layout
from spikec.passes.rewrite import VERIFY_EACH_RULE_ENV, Rewrite, apply_rules, rewrite, rule
from spikec.passes.structure import LAYOUT_RULES


def _graph(*body: O.Op, shape=(2, 3, 4)) -> Graph:
    ops = [O.Input("x", (), shape=shape, kind="spike"), *body]
    return Graph(ops + [O.Output("out", (ops[-1].name,))], timesteps=2)


def test_a_chain_of_transposes_reaches_the_fixpoint():
    perms = [(1, 0, 2), (0, 2, 1), (2, 1, 0), (1, 2, 0), (2, 0, 1)]
    body, src = [], "x"
    for k, p in enumerate(perms):
        body.append(O.Transpose(f"t{k}", (src,), perm=p))
        src = f"t{k}"
    g = _graph(*body)
    total = np.arange(3)
    for p in perms:
        total = total[list(p)]
    out = simplify_layout(g)
    kinds = [type(op) for op in out.ops]
    if tuple(total) == (0, 1, 2):
        assert kinds == [O.Input, O.Output]
    else:
        assert kinds == [O.Input, O.Transpose, O.Output]
        assert out.ops[1].perm == tuple(int(i) for i in total)


def test_rules_never_edit_the_graph_they_are_given():
    rng = np.random.default_rng(0)
    c = 3
    g = _graph(O.Transpose("t1", ("x",), perm=(1, 0, 2)),
               O.BatchNorm("bn", ("t1",), mean=rng.normal(size=c), var=np.ones(c),
                           gamma=np.ones(c), beta=np.zeros(c), axis=0),
               O.Transpose("t2", ("bn",), perm=(1, 0, 2)),
               O.Scale("s1", ("t2",), factor=2.0), O.Scale("s2", ("s1",), factor=0.5),
               O.LIF("lif", ("s2",)))
    before = [copy.deepcopy(op) for op in g.ops]
    for p in (fold_batchnorm, fold_scale):
        out = p(g)
        assert out is not g and len(out.ops) < len(g.ops)
        assert all(ops_equal(a, b) for a, b in zip(g.ops, before))
    from spikec.frontends.torch.simplify import simplify
    ops = simplify(list(g.ops))
    assert [type(o) for o in ops] == [O.Input, O.BatchNorm, O.Scale, O.Scale, O.LIF, O.Output]
    assert ops[1].axis == 1 and ops[1].inputs == ("x",) and ops[2].inputs == ("bn",)
    assert all(ops_equal(a, b) for a, b in zip(g.ops, before))


def test_no_match_returns_the_same_graph():
    g = _graph(O.Transpose("t", ("x",), perm=(1, 0, 2)))
    assert simplify_layout(g) is g
    assert apply_rules(g.ops, LAYOUT_RULES) == g.ops


@rule(O.Transpose)
def _broken(op, v):
    """# transpose(x) -> transpose reading a value that does not exist (a bug to catch)"""
    if op.inputs == ("nowhere",):
        return None
    return Rewrite(replace=(replace(op, inputs=("nowhere",)),))


def test_verify_each_rule_names_the_rule(monkeypatch):
    g = _graph(O.Transpose("t", ("x",), perm=(1, 0, 2)))
    with pytest.raises(IRError, match="nowhere"):
        rewrite(g, (_broken,))              # verified once, at the end
    monkeypatch.setenv(VERIFY_EACH_RULE_ENV, "1")
    with pytest.raises(IRError, match="after rewrite rule '_broken'"):
        rewrite(g, (_broken,))


def test_rewrites_of_one_sweep_that_overlap_wait_for_the_next():
    """Three scales in a row: the two merges overlap, so the driver applies one per sweep and
    still reaches scale(x, a b c)."""
    g = _graph(O.Scale("a", ("x",), factor=2.0), O.Scale("b", ("a",), factor=3.0),
               O.Scale("c", ("b",), factor=5.0))
    out = fold_scale(g)
    scales = [op for op in out.ops if isinstance(op, O.Scale)]
    assert len(scales) == 1 and scales[0].factor == 30.0 and scales[0].inputs == ("x",)
