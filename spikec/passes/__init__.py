"""Float-to-float graph passes. Each is a plain ``Graph -> Graph`` function that returns a new
graph (the input is never edited) and leaves the float interpreter's results unchanged (exactly, or
to the last bit of floating point where its docstring says so). ``spikec.pipeline.FLOAT_PASSES``
lists them in the order the compiler runs them."""
from spikec.passes.compose import compose_convs
from spikec.passes.pooling import pool_after_neuron
from spikec.passes.affine import fold_avgpool, fold_batchnorm, fold_input_normalization
from spikec.passes.neurons import canonicalize_lif, fold_scale
from spikec.passes.readout import fold_readout
from spikec.passes.structure import eliminate_dead_ops, simplify_layout
from spikec.passes.tokenmean import fold_mean_of_currents

__all__ = ["eliminate_dead_ops", "simplify_layout", "fold_batchnorm", "fold_input_normalization",
           "fold_avgpool", "compose_convs", "pool_after_neuron", "fold_scale", "canonicalize_lif",
           "fold_readout", "fold_mean_of_currents"]
