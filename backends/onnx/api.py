"""The ONNX backend as the core sees it (``spikec.backend.BACKENDS['onnx']``)."""
from __future__ import annotations

from spikec.backend import Backend

from .driver import export_files, summary

BACKEND = Backend(name="onnx", export=export_files, summary=summary)
