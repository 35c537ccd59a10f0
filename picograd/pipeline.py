"""The compiler's stages, in order, and the passes that lead to each (design.md section 1).

``pg`` is what the frontend records; ``grad`` expands ``pg.grad`` (``pg-autodiff``); ``step`` expands the optimizer
ops. ``pgc --emit=STAGE`` prints the module after the passes of every stage up to STAGE.
"""

from __future__ import annotations

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp

from picograd.dialects import make_context
from picograd.passes import all_passes

STAGES: dict[str, tuple[str, ...]] = {
    "pg": (),
    "grad": ("pg-autodiff",),
    "step": ("pg-sgd", "pg-adam", "pg-adamw"),
}


def passes_until(stage: str) -> list[str]:
    """Names of the passes that take a ``pg`` module to ``stage``."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage '{stage}'; stages are {', '.join(STAGES)}")
    names: list[str] = []
    for name, passes in STAGES.items():
        names.extend(passes)
        if name == stage:
            break
    return names


def run_passes(module: ModuleOp, names: list[str], ctx: Context | None = None, verify: bool = True) -> None:
    """Apply the named passes in order, verifying the module after each when ``verify`` (raises xDSL's
    ``VerifyException``/``DiagnosticException`` on failure)."""
    ctx = ctx or make_context()
    registry = all_passes()
    for name in names:
        registry[name]()().apply(ctx, module)
        if verify:
            module.verify()


def lower_to(module: ModuleOp, stage: str, verify: bool = True) -> ModuleOp:
    """Run the passes up to ``stage`` on ``module`` in place and return it."""
    run_passes(module, passes_until(stage), verify=verify)
    return module
