"""Kernel formation (``pg-fuse``) and the ``kernel`` dialect: the fused function computes exactly what the unfused
one does (bit for bit, on the numpy executor, which runs ``kernel.fused`` by inlining its body), on hand-written
functions and on whole compiled train steps; and the kernels stage has the shape the lowering relies on."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import picograd.nn.functional as F
import pytest
from _ir import only_func, parse
from xdsl.dialects import func
from xdsl.dialects.builtin import FileLineColLoc, ModuleOp, TensorType
from xdsl.utils.exceptions import DiagnosticException

import picograd as pg
from picograd.dialects import kernel
from picograd.dialects import pg as pgd
from picograd.dialects.pg_numpy import numpy_dtype
from picograd.driver.pipeline import run_passes
from picograd.passes import fuse
from picograd.runtime.numpy_executor import compile_func


def random_args(fn: func.FuncOp, rng: np.random.Generator, int_high: int = 3) -> list[np.ndarray]:
    """One random array per argument: floats standard normal, integers in [0, int_high), bools fair coins."""
    out = []
    for a in fn.body.block.args:
        t = a.type
        assert isinstance(t, TensorType)
        shape, dtype = tuple(t.get_shape()), numpy_dtype(t.element_type)
        if dtype.kind == "f":
            out.append(rng.standard_normal(shape).astype(dtype))
        elif dtype.kind == "b":
            out.append(rng.random(shape) < 0.5)
        else:
            out.append(rng.integers(0, int_high, shape).astype(dtype))
    return out


def assert_same(ours: Sequence[np.ndarray], theirs: Sequence[np.ndarray]) -> None:
    """Bit-identical results (NaN where NaN)."""
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


def fused_copy(module: ModuleOp) -> ModuleOp:
    fused = module.clone()
    run_passes(fused, ["pg-fuse"])
    return fused


def check_kernels_stage(module: ModuleOp) -> list[kernel.FusedOp]:
    """The invariants the lowering relies on; returns the kernels."""
    kernels: list[kernel.FusedOp] = []
    for fn in module.body.block.ops:
        assert isinstance(fn, func.FuncOp)
        for op in fn.body.block.ops:
            assert isinstance(op, kernel.FusedOp | func.ReturnOp), f"{op.name} left outside a kernel"
            if isinstance(op, kernel.FusedOp):
                kernels.append(op)
    names = [k.sym_name.data for k in kernels]
    assert len(set(names)) == len(names), "kernel names must be unique"
    for k in kernels:
        body = [op for op in k.body.block.ops if not isinstance(op, kernel.YieldOp)]
        work = [op for op in body if not isinstance(op, pgd.ConstantOp | pgd.IotaOp)]
        kind = k.kind.data
        if kind == "matmul":  # the matmul, the permutes of its operands that feed only it, reshapes (movement)
            assert sum(isinstance(op, pgd.MatmulOp) for op in body) == 1, f"{k.sym_name.data}: one matmul"
            assert all(isinstance(op, pgd.MatmulOp | pgd.PermuteOp | pgd.ReshapeOp) for op in body), k.sym_name.data
        elif kind in ("gather", "scatter_add", "random") or (kind == "movement" and len(work) == 1):
            # with ``movement``, the permutes, pads, slices and reshapes it reads through besides
            main = [op for op in body if not isinstance(op, fuse.MOVEMENT)]
            one = len(body) == 1 if kind == "movement" else len(main) == 1
            assert one, f"{k.sym_name.data}: a {kind} kernel holds its one op"
        if kind == "reduction":
            reductions = [op for op in body if isinstance(op, pgd.ReduceOp | pgd.ArgReduceOp)]
            assert len(reductions) == 1, f"{k.sym_name.data}: one reduction per kernel"
        for v in k.inputs:  # constants are copied into kernels, not passed in
            assert not isinstance(v.owner, pgd.ConstantOp)
        # every output is used outside the kernel
        for r in k.outputs:
            assert r.uses, f"{k.sym_name.data}: an output nobody reads"
    return kernels


# ---------------------------------------------------------------------------------------------------------------
# Hand-written functions

FUNCTIONS = {
    "softmax": """
func.func @f(%x: tensor<4x5xf32>) -> (tensor<4x5xf32>, tensor<4x5xf32>) {
  %m = pg.max %x dims = [1] keepdim : tensor<4x5xf32> -> tensor<4x1xf32>
  %mb = pg.broadcast_to %m : tensor<4x1xf32> -> tensor<4x5xf32>
  %d = pg.sub %x, %mb : tensor<4x5xf32>
  %e = pg.exp %d : tensor<4x5xf32>
  %s = pg.sum %e dims = [1] keepdim : tensor<4x5xf32> -> tensor<4x1xf32>
  %sb = pg.broadcast_to %s : tensor<4x1xf32> -> tensor<4x5xf32>
  %p = pg.div %e, %sb : tensor<4x5xf32>
  func.return %p, %e : tensor<4x5xf32>, tensor<4x5xf32>
}""",
    "linear": """
func.func @f(%x: tensor<8x4xf32>, %w: tensor<3x4xf32>, %b: tensor<3xf32>, %v: tensor<3x3xf32>) -> tensor<8x3xf32> {
  %wt = pg.permute %w perm = [1, 0] : tensor<3x4xf32> -> tensor<4x3xf32>
  %y = pg.matmul %x, %wt : (tensor<8x4xf32>, tensor<4x3xf32>) -> tensor<8x3xf32>
  %bb = pg.broadcast_to %b : tensor<3xf32> -> tensor<8x3xf32>
  %z = pg.add %y, %bb : tensor<8x3xf32>
  %h = pg.tanh %z : tensor<8x3xf32>
  %u = pg.matmul %h, %v : (tensor<8x3xf32>, tensor<3x3xf32>) -> tensor<8x3xf32>
  %r = pg.mul %u, %h : tensor<8x3xf32>
  func.return %r : tensor<8x3xf32>
}""",
    "movement": """
func.func @f(%x: tensor<2x3xf32>, %y: tensor<2x3xf32>, %i: tensor<4xi64>)
    -> (tensor<4x3xf32>, tensor<2x2xf32>, tensor<3x5xf32>, tensor<4x3xf32>, tensor<2xi64>, tensor<2x3xf32>) {
  %c = pg.concat %x, %y dim = 0 : (tensor<2x3xf32>, tensor<2x3xf32>) -> tensor<4x3xf32>
  %e = pg.exp %c : tensor<4x3xf32>
  %s = pg.slice %x start = [0, 1] stop = [2, 3] step = [1, 1] : tensor<2x3xf32> -> tensor<2x2xf32>
  %n = pg.neg %s : tensor<2x2xf32>
  %t = pg.permute %y perm = [1, 0] : tensor<2x3xf32> -> tensor<3x2xf32>
  %p = pg.pad %t low = [0, 1] high = [0, 2] interior = [0, 0] value = 1.5 : tensor<3x2xf32> -> tensor<3x5xf32>
  %g = pg.gather %e[%i] dim = 0 : (tensor<4x3xf32>, tensor<4xi64>) -> tensor<4x3xf32>
  %a = pg.argmax %x dim = 1 : tensor<2x3xf32> -> tensor<2xi64>
  %io = pg.iota dim = 1 : tensor<2x3xi64>
  %iof = pg.cast %io : tensor<2x3xi64> -> tensor<2x3xf32>
  %w = pg.mul %iof, %x : tensor<2x3xf32>
  func.return %c, %n, %p, %g, %a, %w
    : tensor<4x3xf32>, tensor<2x2xf32>, tensor<3x5xf32>, tensor<4x3xf32>, tensor<2xi64>, tensor<2x3xf32>
}""",
    "scalars": """
func.func @f(%lr: tensor<f64>, %w: tensor<3xf32>, %gw: tensor<3xf32>, %v: tensor<2xf32>, %gv: tensor<2xf32>,
             %s: tensor<i64>) -> (tensor<3xf32>, tensor<2xf32>, tensor<i64>, tensor<f32>) {
  %lr32 = pg.cast %lr : tensor<f64> -> tensor<f32>
  %l3 = pg.broadcast_to %lr32 : tensor<f32> -> tensor<3xf32>
  %d3 = pg.mul %l3, %gw : tensor<3xf32>
  %w1 = pg.sub %w, %d3 : tensor<3xf32>
  %l2 = pg.broadcast_to %lr32 : tensor<f32> -> tensor<2xf32>
  %d2 = pg.mul %l2, %gv : tensor<2xf32>
  %v1 = pg.sub %v, %d2 : tensor<2xf32>
  %one = pg.constant dense<1> : tensor<i64>
  %s1 = pg.add %s, %one : tensor<i64>
  func.return %w1, %v1, %s1, %lr32 : tensor<3xf32>, tensor<2xf32>, tensor<i64>, tensor<f32>
}""",
    "random": """
func.func @f(%seed: tensor<i64>, %off: tensor<i64>, %x: tensor<4x4xf32>) -> (tensor<4x4xf32>, tensor<f32>) {
  %r = pg.random "uniform" %seed, %off : tensor<4x4xf32>
  %h = pg.constant dense<0.5> : tensor<4x4xf32>
  %keep = pg.cmp "lt", %r, %h : tensor<4x4xf32> -> tensor<4x4xi1>
  %z = pg.constant dense<0.0> : tensor<4x4xf32>
  %y = pg.select %keep, %x, %z : tensor<4x4xi1>, tensor<4x4xf32>
  %t = pg.sum %y dims = [0, 1] : tensor<4x4xf32> -> tensor<f32>
  func.return %y, %t : tensor<4x4xf32>, tensor<f32>
}""",
    "reshape_chain": """
func.func @f(%x: tensor<6x4xf32>) -> (tensor<2x3x4xf32>, tensor<3xf32>) {
  %e = pg.exp %x : tensor<6x4xf32>
  %r = pg.reshape %e : tensor<6x4xf32> -> tensor<2x3x4xf32>
  %n = pg.neg %r : tensor<2x3x4xf32>
  %s = pg.sum %n dims = [0, 2] : tensor<2x3x4xf32> -> tensor<3xf32>
  func.return %r, %s : tensor<2x3x4xf32>, tensor<3xf32>
}""",
}


@pytest.mark.parametrize("name", FUNCTIONS)
def test_fused_function_computes_the_same(name: str) -> None:
    module = parse(FUNCTIONS[name])
    fused = fused_copy(module)
    check_kernels_stage(fused)
    before, after = compile_func(only_func(module)), compile_func(only_func(fused))
    rng = np.random.default_rng(0)
    for _ in range(3):
        args = random_args(only_func(module), rng)
        assert_same(after(*args), before(*args))


def test_kinds_and_multi_output_kernels() -> None:
    fused = fused_copy(parse(FUNCTIONS["softmax"]))
    kernels = check_kernels_stage(fused)
    assert [(k.sym_name.data, k.kind.data, len(k.outputs)) for k in kernels] == [
        ("k0_max", "reduction", 1),
        ("k1_sum", "reduction", 2),  # exp(x - max) is written out on the way to the sum
        ("k2_div", "elementwise", 1),
    ]
    kinds = {k.kind.data for k in check_kernels_stage(fused_copy(parse(FUNCTIONS["movement"])))}
    assert kinds == {"movement", "elementwise", "gather", "reduction"}


def test_fusion_never_makes_a_cycle() -> None:
    """tanh feeds a matmul and an op that reads the matmul: they cannot share a kernel."""
    kernels = check_kernels_stage(fused_copy(parse(FUNCTIONS["linear"])))
    assert [k.sym_name.data for k in kernels] == ["k0_matmul", "k1_tanh", "k2_matmul", "k3_mul"]


def test_cheap_scalars_are_copied_not_written_out() -> None:
    kernels = check_kernels_stage(fused_copy(parse(FUNCTIONS["scalars"])))
    casts = [op for k in kernels for op in k.body.walk() if isinstance(op, pgd.CastOp)]
    assert len(casts) == 3  # in both update kernels, and in the kernel that writes it out (it is returned)
    assert sum(isinstance(v.owner, kernel.FusedOp) for k in kernels for v in k.inputs) == 0


RECOMPUTE = """
func.func @f(%x: tensor<4x8xf32>, %g: tensor<4x8xf32>, %w: tensor<8x3xf32>) -> (tensor<4x3xf32>, tensor<4xf32>) {
  %s = pg.constant dense<0.5> : tensor<f32>
  %h = pg.broadcast_to %s : tensor<f32> -> tensor<4x8xf32>
  %hx = pg.mul %x, %h : tensor<4x8xf32>
  %e = pg.OP %hx : tensor<4x8xf32>
  %a = pg.mul %e, %x : tensor<4x8xf32>
  %m = pg.matmul %a, %w : (tensor<4x8xf32>, tensor<8x3xf32>) -> tensor<4x3xf32>
  %eg = pg.mul %e, %g : tensor<4x8xf32>
  %b = pg.sum %eg dims = [1] : tensor<4x8xf32> -> tensor<4xf32>
  func.return %m, %b : tensor<4x3xf32>, tensor<4xf32>
}"""


@pytest.mark.parametrize("recompute", [False, True])
@pytest.mark.parametrize("name", ["exp", "erf"])
def test_recompute_copies_cheap_shared_values(recompute: bool, name: str) -> None:
    """OP(0.5 x) feeds two kernels (the matmul's operand and a sum): written out once and read back by default,
    recomputed in both with ``recompute`` (it reads one tensor, x), except an erf under ``keep-erf`` (the CPU's
    choice, ``NOT_RECOMPUTED``: written out either way); bit-identical results in every case."""
    module = parse(RECOMPUTE.replace("OP", name))
    op_type = {"exp": pgd.ExpOp, "erf": pgd.ErfOp}[name]
    copied = recompute and name != "erf"
    fused = module.clone()
    run_passes(fused, [f"pg-fuse{{recompute={str(recompute).lower()} keep-erf=true}}"])
    kernels = check_kernels_stage(fused)
    found = [k.sym_name.data for k in kernels for op in k.body.walk() if isinstance(op, op_type)]
    yielded = [v.owner for k in kernels for v in k.body.block.last_op.operands]  # type: ignore[union-attr]
    assert any(isinstance(op, op_type) for op in yielded) is not copied
    assert len(found) == (2 if copied else 1), found
    before, after = compile_func(only_func(module)), compile_func(only_func(fused))
    args = random_args(only_func(module), np.random.default_rng(0))
    assert_same(after(*args), before(*args))


MOVEMENT = """
func.func @f(%x: tensor<2x3x4x4xf32>, %i: tensor<8xi64>, %y: tensor<64x2x4xf32>)
    -> (tensor<2x8x3xf32>, tensor<4x2x64xf32>) {
  %p = pg.permute %x perm = [0, 2, 3, 1] : tensor<2x3x4x4xf32> -> tensor<2x4x4x3xf32>
  %q = pg.pad %p low = [0, 1, 1, 0] high = [0, 1, 1, 0] interior = [0, 0, 0, 0] value = 0.0
    : tensor<2x4x4x3xf32> -> tensor<2x6x6x3xf32>
  %r = pg.reshape %q : tensor<2x6x6x3xf32> -> tensor<2x36x3xf32>
  %g = pg.gather %r[%i] dim = 1 : (tensor<2x36x3xf32>, tensor<8xi64>) -> tensor<2x8x3xf32>
  %t = pg.permute %y perm = [2, 1, 0] : tensor<64x2x4xf32> -> tensor<4x2x64xf32>
  %e = pg.exp %t : tensor<4x2x64xf32>
  func.return %g, %e : tensor<2x8x3xf32>, tensor<4x2x64xf32>
}"""


@pytest.mark.parametrize("movement", [False, True])
def test_movement_ops_join_the_kernel_reading_them(movement: bool) -> None:
    """With ``movement``, the pad and reshape feeding the gather are read through by the gather's kernel, but not
    the permute moving the channels last (its own kernel: the gather then copies contiguous rows); the permute
    feeding exp stays a kernel of its own all the same, its inner dim reading 64 x 2 x 4 floats apart (past
    ``MAX_PERMUTE_SPAN`` only when scaled: here the span limit is lowered to 1 KiB); same results."""
    module = parse(MOVEMENT)
    fused = module.clone()
    limit = fuse.MAX_PERMUTE_SPAN
    fuse.MAX_PERMUTE_SPAN = 1024
    try:
        run_passes(fused, [f"pg-fuse{{movement={str(movement).lower()}}}"])
    finally:
        fuse.MAX_PERMUTE_SPAN = limit
    kernels = check_kernels_stage(fused)
    kinds = sorted(k.kind.data for k in kernels)
    if movement:
        assert kinds == ["elementwise", "gather", "movement", "movement"], kinds  # the two permutes alone
        (gather,) = (k for k in kernels if k.kind.data == "gather")
        assert sorted(op.name for op in gather.body.ops) == ["kernel.yield", "pg.gather", "pg.pad", "pg.reshape"]
    else:
        assert kinds.count("movement") == 4, kinds  # 2 permutes, the pad, the reshape
    before, after = compile_func(only_func(module)), compile_func(only_func(fused))
    args = random_args(only_func(module), np.random.default_rng(1))
    args[1] = np.random.default_rng(2).integers(0, 36, 8)
    assert_same(after(*args), before(*args))


TRANSPOSED_SUM = """
func.func @f(%m: tensor<32x3xf32>, %x: tensor<2x3x4x4xf32>) -> (tensor<2x3x4x4xf32>, tensor<3xf32>) {
  %r = pg.reshape %m : tensor<32x3xf32> -> tensor<2x16x3xf32>
  %p = pg.permute %r perm = [0, 2, 1] : tensor<2x16x3xf32> -> tensor<2x3x16xf32>
  %q = pg.reshape %p : tensor<2x3x16xf32> -> tensor<2x3x4x4xf32>
  %y = pg.mul %q, %x : tensor<2x3x4x4xf32>
  %s = pg.sum %y dims = [0, 2, 3] : tensor<2x3x4x4xf32> -> tensor<3xf32>
  func.return %y, %s : tensor<2x3x4x4xf32>, tensor<3xf32>
}"""


@pytest.mark.parametrize("contiguous", [False, True])
def test_contiguous_reductions_read_no_transposing_permute(contiguous: bool) -> None:
    """A per-channel sum of a channels-last product (a matmul's (N H W, C)) read back channels first, times a
    channels-first tensor: with ``movement`` the elementwise product reads through the permute and merges into the
    sum's kernel, unless ``contiguous-reductions`` (the CPU's choice) keeps it a kernel of its own writing the
    product, which the sum reads contiguously; same results."""
    module = parse(TRANSPOSED_SUM)
    fused = module.clone()
    run_passes(fused, [f"pg-fuse{{movement=true contiguous-reductions={str(contiguous).lower()}}}"])
    kernels = check_kernels_stage(fused)
    kinds = sorted(k.kind.data for k in kernels)
    (reduction,) = (k for k in kernels if k.kind.data == "reduction")
    permutes = [op for op in reduction.body.ops if isinstance(op, pgd.PermuteOp)]
    if contiguous:
        assert kinds == ["elementwise", "reduction"] and not permutes, kinds
    else:
        assert kinds == ["reduction"] and permutes, kinds
    before, after = compile_func(only_func(module)), compile_func(only_func(fused))
    args = random_args(only_func(module), np.random.default_rng(3))
    assert_same(after(*args), before(*args))


GELU_FLAT = """
func.func @f(%x: tensor<2x3x4xf32>, %w: tensor<4x5xf32>, %g: tensor<6x5xf32>)
    -> (tensor<6x5xf32>, tensor<4x5xf32>, tensor<2x3x4xf32>) {
  %c = pg.constant dense<0.5> : tensor<f32>
  %h = pg.broadcast_to %c : tensor<f32> -> tensor<2x3x4xf32>
  %hx = pg.mul %x, %h : tensor<2x3x4xf32>
  %e = pg.erf %hx : tensor<2x3x4xf32>
  %y = pg.mul %e, %x : tensor<2x3x4xf32>
  %f = pg.reshape %y : tensor<2x3x4xf32> -> tensor<6x4xf32>
  %m = pg.matmul %f, %w : (tensor<6x4xf32>, tensor<4x5xf32>) -> tensor<6x5xf32>
  %t = pg.permute %f perm = [1, 0] : tensor<6x4xf32> -> tensor<4x6xf32>
  %dw = pg.matmul %t, %g : (tensor<4x6xf32>, tensor<6x5xf32>) -> tensor<4x5xf32>
  %de = pg.mul %e, %h : tensor<2x3x4xf32>
  func.return %m, %dw, %de : tensor<6x5xf32>, tensor<4x5xf32>, tensor<2x3x4xf32>
}"""


@pytest.mark.parametrize("views", [False, True])
def test_reshape_read_by_matmuls_joins_them(views: bool) -> None:
    """With ``views``, the reshape flattening an elementwise result for two matmuls (one through a transposing
    permute) is a view inside both matmul kernels; without, it is a reshape-only ``movement`` kernel (an aliasing
    view after bufferization). Either way the elementwise kernel keeps its shape and the erf's kernel merges with
    it (one elementwise kernel writing ``y`` and the erf's use); same results."""
    module = parse(GELU_FLAT)
    fused = module.clone()
    run_passes(fused, [f"pg-fuse{{recompute=true movement=true views={str(views).lower()} keep-erf=true}}"])
    kernels = check_kernels_stage(fused)
    kinds = sorted(k.kind.data for k in kernels)
    matmul_reshapes = [
        op for k in kernels if k.kind.data == "matmul" for op in k.body.walk() if isinstance(op, pgd.ReshapeOp)
    ]
    assert kinds == ["elementwise", "matmul", "matmul"] + ([] if views else ["movement"]), kinds
    assert len(matmul_reshapes) == (2 if views else 0)
    before, after = compile_func(only_func(module)), compile_func(only_func(fused))
    args = random_args(only_func(module), np.random.default_rng(3))
    assert_same(after(*args), before(*args))


def test_refuses_unexpanded_grad() -> None:
    module = parse(
        """
func.func @f(%x: tensor<3xf32>) -> tensor<3xf32> {
  %e = pg.exp %x : tensor<3xf32>
  %l = pg.sum %e dims = [0] : tensor<3xf32> -> tensor<f32>
  %g = pg.grad %l wrt %x : tensor<f32> wrt tensor<3xf32>
  func.return %g : tensor<3xf32>
}"""
    )
    with pytest.raises(DiagnosticException, match="pg-fuse: pg.grad is not expanded: run pg-autodiff first"):
        run_passes(module, ["pg-fuse"])


def test_fuse_is_idempotent() -> None:
    once = fused_copy(parse(FUNCTIONS["movement"]))
    twice = fused_copy(once)
    assert str(twice) == str(once)


# ---------------------------------------------------------------------------------------------------------------
# Whole compiled train steps


def step_buffers(step: Any, args: Sequence[pg.Tensor]) -> list[np.ndarray]:
    """The buffers a call of the compiled ``step`` binds to its function's arguments: the inputs, then the implicit
    ones (parameters, optimizer state, hyperparameters) in the order the trace numbers them. (The trace is rolled
    back, as ``CompiledFunction.ir`` does, so nothing changes.)"""
    trace = step._trace(args)
    trace.ctx.rollback()
    return [np.asarray(a.numpy()) for a in args] + [leaf.data for leaf in trace.graph.leaves[trace.num_inputs :]]


def run_at(step: Any, args: Sequence[pg.Tensor], stage: str) -> tuple[tuple[np.ndarray, ...], ModuleOp]:
    module = step.ir(stage, args)
    return compile_func(only_func(module))(*step_buffers(step, args)), module


class MLP(pg.nn.Module):
    """The model of examples/mlp_names.py at a smaller scale."""

    def __init__(self, vocab: int = 11, embed: int = 4, block: int = 3, hidden: int = 16) -> None:
        super().__init__()
        self.block, self.embed = block, embed
        self.emb = pg.nn.Embedding(vocab, embed)
        self.hidden = pg.nn.Linear(block * embed, hidden)
        self.out = pg.nn.Linear(hidden, vocab)

    def forward(self, x: pg.Tensor) -> pg.Tensor:
        e = self.emb(x).reshape(x.shape[0], self.block * self.embed)
        return self.out(self.hidden(e).tanh())


class Wide(pg.nn.Module):
    """LayerNorm, ReLU, dropout (random), concat, slicing, softmax: many op kinds in one step."""

    def __init__(self) -> None:
        super().__init__()
        self.a = pg.nn.Linear(6, 8)
        self.norm = pg.nn.LayerNorm(8)
        self.b = pg.nn.Linear(12, 5)
        self.drop = pg.nn.Dropout(0.25)

    def forward(self, x: pg.Tensor) -> pg.Tensor:
        h = self.drop(self.norm(self.a(x)).relu())
        h = pg.cat([h, h[:, :4] * F.softmax(h[:, 4:], 1)], 1)
        return self.b(h)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_mlp_train_step_fused_matches_unfused(optimizer: str) -> None:
    pg.manual_seed(1)
    model = MLP()
    if optimizer == "sgd":
        opt: Any = pg.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    else:
        opt = pg.optim.AdamW(model.parameters(), lr=1e-2)

    @pg.compile
    def step(x: pg.Tensor, y: pg.Tensor) -> pg.Tensor:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    rng = np.random.default_rng(2)
    for _ in range(2):
        step(pg.tensor(rng.integers(0, 11, (8, 3))), pg.tensor(rng.integers(0, 11, 8)))  # state is not all zero
    args = [pg.tensor(rng.integers(0, 11, (8, 3))), pg.tensor(rng.integers(0, 11, 8))]
    reference, step_module = run_at(step, args, "step")
    simplified, _ = run_at(step, args, "simplify")
    fused, kernels_module = run_at(step, args, "kernels")
    assert_same(simplified, reference)
    assert_same(fused, reference)
    kernels = check_kernels_stage(kernels_module)
    ops = len(list(only_func(step_module).body.block.ops)) - 1
    assert len(kernels) < ops / 2, f"{len(kernels)} kernels for {ops} ops"
    for k in kernels:  # every kernel points at the user's code
        assert isinstance(k.location, FileLineColLoc), k.sym_name.data


def test_wide_train_step_fused_matches_unfused() -> None:
    pg.manual_seed(3)
    model = Wide()
    opt = pg.optim.Adam(model.parameters(), lr=1e-2)

    @pg.compile
    def step(x: pg.Tensor, y: pg.Tensor) -> pg.Tensor:
        loss = F.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    rng = np.random.default_rng(4)
    args = [
        pg.tensor(rng.standard_normal((7, 6)).astype(np.float32)),
        pg.tensor(rng.standard_normal((7, 5)).astype(np.float32)),
    ]
    reference, _ = run_at(step, args, "step")
    fused, module = run_at(step, args, "kernels")
    assert_same(fused, reference)
    kinds = {k.kind.data for k in check_kernels_stage(module)}
    assert {"matmul", "reduction", "elementwise", "random", "movement"} <= kinds
