"""``pg-outline-kernels`` and ``pg-inline-kernels``: a kernel that several launches share is lowered once, and each
launch passes its own buffers (views of the arena at their offsets); the results match the numpy executor on the
loop-stage interpreter and on the PTX emulator."""

from __future__ import annotations

from typing import Any

import numpy as np
from _ir import only_func
from _ptx_emulator import run_program
from test_loops import random_input
from xdsl.dialects import func, gpu
from xdsl.dialects.builtin import ModuleOp, TensorType, i64

from picograd.dialects import kernel
from picograd.driver.gpu_compile import compile_for_cuda
from picograd.driver.pipeline import lower_to, passes_until, run_passes
from picograd.passes.outline_kernels import OUTLINED_ATTR, kernel_key
from picograd.runtime.loop_interpreter import run_function
from picograd.runtime.numpy_executor import compile_func


def deep_mlp_module(depth: int = 3, width: int = 6) -> ModuleOp:
    """An MLP of ``depth`` identical hidden layers (batch 4) with cross-entropy and AdamW: its train step at the
    'step' stage. The hidden layers' forward, backward and update kernels are identical across layers."""
    import picograd.nn.functional as F

    import picograd as pg

    pg.manual_seed(0)
    layers = [pg.nn.Linear(width, width) for _ in range(depth)]
    params = [p for layer in layers for p in layer.parameters()]
    opt = pg.optim.AdamW(params, lr=0.01)

    @pg.compile
    def step(x: Any, y: Any) -> Any:
        h = x
        for layer in layers:
            h = layer(h).tanh()
        loss = F.cross_entropy(h, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    return step.ir("step", [pg.tensor(np.zeros((4, width), np.float32)), pg.tensor(np.zeros(4, np.int64))])


def mlp_inputs(rng: np.random.Generator, module: ModuleOp) -> list[np.ndarray]:
    inputs = []
    for ty in only_func(module).function_type.inputs.data:
        assert isinstance(ty, TensorType)
        shape = tuple(ty.get_shape())
        if ty.element_type == i64:  # targets, the step count
            inputs.append(rng.integers(0, 4, shape).astype(np.int64))
        elif not shape:  # hyperparameters
            inputs.append(np.array(rng.uniform(0.05, 0.5)))
        else:  # parameters, optimizer state (positive, for AdamW's second moment)
            inputs.append(np.abs(random_input(rng, ty)) * 0.5)
    return inputs


def test_identical_layers_share_kernels_at_the_loop_stage(rng: np.random.Generator) -> None:
    module = deep_mlp_module()
    fn = only_func(module)
    inputs = mlp_inputs(rng, module)
    want = compile_func(fn)(*inputs)
    lower_to(module, "loops")
    outlined = [f for f in module.ops if isinstance(f, func.FuncOp) and OUTLINED_ATTR in f.attributes]
    calls = [c for c in fn.body.block.ops if isinstance(c, func.CallOp)]
    assert outlined and len(calls) >= 2 * len(outlined)
    got = run_function(module, fn.sym_name.data, inputs)
    for w, g in zip(want, got, strict=True):
        assert np.isfinite(w).all()
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_identical_layers_share_kernels_in_the_ptx(rng: np.random.Generator) -> None:
    module = deep_mlp_module()
    inputs = mlp_inputs(rng, module)
    want = compile_func(only_func(module))(*inputs)
    program = compile_for_cuda(module)
    assert len(set(program.kernels)) < len(program.kernels)  # some kernels launched more than once
    assert all(not isinstance(f, func.FuncOp) or OUTLINED_ATTR not in f.attributes for f in program.module.ops)
    got = run_program(program, inputs)
    for w, g in zip(want, got, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    from picograd.target import ptxas

    if ptxas.find_ptxas() is not None:
        assert set(program.assemble().kernels) == set(program.kernels)


def test_gpu_stage_has_one_kernel_per_structure() -> None:
    """Deeper nets add launches, not kernels: 3 and 5 identical layers give the same gpu.func count."""
    counts = []
    for depth in (3, 5):
        module = deep_mlp_module(depth)
        launches = sum(isinstance(op, kernel.FusedOp) for op in lower_to(module, "kernels").walk())
        run_passes(module, passes_until("gpu")[len(passes_until("kernels")) :])
        funcs = [op for op in module.walk() if isinstance(op, gpu.FuncOp)]
        assert len([op for op in module.walk() if isinstance(op, gpu.LaunchFuncOp)]) >= launches > len(funcs)
        counts.append(len(funcs))
    assert counts[0] == counts[1]


def test_kernel_key_tells_bodies_and_buffers_apart() -> None:
    from xdsl.dialects.memref import MemRef
    from xdsl.parser import Parser

    from picograd.dialects import make_context

    ctx = make_context()
    ctx.load_dialect(MemRef)
    module = Parser(
        ctx,
        """
    func.func @f(%a: memref<4xf32>, %b: memref<4xf32>, %c: memref<4xf32>, %arena: memref<64xi8>) {
      %o0 = arith.constant 0 : index
      %o8 = arith.constant 8 : index
      %v0 = memref.view %arena[%o0][] : memref<64xi8> to memref<4xf32>
      %v8 = memref.view %arena[%o8][] : memref<64xi8> to memref<4xf32>
      kernel.launch @k0 "elementwise" ins(%a : memref<4xf32>) outs(%v0 : memref<4xf32>) {
      ^bb0(%x: tensor<4xf32>):
        %y = pg.exp %x : tensor<4xf32>
        kernel.yield %y : tensor<4xf32>
      }
      kernel.launch @k1 "elementwise" ins(%b : memref<4xf32>) outs(%c : memref<4xf32>) {
      ^bb0(%x: tensor<4xf32>):
        %y = pg.exp %x : tensor<4xf32>
        kernel.yield %y : tensor<4xf32>
      }
      kernel.launch @k2 "elementwise" ins(%b : memref<4xf32>) outs(%c : memref<4xf32>) {
      ^bb0(%x: tensor<4xf32>):
        %y = pg.tanh %x : tensor<4xf32>
        kernel.yield %y : tensor<4xf32>
      }
      kernel.launch @k3 "elementwise" ins(%a : memref<4xf32>) outs(%v8 : memref<4xf32>) {
      ^bb0(%x: tensor<4xf32>):
        %y = pg.exp %x : tensor<4xf32>
        kernel.yield %y : tensor<4xf32>
      }
      kernel.launch @k4 "elementwise" ins(%c : memref<4xf32>) outs(%c : memref<4xf32>) {
      ^bb0(%x: tensor<4xf32>):
        %y = pg.exp %x : tensor<4xf32>
        kernel.yield %y : tensor<4xf32>
      }
      func.return
    }
    """,
    ).parse_module()
    keys = [kernel_key(op) for op in module.walk() if isinstance(op, kernel.LaunchOp)]
    assert keys[0] == keys[1]  # another buffer, same body: shared
    assert keys[2] != keys[1]  # another body
    assert keys[3] != keys[0]  # a view 8 bytes into the arena: not 16-byte aligned
    assert keys[4] != keys[1]  # in place: one buffer for both operands
