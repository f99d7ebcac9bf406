"""How spiking self-attention's integer product ``y = a @ b`` (``spike_matmul``) goes on a chip.

``y[z, m, n] = sum_k a[z, m, k] * b[z, k, n]`` (``z``: the flattened head axes). Two exact
lowerings, built by the Lava backend (``backends/lava/ssa.py``) and mapped by the estimator
(``spikec/estimate/network.py``), which both read their structure from here:

host
    The product runs off the neuro-cores (embedded or host CPU): ``a`` and ``b`` travel to it,
    ``y`` returns as graded messages.
decompose
    One *term neuron* per term ``(z, m, k, n)``, fed by a fan-out synapse from ``a[z, m, k]`` and
    one from ``b[z, k, n]``; summing synapses from the term neurons of ``y[z, m, n]`` (all ``k``)
    into a graded relay neuron ``y[z, m, n]``. For spike x count the term neuron is a gate that
    sends ``A + count`` when the spike is there, and a correction synapse from the spike to the
    relay subtracts ``A``.
"""
from __future__ import annotations

import numpy as np

from spikec.ir.types import Word


class SSALowering(Word):
    """How ``spike_matmul`` goes on a chip (``--ssa``): see the module docstring."""

    HOST = "host"
    DECOMPOSE = "decompose"


#: The lowerings of ``spike_matmul`` (``--ssa``), as strings for option parsers.
LOWERINGS = SSALowering.values()


def product_dims(a_shape, b_shape) -> tuple[int, int, int, int]:
    """``(Z, M, K, N)`` of ``a [..., M, K] @ b [..., K, N]`` (``Z``: product of the head axes)."""
    z = int(np.prod(a_shape[:-2], dtype=np.int64))
    return z, int(a_shape[-2]), int(a_shape[-1]), int(b_shape[-1])


def term_indices(z: int, m: int, k: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat indices into ``a``, ``b`` and ``y`` of every term ``(z, m, k, n)``, terms in that
    (row-major) order: three int64 arrays of ``Z*M*K*N`` entries."""
    zz, mm, kk, nn = np.meshgrid(np.arange(z), np.arange(m), np.arange(k), np.arange(n),
                                 indexing="ij")
    a_idx = ((zz * m + mm) * k + kk).ravel()
    b_idx = ((zz * k + kk) * n + nn).ravel()
    y_idx = ((zz * m + mm) * n + nn).ravel()
    return a_idx, b_idx, y_idx


def term_neuron(a_kind: str, b_kind: str) -> str:
    """The decompose lowering's term neuron for operand kinds ``"spike"`` / ``"count"``."""
    kinds = {a_kind, b_kind}
    if kinds == {"spike"}:
        return "coincidence LIF"
    if kinds == {"spike", "count"}:
        return "gate GradedVec"
    return "ProdNeuron"


def gate_operand(a_kind: str, b_kind: str) -> int | None:
    """Which operand (0: ``a``, 1: ``b``) gates a spike x count product; None for the others.
    Its events also feed the relay's correction synapses (``K`` per relay neuron)."""
    if {a_kind, b_kind} != {"spike", "count"}:
        return None
    return 0 if a_kind == "spike" else 1
