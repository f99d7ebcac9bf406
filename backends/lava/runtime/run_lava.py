#!/usr/bin/env python3
"""Run a spikec Lava bundle and write a trace (the file ``spikec validate --against trace`` reads).

Needs Python 3.10 with lava-nc 0.10 and numpy < 2 (and, for ``--hw``, Intel's lava-loihi extension
on a Loihi 2 system). Imports numpy, scipy and lava only.

Usage::

    python run_lava.py --inputs samples.npz --trace trace.npz            # Lava's CPU models
    python run_lava.py --inputs samples.npz --trace trace.npz --hw       # a Loihi 2 chip

``samples.npz`` holds one int array per network input, named like the input (``images`` is
accepted for a network with one input): ``[n, C, H, W]`` raw pixels (or ``[n, T, ...]`` for
per-step inputs). The trace format is described in the bundle's README.md.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

if __name__ == "__main__":
    sys.path.insert(0, HERE)        # the bundle's copy of the runtime: spikec_lava/
    from spikec_lava.runner import main

    main(default_bundle=HERE)
