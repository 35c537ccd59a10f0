"""``pgc``: the picograd compiler driver (like MLIR's Toy ``toyc``).

``pgc model.py --emit=STAGE`` imports ``model.py`` as a module (its ``if __name__ == "__main__":`` block does not
run), finds the functions it marks with ``@pg.compile(example_inputs=...)``, traces each from its example inputs
and prints one module holding every traced function at the requested stage (``picograd.driver.pipeline.STAGES``). The
output parses with ``pgc-opt``; ``--emit=ptx`` writes PTX text instead (``picograd.target.ptx_printer``; one PTX
module per compiled function, for ``--arch``), which ``ptxas -arch=sm_90`` assembles. Errors are one message without
a Python traceback, naming the user's ``file:line`` when the fault is in the model file (picograd's errors, and
any exception the model file's own code raises: a ``SyntaxError``, a ``NameError``, ...).

Devices: the traced IR holds no device, so the stages up to ``simplify`` are what both devices run (the CPU
executor runs ``simplify`` with numpy), and ``kernels`` to ``ptx`` are the CUDA backend's lowering, which needs no
GPU. ``--device cuda`` prints every stage exactly as ``@pg.compile`` on cuda tensors compiles it (the same trace,
the same passes as ``picograd.driver.gpu_compile.compile_for_cuda``, the function's own ``matmul_schedule``);
``--device cpu`` refuses the GPU-only stages; without ``--device`` every stage prints.

Textual output keeps the ops' locations (the model's ``file:line``) when it goes to a pipe or a file, so that
``pgc ... | pgc-opt --print-debuginfo`` shows them; on a terminal it leaves them out unless ``--print-debuginfo``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.machinery
import importlib.util
import os
import sys
import traceback
from collections.abc import Iterator, Sequence

from xdsl.dialects.builtin import ModuleOp, StringAttr
from xdsl.printer import Printer
from xdsl.utils.exceptions import DiagnosticException, VerifyException

from picograd.driver.pipeline import (
    STAGES,
    no_cyclic_gc,
    passes_until,
    run_passes,
    set_verify_each,
    verify_each,
)
from picograd.errors import CompileError, DeviceError, DTypeError, ShapeError
from picograd.passes.kinds.matmul_rungs import SCHEDULES
from picograd.runtime.device import Device

PLANNED_STAGES: tuple[str, ...] = ()
# The stages the CPU executor runs (it takes the simplify stage); the later ones are the CUDA backend's lowering.
CPU_STAGES: tuple[str, ...] = tuple(STAGES)[: tuple(STAGES).index("simplify") + 1]


class ModelError(Exception):
    """An exception raised by the code of the model file (while importing it or tracing its functions): its
    message is ``file:line: ExceptionType: message`` at the innermost line of the model file."""


def _model_error(e: BaseException, path: str) -> ModelError | None:
    """The ``ModelError`` for ``e`` when the model file ``path`` raised it (a syntax error in it, or a frame of it
    on the traceback), else None."""
    where = os.path.abspath(path)
    if isinstance(e, SyntaxError) and e.filename and os.path.abspath(e.filename) == where:
        return ModelError(f"{e.filename}:{e.lineno}: {type(e).__name__}: {e.msg}")
    frames = [f for f in traceback.extract_tb(e.__traceback__) if os.path.abspath(f.filename) == where]
    if not frames:
        return None
    return ModelError(f"{frames[-1].filename}:{frames[-1].lineno}: {type(e).__name__}: {e}")


@contextlib.contextmanager
def _model_errors(path: str) -> Iterator[None]:
    """Turn an exception that the model file ``path`` raised (importing or tracing it) into one ``ModelError`` at
    its line; picograd's own errors, which name the user's line already, pass through unchanged."""
    try:
        yield
    except (ShapeError, DTypeError, CompileError, DeviceError):
        raise
    except SystemExit as e:  # sys.exit() at import time (a script's exit outside `if __name__ == "__main__"`)
        error = _model_error(e, path)
        if error is None:
            raise
        raise ModelError(
            f"{error}: the model file exited while pgc imported it (put its script part under "
            '`if __name__ == "__main__":`)'
        ) from None
    except Exception as e:
        error = _model_error(e, path)
        if error is None:
            raise
        raise error from None


def import_model(path: str):
    """The Python file at ``path`` run as a fresh module (named ``pgc_model``, its folder put first on ``sys.path``
    so that it imports its neighbours). Raises FileNotFoundError when there is no such file, and ``ModelError`` at
    the user's line for an exception the file raises."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path}")
    if os.path.isdir(path):
        raise ModelError(f"{path} is a directory; pgc takes a Python model file")
    # any name (a model file need not end in .py); an .mlir file belongs to pgc-opt
    if path.endswith(".mlir"):
        raise ModelError(f"{path} is MLIR; pgc takes a Python model file (run pgc-opt on IR)")
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    loader = importlib.machinery.SourceFileLoader("pgc_model", path)
    spec = importlib.util.spec_from_file_location("pgc_model", path, loader=loader)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses (and pickling) look their module up there
    with _model_errors(path):
        spec.loader.exec_module(module)
    return module


def compiled_functions(module) -> list:
    """The ``@pg.compile(example_inputs=...)`` functions defined in ``module``, in definition order."""
    from picograd.frontend.compile import CompiledFunction

    return [v for v in vars(module).values() if isinstance(v, CompiledFunction) and v.example_inputs is not None]


def build(
    path: str,
    stage: str,
    print_after_all: bool = False,
    out=sys.stdout,
    arch: str = "sm_90",
    matmul_schedule: str | None = None,
) -> ModuleOp:
    """Trace the compiled functions of the model file ``path`` and lower them to ``stage`` (PTX for ``arch``).
    Matmuls are tiled by ``matmul_schedule``, or when None by the functions' own (``@pg.compile(matmul_schedule=)``,
    else ``auto``), as the CUDA backend does."""
    module = import_model(path)
    fns = compiled_functions(module)
    if not fns:
        raise CompileError(f"{path}: no function marked with @pg.compile(example_inputs=...)")
    schedules = {matmul_schedule or fn.matmul_schedule or "auto" for fn in fns}
    if len(schedules) > 1:
        raise CompileError(
            f"{path}: its compiled functions use different matmul schedules ({', '.join(sorted(schedules))}); "
            "pick one with --matmul-schedule"
        )
    with no_cyclic_gc():  # the trace and the passes (see no_cyclic_gc)
        with _model_errors(path):
            funcs = [fn.ir("pg").body.block.first_op for fn in fns]
        for f in funcs:
            f.detach()
        mod = ModuleOp(funcs)
        names = passes_until(stage, schedules.pop(), arch)
        each = verify_each()
        for i, name in enumerate(names):
            run_passes(mod, [name], verify=each or i == len(names) - 1, each=True)
            if print_after_all:
                print(f"// -----// IR Dump After {name.split('{')[0]} //----- //", file=out)
                Printer(stream=out).print_op(mod)
                print(file=out)
    return mod


def write_ptx(module: ModuleOp, output: str | None) -> None:
    """``--emit=ptx``: the PTX text of each ``ptx.module`` (one per compiled function; ``module`` verified, as the
    pipeline leaves it), to ``output`` or stdout.
    With several compiled functions and ``-o out.ptx``, function ``f`` goes to ``out.f.ptx``."""
    from picograd.dialects import ptx
    from picograd.dialects.attrs import GPU_MODULE_ATTR
    from picograd.target.ptx_printer import print_ptx

    texts: list[tuple[str, str]] = []
    with no_cyclic_gc():
        for op in module.ops:
            if isinstance(op, ptx.ModuleOp):
                attr = op.attributes.get(GPU_MODULE_ATTR)
                name = attr.data.removesuffix("_kernels") if isinstance(attr, StringAttr) else f"module{len(texts)}"
                texts.append((name, print_ptx(op, verify=False)))  # build verified the module
    if not texts:
        raise CompileError("--emit=ptx: the compiled functions launch no kernel")
    if output is None:
        for i, (name, text) in enumerate(texts):
            if len(texts) > 1:
                print(f"{'' if i == 0 else chr(10)}// ----- compiled function @{name} -----")
            sys.stdout.write(text)
        return
    for name, text in texts:
        path = output
        if len(texts) > 1:
            stem, ext = os.path.splitext(output)
            path = f"{stem}.{name}{ext or '.ptx'}"
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)


def _device(name: str) -> Device:
    """``--device``'s value as a ``pg.device`` (argparse's error for a bad name)."""
    try:
        return Device(name)
    except DeviceError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _default_arch() -> str:
    """The target ``@pg.compile`` takes on this machine's GPU 0, or ``sm_90`` without a usable GPU."""
    from picograd.runtime import cuda

    return cuda.device_target() if cuda.available() else "sm_90"


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point of ``pgc``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="pgc", description="picograd compiler: print a model's IR at a stage")
    parser.add_argument("model", help="a Python file with @pg.compile(example_inputs=...) functions")
    parser.add_argument("--emit", default="pg", choices=[*STAGES, *PLANNED_STAGES], help="the stage to print")
    parser.add_argument("-o", "--output", help="write here instead of stdout")
    parser.add_argument(
        "--device",
        type=_device,
        help="the device to compile for (cpu, cuda, cuda:N): cuda prints what @pg.compile on cuda tensors runs, at "
        f"any stage (no GPU needed); cpu allows the stages the CPU executor runs ({', '.join(CPU_STAGES)}); "
        "default: any stage",
    )
    parser.add_argument(
        "--arch",
        choices=["sm_90", "sm_90a"],
        help="the PTX target; default: what @pg.compile compiles for on this machine's GPU (sm_90a on a Hopper GPU, "
        "where auto takes the wgmma kernels), sm_90 without one",
    )
    parser.add_argument(
        "--matmul-schedule",
        choices=["auto", *SCHEDULES],
        help="how matmuls are tiled for the GPU (pg-matmul-schedule); default: the function's own "
        "@pg.compile(matmul_schedule=...), else auto (picks by shape)",
    )
    parser.add_argument("--print-ir-after-all", action="store_true", help="print the module after every pass")
    parser.add_argument(
        "--verify-each",
        action="store_true",
        help="verify the module after every pass (slow; as mlir-opt's); by default once, after the last pass "
        "(also on with the environment variable PICOGRAD_VERIFY_EACH=1)",
    )
    parser.add_argument(
        "--print-debuginfo",
        action=argparse.BooleanOptionalAction,
        help="print op locations (the user's file:line); default: on when the output goes to a pipe or a file "
        "(for pgc-opt --print-debuginfo), off on a terminal",
    )
    args = parser.parse_args(argv)
    if args.arch is None:
        args.arch = _default_arch()
    if args.verify_each:
        set_verify_each(True)
    try:
        if args.emit in PLANNED_STAGES:
            raise CompileError(
                f"--emit={args.emit}: this stage is not implemented yet (available: {', '.join(STAGES)})"
            )
        if args.device is not None and args.device.type == "cpu" and args.emit not in CPU_STAGES:
            raise DeviceError(
                f"--device cpu --emit={args.emit}: the CPU executor runs the simplify stage; {args.emit} is the "
                "CUDA lowering: use --device cuda (no GPU needed)"
            )
        with no_cyclic_gc():  # the build and the output (one cyclic collection after both, not one between)
            module = build(
                args.model,
                args.emit,
                args.print_ir_after_all,
                sys.stderr if args.output is None else sys.stdout,
                arch=args.arch,
                matmul_schedule=args.matmul_schedule,
            )
            if args.emit == "ptx":
                write_ptx(module, args.output)
                return 0
            debuginfo = args.print_debuginfo
            if debuginfo is None:
                debuginfo = args.output is not None or not sys.stdout.isatty()
            text_out = open(args.output, "w") if args.output else sys.stdout
            try:
                Printer(stream=text_out, print_debuginfo=debuginfo).print_op(module)
                print(file=text_out)
            finally:
                if args.output:
                    text_out.close()
    except (ShapeError, DTypeError, CompileError, DeviceError, FileNotFoundError, ModelError) as e:
        print(f"pgc: error: {e}", file=sys.stderr)
        return 1
    except (VerifyException, DiagnosticException) as e:
        print(f"pgc: error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader went away (`pgc ... | head`): not an error of pgc's
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the interpreter's final flush does not fail again
        return 0
    except OSError as e:  # -o names a directory or an unwritable file
        print(f"pgc: error: {e}", file=sys.stderr)
        return 1
    return 0


def cli() -> int:
    """The ``pgc`` command: ``main`` on the command line's arguments. The process ends right after, so the objects
    left (the module it built: millions of xDSL objects pointing at each other) are handed to the OS rather than to
    the cyclic collector: it stays off for the whole command (a full collection when ``main`` turned it back on
    took 0.3 CPU s, and one at exit about a tenth of ``pgc --emit=ptx`` for a 12-layer GPT: ``gc.freeze`` keeps
    the module from it; ``bench/compile_time.py``)."""
    gc.disable()
    status = main()
    gc.freeze()
    return status


if __name__ == "__main__":
    sys.exit(cli())
