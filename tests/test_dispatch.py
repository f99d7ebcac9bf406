"""The per-stage op tables (spikec.ir.dispatch): every op type is handled or refused by every
stage, and a forgotten one fails naming the stage and the op."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from spikec.errors import UnsupportedOpError
from spikec.ir import OP_TYPES
from spikec.ir import ops as O
from spikec.ir.dispatch import OpTable, all_tables
from spikec.ir.fixed import FIXED_DOMAIN_OPS, FIXED_ONLY_OPS


def _stage_tables() -> dict[str, OpTable]:
    """Every stage's table, by the module that owns it (imported here so that none is missed)."""
    from spikec import interp
    from spikec.backends.lava import lower as lava_lower
    from spikec.backends.nir import build as nir_build
    from spikec.backends.nir import quantized as nir_quantized
    from spikec.backends.onnx import EMIT as ONNX_EMIT
    from spikec.estimate import network
    from spikec.quantize import lower as quantize_lower
    from spikec.sim import engine

    return {"interp": interp.KERNELS, "quantize": quantize_lower.LOWER, "sim": engine.KERNELS, "sim-bounds": engine.BOUNDS,
            "lava": lava_lower.LOWER, "estimate": network.PLACE, "nir": nir_build.EMIT,
            "nir-quantized": nir_quantized.QEMIT, "onnx": ONNX_EMIT}


TABLES = _stage_tables()
#: The stages that run float graphs, and those that run fixed-point ones.
FLOAT_STAGES = ("interp", "quantize", "nir", "onnx")
FIXED_STAGES = ("sim", "sim-bounds", "lava", "estimate", "nir-quantized")


def test_every_table_is_listed_here():
    assert {id(t) for t in all_tables()} >= {id(t) for t in TABLES.values()}
    assert {t.stage for t in all_tables() if t.stage != "a test stage"} == \
        {t.stage for t in TABLES.values()}


@pytest.mark.parametrize("stage", sorted(TABLES))
@pytest.mark.parametrize("opcode", sorted(OP_TYPES))
def test_every_op_is_handled_or_refused_by_every_stage(stage, opcode):
    table, cls = TABLES[stage], OP_TYPES[opcode]
    assert table.covers(cls), (f"{table.stage} ({stage}) has no handler and no refusal for op "
                               f"{cls.__name__} ({opcode}): register one next to the stage's "
                               "handlers (docs/adding-an-op.md)")


@pytest.mark.parametrize("stage", FLOAT_STAGES)
def test_float_stages_handle_every_float_op(stage):
    """What a float stage refuses is a fixed-point op, or (the quantizer) an op the float passes
    fold away."""
    refused = set(TABLES[stage].refused())
    folded = {O.BatchNorm, O.AvgPool2d, O.Scale, O.Mean} if stage == "quantize" else set()
    assert refused == set(FIXED_ONLY_OPS) | folded


@pytest.mark.parametrize("stage", FIXED_STAGES)
def test_fixed_stages_handle_every_fixed_domain_op(stage):
    assert set(TABLES[stage].handled()) == set(FIXED_DOMAIN_OPS)


def test_lookup_names_the_stage_and_the_op():
    @dataclass(eq=False)
    class Forgotten(O.Op):
        OPCODE = "forgotten"

    table = OpTable("a test stage")
    table.refuse(O.Scale, "scales are folded")
    with pytest.raises(UnsupportedOpError, match=r"op 'f' \(forgotten\): a test stage has no "
                                                 r"handler for Forgotten"):
        table.lookup(Forgotten("f", ()))
    with pytest.raises(UnsupportedOpError, match=r"op 's' \(scale\): not supported by a test "
                                                 r"stage: scales are folded"):
        table.lookup(O.Scale("s", ("x",)))


def test_register_twice_and_parent_tables():
    base = OpTable("a test stage")
    base.register(O.Add)(lambda op: "base add")
    base.register(O.Reshape)(lambda op: "base reshape")
    with pytest.raises(RuntimeError, match="Add registered twice"):
        base.register(O.Add)(lambda op: None)
    child = OpTable("a test stage", parent=base)
    child.register(O.Add)(lambda op: "child add")
    child.refuse(O.Reshape, "no layout here")
    assert child[O.Add](None) == "child add" and base[O.Add](None) == "base add"
    assert O.Reshape not in child and child.reason(O.Reshape) == "no layout here"
    assert list(child.handled()) == [O.Add]
    assert child.refused() == {O.Reshape: "no layout here"}
