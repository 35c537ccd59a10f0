"""IR helpers shared by the pass test suites: parse MLIR text with picograd's dialects, take a module's function."""

from __future__ import annotations

from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp
from xdsl.parser import Parser

from picograd.dialects import make_context


def parse(text: str) -> ModuleOp:
    """Parse MLIR text with every picograd dialect loaded."""
    return Parser(make_context(), text).parse_module()


def only_func(module: ModuleOp) -> func.FuncOp:
    """The module's only function (asserts there is exactly one)."""
    fns = [op for op in module.ops if isinstance(op, func.FuncOp)]
    assert len(fns) == 1
    return fns[0]
