"""On-chip lowerings of spiking self-attention's integer product ``y = a @ b`` (``spike_matmul``).

``y[z, m, n] = sum_k a[z, m, k] * b[z, k, n]`` (``z``: the flattened head axes). Both lowerings are
exact; ``costs`` gives the sizes of both so that a user can choose.

host
    A spikec ``SpikeMatmul`` process runs the product off the neuro-cores (an embedded or host CPU).
    Per step the neuro-cores send it ``a`` and ``b`` (one message per nonzero element) and it
    sends back ``y`` as graded messages. No neurons or synapses on the chip; pipeline delay 0.
decompose
    Standard Loihi 2 primitives only: one neuron per term ``(z, m, k, n)`` fed by static fan-out
    synapses from ``a[z, m, k]`` and ``b[z, k, n]``, then static summing synapses into a graded
    relay ``y[z, m, n]`` (GradedVec, vth = 0). The term neuron depends on the input kinds:

    * spike x spike: a coincidence (AND) neuron, LIF with du = dv = 4095 and vth = 1:
      ``v = (a + b) << 6 > 64`` iff both spike.
    * spike x count: a gate, GradedVec with vth = A - 1 where A = 2**e > max(count): input
      ``A * spike + count`` (the spike through weight 1 with weight_exp e) sends ``A + count``
      iff the spike is there; the summing synapses subtract ``A`` per gating spike (weight -1,
      weight_exp e, from the spike source, delayed to arrive with the gate sum).
    * count x count: a product neuron (Lava ProdNeuron, ``a_in1 * a_in2``).

    Pipeline delay 2 (fan-out synapse, summing synapse). Neurons ``Z*M*K*N + Z*M*N``.

The terms' layout and the choice of term neuron come from ``spikec.target.ssa``, which the
estimator maps too.
"""
from __future__ import annotations

import numpy as np

from spikec.target.ssa import LOWERINGS, product_dims, term_indices, term_neuron

from .matrix import SynapseMatrix, guard_synapses
from .plan import LValue, Part, PlanBuilder

__all__ = ["LOWERINGS", "costs", "lower_decompose", "lower_host"]


def costs(a_shape, b_shape, a_kind: str, b_kind: str) -> dict:
    """Sizes of both lowerings of one product (per sample, per time step, upper bounds).

    Returns ``{"host": {...}, "decompose": {...}}`` with ``neurons``, ``synapses`` (on the chip),
    ``messages_per_step`` (spike or graded messages that can be sent in one step) and, for host,
    ``cpu_macs_per_step``.
    """
    z, m, k, n = product_dims(a_shape, b_shape)
    size_a, size_b, size_y = z * m * k, z * k * n, z * m * n
    terms = z * m * k * n
    neuron = term_neuron(a_kind, b_kind)
    correction = terms if neuron == "gate GradedVec" else 0
    return {
        "host": {"neurons": 0, "synapses": 0, "messages_per_step": size_a + size_b + size_y,
                 "messages_to_cpu_per_step": size_a + size_b, "messages_from_cpu_per_step": size_y,
                 "cpu_macs_per_step": terms, "delay_steps": 0},
        "decompose": {"neurons": terms + size_y, "term_neurons": terms, "term_neuron": neuron,
                      "synapses": 3 * terms + correction,
                      "messages_per_step": terms + size_y, "delay_steps": 2},
    }


def lower_host(b: PlanBuilder, name: str, x: LValue, y: LValue, out_shape) -> LValue:
    """The spikec SpikeMatmul process. Each operand arrives on one port per part (a layer split
    by threshold is reassembled on the CPU, no gather neurons); an operand that is ready earlier
    than the other waits in a delay line."""
    depth = max(x.depth, y.depth)
    z, m, k, n = product_dims(x.shape, y.shape)
    proc = b.unique(name)
    spec = {"name": proc, "type": "spike_matmul", "a_shape": list(x.shape),
            "b_shape": list(y.shape), "depth": depth}
    for side, v in (("a", x), ("b", y)):
        if v.depth == depth:
            parts = [(p.ref(), list(p.shape), p.index) for p in v.parts]
        else:
            parts = [(b.full_port(v, depth), list(v.shape), None)]
        spec[f"{side}_parts"] = []
        for j, (ref, shape, index) in enumerate(parts):
            idx = None if index is None else b.array(proc, f"{side}{j}_index", index.astype(np.int32))
            spec[f"{side}_parts"].append({"shape": shape, "index": idx})
            b.connect(ref, [proc, f"{side}{j}", []])
    b.processes.append(spec)
    b.count("processes", 1)
    b.count("messages_per_step", x.size + y.size + z * m * n)
    b.count("cpu_macs_per_step", z * m * k * n)
    return LValue(name, tuple(out_shape), "count", k * x.bound * y.bound,
                  [Part(proc, "s_out", [], tuple(out_shape), None, depth)])


def _onehot(rows, cols, shape, value=1) -> SynapseMatrix:
    return SynapseMatrix.build(rows, cols, value, shape)


def lower_decompose(b: PlanBuilder, name: str, x: LValue, y: LValue, out_shape) -> LValue:
    """Term neurons + summing synapses + graded relay (see the module docstring)."""
    z, m, k, n = product_dims(x.shape, y.shape)
    terms = z * m * k * n
    # fan-out of both operands, the summing synapses and the gate correction, plus the indices
    guard_synapses(5 * terms, f"the decompose lowering of spike_matmul {name!r} "
                   f"({terms:,} term neurons)", avoid="use --ssa host")
    a_idx, b_idx, y_idx = term_indices(z, m, k, n)
    t_idx = np.arange(terms)
    d_in = max(x.depth, y.depth)
    d_term, d_out = d_in + 1, d_in + 2
    fan_a = _onehot(t_idx, a_idx, (terms, x.size))
    fan_b = _onehot(t_idx, b_idx, (terms, y.size))
    kinds = (x.kind, y.kind)
    if kinds == ("spike", "spike"):
        pop = b.lif(f"{name}_and", (terms,), du=b.fmt.decay_max, dv=b.fmt.decay_max, vth=1,
                    bias_mant=np.zeros(terms, np.int32), bias_exp=np.zeros(terms, np.int32),
                    depth=d_term, ir=name)
        b.linear(x, fan_a, [pop, "a_in", [], [terms]], arrive=d_term, base=f"{name}_fan_a")
        b.linear(y, fan_b, [pop, "a_in", [], [terms]], arrive=d_term, base=f"{name}_fan_b")
        pop_kind, pop_bound = "spike", 1
    elif "spike" in kinds and "count" in kinds:
        gate, gate_fan, val, val_fan = (x, fan_a, y, fan_b) if x.kind == "spike" else \
            (y, fan_b, x, fan_a)
        e = int(val.bound).bit_length()  # A = 2**e > max(count)
        pop = b.add_process("gate", f"{name}_gate", neurons=terms, shape=[terms],
                            vth=(1 << e) - 1, depth=d_term)
        b.linear(gate, gate_fan, [pop, "a_in", [], [terms]], arrive=d_term, weight_exp=e,
                 base=f"{name}_fan_gate")
        b.linear(val, val_fan, [pop, "a_in", [], [terms]], arrive=d_term, base=f"{name}_fan_val")
        pop_kind, pop_bound = "count", (1 << e) + val.bound
    else:
        pop = b.add_process("prod", f"{name}_prod", neurons=terms, shape=[terms], depth=d_term)
        b.linear(x, fan_a, [pop, "a_in1", [], [terms]], arrive=d_term, base=f"{name}_fan_a")
        b.linear(y, fan_b, [pop, "a_in2", [], [terms]], arrive=d_term, base=f"{name}_fan_b")
        pop_kind, pop_bound = "count", x.bound * y.bound
    relay = b.relay(name, tuple(out_shape), "count", d_out)
    dst = [relay, "a_in", [], list(out_shape)]
    terms_v = LValue(f"{name}_terms", (terms,), pop_kind, pop_bound,
                     [Part(pop, "s_out", [], (terms,), None, d_term)])
    b.linear(terms_v, _onehot(y_idx, t_idx, (z * m * n, terms)), dst, arrive=d_out,
             base=f"{name}_sum")
    if pop_kind == "count" and "spike" in kinds:
        # subtract A for every gating spike: -(sum over k of the gate) << e
        gate_idx = a_idx if x.kind == "spike" else b_idx
        corr = _onehot(y_idx, gate_idx, (z * m * n, gate.size), value=-1)
        b.linear(gate, corr, dst, arrive=d_out, weight_exp=e, base=f"{name}_corr")
    b.count("messages_per_step", terms + z * m * n)
    return LValue(name, tuple(out_shape), "count", k * x.bound * y.bound,
                  [Part(relay, "s_out", [], tuple(out_shape), None, d_out)])
