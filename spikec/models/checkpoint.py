"""spikec's own checkpoint format: a ``torch.save``d dict that loads with ``weights_only=True``.

Layout::

    {"state_dict": {key: tensor}, "arch": str, "config": dict, "preprocess": dict,
     "spikec_version": str, **extra}

``arch`` and ``config`` rebuild the model with :func:`spikec.models.create`; ``preprocess`` says how
raw pixels become the model input: ``x = (pixels * pixel_scale - mean[c]) / std[c]`` (empty
``mean``/``std``: no normalisation), zero-padded by ``pad`` pixels on every side.
Everything inside is a tensor, str, int, float, bool, None, list or dict with str keys, so the file
never needs full unpickling.
"""
from __future__ import annotations

import io
import os
import pickle

import torch

import spikec
from spikec.atomic import write_atomic
from spikec.errors import CheckpointError, InputFileError, UnsafePickleError

DEFAULT_PREPROCESS = {"pixel_scale": 1.0 / 255.0, "mean": [], "std": [], "pad": 0}
RESERVED_KEYS = ("state_dict", "arch", "config", "preprocess", "spikec_version")


def _check_plain(value, where: str) -> None:
    """Raise unless ``value`` is made only of types ``torch.load(weights_only=True)`` accepts."""
    if value is None or isinstance(value, (str, bool, int, float, torch.Tensor)):
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise CheckpointError(f"{where}: dict key {key!r} is not a str")
            _check_plain(item, f"{where}.{key}")
        return
    raise CheckpointError(f"{where}: {type(value).__name__} cannot be stored in a weights-only "
                          "checkpoint (use tensors, str, int, float, bool, None, lists and dicts)")


def _plain(value):
    """Tuples to lists, recursively (a config may hold tuples)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def save_checkpoint(model: torch.nn.Module, path: str | os.PathLike, *, preprocess: dict | None = None,
                    extra: dict | None = None) -> None:
    """Write ``model`` to ``path`` atomically (a temporary file in the same folder, then ``os.replace``).

    Parameters
    ----------
    model : torch.nn.Module
        A model built by :func:`spikec.models.create` (it carries ``spikec_arch`` and ``spikec_config``).
    path : str or PathLike
    preprocess : dict, optional
        Input preprocessing; missing keys take :data:`DEFAULT_PREPROCESS`'s values.
    extra : dict, optional
        More top-level entries (training metrics, dataset name, ...); they may not reuse
        :data:`RESERVED_KEYS`.

    Raises
    ------
    CheckpointError
        The model has no spikec architecture, an ``extra`` key is reserved, or a value is not
        weights-only loadable.
    """
    arch = getattr(model, "spikec_arch", None)
    config = getattr(model, "spikec_config", None)
    if not isinstance(arch, str) or not isinstance(config, dict):
        raise CheckpointError(f"{type(model).__name__} has no spikec_arch/spikec_config: build it with "
                              "spikec.models.create(name) so its architecture can be recorded")
    extra = dict(extra or {})
    clash = sorted(set(extra) & set(RESERVED_KEYS))
    if clash:
        raise CheckpointError(f"extra keys {clash} are reserved by the checkpoint format")
    checkpoint = {
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        "arch": arch,
        "config": _plain(config),
        "preprocess": _plain({**DEFAULT_PREPROCESS, **(preprocess or {})}),
        "spikec_version": spikec.__version__,
        **_plain(extra),
    }
    _check_plain(checkpoint, "checkpoint")

    buf = io.BytesIO()
    torch.save(checkpoint, buf)
    write_atomic(path, buf.getvalue())


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load a spikec checkpoint dict with ``torch.load(weights_only=True)`` onto the CPU.

    Raises
    ------
    InputFileError
        Missing or unreadable file, or not a spikec checkpoint (no ``arch``/``state_dict``).
    UnsafePickleError
        The file holds objects a weights-only load refuses.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputFileError(f"{path}: no such checkpoint file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafePickleError(f"{path}: a weights-only load refused it ({exc}); "
                                "only files from trusted sources may be fully unpickled") from None
    except (OSError, RuntimeError, EOFError) as exc:
        raise InputFileError(f"{path}: cannot read as a torch checkpoint ({exc})") from None
    if not isinstance(checkpoint, dict) or not {"arch", "config", "state_dict"} <= set(checkpoint):
        raise InputFileError(f"{path}: not a spikec checkpoint (needs 'arch', 'config' and 'state_dict')")
    return checkpoint


def load_model(path: str | os.PathLike) -> tuple[torch.nn.Module, dict]:
    """Rebuild the model a spikec checkpoint records and load its weights (``strict=True``).

    Returns
    -------
    (model, checkpoint)
        The model in eval mode, and the checkpoint dict (``preprocess`` and extras included).

    Raises
    ------
    CheckpointError
        Unknown architecture or config key, or state_dict keys/shapes that do not fit it.
    """
    from spikec.models import create

    checkpoint = read_checkpoint(path)
    config = dict(checkpoint["config"])
    arch = checkpoint["arch"]
    model = create(arch, **config)
    try:
        model.load_state_dict(checkpoint["state_dict"], strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{os.fspath(path)}: weights do not fit {arch!r}: {exc}") from None
    model.eval()
    return model, checkpoint
