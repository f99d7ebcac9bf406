"""The part of the Lava backend that runs in the Lava environment: it imports only numpy, scipy and
lava (never spikec), so ``write_bundle`` copies it into every bundle as ``OUT/lava/spikec_lava/`` and
the bundle runs on a machine where only Lava (and, for a chip, Intel's lava-loihi) is installed.

``procs``: spikec's own Lava processes with ``fixed_pt`` CPU models (only what Lava lacks).
``network``: builds the Lava processes of a bundle's plan and runs them.
"""
