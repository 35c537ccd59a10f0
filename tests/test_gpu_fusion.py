"""Kernel formation on the way to the GPU (``pipeline.FUSE_OPTIONS``: recompute and movement fusion) on a tiny
bf16 GPT train step (examples/gpt_shakespeare.py's model with dropout, AdamW and clipping): the PTX emulator gives
what the numpy executor gives, and the kernel graph has no f32 intermediate of the MLP's width and no copy kernels
but the attention heads' layout."""

from __future__ import annotations

import os
import sys
from dataclasses import replace

import numpy as np
import pytest
from _ir import only_func
from _ptx_emulator import run_program
from xdsl.dialects.builtin import ModuleOp, TensorType, f32, i64

from picograd.dialects import kernel
from picograd.driver.gpu_compile import compile_for_cuda
from picograd.driver.pipeline import lower_to
from picograd.runtime.numpy_executor import compile_func

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "examples")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng()


def tiny_gpt_step(dtype: str = "bfloat16", dropout: float = 0.2) -> ModuleOp:
    """The example's ``train_step`` on a 1-layer GPT (1 head, 8 wide, block 4, batch 3, 16 characters) at the
    'simplify' stage."""
    sys.path.insert(0, EXAMPLES)
    import gpt_shakespeare as ex

    import picograd as pg

    cfg = replace(ex.CONFIGS["cpu"], n_layer=1, n_head=1, n_embd=8, block_size=4, batch_size=3, dropout=dropout,
                  vocab_size=16, dtype=dtype)  # fmt: skip
    saved = ex.model, ex.opt, ex.sched
    try:
        ex.model, ex.opt, ex.sched = ex.make(cfg, 1)
        step = pg.compile(ex.train_step.fn, example_inputs=(pg.Spec((3, 4), "int64"),) * 2)
        return step.ir("simplify")
    finally:
        ex.model, ex.opt, ex.sched = saved


def step_inputs(rng: np.random.Generator, module: ModuleOp) -> list[np.ndarray]:
    inputs = []
    for i, ty in enumerate(only_func(module).function_type.inputs.data):
        assert isinstance(ty, TensorType)
        shape = tuple(ty.get_shape())
        if ty.element_type == i64:
            inputs.append(rng.integers(0, 8 if i < 2 else 1000, shape).astype(np.int64))
        elif not shape:  # hyperparameters (learning rate), the step count
            inputs.append(np.array(rng.uniform(0.01, 0.1), np.float32 if ty.element_type == f32 else np.float64))
        else:  # parameters, optimizer state (positive: AdamW's second moment)
            inputs.append((np.abs(rng.standard_normal(shape)) * 0.3 + 0.01).astype(np.float32))
    return inputs


def test_tiny_gpt_bf16_step_on_the_ptx_emulator(rng: np.random.Generator) -> None:
    module = tiny_gpt_step()
    inputs = step_inputs(rng, module)
    want = compile_func(only_func(module))(*inputs)
    got = run_program(compile_for_cuda(module), inputs)
    for w, g in zip(want, got, strict=True):
        assert np.isfinite(w).all()
        np.testing.assert_allclose(g, w, rtol=2e-2, atol=2e-3)


def test_tiny_gpt_bf16_kernels_keep_16_bit_intermediates() -> None:
    """At the 'kernels' stage: no kernel writes an f32 tensor of the MLP's hidden width (the GELU's intermediates
    are recomputed by its backward kernel, which reads the bf16 pre-activation instead), the GELU forward is one
    kernel from bf16 to bf16, no slice is a kernel of its own (the heads' slice, reshape and permute are one copy),
    and every kernel that only reshapes becomes a view (pg-bufferize: no launch)."""
    from xdsl.dialects.builtin import bf16

    from picograd.dialects import pg as pgd
    from picograd.passes.bufferize import reshape_alias_source

    module = lower_to(tiny_gpt_step(), "kernels")
    kernels = [op for op in module.walk() if isinstance(op, kernel.FusedOp)]
    hidden = {(3, 4, 32), (12, 32)}  # (B, T, 4C) and (B * T, 4C)
    for k in kernels:
        for r in k.outputs:
            assert not (r.type.element_type == f32 and tuple(r.type.get_shape()) in hidden), k.sym_name.data
        if all(isinstance(op, pgd.ReshapeOp | kernel.YieldOp) for op in k.body.block.ops):
            assert reshape_alias_source(k) is not None, k.sym_name.data
    gelu = [k for k in kernels if any(isinstance(op, pgd.ErfOp) for op in k.body.walk())]
    assert len(gelu) == 2  # forward and backward
    for k in gelu:
        assert {v.type.element_type for v in (*k.inputs, *k.outputs) if tuple(v.type.get_shape()) in hidden} == {bf16}
    assert not [k for k in kernels if [type(op) for op in k.body.block.ops] == [pgd.SliceOp, kernel.YieldOp]]
