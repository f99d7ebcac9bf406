"""Frontends: turn a model file into spikec's float IR.

``load_model`` picks the frontend by the file's content/extension. Each frontend is imported lazily,
so the core never imports torch unless a torch model is loaded.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from spikec.errors import InputFileError


@dataclass
class LoadOptions:
    """What the user said about a model file (CLI flags).

    Attributes
    ----------
    arch : registry name for a bare state_dict / checkpoint without a recorded arch.
    trust_pickle : allow full unpickling (``torch.load(weights_only=False)``).
    input_shape : (C, H, W) override of the per-sample input shape.
    timesteps : override of T.
    overrides : further model-config overrides (``--set key=value``).
    preprocess : input preprocessing when the file records none ({pixel_scale, mean, std, pad}).
    """

    arch: str | None = None
    trust_pickle: bool = False
    input_shape: tuple[int, ...] | None = None
    timesteps: int | None = None
    overrides: dict = field(default_factory=dict)
    preprocess: dict | None = None


def load_model(path: str | Path, options: LoadOptions | None = None):
    """Load ``path`` into a verified float ``spikec.ir.Graph``."""
    options = options or LoadOptions()
    p = Path(path)
    if not p.exists():
        raise InputFileError(f"{p}: no such file")
    if p.is_dir():
        raise InputFileError(f"{p}: is a directory, expected a model file")
    suffix = p.suffix.lower()
    if suffix == ".nir":
        from spikec.frontends.nir import load as load_nir
        return check_finite(load_nir(p, options), p)
    if suffix == ".onnx":
        from spikec.frontends.onnx import load as load_onnx
        return check_finite(load_onnx(p, options), p)
    if suffix == ".spkc":
        from spikec.ir import load
        return load(p)
    from spikec.frontends.torch import load as load_torch
    return load_torch(p, options)


def check_finite(graph, source):
    """``graph``, or a one-line ``CheckpointError`` naming the first op parameter with a NaN/Inf
    entry (interchange files are not checked by their readers; a NaN would fail deep inside the
    quantizer instead)."""
    import numpy as np

    from spikec.errors import CheckpointError

    for op in graph.ops:
        for name, value in vars(op).items():
            if isinstance(value, np.ndarray) and value.dtype.kind == "f" \
                    and not np.isfinite(value).all():
                bad = int((~np.isfinite(value)).sum())
                raise CheckpointError(f"{source}: op {op.name!r} ({op.OPCODE}) has {bad} "
                                      f"non-finite value(s) in {name!r}; the model cannot be "
                                      "compiled")
            if isinstance(value, float) and not np.isfinite(value) and name != "tau":
                raise CheckpointError(f"{source}: op {op.name!r} ({op.OPCODE}) has {name} = "
                                      f"{value}; the model cannot be compiled")
    return graph


def load_module(module, options: LoadOptions | None = None):
    """Trace a model object that lives in memory (a torch ``nn.Module`` defined in the user's
    script) into a verified float ``spikec.ir.Graph``. ``options.input_shape`` (C, H, W) is
    needed unless the module records ``spikec_config``; ``options.timesteps`` sets its ``T``."""
    from spikec.frontends.torch.loader import trace_module
    return trace_module(module, options or LoadOptions())
