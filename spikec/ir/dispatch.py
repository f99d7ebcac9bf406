"""Per-stage op tables: the one answer to "what does stage S do with op type X".

Every stage that treats ops differently by type (the float interpreter, the quantizer, the
bit-exact simulator, the Lava lowering, the estimator's mapper, the NIR and ONNX exporters) keeps
one ``OpTable``, filled by a decorator next to each handler::

    LOWER = OpTable("Lava lowering")

    @LOWER.register(F.CubaLIF)
    def cuba_lif(self, op): ...

    LOWER.refuse(O.Conv2d, "a float op: quantize the graph first (spikec compile)")

and looked up with ``LOWER.lookup(op)``. A type is either handled or explicitly refused (with the
reason a user sees); ``tests/test_dispatch.py`` checks every registered op type against every
table, so a new op that a stage forgot fails a test naming the stage and the op.

Handlers are stored as given: plain functions for module-level kernels, unbound functions for
handlers defined in a class body (call them as ``table.lookup(op)(self, op)``).
"""
from __future__ import annotations

from typing import Callable, Iterable, Iterator

from spikec.errors import UnsupportedOpError

__all__ = ["OpTable", "all_tables"]

_TABLES: list["OpTable"] = []


class OpTable:
    """Handlers of one stage, keyed by op class.

    Parameters
    ----------
    stage : str
        What the stage is, as a user reads it in an error ("the bit-exact simulator").
    parent : OpTable, optional
        A table this one extends: its handlers and refusals apply unless this table registers or
        refuses the same type (a subclassed builder, e.g. the quantized NIR export).
    """

    def __init__(self, stage: str, *, parent: "OpTable | None" = None):
        self.stage = stage
        self.parent = parent
        self._handlers: dict[type, Callable] = {}
        self._refused: dict[type, str] = {}
        _TABLES.append(self)

    def __repr__(self) -> str:
        return f"OpTable({self.stage!r}, {len(self._handlers)} handled, {len(self._refused)} refused)"

    # -- filling -------------------------------------------------------------------------------
    def register(self, *op_types: type) -> Callable[[Callable], Callable]:
        """Decorator: ``fn`` handles ``op_types`` in this stage (each type at most once)."""
        if not op_types:
            raise TypeError("register() needs at least one op type")

        def wrap(fn: Callable) -> Callable:
            for t in op_types:
                self._claim(t)
                self._handlers[t] = fn
            return fn
        return wrap

    def refuse(self, op_types: type | Iterable[type], reason: str) -> None:
        """Say that this stage does not take ``op_types``, and why (the user sees ``reason``)."""
        for t in (op_types,) if isinstance(op_types, type) else tuple(op_types):
            self._claim(t)
            self._refused[t] = reason

    def _claim(self, t: type) -> None:
        if t in self._handlers or t in self._refused:
            raise RuntimeError(f"{self.stage}: op type {t.__name__} registered twice")

    # -- reading -------------------------------------------------------------------------------
    def get(self, op_type: type) -> Callable | None:
        """The handler of ``op_type`` (this table, then its parent), or None."""
        table = self
        while table is not None:
            if op_type in table._handlers:
                return table._handlers[op_type]
            if op_type in table._refused:
                return None
            table = table.parent
        return None

    def reason(self, op_type: type) -> str | None:
        """Why ``op_type`` is refused, or None when it is handled or unknown to the table."""
        table = self
        while table is not None:
            if op_type in table._handlers:
                return None
            if op_type in table._refused:
                return table._refused[op_type]
            table = table.parent
        return None

    def lookup(self, op) -> Callable:
        """The handler of ``type(op)``.

        Raises
        ------
        UnsupportedOpError
            Naming the op, its opcode and the stage: with the refusal's reason, or saying that
            the stage has no handler for the type.
        """
        fn = self.get(type(op))
        if fn is not None:
            return fn
        why = self.reason(type(op))
        head = f"op {op.name!r} ({op.OPCODE})"
        if why is not None:
            raise UnsupportedOpError(f"{head}: not supported by {self.stage}: {why}")
        raise UnsupportedOpError(f"{head}: {self.stage} has no handler for "
                                 f"{type(op).__name__} (spikec.ir.dispatch)")

    def __getitem__(self, op_type: type) -> Callable:
        fn = self.get(op_type)
        if fn is None:
            raise KeyError(op_type)
        return fn

    def __contains__(self, op_type: type) -> bool:
        return self.get(op_type) is not None

    def covers(self, op_type: type) -> bool:
        """``op_type`` is handled or explicitly refused."""
        return self.get(op_type) is not None or self.reason(op_type) is not None

    def handled(self) -> Iterator[type]:
        """The op classes with a handler (parent's included), in registration order."""
        seen = set()
        table = self
        while table is not None:
            for t in table._handlers:
                if t not in seen and self.get(t) is not None:
                    seen.add(t)
                    yield t
            table = table.parent

    def refused(self) -> dict[type, str]:
        """The refused op classes and their reasons (parent's included)."""
        out: dict[type, str] = {}
        table = self
        while table is not None:
            for t, why in table._refused.items():
                if t not in out and self.get(t) is None:
                    out[t] = why
            table = table.parent
        return out


def all_tables() -> list[OpTable]:
    """Every ``OpTable`` created so far (import the stages first), in creation order."""
    return list(_TABLES)
