"""The backend registry: how the core reaches a backend without importing one.

The core (compile driver, validation, CLI) asks this module for a backend by name and calls the
capabilities the backend declares; it never imports ``spikec.backends.*`` itself (a test imports
every core module and checks). Each backend fills one ``Backend`` in its ``api`` module, and
``BACKENDS`` maps the name to that object as ``"module:attr"``; the module is imported on first
use only, so ``import spikec.compiler`` stays free of Lava, NIR and ONNX code.

Why a table here rather than ``[project.entry-points]``: entry points live in the installed
metadata, so a checkout whose editable install predates a new backend (or a test running from the
source tree) would not see it until reinstalled, and lookups would depend on what else is installed
in the environment. The table is read from the source, is the same in every environment, and is one
line per backend; ``register`` adds one at run time (a plugin, a test).

Capabilities (``None`` where a backend has none):

``bundle_files(fixed_graph, *, ssa, profile) -> (files, facts)``
    "write a bundle for this target": the files (path relative to OUT -> bytes) that
    ``spikec compile`` adds to OUT, and JSON-able facts stored in report.json under the backend's
    name. ``profile``: the compile's target profile (the chips the bundle is placed on).
``validate(out, *, against, data, limit, trace_file, batch) -> dict``
    "run/validate a bundle": run OUT's bundle (or read a trace it wrote) and compare it with the
    bit-exact simulator (result keys: docs/lava-backend.md).
``rewrite_bundle(out, *, ssa, conv) -> dict``
    write OUT's bundle again from ``OUT/compiled.spkc`` with other lowering choices.
``export(model, target_dir, *, load_options, ssa, quantized, calib, profile, residual) -> dict``
    an interchange format: write the model into an ``spikec.outputs.OutputDir``; returns facts.
``summary(facts) -> list[str]``
    lines ``spikec compile`` prints after ``export``.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from spikec.errors import UnsupportedOpError

__all__ = ["Backend", "BACKENDS", "get", "register", "bundle_backend", "export_formats"]


@dataclass(frozen=True)
class Backend:
    """What one backend offers the core (see the module docstring for each capability)."""

    name: str
    bundle_files: Callable | None = None
    validate: Callable | None = None
    rewrite_bundle: Callable | None = None
    export: Callable | None = None
    summary: Callable | None = None


#: name -> "module:attribute" of its ``Backend``.
BACKENDS: dict[str, str] = {
    "lava": "spikec.backends.lava.api:BACKEND",
    "nir": "spikec.backends.nir.api:BACKEND",
    "onnx": "spikec.backends.onnx.api:BACKEND",
}

#: Backends with ``export``: the interchange formats ``spikec compile --target`` accepts.
EXPORT_FORMATS: tuple[str, ...] = ("nir", "onnx")

_loaded: dict[str, Backend] = {}


def register(name: str, location: str) -> None:
    """Add (or replace) the backend ``name`` found at ``"module:attribute"``."""
    BACKENDS[name] = location
    _loaded.pop(name, None)


def get(name: str) -> Backend:
    """The backend ``name``, imported on first use. Raises ``UnsupportedOpError`` for an unknown
    name."""
    if name not in _loaded:
        if name not in BACKENDS:
            raise UnsupportedOpError(f"no backend {name!r}; spikec has {', '.join(sorted(BACKENDS))}")
        module, _, attr = BACKENDS[name].partition(":")
        backend = getattr(importlib.import_module(module), attr)
        if not isinstance(backend, Backend) or backend.name != name:
            raise TypeError(f"{BACKENDS[name]} is not the Backend {name!r}")
        _loaded[name] = backend
    return _loaded[name]


def export_formats() -> tuple[str, ...]:
    """Names of the interchange formats ``spikec compile --target`` writes, without importing a
    backend."""
    return EXPORT_FORMATS


def bundle_backend(profile) -> Backend | None:
    """The backend that writes a runnable bundle for a chip ``profile``: Lava for profiles whose
    arithmetic is Lava's (loihi2), none otherwise (the estimator's loihi)."""
    return get("lava") if profile.formats.is_lava else None
