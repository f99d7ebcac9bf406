"""The shipped hardware profiles, one TOML file per chip or system (see spikec/target/profile.py).

This folder installs as the package ``spikec.hardware_profiles`` (pyproject.toml's package-dir),
so spikec reads the files through ``importlib.resources``, from a checkout or an installed wheel.
"""
