"""The PyTorch frontend: load a checkpoint, state_dict, pickled model or TorchScript file and trace
it into spikec's float IR (the only part of spikec, with ``spikec.models``, that imports torch).

Public API
----------
``load(path, options) -> Graph``   read a file (``loader.py``) and trace it
``trace(model, input_op) -> Graph`` trace an ``nn.Module`` (``tracer.py``)
``handles(*classes)``              register a leaf-module handler (``modules.py``)
``register_neuron(cls, reader)``   declare a multi-step LIF neuron class (``neurons.py``)
"""
from spikec.frontends.torch.tracer import Layout, trace  # noqa: I001  (tracer first: no cycles)
from spikec.frontends.torch import functions as _functions  # noqa: F401  (registers handlers)
from spikec.frontends.torch import parts as _parts  # noqa: F401  (registers handlers)
from spikec.frontends.torch import padding as _padding  # noqa: F401  (registers handlers)
from spikec.frontends.torch.loader import input_op, load
from spikec.frontends.torch.modules import handles
from spikec.frontends.torch.neurons import lif_attributes, register_neuron

__all__ = ["load", "trace", "input_op", "handles", "register_neuron", "lif_attributes", "Layout"]
