"""The NIR backend as the core sees it (``spikec.backend.BACKENDS['nir']``)."""
from __future__ import annotations

from spikec.backend import Backend

from .driver import export_files, summary

BACKEND = Backend(name="nir", export=export_files, summary=summary)
