"""Package discovery for setuptools (everything else is in pyproject.toml).

setuptools' ``find_packages`` runs in each source folder, so a new package is never forgotten:
``spikec/`` as ``spikec``, and the top-level folders ``frontends/``, ``backends/`` and
``hardware_profiles/`` as ``spikec.frontends``, ``spikec.backends`` and ``spikec.hardware_profiles``
(``package_dir``; tests/test_wheel.py checks the built wheel). Package data: pyproject.toml.
"""
from setuptools import find_packages, setup

#: package -> top-level folder of the checkout
MAPPED = {"spikec.frontends": "frontends", "spikec.backends": "backends",
          "spikec.hardware_profiles": "hardware_profiles"}


def packages() -> list[str]:
    found = find_packages(include=["spikec", "spikec.*"])
    for name, folder in MAPPED.items():
        found += [name] + [f"{name}.{sub}" for sub in find_packages(folder)]
    return found


setup(packages=packages(), package_dir=MAPPED)
