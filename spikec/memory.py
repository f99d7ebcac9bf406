"""Refuse a large allocation before making it.

Every command that may allocate in proportion to user input (tracing with a long T, simulating a
large batch, loading a dataset, building a model from a file's config, writing a Lava bundle) first
estimates the bytes it is about to need and calls :func:`require_memory`. Past the budget it raises
:class:`MemoryBudgetError` (one line: what, how many bytes, what is available, what avoids it)
instead of letting numpy raise ``MemoryError`` or the kernel kill the process.

The budget is the memory the machine can still give (``MemAvailable``, bounded by a cgroup limit
where one applies) unless ``SPIKEC_MEMORY_LIMIT`` sets it (bytes, or with a K/M/G/T suffix), which
is how tests exercise the guards without allocating.
"""
from __future__ import annotations

import os
from pathlib import Path

from spikec.errors import SpikecError

ENV_LIMIT = "SPIKEC_MEMORY_LIMIT"
_SUFFIX = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


class MemoryBudgetError(SpikecError):
    """An operation would need more memory than this machine (or ``SPIKEC_MEMORY_LIMIT``) allows."""

    exit_code = 3


def parse_bytes(text: str) -> int:
    """``"4G"`` -> 4 * 2**30; a plain integer is bytes. Raises ``ValueError`` on anything else."""
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = t[-1:] if t[-1:] in _SUFFIX and t[-1:] != "" else ""
    number = t[:-1] if unit else t
    value = float(number)
    if not value >= 0 or value == float("inf"):
        raise ValueError(text)
    return int(value * _SUFFIX[unit])


def format_bytes(n: float) -> str:
    """Bytes as a short human figure: ``3.1 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_headroom() -> int | None:
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit == "max":
            return None
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        return max(int(limit) - used, 0)
    except (OSError, ValueError):
        return None


def _sysconf_available() -> int | None:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def memory_budget() -> int | None:
    """Bytes an operation may still allocate, or ``None`` where the machine does not say."""
    env = os.environ.get(ENV_LIMIT)
    if env:
        try:
            return parse_bytes(env)
        except ValueError:
            raise MemoryBudgetError(f"{ENV_LIMIT}={env!r} is not a byte count "
                                    "(use e.g. 4000000000 or 4G)") from None
    candidates = [b for b in (_meminfo_available() or _sysconf_available(), _cgroup_headroom())
                  if b is not None]
    return min(candidates) if candidates else None


def require_memory(nbytes: float, what: str, *, avoid: str = "") -> None:
    """Raise :class:`MemoryBudgetError` if allocating ``nbytes`` for ``what`` would exceed the budget.

    Parameters
    ----------
    nbytes : estimated bytes about to be allocated (a float is fine: estimates may overflow int64)
    what : what needs them, with where (``"simulating layer 'block.0.mlp.fc1' (batch 64)"``)
    avoid : the option or change that avoids it (``"use --batch-size 8"``), appended to the message
    """
    budget = memory_budget()
    if budget is None or nbytes <= budget:
        return
    hint = f"; {avoid}" if avoid else ""
    raise MemoryBudgetError(f"{what} needs {format_bytes(nbytes)}, more than the "
                            f"{format_bytes(budget)} this machine has available{hint}")


def require_simulation_memory(graph, batch: int, *, where: str = "") -> None:
    """Refuse to simulate ``graph`` on ``batch`` samples when its values would not fit.

    The simulator runs layer by layer: a value holds all ``graph.timesteps`` steps of the batch,
    [T, B, *shape] as int64, and about three are alive at once (an op's inputs and output), so
    the estimate is ``3 x 8 x T x B x`` the widest value. ``graph`` needs ``timesteps`` and
    ``specs`` (value name -> spec with a ``shape``), as ``spikec.ir.Graph`` has.
    """
    widest = max((_elements(s.shape) for s in graph.specs.values()), default=0)
    steps = graph.timesteps
    require_memory(simulation_bytes(graph, batch),
                   f"{where or 'the graph'}: simulating T = {steps} steps of a batch of {batch} "
                   f"(widest value {widest:,} neurons)",
                   avoid="use a smaller --batch-size, or compile with a smaller -T")


def simulation_bytes(graph, batch: int) -> float:
    """The bytes one simulated batch needs (``require_simulation_memory``'s estimate)."""
    widest = max((_elements(s.shape) for s in graph.specs.values()), default=0)
    return 3.0 * 8 * graph.timesteps * batch * widest


def _elements(shape) -> float:
    n = 1.0
    for d in shape:
        n *= float(d)
    return n
