"""Bit-exact simulator of fixed-point graphs: what the target chip computes, integer for integer.

``Simulator(graph).run(raw_samples)`` or ``simulate(graph, samples)`` run a ``domain='fixed'``
graph (see ``spikec.ir.fixed``) on raw uint8 inputs with the target's arithmetic
(``spikec.target.fixedpoint``: Lava 0.10's ``fixed_pt`` models for Loihi 2), and count the chip's
events per layer and time step (``spikec.sim.events``). See docs/simulator.md.
"""
from spikec.sim.engine import SimResult, Simulator, formats_of, simulate
from spikec.sim.events import COUNTERS, LayerStats
from spikec.sim.neurons import CubaLIFLayer, ReadoutLayer

__all__ = ["Simulator", "SimResult", "simulate", "formats_of", "LayerStats", "COUNTERS",
           "CubaLIFLayer", "ReadoutLayer"]
