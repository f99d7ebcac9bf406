"""spikec's graph IR: typed ops over named values (see docs/architecture.md).

Imports no frontend, no backend, no torch, no lava, no nir.
"""
from spikec.ir import fixed
from spikec.ir.fixed import (FIXED_DOMAIN_OPS, ConvSynapse, CubaLIF, DenseSynapse, GradedInput,
                             Readout)
from spikec.ir.graph import Graph, ops_equal, verify
from spikec.ir.ops import (AND, IAND, LIF, OP_TYPES, Add, AvgPool2d, BatchNorm, Conv2d, Input, Linear,
                           MaxPool2d, Mean, Op, Output, ReduceSum, Reshape, Scale, SpikeMatmul, TimeMean,
                           Transpose, op_type, register_op)
from spikec.ir.serialize import dumps, load, loads, save
from spikec.ir.text import dump, summary_rows
from spikec.ir.types import Domain, Encoding, FireOn, Kind, Rate, ResetMode, ValueSpec, Word

__all__ = ["Graph", "verify", "ops_equal", "OP_TYPES", "register_op", "op_type", "Op", "Input",
           "Output", "Conv2d", "Linear", "BatchNorm", "LIF", "MaxPool2d", "AvgPool2d", "Mean",
           "TimeMean", "Add", "IAND", "AND", "ReduceSum", "Scale", "SpikeMatmul", "Reshape", "Transpose", "dumps",
           "loads", "save", "load", "dump", "summary_rows", "Kind", "Rate", "ValueSpec", "Word", "Encoding", "FireOn", "ResetMode",
           "Domain", "fixed", "FIXED_DOMAIN_OPS",
           "GradedInput", "ConvSynapse", "DenseSynapse", "CubaLIF", "Readout"]
