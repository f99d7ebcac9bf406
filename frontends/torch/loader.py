"""Reading what users have into a torch model, then tracing it: ``load(path, options) -> Graph``.

Accepted files
--------------
* A **checkpoint dict** (``torch.save``), loaded with ``weights_only=True``. The weights are taken
  from, in order: ``--set weights=KEY`` if given, else ``state_dict_ema`` (timm's convention:
  ``timm.models.load_checkpoint`` prefers the EMA weights), ``model_ema``, ``state_dict``,
  ``model``, ``model_state_dict``. ``graph.meta["weights"]`` records the key used. A
  ``module.`` (DataParallel) or ``_orig_mod.`` (torch.compile) prefix is stripped. The
  architecture is ``--arch`` or the ``arch`` spikec's ``save_checkpoint`` records, with its
  ``config``; ``--set``, ``--input-shape`` and ``-T`` override the config. timm checkpoints carry an
  ``argparse.Namespace`` (``args``), which is allowed in the weights-only load.
* A **bare state_dict** (a dict of tensors) with ``--arch``.
* A **full pickle** of an ``nn.Module`` (or a dict holding one under ``model``): only with
  ``--trust-pickle``; without it the weights-only load fails and the error says so.
* A **TorchScript** archive (``torch.jit.save``): only with ``--trust-pickle``, since loading one
  runs code from the file (its ``__setstate__``). With ``--arch`` its weights are loaded into the
  registry architecture. Its own forward is compiled code that runs outside Python, so the
  tracer sees none of its ops: without ``--arch`` the tracer is tried and reports that it saw
  nothing.

Before anything is built, the weights are checked (every float finite, batch-norm variances not
negative; the error names the key), the preprocessing is validated (``spikec.data.Preprocess``),
and the memory that building the model from its config and tracing it over T steps will take is
estimated and refused past the budget (``spikec.memory.require_memory``).

The preprocessing a checkpoint records (``preprocess``: pixel_scale, mean, std, pad) becomes the
graph's ``Input`` op; the default is ``pixel_scale = 1/255``. ``--input-shape C,H,W`` is the shape
the network consumes (after ``pad``).
"""
from __future__ import annotations

import argparse
import pickle
import re
import warnings
import zipfile
from pathlib import Path

import torch
from torch import nn

from spikec.errors import (CheckpointError, DataError, InputFileError, ShapeError,
                           UnsafePickleError, UnsupportedOpError)
from spikec.frontends.torch.tracer import trace
from spikec.ir import ops as O
from spikec.ir.graph import Graph
from spikec.memory import require_memory

WEIGHT_KEYS = ("state_dict_ema", "model_ema", "state_dict", "model", "model_state_dict")
DEFAULT_PREPROCESS = {"pixel_scale": 1.0 / 255.0, "mean": [], "std": [], "pad": 0}
_PREFIXES = ("module.", "_orig_mod.")


# ----------------------------------------------------------------------------- reading the file
_LEGACY_MAGIC = b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19"  # torch.save before the zip format


def sniff(path: Path) -> str:
    """``"torchscript"``, ``"torch"`` (a ``torch.save`` file, zip or legacy) or ``"other"``."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(_LEGACY_MAGIC))
        if head.startswith(_LEGACY_MAGIC):
            return "torch"
        if not zipfile.is_zipfile(path):
            return "other"
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return "other"
    if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
        return "torchscript"
    return "torch" if any(n.endswith("data.pkl") for n in names) else "other"


def read(path: Path, trust_pickle: bool):
    """The object in ``path``: a dict, an ``nn.Module`` or a ``torch.jit.ScriptModule``."""
    kind = sniff(path)
    if kind == "other":
        raise InputFileError(f"{path}: not a PyTorch checkpoint or TorchScript file (neither a "
                             "torch.save archive nor a legacy torch.save pickle)")
    if kind == "torchscript":
        if not trust_pickle:
            raise UnsafePickleError(
                f"{path}: a TorchScript archive; loading it runs code from the file (its "
                "__setstate__ and methods); pass --trust-pickle if you trust the file")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated
                return torch.jit.load(str(path), map_location="cpu")
        except Exception as e:  # noqa: BLE001  (any failure to parse the archive)
            raise InputFileError(f"{path}: a broken TorchScript archive ({_first_line(e)})") from None
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        unsafe = _global_name(e)
        if unsafe is None:
            raise InputFileError(f"{path}: a corrupt PyTorch checkpoint ({_weights_only_reason(e)})") \
                from None
        if not trust_pickle:
            raise UnsafePickleError(
                f"{path}: the file holds pickled Python objects ({unsafe}), and loading it would "
                "run code from it; pass --trust-pickle if you trust the file") from None
    except Exception as e:  # noqa: BLE001  (corrupt data fails in many ways inside the unpickler)
        raise InputFileError(f"{path}: a corrupt PyTorch checkpoint ({_first_line(e)})") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (ImportError, AttributeError) as e:
        raise InputFileError(f"{path}: cannot unpickle the model: {_first_line(e)} (the classes it "
                             "was saved with must be importable)") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _global_name(e: BaseException) -> str | None:
    """The class a weights-only load refused (``GLOBAL a.b.C``), or None for other failures."""
    m = re.search(r"GLOBAL ([\w.]+)", str(e))
    return m.group(1) if m else None


def _weights_only_reason(e: BaseException) -> str:
    m = re.search(r"WeightsUnpickler error: \s*(.+)", str(e))
    return m.group(1).strip() if m else _first_line(e)


# ----------------------------------------------------------------------------- state dicts
def _is_state_dict(obj) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _strip_prefix(sd: dict) -> dict:
    for prefix in _PREFIXES:
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def pick_weights(obj: dict, path: Path, key: str | None) -> tuple[dict, str]:
    """(state_dict, key it came from) of a checkpoint dict or a bare state_dict."""
    if key is not None:
        if not _is_state_dict(obj.get(key)):
            raise CheckpointError(f"{path}: no state_dict under {key!r} (keys: "
                                  f"{', '.join(map(str, list(obj)[:8]))})")
        return _strip_prefix(obj[key]), key
    for k in WEIGHT_KEYS:
        if _is_state_dict(obj.get(k)):
            return _strip_prefix(obj[k]), k
    if _is_state_dict(obj):
        return _strip_prefix(obj), "<bare state_dict>"
    raise InputFileError(f"{path}: a dict without a state_dict (keys: "
                         f"{', '.join(map(str, list(obj)[:8]))}); expected one of "
                         f"{', '.join(WEIGHT_KEYS)} or a dict of tensors")


def check_values(sd: dict, path: Path) -> None:
    """Raise ``CheckpointError`` naming the first tensor with a NaN/Inf entry or a negative
    batch-norm variance (they would fail deep inside the quantizer instead)."""
    for key, t in sd.items():
        if not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.numel() == 0:
            continue
        finite = torch.isfinite(t)
        if not bool(finite.all()):
            bad = int((~finite).sum())
            first = t.reshape(-1)[int((~finite).reshape(-1).nonzero()[0])].item()
            raise CheckpointError(f"{path}: weight {key!r} has {bad} non-finite value(s) "
                                  f"(first: {first}); the model cannot be compiled")
        if key.endswith("running_var") and bool((t < 0).any()):
            raise CheckpointError(f"{path}: batch-norm variance {key!r} has negative values "
                                  f"(min {t.min().item():.4g}); a variance must be >= 0")


def check_keys(model: nn.Module, sd: dict, arch: str, path: Path) -> None:
    """Raise ``CheckpointError`` naming the first missing/unexpected keys and shape mismatches."""
    want = model.state_dict()
    missing = [k for k in want if k not in sd and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in want]
    shapes = [f"{k} {list(sd[k].shape)} vs {list(want[k].shape)}"
              for k in want if k in sd and sd[k].shape != want[k].shape]
    if not (missing or unexpected or shapes):
        return
    parts = []
    for what, items in (("missing", missing), ("unexpected", unexpected),
                        ("shape mismatch (file vs arch)", shapes)):
        if items:
            more = f", ... ({len(items)} in all)" if len(items) > 3 else ""
            parts.append(f"{what}: {', '.join(items[:3])}{more}")
    raise CheckpointError(f"{path}: weights do not fit arch {arch!r}: {'; '.join(parts)} "
                          "(check --arch and --set)")


# ----------------------------------------------------------------------------- models
def build_registry_model(arch: str, config: dict, options, sd: dict, path: Path):
    """The registry model ``arch`` with ``config`` + options, weights loaded; and its config."""
    from spikec import models

    if arch not in models.names():
        hint = "" if options.arch else " (recorded in the file; pass --arch NAME)"
        raise CheckpointError(f"{path}: unknown architecture {arch!r}{hint}; known: "
                              f"{', '.join(models.names())}")
    cfg = dict(config)
    cfg.update({k: v for k, v in options.overrides.items() if k != "weights"})
    if options.input_shape is not None:
        c, h, w = _chw(options.input_shape)
        if h != w:
            raise ShapeError(f"input shape {options.input_shape}: registry models take square "
                             "images")
        cfg.update(in_channels=c, img_size=h)
    if options.timesteps is not None:
        cfg["T"] = options.timesteps
    full = {**models.config(arch), **cfg}
    require_memory(_model_bytes(full), f"{path}: building {arch!r} from its config "
                   f"(embed_dim {full.get('embed_dim')}, depth {full.get('depth')})",
                   avoid="check the file's config and --set")
    size = full.get("img_size")
    _require_trace_memory(path, (full.get("in_channels"), size, size), full.get("T"),
                          full.get("embed_dim"))
    try:
        model = models.create(arch, **cfg)
    except (ValueError, TypeError) as e:
        raise ShapeError(f"arch {arch!r} with config {cfg}: {_first_line(e)}") from None
    check_keys(model, sd, arch, path)
    model.load_state_dict(sd, strict=False)
    return model, dict(model.spikec_config)


def _count(v) -> float:
    """A config number as a float for an estimate (0 when it is not a number: the model's own
    checks then name it)."""
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else 0.0


def _model_bytes(cfg: dict) -> float:
    """A lower-bound estimate of a registry Spikformer's float32 parameters: per block, the
    attention (4 D x D) and the MLP (2 mlp_ratio D x D); the stem's 3x3 convolutions ~ 20 D x D;
    a position embedding of D x (img_size / 4)^2."""
    d, depth = _count(cfg.get("embed_dim")), _count(cfg.get("depth", 1))
    ratio, size = _count(cfg.get("mlp_ratio", 4.0)), _count(cfg.get("img_size"))
    return 4.0 * d * (d * (depth * (4 + 2 * ratio) + 20) + (size / 4) ** 2)


def _trace_bytes(shape, timesteps, width) -> float:
    """An estimate of tracing's peak memory: float32 activations [T, B, max(C, width), H, W],
    about four alive at once, with the example batch B <= 3."""
    c, h, w = (_count(d) for d in shape)
    return 4.0 * 4 * 3 * max(_count(timesteps), 1.0) * max(c, _count(width)) * h * w


def _require_trace_memory(path: Path, shape, timesteps, width) -> None:
    require_memory(_trace_bytes(shape, timesteps, width),
                   f"{path}: tracing input {'x'.join(map(str, shape))} over T = {timesteps}",
                   avoid="use a smaller -T or --input-shape")


def _chw(shape) -> tuple[int, int, int]:
    if shape is None or len(shape) != 3 or any(int(d) <= 0 for d in shape):
        raise ShapeError(f"input shape {shape}: expected three positive sizes C,H,W")
    return tuple(int(d) for d in shape)


def _module_input_shape(model: nn.Module, options) -> tuple[int, int, int]:
    if options.input_shape is not None:
        return _chw(options.input_shape)
    cfg = getattr(model, "spikec_config", None)
    if isinstance(cfg, dict) and "img_size" in cfg:
        return (cfg["in_channels"], cfg["img_size"], cfg["img_size"])
    raise ShapeError(f"cannot tell the input shape of a pickled {type(model).__name__}; "
                     "pass --input-shape C,H,W")


def _set_timesteps(model: nn.Module, T: int | None) -> None:
    if T is None:
        return
    if not isinstance(getattr(model, "T", None), int):
        raise ShapeError(f"-T {T}: {type(model).__name__} has no integer attribute T to set; "
                         "its time steps are fixed by its code")
    model.T = T


def input_op(shape: tuple[int, int, int], preprocess: dict) -> O.Input:
    """The graph input for a network consuming ``shape`` (C, H, W) after ``preprocess``."""
    from spikec.data import Preprocess

    if preprocess is not None and not isinstance(preprocess, dict):
        raise DataError(f"preprocess: expected a mapping of pixel_scale, mean, std, pad; got "
                        f"{type(preprocess).__name__}")
    pre = Preprocess.from_dict({**DEFAULT_PREPROCESS, **(preprocess or {})}).to_dict()
    pad = pre["pad"]
    c, h, w = shape
    if h - 2 * pad <= 0 or w - 2 * pad <= 0:
        raise ShapeError(f"input shape {shape} is too small for pad {pad}")
    op = O.Input("input", (), shape=(c, h - 2 * pad, w - 2 * pad), encoding="repeat", kind="real",
                 pixel_scale=float(pre["pixel_scale"]),
                 mean=tuple(float(m) for m in pre.get("mean") or ()),
                 std=tuple(float(s) for s in pre.get("std") or ()), pad=pad)
    try:
        op.infer([])
    except ShapeError as e:
        raise ShapeError(f"preprocess {pre}: {e}") from None
    return op


def _plain(v):
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    return v


# ----------------------------------------------------------------------------- load
def load(path, options) -> Graph:
    """Load ``path`` (see the module docstring) and trace it into a verified float graph."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such file")
    obj = read(path, options.trust_pickle)
    weights_key = options.overrides.get("weights")
    meta = {"frontend": "torch", "source": str(path)}

    if isinstance(obj, torch.jit.ScriptModule):
        meta["format"] = "torchscript"
        if options.arch is None:
            return _trace_torchscript(obj, path, options, meta)
        obj = {"state_dict": dict(obj.state_dict())}
        weights_key = "state_dict"
    if isinstance(obj, dict) and isinstance(obj.get("model"), nn.Module):
        obj = obj["model"]
    if isinstance(obj, nn.Module):
        meta.setdefault("format", "pickle")
        if isinstance(obj, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            obj = obj.module
        return _trace_module(obj, path, options, meta, preprocess=options.preprocess)
    if not isinstance(obj, dict):
        raise InputFileError(f"{path}: holds a {type(obj).__name__}, not a checkpoint, "
                             "state_dict or model")

    sd, key = pick_weights(obj, path, weights_key)
    check_values(sd, path)
    meta.setdefault("format", "state_dict" if key == "<bare state_dict>" else "checkpoint")
    arch = options.arch or obj.get("arch")
    if not isinstance(arch, str):
        from spikec import models
        raise CheckpointError(f"{path}: the file does not record its architecture; pass --arch "
                              f"NAME (known: {', '.join(models.names())})")
    config = obj.get("config") if options.arch in (None, obj.get("arch")) else None
    model, cfg = build_registry_model(arch, config if isinstance(config, dict) else {}, options,
                                      sd, path)
    preprocess = obj.get("preprocess") if obj.get("preprocess") is not None \
        else options.preprocess
    meta.update(arch=arch, config=_plain(cfg), weights=key)
    shape = (cfg["in_channels"], cfg["img_size"], cfg["img_size"])
    inp = _input_op(shape, preprocess, path)
    meta["preprocess"] = _preprocess_meta(inp)
    return trace(model, inp, timesteps=cfg["T"], meta=meta)


def _input_op(shape, preprocess, path: Path) -> O.Input:
    try:
        return input_op(shape, preprocess)
    except DataError as e:
        raise DataError(f"{path}: {e}") from None


def _preprocess_meta(inp: O.Input) -> dict:
    return {"pixel_scale": inp.pixel_scale, "mean": list(inp.mean), "std": list(inp.std),
            "pad": inp.pad}


def _trace_torchscript(module, path: Path, options, meta: dict) -> Graph:
    """Try the tracer on a TorchScript module (only with --trust-pickle and --input-shape: it
    runs code from the file). Its compiled forward calls its submodules outside Python, so the
    tracer sees no op; the error then says what works instead."""
    msg = (f"{path}: a TorchScript archive ({module.original_name}): its forward is compiled code "
           "that runs outside Python, so spikec cannot trace its ops; pass --arch NAME to load its "
           "weights into a registry architecture, or give a state_dict / pickled nn.Module")
    if not (options.trust_pickle and options.input_shape):
        raise UnsupportedOpError(msg)
    try:
        return _trace_module(module, path, options, meta, preprocess=options.preprocess)
    except UnsupportedOpError:
        raise UnsupportedOpError(msg) from None


def _trace_module(model: nn.Module, path: Path, options, meta: dict, preprocess) -> Graph:
    model = model.float().cpu()
    where = path if path is not None else f"<{type(model).__name__}>"  # a model in memory
    check_values(model.state_dict(), where)
    _set_timesteps(model, options.timesteps)
    shape = _module_input_shape(model, options)
    inp = _input_op(shape, preprocess, where)
    cfg = getattr(model, "spikec_config", None)
    width = cfg.get("embed_dim", 64) if isinstance(cfg, dict) else 64
    _require_trace_memory(where, shape, getattr(model, "T", options.timesteps or 1), width)
    meta.update(arch=getattr(model, "spikec_arch", None) or type(model).__name__,
                preprocess=_preprocess_meta(inp))
    cfg = getattr(model, "spikec_config", None)
    if isinstance(cfg, dict):
        meta["config"] = _plain(cfg)
        if options.timesteps is not None:
            meta["config"]["T"] = options.timesteps
    return trace(model, inp, timesteps=options.timesteps, meta=meta)


def trace_module(model: nn.Module, options) -> Graph:
    """Trace an in-memory ``model`` (``spikec.frontends.load_module``)."""
    if not isinstance(model, nn.Module):
        raise InputFileError(f"a {type(model).__name__} is not a model: give a torch nn.Module "
                             "or the path of a model file")
    meta = {"frontend": "torch", "source": f"<{type(model).__name__} in memory>",
            "format": "module"}
    return _trace_module(model, None, options, meta, preprocess=options.preprocess)


__all__ = ["load", "trace_module", "read", "pick_weights", "check_keys", "check_values", "input_op",
           "WEIGHT_KEYS"]
