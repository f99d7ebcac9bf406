"""spikec: a compiler from trained spiking neural networks to Loihi-class chips.

The Python API (``spikec.api``): ``spikec.compile(model_or_path, target="loihi2", ...)`` returns
a ``Compiled`` with ``.simulate(data)``, ``.estimate(profile)``, ``.validate(against=...)``,
``.report()`` and ``.save(out)``; ``spikec.load(out)`` reads a saved one back. They are imported
on first use, so ``import spikec`` stays light (and torch-free).
"""
__version__ = "0.1.0"

_API = ("compile", "load", "Compiled")


def __getattr__(name):
    if name in _API:
        from spikec import api

        return getattr(api, name)
    raise AttributeError(f"module 'spikec' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_API))
