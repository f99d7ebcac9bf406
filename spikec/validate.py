"""``spikec validate``: prove that a compiled bundle (or a chip) computes what spikec predicted.

The core side of validation: which backend's bundle is checked against what. The work (running
the bundle with the backend's own installed runner, reading traces, comparing with the bit-exact
simulator element for element) is the backend's ``validate`` capability (``spikec.backend``); for
Lava see ``spikec.backends.lava.validate`` and docs/lava-backend.md.
"""
from __future__ import annotations

import os

from spikec.errors import DataError

#: ``--against`` -> the backend whose bundle in OUT is checked.
AGAINST = {"lava": "lava",     # run OUT/lava's data files on Lava's CPU models (fixed_pt)
           "trace": "lava"}    # read a trace that the bundle's runner wrote (chip or CPU)


def validate_bundle(out: str | os.PathLike, against: str, *, data: str | None = None,
                    limit: int | None = None, trace_file: str | os.PathLike | None = None,
                    batch: int = 100, workers: int = 1, cluster: str | None = None) -> dict:
    """Validate OUT's bundle ``against`` a run (``lava``) or a trace file (``trace``).

    Returns the comparison (``samples``, ``spikes_compared``, ``mismatches``,
    ``first_divergence``, per-layer counts, timings: docs/lava-backend.md). Raises
    ``InputFileError`` for a bundle or trace that is not what spikec wrote.
    """
    from spikec import backend

    if against not in AGAINST:
        raise DataError(f"--against must be one of {', '.join(AGAINST)}, not {against!r}")
    if limit is not None and limit < 1:
        raise DataError(f"--limit must be >= 1, got {limit}")
    if workers < 1:
        raise DataError(f"--workers must be >= 1, got {workers}")
    return backend.get(AGAINST[against]).validate(out, against=against, data=data, limit=limit,
                                                   trace_file=trace_file, batch=batch,
                                                   workers=workers, cluster=cluster)
