"""The ``kernel`` dialect: groups of ``pg`` ops that run as one kernel (what ``pg-fuse`` forms).

Three ops:

``kernel.fused`` (tensor level, made by ``pg-fuse``): its operands are the kernel's input tensors and its results
its output tensors. Its one region holds one block whose arguments stand for the operands (same types, one to one);
the block computes with ``pg`` ops and ends in ``kernel.yield`` of the outputs. The region is isolated from above:
ops inside use only the block arguments and values defined inside, so a kernel can be lowered on its own::

    %r:2 = kernel.fused @k3_sum "reduction" (%a, %b) : (tensor<32x27xf32>, tensor<32x1xf32>)
                                                      -> (tensor<32x27xf32>, tensor<32x1xf32>) {
    ^bb0(%x : tensor<32x27xf32>, %y : tensor<32x1xf32>):
      ...
      kernel.yield %v, %w : tensor<32x27xf32>, tensor<32x1xf32>
    }

``kernel.launch`` (buffer level, made by bufferization): the same kernel over buffers. Its operands are ``ins``
(the memrefs it reads) and ``outs`` (the memrefs it writes); it has no results. The block arguments are *tensors*
with the shape and element type of the ``ins`` memrefs, and the body still computes with ``pg`` ops on tensors,
ending in ``kernel.yield`` of one tensor per ``outs`` memref (same shape and element type): the yielded values are
what the launch writes into ``outs``::

    kernel.launch @k3_sum "reduction" ins(%a, %b : memref<32x27xf32>, memref<32x1xf32>)
                                      outs(%c : memref<32x1xf32>) {
    ^bb0(%x : tensor<32x27xf32>, %y : tensor<32x1xf32>):
      ...
      kernel.yield %w : tensor<32x1xf32>
    }

``kernel.yield`` ends the body of both.

Both kernel ops carry ``kind`` (one of ``KINDS``: what the kernel's main work is) and ``sym_name``, a readable name
unique within the module (``k0_tanh``) that generated GPU kernels are named after, and may carry ``schedule``: how
the kernel runs on the GPU, a ``#kernel.schedule`` attribute (:class:`ScheduleAttr`) that ``pg-schedule`` chooses
and the lowering passes follow. It is printed after the kind::

    kernel.fused @k0_matmul "matmul" schedule = #kernel.schedule<"cp-async", tile = [128, 128, 16], threads = 256,
        warps = [2, 4], lanes = [8, 4], reps = [2, 2], vec = [4, 4], vector, async_copy> (%a, %b) : ...
"""

from __future__ import annotations

from collections.abc import Sequence

from xdsl.dialects.builtin import ArrayAttr, DictionaryAttr, IntAttr, MemRefType, StringAttr, TensorType, UnitAttr
from xdsl.ir import Attribute, Block, Dialect, Operation, ParametrizedAttribute, Region, SSAValue
from xdsl.irdl import (
    AttrSizedOperandSegments,
    IRDLOperation,
    irdl_attr_definition,
    irdl_op_definition,
    lazy_traits_def,
    opt_prop_def,
    prop_def,
    region_def,
    traits_def,
    var_operand_def,
    var_result_def,
)
from xdsl.parser import AttrParser, Parser, UnresolvedOperand
from xdsl.printer import Printer
from xdsl.traits import HasParent, IsolatedFromAbove, IsTerminator, Pure, RecursiveMemoryEffect
from xdsl.utils.exceptions import VerifyException

KINDS = ("elementwise", "reduction", "matmul", "gather", "scatter_add", "movement", "random", "attention", "other")
"""The kernel kinds, by their main op: elementwise ops (with broadcasts and reshapes), a reduction (sum, max, min,
argmax, argmin) with its elementwise prologue, a matmul, a gather, a scatter-add, a movement op (permute, slice,
pad, concat, or a reshape/broadcast on its own), random number generation, fused attention (forward with its row
log-sum-exp, or backward), anything else."""


def _type_str(types: Sequence[Attribute | None]) -> str:
    return "(" + ", ".join(str(t) for t in types) + ")"


def _verify_kind(op: Operation, kind: StringAttr) -> None:
    if kind.data not in KINDS:
        raise VerifyException(f"{op.name}: unknown kind '{kind.data}', expected one of {KINDS}")


def _body_yield(op: Operation, body: Region) -> YieldOp:
    block = body.block
    last = block.last_op
    if not isinstance(last, YieldOp):
        raise VerifyException(f"{op.name}: the body must end with kernel.yield")
    return last


def _print_header(printer: Printer, sym_name: StringAttr, kind: StringAttr) -> None:
    printer.print_string(" ")
    printer.print_symbol_name(sym_name.data)
    printer.print_string(" ")
    printer.print_string_literal(kind.data)


def _print_body(printer: Printer, op: Operation, body: Region) -> None:
    printer.print_op_attributes(op.attributes, print_keyword=True)
    printer.print_string(" ")
    printer.print_region(body, print_entry_block_args=True, print_empty_block=True)


# ---------------------------------------------------------------------------------------------------------------
# #kernel.schedule

ScheduleValue = int | tuple[int, ...] | bool
"""A schedule parameter: a count (``threads = 256``), sizes along dims (``tile = [128, 128, 16]``) or a switch
(``vector``: on when present)."""


@irdl_attr_definition
class ScheduleAttr(ParametrizedAttribute):
    """How a kernel runs on the GPU: a strategy name and its parameters, in the order given::

        #kernel.schedule<"thread_per_point", block = 256>
        #kernel.schedule<"cp-async", tile = [64, 64, 16], threads = 128, warps = [2, 2], lanes = [8, 4],
                         reps = [1, 2], vec = [4, 4], vector, async_copy>

    Parameters are counts, lists of counts or switches (present: on). The strategies and what their parameters mean
    are the rows of ``pg-schedule``'s table (``picograd/passes/schedule.py``); the dialect checks only the form."""

    name = "kernel.schedule"
    strategy: StringAttr
    params: DictionaryAttr

    def __init__(self, strategy: str, params: dict[str, ScheduleValue] | None = None):
        data: dict[str, Attribute] = {}
        for key, value in (params or {}).items():
            if isinstance(value, bool):
                if value:
                    data[key] = UnitAttr()
            elif isinstance(value, int):
                data[key] = IntAttr(value)
            else:
                data[key] = ArrayAttr([IntAttr(v) for v in value])
        super().__init__(StringAttr(strategy), DictionaryAttr(data))

    @property
    def values(self) -> dict[str, ScheduleValue]:
        """The parameters as Python values, in order (switches that are on map to True)."""
        out: dict[str, ScheduleValue] = {}
        for key, attr in self.params.data.items():
            if isinstance(attr, UnitAttr):
                out[key] = True
            elif isinstance(attr, IntAttr):
                out[key] = attr.data
            else:
                assert isinstance(attr, ArrayAttr)
                out[key] = tuple(v.data for v in attr.data)  # type: ignore[attr-defined]
        return out

    def count(self, key: str, default: int = 0) -> int:
        value = self.values.get(key, default)
        assert isinstance(value, int), f"{self}: {key} is not a count"
        return value

    def sizes(self, key: str) -> tuple[int, ...]:
        value = self.values[key]
        assert isinstance(value, tuple), f"{self}: {key} is not a list of counts"
        return value

    def flag(self, key: str) -> bool:
        return isinstance(self.params.data.get(key), UnitAttr)

    def verify(self) -> None:
        for key, attr in self.params.data.items():
            ok = isinstance(attr, UnitAttr | IntAttr) or (
                isinstance(attr, ArrayAttr) and all(isinstance(v, IntAttr) for v in attr.data)
            )
            if not ok:
                raise VerifyException(f"#kernel.schedule: parameter {key} = {attr} is not a count, list or switch")

    def print_parameters(self, printer: Printer) -> None:
        printer.print_string("<")
        printer.print_string_literal(self.strategy.data)
        for key, value in self.values.items():
            printer.print_string(f", {key}")
            if isinstance(value, bool):
                continue
            text = str(value) if isinstance(value, int) else "[" + ", ".join(str(v) for v in value) + "]"
            printer.print_string(f" = {text}")
        printer.print_string(">")

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> tuple[StringAttr, DictionaryAttr]:
        parser.parse_punctuation("<")
        strategy = parser.parse_str_literal(" (the schedule's strategy)")
        params: dict[str, ScheduleValue] = {}
        while parser.parse_optional_punctuation(",") is not None:
            key = parser.parse_identifier(" (a schedule parameter)")
            if parser.parse_optional_punctuation("=") is None:
                params[key] = True
            elif parser.parse_optional_punctuation("[") is not None:
                values = [parser.parse_integer()]
                while parser.parse_optional_punctuation(",") is not None:
                    values.append(parser.parse_integer())
                parser.parse_punctuation("]")
                params[key] = tuple(values)
            else:
                params[key] = parser.parse_integer()
        parser.parse_punctuation(">")
        attr = cls(strategy, params)
        return attr.strategy, attr.params


def _print_schedule(printer: Printer, schedule: ScheduleAttr | None) -> None:
    if schedule is not None:
        printer.print_string(" schedule = ")
        printer.print_attribute(schedule)


def _parse_schedule(parser: Parser) -> ScheduleAttr | None:
    if parser.parse_optional_keyword("schedule") is None:
        return None
    parser.parse_punctuation("=")
    pos = parser.pos
    attr = parser.parse_attribute()
    if not isinstance(attr, ScheduleAttr):
        parser.raise_error(f"expected a #kernel.schedule attribute, got {attr}", pos)
    return attr


# ---------------------------------------------------------------------------------------------------------------
# kernel.fused


@irdl_op_definition
class FusedOp(IRDLOperation):
    """A kernel over tensors: ``outputs = body(inputs)`` (see the module docstring for the syntax).

    The body's block arguments match ``inputs`` one to one (same types); its ``kernel.yield`` gives one value per
    result, of the result's type. The region is isolated from above."""

    name = "kernel.fused"
    inputs = var_operand_def(TensorType)
    outputs = var_result_def(TensorType)
    kind = prop_def(StringAttr)
    sym_name = prop_def(StringAttr)
    schedule = opt_prop_def(ScheduleAttr)
    body = region_def("single_block")
    traits = traits_def(IsolatedFromAbove(), RecursiveMemoryEffect())

    def __init__(
        self,
        sym_name: str,
        kind: str,
        inputs: Sequence[SSAValue],
        result_types: Sequence[Attribute],
        body: Region,
        schedule: ScheduleAttr | None = None,
    ):
        super().__init__(
            operands=[list(inputs)],
            result_types=[list(result_types)],
            properties={"kind": StringAttr(kind), "sym_name": StringAttr(sym_name), "schedule": schedule},
            regions=[body],
        )

    @staticmethod
    def build_body(input_types: Sequence[Attribute]) -> tuple[Region, Block]:
        """An empty body region with one block whose arguments have ``input_types``."""
        block = Block(arg_types=list(input_types))
        return Region(block), block

    @property
    def yield_op(self) -> YieldOp:
        """The body's terminator."""
        return _body_yield(self, self.body)

    def verify_(self) -> None:
        _verify_kind(self, self.kind)
        block = self.body.block
        in_types = [v.type for v in self.inputs]
        arg_types = [a.type for a in block.args]
        if in_types != arg_types:
            raise VerifyException(
                f"kernel.fused: block argument types {_type_str(arg_types)} do not match the inputs "
                f"{_type_str(in_types)}"
            )
        yielded = [v.type for v in self.yield_op.values]
        out_types = [r.type for r in self.outputs]
        if yielded != out_types:
            raise VerifyException(
                f"kernel.fused: yielded types {_type_str(yielded)} do not match the results {_type_str(out_types)}"
            )

    def print(self, printer: Printer) -> None:
        _print_header(printer, self.sym_name, self.kind)
        _print_schedule(printer, self.schedule)
        printer.print_string(" (")
        printer.print_list(self.inputs, printer.print_operand)
        printer.print_string(") : (")
        printer.print_list([v.type for v in self.inputs], printer.print_attribute)
        printer.print_string(") -> (")
        printer.print_list([r.type for r in self.outputs], printer.print_attribute)
        printer.print_string(")")
        _print_body(printer, self, self.body)

    @classmethod
    def parse(cls, parser: Parser) -> FusedOp:
        sym_name = parser.parse_symbol_name().data
        kind = parser.parse_str_literal()
        schedule = _parse_schedule(parser)
        operands = parser.parse_comma_separated_list(parser.Delimiter.PAREN, parser.parse_unresolved_operand)
        parser.parse_punctuation(":")
        pos = parser.pos
        in_types = parser.parse_comma_separated_list(parser.Delimiter.PAREN, parser.parse_type)
        parser.parse_punctuation("->")
        out_types = parser.parse_comma_separated_list(parser.Delimiter.PAREN, parser.parse_type)
        inputs = parser.resolve_operands(operands, in_types, pos)
        attrs = parser.parse_optional_attr_dict_with_keyword()
        body = parser.parse_region()
        op = cls(sym_name, kind, inputs, out_types, body, schedule)
        if attrs is not None:
            op.attributes.update(attrs.data)
        return op


# ---------------------------------------------------------------------------------------------------------------
# kernel.launch


def _as_tensor(t: Attribute) -> TensorType | None:
    """The tensor type with a memref's shape and element type."""
    if not isinstance(t, MemRefType):
        return None
    return TensorType(t.element_type, t.get_shape())


@irdl_op_definition
class LaunchOp(IRDLOperation):
    """A kernel over buffers: computes its body from the ``ins`` buffers and writes the yielded tensors into the
    ``outs`` buffers (see the module docstring for the syntax). The body's block arguments are tensors with the
    shapes and element types of ``ins``; ``kernel.yield`` gives one tensor per ``outs`` buffer, of its shape and
    element type. The region is isolated from above."""

    name = "kernel.launch"
    ins = var_operand_def(MemRefType)
    outs = var_operand_def(MemRefType)
    kind = prop_def(StringAttr)
    sym_name = prop_def(StringAttr)
    schedule = opt_prop_def(ScheduleAttr)
    body = region_def("single_block")
    irdl_options = (AttrSizedOperandSegments(as_property=True),)
    traits = traits_def(IsolatedFromAbove())

    def __init__(
        self,
        sym_name: str,
        kind: str,
        ins: Sequence[SSAValue],
        outs: Sequence[SSAValue],
        body: Region,
        schedule: ScheduleAttr | None = None,
    ):
        super().__init__(
            operands=[list(ins), list(outs)],
            properties={"kind": StringAttr(kind), "sym_name": StringAttr(sym_name), "schedule": schedule},
            regions=[body],
        )

    @staticmethod
    def build_body(ins: Sequence[SSAValue]) -> tuple[Region, Block]:
        """An empty body region whose block arguments are the tensor types of the ``ins`` memrefs."""
        types: list[Attribute] = []
        for v in ins:
            t = _as_tensor(v.type)
            assert t is not None, f"kernel.launch: ins must be memrefs, got {v.type}"
            types.append(t)
        block = Block(arg_types=types)
        return Region(block), block

    @property
    def yield_op(self) -> YieldOp:
        """The body's terminator."""
        return _body_yield(self, self.body)

    def verify_(self) -> None:
        _verify_kind(self, self.kind)
        block = self.body.block
        want_args = [_as_tensor(v.type) for v in self.ins]
        arg_types = [a.type for a in block.args]
        if want_args != arg_types:
            raise VerifyException(
                f"kernel.launch: block argument types {_type_str(arg_types)} do not match the tensor types of ins "
                f"{_type_str(want_args)}"
            )
        yielded = [v.type for v in self.yield_op.values]
        want_yield = [_as_tensor(v.type) for v in self.outs]
        if yielded != want_yield:
            raise VerifyException(
                f"kernel.launch: yielded types {_type_str(yielded)} do not match the tensor types of outs "
                f"{_type_str(want_yield)}"
            )

    def print(self, printer: Printer) -> None:
        _print_header(printer, self.sym_name, self.kind)
        _print_schedule(printer, self.schedule)
        for key, values in (("ins", self.ins), ("outs", self.outs)):
            printer.print_string(f" {key}(")
            if values:
                printer.print_list(values, printer.print_operand)
                printer.print_string(" : ")
                printer.print_list([v.type for v in values], printer.print_attribute)
            printer.print_string(")")
        _print_body(printer, self, self.body)

    @classmethod
    def parse(cls, parser: Parser) -> LaunchOp:
        sym_name = parser.parse_symbol_name().data
        kind = parser.parse_str_literal()
        schedule = _parse_schedule(parser)
        groups: list[Sequence[SSAValue]] = []
        for key in ("ins", "outs"):
            parser.parse_keyword(key)
            parser.parse_punctuation("(")
            values: Sequence[SSAValue] = []
            if parser.parse_optional_punctuation(")") is None:
                pos = parser.pos
                operands: list[UnresolvedOperand] = parser.parse_comma_separated_list(
                    parser.Delimiter.NONE, parser.parse_unresolved_operand
                )
                parser.parse_punctuation(":")
                types = parser.parse_comma_separated_list(parser.Delimiter.NONE, parser.parse_type)
                values = parser.resolve_operands(operands, types, pos)
                parser.parse_punctuation(")")
            groups.append(values)
        attrs = parser.parse_optional_attr_dict_with_keyword()
        body = parser.parse_region()
        op = cls(sym_name, kind, groups[0], groups[1], body, schedule)
        if attrs is not None:
            op.attributes.update(attrs.data)
        return op


# ---------------------------------------------------------------------------------------------------------------
# kernel.yield


@irdl_op_definition
class YieldOp(IRDLOperation):
    """Ends a kernel body with its output values: ``kernel.yield %a, %b : tensor<3xf32>, tensor<f32>``."""

    name = "kernel.yield"
    values = var_operand_def(TensorType)
    traits = lazy_traits_def(lambda: (IsTerminator(), HasParent(FusedOp, LaunchOp), Pure()))
    assembly_format = "attr-dict ($values^ `:` type($values))?"

    def __init__(self, values: Sequence[SSAValue]):
        super().__init__(operands=[list(values)])


KERNEL = Dialect("kernel", [FusedOp, LaunchOp, YieldOp], [ScheduleAttr])

__all__ = ["KERNEL", "KINDS", "FusedOp", "LaunchOp", "ScheduleAttr", "ScheduleValue", "YieldOp"]
