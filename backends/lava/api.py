"""The Lava backend as the core sees it (``spikec.backend.BACKENDS['lava']``)."""
from __future__ import annotations

from spikec.backend import Backend

from .bundle import BUNDLE_DIR, bundle_files
from .validate import rewrite_bundle, validate


def _bundle_files(fixed_graph, *, ssa: str = "host", profile=None):
    """The bundle's files with paths relative to OUT (``lava/...``), and its facts; a
    ``profile`` of several chips adds ``placement.json``."""
    files, facts = bundle_files(fixed_graph, ssa=ssa, profile=profile)
    return {f"{BUNDLE_DIR}/{name}": data for name, data in files.items()}, facts


BACKEND = Backend(name="lava", bundle_files=_bundle_files, validate=validate,
                  rewrite_bundle=rewrite_bundle)
