"""``pgc-opt``: xDSL's ``xdsl-opt`` driver with picograd's dialects and passes registered.

It parses MLIR text (a file, or stdin when no file is given), runs a pass pipeline and prints the result::

    pgc-opt model.mlir -p pg-autodiff,cse,canonicalize -o out.mlir

Everything ``xdsl-opt`` knows (its dialects, passes and flags such as ``--split-input-file``,
``--verify-diagnostics`` and ``--print-debuginfo``) works unchanged; picograd adds the dialects of
``picograd.dialects.make_context()`` and the passes of ``picograd.passes.all_passes()``. Errors (bad syntax, a
verifier or pass failure, a missing file) print xDSL's diagnostic without a Python traceback and exit with 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from xdsl.dialects.builtin import FileLineColLoc, ModuleOp
from xdsl.ir import Dialect, Operation
from xdsl.passes import ModulePass, PassPipeline
from xdsl.universe import Universe
from xdsl.utils.exceptions import ArgSpecParseError, DiagnosticException, ParseError, VerifyException
from xdsl.xdsl_opt_main import xDSLOptMain


class PgcOptMain(xDSLOptMain):
    """The ``pgc-opt`` driver: ``xDSLOptMain`` plus picograd's dialects and passes."""

    def __init__(self, args: Sequence[str] | None = None):
        super().__init__(
            description="picograd's modular optimizer driver (xdsl-opt with the picograd dialects)", args=args
        )

    def register_all_dialects(self) -> None:
        """Register picograd's dialects, then xDSL's (``gpu``, ``memref``, ``scf``, ...; loaded lazily, on first use).

        picograd's are the dialects that ``make_context()`` loads, so a dialect added there shows up here without a
        second list to maintain; on a name clash picograd's wins, as it does in the compiler.
        """
        from picograd.dialects import make_context

        ours = {dialect.name: dialect for dialect in make_context().loaded_dialects}
        for name, dialect in ours.items():
            self.ctx.register_dialect(name, _factory(dialect))
        for name, factory in Universe.get_multiverse().all_dialects.items():
            if name not in ours:
                self.ctx.register_dialect(name, factory)

    def register_all_passes(self) -> None:
        """Register xDSL's passes (``cse``, ``dce``, ``canonicalize``, ...) and every picograd pass."""
        super().register_all_passes()
        from picograd.passes import all_passes

        for name, factory in all_passes().items():
            self.register_pass(name, factory)

    def register_all_arguments(self, arg_parser: argparse.ArgumentParser) -> None:
        super().register_all_arguments(arg_parser)
        arg_parser.add_argument(
            "--verify-each",
            action="store_true",
            help="verify the module after every pass (slow; as mlir-opt's); by default the input and the result "
            "only (also on with the environment variable PICOGRAD_VERIFY_EACH=1)",
        )

    def setup_pipeline(self) -> None:
        """xDSL's pipeline, whose callback verifies between every two passes, verifying only the parsed input and
        the result unless ``--verify-each`` (or ``PICOGRAD_VERIFY_EACH=1``)."""
        super().setup_pipeline()
        from picograd.driver.pipeline import verify_each

        each = self.args.verify_each or verify_each()
        callback = self.pipeline.callback
        assert callback is not None

        def between(previous: ModulePass | None, module: ModuleOp, following: ModulePass | None) -> None:
            saved = self.args.disable_verify
            self.args.disable_verify = saved or (not each and previous is not None and following is not None)
            try:
                callback(previous, module, following)
            finally:
                self.args.disable_verify = saved

        self.pipeline = PassPipeline(self.pipeline.passes, between)

    def apply_passes(self, prog: ModuleOp) -> None:
        """Run the pipeline (see ``setup_pipeline`` for when it verifies); a verifier error names the failing op's
        ``file:line:col`` when it has one, unless ``--verify-diagnostics`` asks for xDSL's own report."""
        try:
            super().apply_passes(prog)
        except VerifyException as e:
            op = None if self.args.verify_diagnostics else _failing_op(prog, str(e))
            if op is not None and isinstance(op.location, FileLineColLoc):
                loc = op.location
                e.args = (f"{loc.filename.data}:{loc.line.data}:{loc.column.data}: error: {e}",)
            raise


def _factory(dialect: Dialect) -> Callable[[], Dialect]:
    return lambda: dialect


def _failing_op(module: ModuleOp, message: str) -> Operation | None:
    """The first op of ``module`` whose own verifier fails with ``message`` (only called on the error path)."""
    for op in module.walk():
        try:
            op.verify(verify_nested_ops=False)
        except VerifyException as e:
            if str(e) == message:
                return op
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point of ``pgc-opt``; returns the exit status (0 on success, 1 on an error)."""
    try:
        PgcOptMain(args=argv).run()
    except ArgSpecParseError as e:  # a malformed -p spec (a BaseException in xDSL)
        print(f"pgc-opt: error: {e}".rstrip(), file=sys.stderr)
        return 1
    except (ParseError, DiagnosticException) as e:
        # xDSL's diagnostic already says where the fault is (file:line:col with the source, or the IR in context).
        print(str(e).rstrip(), file=sys.stderr)
        return 1
    except (OSError, ValueError) as e:
        print(f"pgc-opt: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
