"""IR dialects of picograd: one file per dialect (``pg`` is the tensor level)."""

from xdsl.context import Context


def make_context() -> Context:
    """An xDSL context with builtin, func and the picograd dialects loaded (what ``pgc-opt`` parses with)."""
    from xdsl.dialects.arith import Arith
    from xdsl.dialects.builtin import Builtin
    from xdsl.dialects.func import Func

    from picograd.dialects.gpu_ext import GPU_EXT
    from picograd.dialects.kernel import KERNEL
    from picograd.dialects.pg import PG
    from picograd.dialects.ptx import PTX

    ctx = Context()
    for dialect in (Builtin, Func, Arith, PG, KERNEL, PTX, GPU_EXT):
        ctx.load_dialect(dialect)
    return ctx
