"""The compiler's stages, in order, and the passes that lead to each (design.md section 1).

``pg`` is what the frontend records; ``grad`` rewrites hand-written attention into the attention op
(``pg-fuse-attention``) and expands ``pg.grad`` (``pg-autodiff``); ``step`` expands the optimizer
ops; ``simplify`` canonicalizes (``pg-canonicalize``) and removes common subexpressions and dead code (xDSL's
``cse`` and ``dce``); ``kernels`` groups the ``pg`` ops into ``kernel.fused`` ops (``pg-fuse``, after
``pg-wgmma-layout`` has given the tf32 matmuls that Hopper's wgmma will run a K-major B) and gives each its
GPU schedule, a ``#kernel.schedule`` attribute (``pg-schedule``); ``loops`` turns
tensors into buffers with a memory plan (``pg-bufferize``: the function takes its inputs and output buffers and
returns nothing), moves each group of identical kernels into one private function that every copy calls
(``pg-outline-kernels``: a model's layers are lowered once) and each kernel into loop nests over them
(``pg-to-loops``); ``gpu`` outlines each loop nest into a ``gpu.func`` kernel launched on a grid of thread blocks
(``pg-to-gpu``), after ``pg-split-k`` has cut the K loop of the matmuls scheduled ``split_k`` into partial
matmuls and a sum, ``pg-matmul-schedule`` has tiled the matmul nests into ``gpu.launch`` kernels and
``pg-split-reductions`` has cut the reductions scheduled ``split_rows``/``split_columns`` into their two nests, all as
the schedules say, and puts the launches of the shared kernels back into their callers (``pg-inline-kernels``);
``ptx`` lowers the kernels to the ``ptx`` dialect (``pg-to-ptx``), which ``picograd.target.ptx_printer`` prints as
PTX text. ``pgc --emit=STAGE`` prints the module after the passes of every stage up to STAGE.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Callable, Iterator

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass
from xdsl.utils.arg_spec import parse_pipeline

from picograd.dialects import make_context
from picograd.passes import all_passes

STAGES: dict[str, tuple[str, ...]] = {
    "pg": (),
    "grad": ("pg-fuse-attention", "pg-autodiff"),
    "step": ("pg-sgd", "pg-adam", "pg-adamw"),
    "simplify": ("pg-canonicalize", "cse", "dce"),
    "kernels": ("pg-decompose-attention", "pg-decompose-conv", "pg-wgmma-layout", "pg-fuse", "pg-schedule"),
    "loops": ("pg-bufferize", "pg-outline-kernels", "pg-to-loops"),
    "gpu": (
        "pg-split-k",
        "pg-matmul-schedule",
        "pg-attention-schedule",
        "pg-split-reductions",
        "pg-to-gpu",
        "pg-inline-kernels",
    ),
    "ptx": ("pg-to-ptx",),
}


FUSE_OPTIONS = "{recompute=true movement=true}"
"""``pg-fuse``'s options on the way to the GPU (the CPU backend's too: ``cpu_compile.CPU_FUSE``): a cheap elementwise
value that several kernels use is recomputed in each instead of written out in f32 and read back (the GELU's
``x``, ``0.5 * x`` and ``1 + erf(x / sqrt(2))`` of the bf16 GPT: three f32 tensors of the MLP's width each layer,
written by the forward and read by the backward), and a slice, permute or reshape read by one elementwise, reduction
or gather kernel is read through at an index by it instead of copied (the attention heads' slice, reshape and
permute of the fused qkv projection: one copy instead of two or three)."""


POINTWISE_UNROLL = 4
"""``pg-schedule``'s ``unroll`` in the GPU pipeline: points a thread of the big elementwise and movement kernels
(``picograd/passes/kinds/elementwise.py``), so that a thread has that many points' loads in flight. 4: the GPT's
bf16 step's kernels 10.20 -> 9.34 ms on an H100; ``bench/unroll_sweep.py`` on an H100 (2026-12-06), the whole step:
10.42 ms at 1, 9.49 at 2, 9.10 at 4, 9.12 at 8 (``bench/results/unroll_sweep_h100_20261206.txt``)."""


def passes_until(
    stage: str, matmul_schedule: str = "auto", arch: str = "sm_90", attention_schedule: str = "auto"
) -> list[str]:
    """The passes (with their options, as ``make_pass`` takes them) that take a ``pg`` module to ``stage``:
    ``matmul_schedule`` is ``pg-schedule``'s ``matmul`` (``auto`` or a rung; also ``pg-matmul-schedule``'s
    ``schedule``, which only loop-stage IR without schedules uses), ``arch`` ``pg-to-ptx``'s target (and
    ``pg-schedule``'s: on ``sm_90a`` ``auto`` may take the Hopper-only kernels) and
    ``attention_schedule`` ``pg-schedule``'s ``attention`` (``auto`` or ``flash-wgmma``). ``pg-fuse`` runs with
    ``FUSE_OPTIONS``.

    Raises ``ValueError`` for an unknown stage or schedule."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage '{stage}'; stages are {', '.join(STAGES)}")
    from picograd.passes.kinds.attention_wgmma import check_schedule as check_attention
    from picograd.passes.kinds.matmul_rungs import check_schedule

    check_schedule(matmul_schedule)
    attention = "" if attention_schedule == "auto" else f" attention={check_attention(attention_schedule)}"
    options = {
        "pg-fuse": FUSE_OPTIONS,
        # random-points=4: one Philox call for 4 elements of a random kernel; unroll: POINTWISE_UNROLL points a
        # thread of the big elementwise and movement kernels. The CPU pipeline runs STAGES as is.
        "pg-schedule": f"{{matmul={matmul_schedule}{attention}{'' if arch == 'sm_90' else f' arch={arch}'}"
        f" random-points=4 unroll={POINTWISE_UNROLL}}}",
        "pg-wgmma-layout": f"{{matmul={matmul_schedule} arch={arch}}}",
        "pg-matmul-schedule": f"{{schedule={matmul_schedule}}}",
        "pg-to-ptx": f"{{arch={arch}}}",
    }
    names: list[str] = []
    for name, passes in STAGES.items():
        names.extend(p + options[p] if p in options else p for p in passes)
        if name == stage:
            break
    return names


def pass_registry() -> dict[str, Callable[[], type[ModulePass]]]:
    """Every pass by its command-line name: xDSL's own (``cse``, ``dce``, ...) and picograd's, which win a clash."""
    from xdsl.transforms import get_all_passes

    return {**get_all_passes(), **all_passes()}


def make_pass(spec: str, registry: dict[str, Callable[[], type[ModulePass]]] | None = None) -> ModulePass:
    """The pass a pipeline entry names: ``"cse"`` or, with options, ``"pg-canonicalize{no-signed-zeros=true}"``.

    Raises ``ValueError`` for an unknown pass name."""
    registry = registry if registry is not None else pass_registry()
    parsed = list(parse_pipeline(spec))
    if len(parsed) != 1:
        raise ValueError(f"expected one pass, got '{spec}'")
    (arg_spec,) = parsed
    if arg_spec.name not in registry:
        raise ValueError(f"unknown pass '{arg_spec.name}'")
    return registry[arg_spec.name]().from_pass_spec(arg_spec)


VERIFY_EACH_ENV = "PICOGRAD_VERIFY_EACH"
_VERIFY_EACH: list[bool | None] = [None]  # set_verify_each's setting; None: follow the environment variable


def set_verify_each(flag: bool | None) -> None:
    """Verify the module after every pass (``True``: slow, for tests and debugging, as ``mlir-opt
    --verify-each``) or only once at the end of a pipeline (``False``); ``None`` follows the environment variable
    ``PICOGRAD_VERIFY_EACH`` (``1`` turns it on), the default. The test suite turns it on (tests/conftest.py)."""
    _VERIFY_EACH[0] = flag


def verify_each() -> bool:
    """Whether ``run_passes`` verifies after every pass (see ``set_verify_each``)."""
    flag = _VERIFY_EACH[0]
    if flag is None:
        return os.environ.get(VERIFY_EACH_ENV, "") not in ("", "0")
    return flag


def run_passes(
    module: ModuleOp, names: list[str], ctx: Context | None = None, verify: bool = True, each: bool | None = None
) -> None:
    """Apply the named passes in order (names as ``make_pass`` takes them). With ``verify`` the module is
    verified after the last pass, and after every pass when ``each`` (default ``verify_each()``): verification
    costs more than most passes, so a pass's fault surfaces at the end unless asked for at once. Raises xDSL's
    ``VerifyException``/``DiagnosticException`` on failure."""
    ctx = ctx or make_context()
    registry = pass_registry()
    each = verify_each() if each is None else each
    with no_cyclic_gc():
        for i, name in enumerate(names):
            make_pass(name, registry).apply(ctx, module)
            if verify and (each or i == len(names) - 1):
                module.verify()


@contextlib.contextmanager
def no_cyclic_gc() -> Iterator[None]:
    """Pause Python's cyclic garbage collector (``gc.disable``) inside the block, restoring its state after.

    Passes build and erase ops by the hundred thousand, and xDSL's ops, values and uses point at each other, so
    the collector runs often and each full collection walks the whole module: at 2 layers of the GPT train step it
    took about 40% of the lowering to PTX (``bench/compile_time.py``). The cycles the passes drop are collected
    once the collector runs again."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def lower_to(module: ModuleOp, stage: str, verify: bool = True, matmul_schedule: str = "auto") -> ModuleOp:
    """Run the passes up to ``stage`` on ``module`` in place and return it (``matmul_schedule`` as in
    ``passes_until``)."""
    run_passes(module, passes_until(stage, matmul_schedule), verify=verify)
    return module
