"""The kernel-kind registry (``picograd/passes/kinds``): every kernel kind has a row, the rows agree with the
schedule table, and the passes find a kind's nest by its ``pg.nest`` mark, not by its shape."""

from __future__ import annotations

import pytest
from test_loops import build, t
from xdsl.dialects.builtin import StringAttr

from picograd.dialects import kernel, pg
from picograd.driver.pipeline import lower_to
from picograd.passes.kinds import GPU_STRATEGIES, HEAVY, KERNEL_KINDS, KIND_OF_OP, kind_of_nest
from picograd.passes.schedule import KIND_SCHEDULES, STRATEGIES


def test_every_kernel_kind_has_a_row() -> None:
    assert set(KERNEL_KINDS) == set(kernel.KINDS)
    assert set(KIND_SCHEDULES) <= set(KERNEL_KINDS)


def test_rows_name_known_strategies_and_own_their_ops_once() -> None:
    for name, kind in KERNEL_KINDS.items():
        assert set(kind.strategies) <= set(STRATEGIES), name
        assert set(kind.gpu) <= set(kind.strategies), name
        assert kind.unscheduled is None or kind.unscheduled in kind.gpu, name
        assert "thread_per_point" in kind.strategies, name
        for op in kind.ops:
            assert KIND_OF_OP[op] is kind, (name, op)
    assert len(HEAVY) == len(set(HEAVY))
    assert GPU_STRATEGIES == {"thread_per_point", "block_per_row", "warp_per_row", "atomic", "shared_rows"}
    with pytest.raises(KeyError):
        kind_of_nest("convolution")


@pytest.mark.parametrize(
    ("body", "marks"),
    [
        (lambda e, x, w: [e(pg.TanhOp(x))], []),
        (lambda e, x, w: [e(pg.MatmulOp(x, w))], ["matmul"]),
        (lambda e, x, w: [e(pg.SumOp(e(pg.ExpOp(x)), [1]))], ["reduction"]),
        (lambda e, x, w: [e(pg.ArgmaxOp(x, 1))], []),
    ],
    ids=["elementwise", "matmul", "sum", "argmax"],
)
def test_each_kind_marks_the_nest_its_schedule_applies_to(body, marks: list[str]) -> None:
    module = lower_to(build([t(6, 40), t(40, 5)], body), "loops")
    nests = [op for op in module.walk() if op.name == "scf.parallel"]
    found = [n.attributes["pg.nest"] for n in nests if "pg.nest" in n.attributes]
    assert found == [StringAttr(m) for m in marks]


def test_builder_float_op_is_the_op_xdsl_builds() -> None:
    """``Builder.float_op`` (the matmul kind's register-tile arithmetic, built without IRDL's generic builder) makes
    the op ``arith.AddfOp(a, b)`` makes: same operands, result type and default fast-math flags; it verifies."""
    from xdsl.dialects import arith
    from xdsl.dialects.builtin import UnknownLoc, f32, f64
    from xdsl.ir import Block

    from picograd.passes.ir_builder import Builder, ConstantPool

    for float_type in (f32, f64):
        block = Block(arg_types=[float_type, float_type])
        b = Builder(block, UnknownLoc(), ConstantPool(block))
        x, y = block.args
        for cls in (arith.AddfOp, arith.MulfOp, arith.SubfOp):
            made = b.float_op(cls, x, y).owner
            assert isinstance(made, cls) and made.is_structurally_equivalent(cls(x, y))
            made.verify()
