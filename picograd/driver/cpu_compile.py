"""From a traced step to the JIT CPU runtime (``picograd.runtime.cpu_jit``).

``compile_for_cpu(module)`` takes a module holding one ``func.func`` at the ``simplify`` stage (what the frontend
hands to a backend), runs the ``kernels`` stage (``pg-fuse`` with ``recompute``) and ``pg-bufferize``, keeps a copy
of that function (its ``kernel.launch`` ops are what the runtime runs with numpy: the matmuls, through BLAS, and
any kernel without an LLVM form), runs ``pg-to-loops`` and builds the ``CpuFunction`` from both. When the pipeline
or the runtime cannot take the function (16-bit floats are not bufferized yet, say), it returns the numpy
executor's ``NumpyFunction`` of the ``simplify``-stage function instead, and says so on stderr when
``PICOGRAD_CPU_JIT_DEBUG=1``.
"""

from __future__ import annotations

import os
import sys

from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp
from xdsl.utils.exceptions import DiagnosticException, PassFailedException, VerifyException

from picograd.driver.pipeline import STAGES, run_passes
from picograd.runtime.cpu_jit import DEBUG_ENV, CpuFunction
from picograd.runtime.numpy_executor import NumpyFunction, compile_func

__all__ = ["compile_for_cpu"]

CPU_FUSE = "pg-fuse{recompute=true movement=true views=true keep-erf=true contiguous-reductions=true windows=true}"
"""Kernel formation for the CPU: cheap elementwise values used by several kernels are recomputed in each (a CPU
step is bound by memory traffic more than by arithmetic; the GELU's intermediates were 4 of its tensors),
movement ops read by one kernel are read through by it (a convolution's permutes and pad: no copies of their own),
reductions read no operand through a transposing permute (``PgFuse``'s ``contiguous-reductions``), and a
convolution's im2col gather is read by its matmul's kernel through the index (``windows``: ``cpu_jit`` runs it as an
implicit GEMM)."""


def compile_for_cpu(module: ModuleOp) -> CpuFunction | NumpyFunction:
    """The executable of the ``simplify``-stage function in ``module`` (left unchanged): a ``CpuFunction``, or the
    numpy executor's ``NumpyFunction`` where the JIT path cannot take it. Both are called with one array per input
    and return one array per result."""
    fn = module.body.block.first_op
    assert isinstance(fn, func.FuncOp)
    try:
        lowered = module.clone()
        kernels = [CPU_FUSE if p == "pg-fuse" else p for p in STAGES["kernels"]]
        run_passes(lowered, [*kernels, "pg-bufferize"], verify=False)
        buffered = lowered.clone()
        run_passes(lowered, ["pg-to-loops"], verify=False)
        return CpuFunction(lowered, _function(buffered), _function(lowered))
    except (NotImplementedError, PassFailedException, DiagnosticException, VerifyException) as e:
        if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
            print(f"picograd cpu_jit: @{fn.sym_name.data} runs with numpy: {e}", file=sys.stderr)
        return compile_func(fn)


def _function(module: ModuleOp) -> func.FuncOp:
    (fn,) = (op for op in module.body.block.ops if isinstance(op, func.FuncOp))
    return fn
