"""Neuron steps in ONNX graphs: find the nodes of a state, read its LIF parameters by probing.

A state ``state.<x>`` with output ``state.<x>.next`` owns the nodes that are descendants of the
state input and ancestors of its next value (``C0``). Those nodes read one outside tensor (``X``)
and give one tensor to the rest of the graph: the spikes (if C0 ends in a comparison read by a
Cast, the Cast joins the block). ``acc + X`` read through ``/ T`` is a time mean.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spikec.errors import UnsupportedOpError

_COMPARE = {"Greater": ">", "GreaterOrEqual": ">=", "Less": "<", "LessOrEqual": "<="}
PROBE_SAMPLES = 4096


@dataclass
class Block:
    state: str
    next: str
    nodes: list          # ONNX nodes in graph order
    x: str               # the outside input tensor
    out: str             # the tensor the rest of the graph reads (spikes, or the time mean)
    kind: str            # 'lif' | 'time_mean'


def _closure(start: set, step) -> set:
    seen, todo = set(), list(start)
    while todo:
        t = todo.pop()
        for nxt in step(t):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def find_neuron(conv, state: str, nxt: str) -> Block:
    nodes = list(conv.g.node)
    by_id = {id(n): n for n in nodes}
    down = _closure({state}, lambda t: [o for n in conv.consumers.get(t, []) for o in n.output])
    desc = {id(n) for n in nodes if any(i in down or i == state for i in n.input)}
    up = _closure({nxt}, lambda t: [i for i in getattr(conv.producer.get(t), "input", [])])
    anc = {id(conv.producer[t]) for t in up | {nxt} if t in conv.producer}
    c0 = desc & anc
    if not c0:
        raise UnsupportedOpError(f"state {state!r}: {nxt!r} does not depend on it")
    made = {t for i in c0 for t in by_id[i].output}
    outside_in = sorted({t for i in c0 for t in by_id[i].input
                         if t and t not in made and t not in conv.consts and t != state})
    if len(outside_in) != 1:
        raise UnsupportedOpError(f"state {state!r}: its step reads {len(outside_in)} outside "
                                 f"tensors ({outside_in}); a neuron reads one input")
    x = outside_in[0]
    graph_outs = {o.name for o in conv.g.output}
    exits = sorted({t for t in made if t != nxt and (t in graph_outs or any(
        id(u) not in c0 for u in conv.consumers.get(t, [])))})
    block = set(c0)
    if len(c0) == 1 and by_id[next(iter(c0))].op_type == "Add":
        divs = [u for u in conv.consumers.get(nxt, []) if u.op_type == "Div"
                and u.input[1] in conv.consts]
        if len(divs) == 1 and not exits:
            block.add(id(divs[0]))
            return Block(state, nxt, [n for n in nodes if id(n) in block], x, divs[0].output[0],
                         "time_mean")
    if len(exits) != 1:
        raise UnsupportedOpError(f"state {state!r}: its step gives {len(exits)} tensors to the rest "
                                 f"of the graph ({exits}); a neuron gives its spikes")
    out = exits[0]
    users = [u for u in conv.consumers.get(out, []) if id(u) not in c0]
    if conv.producer[out].op_type in _COMPARE and len(users) == 1 and users[0].op_type == "Cast":
        block.add(id(users[0]))
        out = users[0].output[0]
    return Block(state, nxt, [n for n in nodes if id(n) in block], x, out, "lif")


def _evaluator(conv, blk: Block):
    onnx = conv.onnx
    h = onnx.helper
    used = {t for n in blk.nodes for t in n.input}
    inits = [onnx.numpy_helper.from_array(np.asarray(conv.consts[t]), t)
             for t in used if t in conv.consts]
    f = onnx.TensorProto.FLOAT
    graph = h.make_graph(list(blk.nodes), "neuron",
                         [h.make_tensor_value_info(blk.x, f, [None]),
                          h.make_tensor_value_info(blk.state, f, [None])],
                         [h.make_tensor_value_info(blk.out, f, [None]),
                          h.make_tensor_value_info(blk.next, f, [None])], initializer=inits)
    opset = [o for o in conv.model.opset_import]
    model = h.make_model(graph, opset_imports=opset)
    from onnx.reference import ReferenceEvaluator

    ev = ReferenceEvaluator(model)

    def run(x, v):
        s, vn = ev.run(None, {blk.x: np.asarray(x, np.float32), blk.state: np.asarray(v, np.float32)})
        return np.asarray(s, np.float32), np.asarray(vn, np.float32)
    return run


def _threshold(conv, blk: Block) -> tuple[float, str]:
    """The comparison's constant (through ``h - c`` compared with 0) and ``>=`` / ``>``."""
    for n in blk.nodes:
        if n.op_type not in _COMPARE:
            continue
        a, b = n.input
        op = _COMPARE[n.op_type]
        if b in conv.consts:
            y, k = a, float(np.asarray(conv.consts[b]).ravel()[0])
        elif a in conv.consts:  # k < y  ==  y > k
            y, k = b, float(np.asarray(conv.consts[a]).ravel()[0])
            op = {">": "<", ">=": "<=", "<": ">", "<=": ">="}[op]
        else:
            continue
        if op not in (">", ">="):
            continue
        sub = conv.producer.get(y)
        if k == 0.0 and sub is not None and sub.op_type == "Sub" and sub.input[1] in conv.consts:
            k = float(np.asarray(conv.consts[sub.input[1]]).ravel()[0])  # h - c >= 0  iff  h >= c
        return k, op
    raise UnsupportedOpError(f"state {blk.state!r}: no comparison with a constant in its step")


def _step(x, v, tau, vth, v_reset, decay_input, fire_on):
    """spikingjelly's LIF step in float32, as spikec.interp computes it."""
    f = np.float32
    tau, vth = f(tau), f(vth)
    vr = f(0.0 if v_reset is None else v_reset)
    h = v + (x - (v - vr)) / tau if decay_input else v - (v - vr) / tau + x
    s = (h >= vth) if fire_on == ">=" else (h > vth)
    vn = np.where(s, vr, h) if v_reset is not None else h - vth * s
    return s.astype(f), vn.astype(f)


def probe_neuron(conv, blk: Block) -> dict:
    """LIF parameters of ``blk`` (see the module docstring), verified bit for bit."""
    run = _evaluator(conv, blk)
    vth, fire_on = _threshold(conv, blk)
    big = np.float32(abs(vth) * 1e3 + 1e3)
    s1, r1 = run([big], [0.0])
    s2, r2 = run([2 * big], [0.0])
    if s1[0] != 1:
        raise UnsupportedOpError(f"state {blk.state!r}: does not fire for a large input")
    v_reset = float(r1[0]) if r1[0] == r2[0] else None
    vr = 0.0 if v_reset is None else v_reset
    v0 = np.float32(vth / 4 if vth > 0 else 0.25)
    s, h = run([0.0], [v0])
    tau = float((np.float64(v0) - vr) / (np.float64(v0) - np.float64(h[0]))) if h[0] != v0 else np.inf
    tau = float(round(tau, 6)) if math_isfinite(tau) else tau
    x0 = np.float32(vth / 4 if vth > 0 else 0.25)
    _, h0 = run([x0], [0.0])
    decay_input = bool(h0[0] == _step(np.float32([x0]), np.float32([0]), tau, vth, v_reset, True,
                                      fire_on)[1][0] and tau != 1.0)
    params = dict(tau=tau, v_threshold=vth, v_reset=v_reset, decay_input=decay_input,
                  fire_on=fire_on)
    rng = np.random.default_rng(0)
    scale = max(abs(vth), 1.0)
    x = (rng.uniform(-3, 3, PROBE_SAMPLES) * scale).astype(np.float32)
    v = (rng.uniform(-2, 2, PROBE_SAMPLES) * scale).astype(np.float32)
    x[:64] = np.float32(vth) * np.float32(tau if decay_input else 1.0)   # h at the threshold
    v[:64] = 0
    got = run(x, v)
    want = _step(x, v, tau, vth, v_reset, decay_input, fire_on)
    if not (np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])):
        bad = int(np.count_nonzero((got[0] != want[0]) | (got[1] != want[1])))
        raise UnsupportedOpError(
            f"state {blk.state!r}: its step is not a spikingjelly LIF (best fit {params} differs "
            f"on {bad} of {PROBE_SAMPLES} probes)")
    return params


def math_isfinite(v: float) -> bool:
    return v == v and v not in (float("inf"), float("-inf"))
