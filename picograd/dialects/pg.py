"""The ``pg`` dialect: picograd's tensor-level IR.

Value semantics on builtin ``tensor<...>`` types with static shapes. Element types are ``f32``, ``f64``,
``bf16``, ``f16`` (float), ``i64``, ``i32`` (integer) and ``i1`` (bool). Broadcasting is never implicit: binary ops take
operands of one type, and the frontend inserts ``pg.broadcast_to`` and ``pg.cast`` (numpy's and
PyTorch's rules). Every verifier names shapes as Python tuples, e.g. ``(2, 3)``.

The op set follows the usual tensor-compiler core (XLA HLO / StableHLO, tinygrad's ops): elementwise
unary and binary ops, comparisons and select, explicit broadcast, reductions, movement (reshape,
permute, slice, pad, concat), batched matmul, gather / scatter-add, casts, iota, arg-reductions, a
counter-based random op, ``stop_gradient``, the ``pg.grad`` op that ``pg-autodiff`` expands, and the
optimizer ops that ``pg-sgd`` / ``pg-adam`` / ``pg-adamw`` expand.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from xdsl.dialects.builtin import (
    I64,
    AnyFloat,
    BFloat16Type,
    DenseArrayBase,
    DenseIntOrFPElementsAttr,
    FileLineColLoc,
    Float16Type,
    Float32Type,
    Float64Type,
    FloatAttr,
    IntegerAttr,
    IntegerType,
    StringAttr,
    TensorType,
    UnitAttr,
    f32,
    f64,
    i1,
    i32,
    i64,
)
from xdsl.ir import Attribute, Dialect, SSAValue
from xdsl.irdl import (
    AttrSizedOperandSegments,
    IRDLOperation,
    VarConstraint,
    base,
    irdl_op_definition,
    operand_def,
    opt_operand_def,
    opt_prop_def,
    prop_def,
    result_def,
    traits_def,
    var_operand_def,
    var_result_def,
)
from xdsl.parser import Parser
from xdsl.printer import Printer
from xdsl.traits import Pure
from xdsl.utils.exceptions import VerifyException

# ---------------------------------------------------------------------------------------------------------------
# Types and small helpers


def tensor_type(shape: Sequence[int], element: Attribute) -> TensorType:
    """The builtin ``tensor<shape x element>`` type (static shape)."""
    return TensorType(element, list(shape))


def shape_of(value: SSAValue | Attribute) -> tuple[int, ...]:
    """Static shape of a tensor-typed value or type, as a Python tuple."""
    t = value.type if isinstance(value, SSAValue) else value
    assert isinstance(t, TensorType), f"expected a tensor type, got {t}"
    return tuple(t.get_shape())


def element_of(value: SSAValue | Attribute) -> Attribute:
    """Element type of a tensor-typed value or type."""
    t = value.type if isinstance(value, SSAValue) else value
    assert isinstance(t, TensorType), f"expected a tensor type, got {t}"
    return t.element_type


def is_float(element: Attribute) -> bool:
    return isinstance(element, Float32Type | Float64Type | BFloat16Type | Float16Type)


def is_low_precision(element: Attribute) -> bool:
    """``bf16`` or ``f16``: 16-bit floats that backends compute in ``f32`` and round to (matmuls accumulate in
    ``f32``)."""
    return isinstance(element, BFloat16Type | Float16Type)


def lse_element(element: Attribute) -> Attribute:
    """The element type of ``pg.attention_lse`` for attention on ``element``: ``f32`` for ``bf16``/``f16`` (the
    log-sum-exp that the backward subtracts from every score keeps f32 precision, as FlashAttention stores it),
    else ``element``."""
    return Float32Type() if is_low_precision(element) else element


def is_int(element: Attribute) -> bool:
    return isinstance(element, IntegerType) and element.width.data > 1


def _ints(attr: DenseArrayBase[IntegerType]) -> tuple[int, ...]:
    return tuple(int(v) for v in attr.get_values())


def _i64_array(values: Sequence[int]) -> DenseArrayBase:
    return DenseArrayBase.from_list(i64, [int(v) for v in values])


def _check_dims(op: str, dims: Sequence[int], rank: int) -> None:
    for d in dims:
        if not 0 <= d < rank:
            raise VerifyException(f"{op}: dim {d} is out of range for rank {rank}")
    if len(set(dims)) != len(dims):
        raise VerifyException(f"{op}: repeated dim in {tuple(dims)}")


def _expect_shape(op: str, got: tuple[int, ...], want: tuple[int, ...]) -> None:
    if got != want:
        raise VerifyException(f"{op}: result shape {got} does not match the expected shape {want}")


FloatTensor = base(TensorType)  # element checks live in the verifiers, with readable messages


# ---------------------------------------------------------------------------------------------------------------
# Constants and iota


@irdl_op_definition
class ConstantOp(IRDLOperation):
    """A constant tensor: ``%c = pg.constant dense<2.0> : tensor<f32>``. Used for scalars and small literals;
    user data arrives as function arguments instead, so IR stays small."""

    name = "pg.constant"
    value = prop_def(DenseIntOrFPElementsAttr)
    result = result_def(TensorType)
    traits = traits_def(Pure())

    def __init__(self, value: DenseIntOrFPElementsAttr):
        super().__init__(properties={"value": value}, result_types=[value.type])

    def verify_(self) -> None:
        if self.value.type != self.result.type:
            raise VerifyException(f"pg.constant: value type {self.value.type} differs from result {self.result.type}")

    def print(self, printer: Printer) -> None:
        printer.print_string(" ")
        printer.print_attribute(self.value)
        printer.print_op_attributes(self.attributes)

    @classmethod
    def parse(cls, parser: Parser) -> ConstantOp:
        start = parser.pos
        value = parser.parse_attribute()
        if not isinstance(value, DenseIntOrFPElementsAttr):
            parser.raise_error("pg.constant expects a dense<...> : tensor<...> attribute", start)
        text = parser.lexer.input.content[start : parser.pos]
        if "0x" in text and is_float(element_of(value.type)):
            value = _float_bits(value, text)
        attrs = parser.parse_optional_attr_dict()
        op = cls(value)
        op.attributes.update(attrs)
        return op


def _float_of_bits(bits: int, element: Attribute) -> float:
    """The float whose IEEE bit pattern of ``element``'s width is ``bits`` (a bf16 is the top half of an f32)."""
    import struct

    if isinstance(element, BFloat16Type):
        bits, element = bits << 16, f32
    formats: dict[type, tuple[str, str]] = {
        Float64Type: ("<d", "<Q"),
        Float32Type: ("<f", "<I"),
        Float16Type: ("<e", "<H"),
    }
    fmt, ifmt = formats[type(element)]
    return struct.unpack(fmt, struct.pack(ifmt, bits))[0]


def _float_bits(value: DenseIntOrFPElementsAttr, text: str) -> DenseIntOrFPElementsAttr:
    """Reinterpret the hex literals of ``text`` (a ``dense<...>`` attribute) as IEEE bit patterns. xDSL 0.74 prints
    non-finite floats as ``0xFF800000`` (as MLIR does) but parses hex back as an integer value, so ``-inf`` would
    come back as 4.29e9."""
    import re

    body = text[text.index("<") + 1 : text.rindex(">")] if ">" in text else text
    tokens = re.findall(r"0x[0-9a-fA-F]+|[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|inf|nan", body.split(":")[0])
    values = list(value.get_values())
    if len(tokens) == 1 and len(values) > 1:  # a splat
        values = values[:1]
    elif len(tokens) != len(values):
        return value
    element = element_of(value.type)
    floats = [
        _float_of_bits(int(tok, 16), element) if tok.startswith("0x") else float(v)  # type: ignore[arg-type]
        for tok, v in zip(tokens, values, strict=True)
    ]
    if len(floats) == 1:
        floats = floats * len(value)
    return DenseIntOrFPElementsAttr.from_list(value.type, floats)  # type: ignore[type-var, arg-type]


@irdl_op_definition
class IotaOp(IRDLOperation):
    """``0, 1, 2, ...`` along ``dim`` of the result, broadcast over the other dims (as ``stablehlo.iota``)."""

    name = "pg.iota"
    dim = prop_def(IntegerAttr[I64])
    result = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = "`dim` `=` $dim attr-dict `:` type($result)"

    def __init__(self, result_type: TensorType, dim: int):
        super().__init__(properties={"dim": IntegerAttr(dim, i64)}, result_types=[result_type])

    @property
    def dim_index(self) -> int:
        return self.dim.value.data

    def verify_(self) -> None:
        rank = len(shape_of(self.result))
        if not 0 <= self.dim_index < max(rank, 1):
            raise VerifyException(f"pg.iota: dim {self.dim_index} is out of range for rank {rank}")


# ---------------------------------------------------------------------------------------------------------------
# Elementwise


class UnaryOp(IRDLOperation):
    """Base of elementwise unary ops: ``%y = pg.exp %x : tensor<3x4xf32>`` (same type in and out)."""

    T: ClassVar = VarConstraint("T", base(TensorType))
    input = operand_def(T)
    result = result_def(T)
    traits = traits_def(Pure())
    assembly_format = "$input attr-dict `:` type($result)"
    FLOAT_ONLY: ClassVar[bool] = True

    def __init__(self, input: SSAValue):
        super().__init__(operands=[input], result_types=[input.type])

    def verify_(self) -> None:
        if self.FLOAT_ONLY and not is_float(element_of(self.input)):
            raise VerifyException(f"{self.name}: expects a float tensor, got {self.input.type}")


def _unary(op_name: str, doc: str, float_only: bool = True) -> type[UnaryOp]:
    cls = type(
        "".join(p.capitalize() for p in op_name.split("_")) + "Op",
        (UnaryOp,),
        {
            "name": f"pg.{op_name}",
            "__doc__": doc,
            "FLOAT_ONLY": float_only,
            "__annotations__": {"FLOAT_ONLY": "ClassVar[bool]"},
        },
    )
    return irdl_op_definition(cls)


NegOp = _unary("neg", "-x", float_only=False)
ExpOp = _unary("exp", "e**x")
LogOp = _unary("log", "natural logarithm")
SqrtOp = _unary("sqrt", "square root")
RsqrtOp = _unary("rsqrt", "1 / sqrt(x)")
SinOp = _unary("sin", "sine (radians)")
CosOp = _unary("cos", "cosine (radians)")
TanhOp = _unary("tanh", "hyperbolic tangent")
SigmoidOp = _unary("sigmoid", "1 / (1 + exp(-x))")
ReluOp = _unary("relu", "max(x, 0)", float_only=False)
AbsOp = _unary("abs", "|x|", float_only=False)
ReciprocalOp = _unary("reciprocal", "1 / x")
ErfOp = _unary("erf", "the error function 2/sqrt(pi) * integral_0^x exp(-t^2) dt")
StopGradientOp = _unary(
    "stop_gradient", "identity whose gradient is zero (what Tensor.detach records)", float_only=False
)


class BinaryOp(IRDLOperation):
    """Base of elementwise binary ops on operands of one type: ``%z = pg.add %x, %y : tensor<3xf32>``."""

    T: ClassVar = VarConstraint("T", base(TensorType))
    lhs = operand_def(T)
    rhs = operand_def(T)
    result = result_def(T)
    traits = traits_def(Pure())
    assembly_format = "$lhs `,` $rhs attr-dict `:` type($result)"
    FLOAT_ONLY: ClassVar[bool] = False

    def __init__(self, lhs: SSAValue, rhs: SSAValue):
        super().__init__(operands=[lhs, rhs], result_types=[lhs.type])

    def verify_(self) -> None:
        el = element_of(self.lhs)
        if self.FLOAT_ONLY and not is_float(el):
            raise VerifyException(f"{self.name}: expects float tensors, got {self.lhs.type}")
        if el == i1:
            raise VerifyException(f"{self.name}: does not take bool tensors (cast them first)")


def _binary(op_name: str, doc: str, float_only: bool = False) -> type[BinaryOp]:
    cls = type(
        op_name.capitalize() + "Op",
        (BinaryOp,),
        {
            "name": f"pg.{op_name}",
            "__doc__": doc,
            "FLOAT_ONLY": float_only,
            "__annotations__": {"FLOAT_ONLY": "ClassVar[bool]"},
        },
    )
    return irdl_op_definition(cls)


AddOp = _binary("add", "x + y")
SubOp = _binary("sub", "x - y")
MulOp = _binary("mul", "x * y")
DivOp = _binary("div", "x / y (true division for floats, floor division for integers)")
PowOp = _binary("pow", "x ** y", float_only=True)
MaximumOp = _binary("maximum", "elementwise max(x, y)")
MinimumOp = _binary("minimum", "elementwise min(x, y)")

# -- the operator surface (issue 20): more elementwise math (numpy's semantics) and bitwise ops
FloorOp = _unary("floor", "largest integral value <= x")
CeilOp = _unary("ceil", "smallest integral value >= x")
RoundOp = _unary("round", "nearest integral value, ties to even (numpy.rint, torch.round)")
TruncOp = _unary("trunc", "integral part of x (rounds toward zero)")
SignOp = _unary("sign", "(x > 0) - (x < 0): -1, 0 or 1 (0 for NaN and both zeros, as PyTorch)")
Log2Op = _unary("log2", "base-2 logarithm")
Exp2Op = _unary("exp2", "2**x")
Log1pOp = _unary("log1p", "log(1 + x), accurate for small x")
Expm1Op = _unary("expm1", "exp(x) - 1, accurate for small x")
AsinOp = _unary("asin", "inverse sine, in [-pi/2, pi/2] (NaN outside [-1, 1])")
AcosOp = _unary("acos", "inverse cosine, in [0, pi] (NaN outside [-1, 1])")
AtanOp = _unary("atan", "inverse tangent, in (-pi/2, pi/2)")
AsinhOp = _unary("asinh", "inverse hyperbolic sine")
AcoshOp = _unary("acosh", "inverse hyperbolic cosine (NaN below 1)")
AtanhOp = _unary("atanh", "inverse hyperbolic tangent (NaN outside [-1, 1])")
Atan2Op = _binary("atan2", "atan2(y, x): the angle of the point (x, y), in [-pi, pi] (C99's special cases)", True)
CopysignOp = _binary("copysign", "|x| with the sign bit of y", True)


class BitwiseOp(BinaryOp):
    """Base of bitwise binary ops on integer or bool tensors of one type (two's complement)."""

    def verify_(self) -> None:
        if is_float(element_of(self.lhs)):
            raise VerifyException(f"{self.name}: expects integer or bool tensors, got {self.lhs.type}")


def _bitwise(op_name: str, doc: str) -> type[BitwiseOp]:
    cls = type(
        "".join(p.capitalize() for p in op_name.split("_")) + "Op",
        (BitwiseOp,),
        {"name": f"pg.{op_name}", "__doc__": doc},
    )
    return irdl_op_definition(cls)


BitwiseAndOp = _bitwise("bitwise_and", "x & y")
BitwiseOrOp = _bitwise("bitwise_or", "x | y")
BitwiseXorOp = _bitwise("bitwise_xor", "x ^ y")

SURFACE_OPS: tuple[type[IRDLOperation], ...] = (
    FloorOp, CeilOp, RoundOp, TruncOp, SignOp, Log2Op, Exp2Op, Log1pOp, Expm1Op, AsinOp, AcosOp, AtanOp, AsinhOp,
    AcoshOp, AtanhOp, Atan2Op, CopysignOp, BitwiseAndOp, BitwiseOrOp, BitwiseXorOp,
)  # fmt: skip

COMPARISONS = ("lt", "le", "gt", "ge", "eq", "ne")


@irdl_op_definition
class CmpOp(IRDLOperation):
    """Elementwise comparison giving an ``i1`` tensor: ``%m = pg.cmp "lt", %x, %y : tensor<3xf32> -> tensor<3xi1>``.
    Predicates: lt le gt ge eq ne."""

    name = "pg.cmp"
    T: ClassVar = VarConstraint("T", base(TensorType))
    predicate = prop_def(StringAttr)
    lhs = operand_def(T)
    rhs = operand_def(T)
    result = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = "$predicate `,` $lhs `,` $rhs attr-dict `:` type($lhs) `->` type($result)"

    def __init__(self, predicate: str, lhs: SSAValue, rhs: SSAValue):
        super().__init__(
            operands=[lhs, rhs],
            properties={"predicate": StringAttr(predicate)},
            result_types=[tensor_type(shape_of(lhs), i1)],
        )

    def verify_(self) -> None:
        if self.predicate.data not in COMPARISONS:
            raise VerifyException(f"pg.cmp: unknown predicate '{self.predicate.data}', expected one of {COMPARISONS}")
        if self.result.type != tensor_type(shape_of(self.lhs), i1):
            raise VerifyException(f"pg.cmp: result must be an i1 tensor of shape {shape_of(self.lhs)}")


@irdl_op_definition
class SelectOp(IRDLOperation):
    """``where(cond, a, b)`` elementwise; ``cond`` is an ``i1`` tensor of the same shape:
    ``%r = pg.select %c, %a, %b : tensor<3xi1>, tensor<3xf32>``."""

    name = "pg.select"
    T: ClassVar = VarConstraint("T", base(TensorType))
    cond = operand_def(TensorType)
    lhs = operand_def(T)
    rhs = operand_def(T)
    result = result_def(T)
    traits = traits_def(Pure())
    assembly_format = "$cond `,` $lhs `,` $rhs attr-dict `:` type($cond) `,` type($result)"

    def __init__(self, cond: SSAValue, lhs: SSAValue, rhs: SSAValue):
        super().__init__(operands=[cond, lhs, rhs], result_types=[lhs.type])

    def verify_(self) -> None:
        if element_of(self.cond) != i1 or shape_of(self.cond) != shape_of(self.lhs):
            raise VerifyException(
                f"pg.select: condition must be a bool tensor of shape {shape_of(self.lhs)}, got {self.cond.type}"
            )


# ---------------------------------------------------------------------------------------------------------------
# Shape ops


def broadcast_shape(a: Sequence[int], b: Sequence[int]) -> tuple[int, ...] | None:
    """numpy's broadcast of two shapes, or None when they do not broadcast."""
    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        x = a[-i] if i <= len(a) else 1
        y = b[-i] if i <= len(b) else 1
        if x != y and 1 not in (x, y):
            return None
        out.append(y if x == 1 else x)
    return tuple(reversed(out))


@irdl_op_definition
class BroadcastToOp(IRDLOperation):
    """numpy ``broadcast_to``: dims are aligned from the right, size-1 dims stretch and leading dims are added:
    ``%y = pg.broadcast_to %x : tensor<3x1xf32> -> tensor<2x3x4xf32>``."""

    name = "pg.broadcast_to"
    input = operand_def(TensorType)
    result = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = "$input attr-dict `:` type($input) `->` type($result)"

    def __init__(self, input: SSAValue, shape: Sequence[int]):
        super().__init__(operands=[input], result_types=[tensor_type(shape, element_of(input))])

    def verify_(self) -> None:
        src, dst = shape_of(self.input), shape_of(self.result)
        if element_of(self.input) != element_of(self.result):
            raise VerifyException("pg.broadcast_to: element types of input and result differ")
        if len(src) > len(dst) or broadcast_shape(src, dst) != dst:
            raise VerifyException(f"pg.broadcast_to: shape {src} cannot be broadcast to {dst}")


class ReduceOp(IRDLOperation):
    """Base of reductions over ``dims`` (kept as size 1 with ``keepdim``):
    ``%s = pg.sum %x dims = [1] keepdim : tensor<4x3xf32> -> tensor<4x1xf32>``."""

    input = operand_def(TensorType)
    dims = prop_def(DenseArrayBase.constr(i64))
    keepdim = opt_prop_def(UnitAttr)
    result = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = "$input `dims` `=` $dims (`keepdim` $keepdim^)? attr-dict `:` type($input) `->` type($result)"

    def __init__(self, input: SSAValue, dims: Sequence[int], keepdim: bool = False):
        shape = reduced_shape(shape_of(input), dims, keepdim)
        props: dict[str, Attribute] = {"dims": _i64_array(sorted(dims))}
        if keepdim:
            props["keepdim"] = UnitAttr()
        super().__init__(operands=[input], properties=props, result_types=[tensor_type(shape, element_of(input))])

    @property
    def dim_list(self) -> tuple[int, ...]:
        return _ints(self.dims)

    def verify_(self) -> None:
        shape = shape_of(self.input)
        _check_dims(self.name, self.dim_list, len(shape))
        if element_of(self.result) != element_of(self.input):
            raise VerifyException(f"{self.name}: element types of input and result differ")
        _expect_shape(self.name, shape_of(self.result), reduced_shape(shape, self.dim_list, self.keepdim is not None))


def reduced_shape(shape: Sequence[int], dims: Sequence[int], keepdim: bool) -> tuple[int, ...]:
    """Shape after reducing ``dims`` of ``shape``."""
    if keepdim:
        return tuple(1 if i in dims else s for i, s in enumerate(shape))
    return tuple(s for i, s in enumerate(shape) if i not in dims)


@irdl_op_definition
class SumOp(ReduceOp):
    """Sum over dims."""

    name = "pg.sum"


@irdl_op_definition
class MaxOp(ReduceOp):
    """Max over dims (values only, as ``torch.amax``)."""

    name = "pg.max"


@irdl_op_definition
class MinOp(ReduceOp):
    """Min over dims (values only, as ``torch.amin``)."""

    name = "pg.min"


class ArgReduceOp(IRDLOperation):
    """Index (``i64``) of the first max/min along ``dim``:
    ``%i = pg.argmax %x dim = 1 : tensor<4x3xf32> -> tensor<4xi64>``."""

    input = operand_def(TensorType)
    dim = prop_def(IntegerAttr[I64])
    keepdim = opt_prop_def(UnitAttr)
    result = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = "$input `dim` `=` $dim (`keepdim` $keepdim^)? attr-dict `:` type($input) `->` type($result)"

    def __init__(self, input: SSAValue, dim: int, keepdim: bool = False):
        props: dict[str, Attribute] = {"dim": IntegerAttr(dim, i64)}
        if keepdim:
            props["keepdim"] = UnitAttr()
        shape = reduced_shape(shape_of(input), [dim], keepdim)
        super().__init__(operands=[input], properties=props, result_types=[tensor_type(shape, i64)])

    @property
    def dim_index(self) -> int:
        return self.dim.value.data

    def verify_(self) -> None:
        shape = shape_of(self.input)
        _check_dims(self.name, [self.dim_index], len(shape))
        if element_of(self.result) != i64:
            raise VerifyException(f"{self.name}: result must be an i64 tensor")
        _expect_shape(
            self.name, shape_of(self.result), reduced_shape(shape, [self.dim_index], self.keepdim is not None)
        )


@irdl_op_definition
class ArgmaxOp(ArgReduceOp):
    """Index of the first maximum along dim."""

    name = "pg.argmax"


@irdl_op_definition
class ArgminOp(ArgReduceOp):
    """Index of the first minimum along dim."""

    name = "pg.argmin"


@irdl_op_definition
class ReshapeOp(IRDLOperation):
    """Row-major reshape to the result type (same element count):
    ``%y = pg.reshape %x : tensor<2x3xf32> -> tensor<6xf32>``."""

    name = "pg.reshape"
    input = operand_def(TensorType)
    result = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = "$input attr-dict `:` type($input) `->` type($result)"

    def __init__(self, input: SSAValue, shape: Sequence[int]):
        super().__init__(operands=[input], result_types=[tensor_type(shape, element_of(input))])

    def verify_(self) -> None:
        src, dst = shape_of(self.input), shape_of(self.result)
        if element_of(self.input) != element_of(self.result):
            raise VerifyException("pg.reshape: element types of input and result differ")
        if _numel(src) != _numel(dst):
            raise VerifyException(f"pg.reshape: cannot reshape {src} ({_numel(src)} elements) to {dst}")


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


@irdl_op_definition
class PermuteOp(IRDLOperation):
    """Transpose dims: result dim i is input dim ``perm[i]``:
    ``%y = pg.permute %x perm = [1, 0] : tensor<2x3xf32> -> tensor<3x2xf32>``."""

    name = "pg.permute"
    input = operand_def(TensorType)
    perm = prop_def(DenseArrayBase.constr(i64))
    result = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = "$input `perm` `=` $perm attr-dict `:` type($input) `->` type($result)"

    def __init__(self, input: SSAValue, perm: Sequence[int]):
        shape = shape_of(input)
        super().__init__(
            operands=[input],
            properties={"perm": _i64_array(perm)},
            result_types=[tensor_type([shape[p] for p in perm], element_of(input))],
        )

    @property
    def perm_list(self) -> tuple[int, ...]:
        return _ints(self.perm)

    def verify_(self) -> None:
        shape, perm = shape_of(self.input), self.perm_list
        if sorted(perm) != list(range(len(shape))):
            raise VerifyException(f"pg.permute: {perm} is not a permutation of the {len(shape)} dims of {shape}")
        _expect_shape("pg.permute", shape_of(self.result), tuple(shape[p] for p in perm))


def sliced_shape(start: Sequence[int], stop: Sequence[int], step: Sequence[int]) -> tuple[int, ...]:
    return tuple(max(0, -(-(b - a) // s)) for a, b, s in zip(start, stop, step, strict=True))


@irdl_op_definition
class SliceOp(IRDLOperation):
    """``x[start:stop:step]`` per dim with ``0 <= start <= stop <= size`` and ``step >= 1``:
    ``%y = pg.slice %x start = [0, 1] stop = [2, 3] step = [1, 1] : tensor<2x3xf32> -> tensor<2x2xf32>``."""

    name = "pg.slice"
    input = operand_def(TensorType)
    start = prop_def(DenseArrayBase.constr(i64))
    stop = prop_def(DenseArrayBase.constr(i64))
    step = prop_def(DenseArrayBase.constr(i64))
    result = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = (
        "$input `start` `=` $start `stop` `=` $stop `step` `=` $step attr-dict `:` type($input) `->` type($result)"
    )

    def __init__(self, input: SSAValue, start: Sequence[int], stop: Sequence[int], step: Sequence[int]):
        super().__init__(
            operands=[input],
            properties={"start": _i64_array(start), "stop": _i64_array(stop), "step": _i64_array(step)},
            result_types=[tensor_type(sliced_shape(start, stop, step), element_of(input))],
        )

    def verify_(self) -> None:
        shape = shape_of(self.input)
        start, stop, step = _ints(self.start), _ints(self.stop), _ints(self.step)
        if not len(start) == len(stop) == len(step) == len(shape):
            raise VerifyException(f"pg.slice: start/stop/step need one entry per dim of {shape}")
        for d, (a, b, s, n) in enumerate(zip(start, stop, step, shape, strict=True)):
            if not (0 <= a <= b <= n and s >= 1):
                raise VerifyException(f"pg.slice: dim {d}: {a}:{b}:{s} is not a valid slice of size {n}")
        _expect_shape("pg.slice", shape_of(self.result), sliced_shape(start, stop, step))


def padded_shape(
    shape: Sequence[int], low: Sequence[int], high: Sequence[int], interior: Sequence[int]
) -> tuple[int, ...]:
    return tuple(lo + hi + n + max(n - 1, 0) * it for n, lo, hi, it in zip(shape, low, high, interior, strict=True))


@irdl_op_definition
class PadOp(IRDLOperation):
    """Pad with ``value``: ``low``/``high`` elements before/after each dim and ``interior`` elements between
    neighbours (XLA's Pad; the vjp of a strided slice):
    ``%y = pg.pad %x low = [1] high = [0] interior = [0] value = 0.0 : tensor<3xf32> -> tensor<4xf32>``."""

    name = "pg.pad"
    input = operand_def(TensorType)
    low = prop_def(DenseArrayBase.constr(i64))
    high = prop_def(DenseArrayBase.constr(i64))
    interior = prop_def(DenseArrayBase.constr(i64))
    value = prop_def(FloatAttr[Float64Type])
    result = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = (
        "$input `low` `=` $low `high` `=` $high `interior` `=` $interior `value` `=` $value attr-dict"
        " `:` type($input) `->` type($result)"
    )

    def __init__(
        self,
        input: SSAValue,
        low: Sequence[int],
        high: Sequence[int],
        interior: Sequence[int] | None = None,
        value: float = 0.0,
    ):
        shape = shape_of(input)
        interior = interior if interior is not None else [0] * len(shape)
        super().__init__(
            operands=[input],
            properties={
                "low": _i64_array(low),
                "high": _i64_array(high),
                "interior": _i64_array(interior),
                "value": FloatAttr(value, f64),
            },
            result_types=[tensor_type(padded_shape(shape, low, high, interior), element_of(input))],
        )

    def verify_(self) -> None:
        shape = shape_of(self.input)
        low, high, interior = _ints(self.low), _ints(self.high), _ints(self.interior)
        if not len(low) == len(high) == len(interior) == len(shape):
            raise VerifyException(f"pg.pad: low/high/interior need one entry per dim of {shape}")
        if min((*low, *high, *interior), default=0) < 0:
            raise VerifyException("pg.pad: padding amounts must be non-negative")
        _expect_shape("pg.pad", shape_of(self.result), padded_shape(shape, low, high, interior))


@irdl_op_definition
class ConcatOp(IRDLOperation):
    """Join tensors along ``dim`` (other dims equal):
    ``%y = pg.concat %a, %b dim = 0 : (tensor<2x3xf32>, tensor<1x3xf32>) -> tensor<3x3xf32>``."""

    name = "pg.concat"
    inputs = var_operand_def(TensorType)
    dim = prop_def(IntegerAttr[I64])
    result = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = "$inputs `dim` `=` $dim attr-dict `:` `(` type($inputs) `)` `->` type($result)"

    def __init__(self, inputs: Sequence[SSAValue], dim: int):
        shape = list(shape_of(inputs[0]))
        shape[dim] = sum(shape_of(v)[dim] for v in inputs)
        super().__init__(
            operands=[list(inputs)],
            properties={"dim": IntegerAttr(dim, i64)},
            result_types=[tensor_type(shape, element_of(inputs[0]))],
        )

    @property
    def dim_index(self) -> int:
        return self.dim.value.data

    def verify_(self) -> None:
        if not self.inputs:
            raise VerifyException("pg.concat: needs at least one input")
        first = shape_of(self.inputs[0])
        d = self.dim_index
        _check_dims("pg.concat", [d], len(first))
        for v in self.inputs:
            s = shape_of(v)
            if element_of(v) != element_of(self.inputs[0]):
                raise VerifyException("pg.concat: inputs must share one element type")
            if len(s) != len(first) or any(a != b for i, (a, b) in enumerate(zip(s, first, strict=True)) if i != d):
                raise VerifyException(f"pg.concat: shapes {first} and {s} differ outside dim {d}")
        want = list(first)
        want[d] = sum(shape_of(v)[d] for v in self.inputs)
        _expect_shape("pg.concat", shape_of(self.result), tuple(want))


# ---------------------------------------------------------------------------------------------------------------
# Contraction and indexing


def matmul_shape(a: Sequence[int], b: Sequence[int]) -> tuple[int, ...] | None:
    """Shape of a batched matmul of ``(..., M, K) @ (..., K, N)`` with equal batch dims, or None."""
    if len(a) < 2 or len(a) != len(b) or a[:-2] != b[:-2] or a[-1] != b[-2]:
        return None
    return (*a[:-1], b[-1])


@irdl_op_definition
class MatmulOp(IRDLOperation):
    """Batched matrix product ``(..., M, K) @ (..., K, N) -> (..., M, N)``; batch dims equal (the frontend
    broadcasts them): ``%c = pg.matmul %a, %b : (tensor<2x3xf32>, tensor<3x4xf32>) -> tensor<2x4xf32>``.

    ``bf16``/``f16`` operands accumulate in ``f32`` and the result is rounded once (as cuBLAS and PyTorch do).
    ``tf32`` (``f32`` operands only; set under ``pg.backends.cuda.matmul.allow_tf32``) lets a GPU schedule multiply
    with TF32 tensor cores (inputs rounded to 10 mantissa bits, ``f32`` accumulation):
    ``%c = pg.matmul %a, %b tf32 : ...``. Backends without TF32 (the CPU executor) compute in full ``f32``."""

    name = "pg.matmul"
    lhs = operand_def(TensorType)
    rhs = operand_def(TensorType)
    tf32 = opt_prop_def(UnitAttr)
    result = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = (
        "$lhs `,` $rhs (`tf32` $tf32^)? attr-dict `:` `(` type($lhs) `,` type($rhs) `)` `->` type($result)"
    )

    def __init__(self, lhs: SSAValue, rhs: SSAValue, tf32: bool = False):
        shape = matmul_shape(shape_of(lhs), shape_of(rhs))
        assert shape is not None, "pg.matmul: incompatible shapes"
        props: dict[str, Attribute] = {"tf32": UnitAttr()} if tf32 else {}
        super().__init__(operands=[lhs, rhs], properties=props, result_types=[tensor_type(shape, element_of(lhs))])

    @property
    def allows_tf32(self) -> bool:
        return self.tf32 is not None

    @property
    def precision(self) -> str:
        """How the product may be computed, as schedules and benchmarks name it: ``bf16``, ``fp16`` (f32
        accumulation), ``tf32`` (f32 under the ``tf32`` flag), ``fp32`` or ``fp64``."""
        element = element_of(self.lhs)
        if isinstance(element, Float32Type):
            return "tf32" if self.allows_tf32 else "fp32"
        return {BFloat16Type: "bf16", Float16Type: "fp16", Float64Type: "fp64"}[type(element)]  # type: ignore[index]

    def verify_(self) -> None:
        a, b = shape_of(self.lhs), shape_of(self.rhs)
        if element_of(self.lhs) != element_of(self.rhs) or not is_float(element_of(self.lhs)):
            raise VerifyException(
                f"pg.matmul: expects float operands of one type, got {self.lhs.type}, {self.rhs.type}"
            )
        if self.tf32 is not None and not isinstance(element_of(self.lhs), Float32Type):
            raise VerifyException(f"pg.matmul: tf32 applies to f32 operands only, got {element_of(self.lhs)}")
        want = matmul_shape(a, b)
        if want is None:
            raise VerifyException(f"pg.matmul: shapes {a} and {b} do not match for a batched matmul")
        _expect_shape("pg.matmul", shape_of(self.result), want)


def gather_shape(shape: Sequence[int], index_shape: Sequence[int], dim: int) -> tuple[int, ...]:
    return (*shape[:dim], *index_shape, *shape[dim + 1 :])


@irdl_op_definition
class GatherOp(IRDLOperation):
    """Integer-array indexing along ``dim`` (``numpy.take``): the result has shape
    ``input.shape[:dim] + indices.shape + input.shape[dim+1:]``; indices must lie in ``[0, size)``:
    ``%e = pg.gather %table[%idx] dim = 0 : (tensor<27x10xf32>, tensor<32x3xi64>) -> tensor<32x3x10xf32>``."""

    name = "pg.gather"
    input = operand_def(TensorType)
    indices = operand_def(TensorType)
    dim = prop_def(IntegerAttr[I64])
    result = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = (
        "$input `[` $indices `]` `dim` `=` $dim attr-dict `:` `(` type($input) `,` type($indices) `)`"
        " `->` type($result)"
    )

    def __init__(self, input: SSAValue, indices: SSAValue, dim: int):
        shape = gather_shape(shape_of(input), shape_of(indices), dim)
        super().__init__(
            operands=[input, indices],
            properties={"dim": IntegerAttr(dim, i64)},
            result_types=[tensor_type(shape, element_of(input))],
        )

    @property
    def dim_index(self) -> int:
        return self.dim.value.data

    def verify_(self) -> None:
        shape = shape_of(self.input)
        _check_dims("pg.gather", [self.dim_index], len(shape))
        if not is_int(element_of(self.indices)):
            raise VerifyException(f"pg.gather: indices must be an integer tensor, got {self.indices.type}")
        want = gather_shape(shape, shape_of(self.indices), self.dim_index)
        _expect_shape("pg.gather", shape_of(self.result), want)


INDEX_CHECK_ATTR = "pg.index_check"
"""The attribute holding the message template (``{}`` for the index) on the error flag of a lowered
``pg.check_index``: a mutable ``memref<2xi64>`` global that a kernel sets to (1, the bad index)."""


_OUT_OF_RANGE = " is out of range for dim"  # the default message of pg.check_index: "<what> <value> is out of ..."


def check_error(message: str) -> Exception:
    """The exception a failed ``pg.check_index`` raises with its filled-in ``message`` (``CheckIndexOp.message``):
    ``IndexError`` for an index out of range (the default message), ``RuntimeError`` for a data check given its own
    ``message`` template (``multinomial``'s weights, ``one_hot``'s classes), as PyTorch raises for those. Every
    backend (numpy executor, loop interpreter, CUDA runtime) raises through this."""
    head, _, _ = message.partition(_OUT_OF_RANGE)
    words = head.split(" ")
    default = len(words) == 2 and words[1].lstrip("-").isdigit() and _OUT_OF_RANGE in message
    return IndexError(message) if default else RuntimeError(message)


@irdl_op_definition
class CheckIndexOp(IRDLOperation):
    """A bounds check of integer indices before a ``pg.gather``: the result is the input, and every element must lie
    in ``[0, size)`` (``[-size, size)`` with ``negative``, for numpy-style indices that are wrapped afterwards);
    otherwise running the program raises ``IndexError`` naming the first bad ``what`` (``index``, ``target``), the
    ``dim`` it indexes, ``size`` and the op's location, or the op's own ``message`` (a template whose ``{}`` is the
    bad value: other data checks, such as ``one_hot``'s classes, reuse the op). Backends check on the device (an
    error flag on the GPU): ``%i = pg.check_index %idx "index" dim = 0 size = 27 : tensor<32xi64>``."""

    name = "pg.check_index"
    T: ClassVar = VarConstraint("T", base(TensorType))
    input = operand_def(T)
    what = prop_def(StringAttr)
    dim = prop_def(IntegerAttr[I64])
    size = prop_def(IntegerAttr[I64])
    negative = opt_prop_def(UnitAttr)
    template = opt_prop_def(StringAttr)
    result = result_def(T)
    traits = traits_def(Pure())
    assembly_format = (
        "$input $what `dim` `=` $dim `size` `=` $size (`negative` $negative^)? (`message` $template^)? attr-dict "
        "`:` type($result)"
    )

    def __init__(
        self, input: SSAValue, what: str, dim: int, size: int, negative: bool = False, template: str | None = None
    ):
        props: dict[str, Attribute] = {
            "what": StringAttr(what),
            "dim": IntegerAttr(dim, i64),
            "size": IntegerAttr(size, i64),
        }
        if negative:
            props["negative"] = UnitAttr()
        if template is not None:
            props["template"] = StringAttr(template)
        super().__init__(operands=[input], properties=props, result_types=[input.type])

    @property
    def bounds(self) -> tuple[int, int]:
        """The allowed range ``[low, high)``."""
        size = self.size.value.data
        return (-size if self.negative is not None else 0), size

    def message(self, value: int | str) -> str:
        """The error for the bad index ``value`` with the user's ``file:line`` from the op's location (``value="{}"``
        gives a template that a backend fills in at run time). A ``message`` template given to the op replaces the
        default ``"<what> <value> is out of range for dim <dim> of size <size>"``; its ``{}`` is the value."""
        loc = self.location
        at = f" (at {loc.filename.data}:{loc.line.data})" if isinstance(loc, FileLineColLoc) else ""
        if self.template is not None:
            return self.template.data.replace("{}", str(value), 1) + at
        what = f"{self.what.data} {value}"
        return f"{what}{_OUT_OF_RANGE} {self.dim.value.data} of size {self.size.value.data}{at}"

    def verify_(self) -> None:
        if not is_int(element_of(self.input)):
            raise VerifyException(f"pg.check_index: expects an integer tensor, got {self.input.type}")
        if self.size.value.data < 0:
            raise VerifyException(f"pg.check_index: size must be >= 0, got {self.size.value.data}")


@irdl_op_definition
class ScatterAddOp(IRDLOperation):
    """The transpose of ``pg.gather``: a zero tensor of the result type with ``updates`` added at ``indices``
    along ``dim``; repeated indices accumulate:
    ``%g = pg.scatter_add %upd[%idx] dim = 0 : (tensor<32x3x10xf32>, tensor<32x3xi64>) -> tensor<27x10xf32>``."""

    name = "pg.scatter_add"
    updates = operand_def(TensorType)
    indices = operand_def(TensorType)
    dim = prop_def(IntegerAttr[I64])
    result = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = (
        "$updates `[` $indices `]` `dim` `=` $dim attr-dict `:` `(` type($updates) `,` type($indices) `)`"
        " `->` type($result)"
    )

    def __init__(self, updates: SSAValue, indices: SSAValue, dim: int, result_shape: Sequence[int]):
        super().__init__(
            operands=[updates, indices],
            properties={"dim": IntegerAttr(dim, i64)},
            result_types=[tensor_type(result_shape, element_of(updates))],
        )

    @property
    def dim_index(self) -> int:
        return self.dim.value.data

    def verify_(self) -> None:
        shape = shape_of(self.result)
        _check_dims("pg.scatter_add", [self.dim_index], len(shape))
        if not is_int(element_of(self.indices)):
            raise VerifyException(f"pg.scatter_add: indices must be an integer tensor, got {self.indices.type}")
        want = gather_shape(shape, shape_of(self.indices), self.dim_index)
        if shape_of(self.updates) != want:
            raise VerifyException(
                f"pg.scatter_add: updates of shape {shape_of(self.updates)} do not match {want} "
                f"(result {shape}, indices {shape_of(self.indices)})"
            )


@irdl_op_definition
class CastOp(IRDLOperation):
    """Element type conversion, same shape (floats to ints truncate toward zero, as PyTorch):
    ``%y = pg.cast %x : tensor<3xi64> -> tensor<3xf32>``."""

    name = "pg.cast"
    input = operand_def(TensorType)
    result = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = "$input attr-dict `:` type($input) `->` type($result)"

    def __init__(self, input: SSAValue, element: Attribute):
        super().__init__(operands=[input], result_types=[tensor_type(shape_of(input), element)])

    def verify_(self) -> None:
        if shape_of(self.input) != shape_of(self.result):
            raise VerifyException(f"pg.cast: shapes {shape_of(self.input)} and {shape_of(self.result)} differ")


DISTRIBUTIONS = ("uniform", "normal")


@irdl_op_definition
class RandomOp(IRDLOperation):
    """Random numbers from the counter-based Philox 4x32-10 generator (Salmon et al., "Parallel random numbers:
    as easy as 1, 2, 3", SC 2011). ``seed`` and ``offset`` are 0-d ``i64`` tensors: element ``i`` of the result
    uses counter ``offset + i // 4`` ... (see ``picograd.dialects.philox``), so every backend draws bit-identical
    numbers and a traced step is a pure function of its inputs. ``uniform`` is in [0, 1); ``normal`` is standard
    normal (Box-Muller):
    ``%r = pg.random "normal" %seed, %offset : tensor<3x4xf32>``."""

    name = "pg.random"
    distribution = prop_def(StringAttr)
    seed = operand_def(TensorType(i64, []))
    offset = operand_def(TensorType(i64, []))
    result = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = "$distribution $seed `,` $offset attr-dict `:` type($result)"

    def __init__(self, distribution: str, seed: SSAValue, offset: SSAValue, result_type: TensorType):
        super().__init__(
            operands=[seed, offset],
            properties={"distribution": StringAttr(distribution)},
            result_types=[result_type],
        )

    def verify_(self) -> None:
        if self.distribution.data not in DISTRIBUTIONS:
            raise VerifyException(
                f"pg.random: unknown distribution '{self.distribution.data}', expected {DISTRIBUTIONS}"
            )
        for v in (self.seed, self.offset):
            if v.type != tensor_type((), i64):
                raise VerifyException(f"pg.random: seed and offset must be tensor<i64>, got {v.type}")
        if not is_float(element_of(self.result)):
            raise VerifyException(f"pg.random: result must be a float tensor, got {self.result.type}")


# ---------------------------------------------------------------------------------------------------------------
# Autodiff and optimizer ops (expanded by passes)


@irdl_op_definition
class GradOp(IRDLOperation):
    """Gradients of ``root`` with respect to each value in ``wrt`` (one result per ``wrt``, of its type).
    ``root`` is a scalar (seed 1) unless a ``seed`` gradient of root's type is given. Expanded by ``pg-autodiff``:
    ``%ga, %gb = pg.grad %loss wrt %a, %b : tensor<f32> wrt tensor<3xf32>, tensor<3x4xf32>``."""

    name = "pg.grad"
    root = operand_def(TensorType)
    seed = opt_operand_def(TensorType)
    wrt = var_operand_def(TensorType)
    grads = var_result_def(TensorType)
    irdl_options = (AttrSizedOperandSegments(as_property=True),)

    def __init__(self, root: SSAValue, wrt: Sequence[SSAValue], seed: SSAValue | None = None):
        super().__init__(
            operands=[root, [seed] if seed is not None else [], list(wrt)],
            result_types=[[v.type for v in wrt]],
        )

    def verify_(self) -> None:
        if self.seed is not None:
            if self.seed.type != self.root.type:
                raise VerifyException(f"pg.grad: seed type {self.seed.type} differs from root type {self.root.type}")
        elif shape_of(self.root) != ():
            raise VerifyException(f"pg.grad: root of shape {shape_of(self.root)} is not a scalar; give a seed gradient")
        if not is_float(element_of(self.root)):
            raise VerifyException(f"pg.grad: root must be a float tensor, got {self.root.type}")
        for v in self.wrt:
            if not is_float(element_of(v)):
                raise VerifyException(
                    f"pg.grad: cannot differentiate with respect to {v.type}: only float tensors can require gradients"
                )
        if [r.type for r in self.grads] != [v.type for v in self.wrt]:
            raise VerifyException("pg.grad: each result must have the type of its wrt value")

    def print(self, printer: Printer) -> None:
        printer.print_string(" ")
        printer.print_operand(self.root)
        if self.seed is not None:
            printer.print_string(" seed ")
            printer.print_operand(self.seed)
        printer.print_string(" wrt ")
        printer.print_list(self.wrt, printer.print_operand)
        printer.print_op_attributes(self.attributes)
        printer.print_string(" : ")
        printer.print_attribute(self.root.type)
        printer.print_string(" wrt ")
        printer.print_list([v.type for v in self.wrt], printer.print_attribute)

    @classmethod
    def parse(cls, parser: Parser) -> GradOp:
        root = parser.parse_unresolved_operand()
        seed = parser.parse_unresolved_operand() if parser.parse_optional_keyword("seed") else None
        parser.parse_keyword("wrt")
        wrt = parser.parse_comma_separated_list(parser.Delimiter.NONE, parser.parse_unresolved_operand)
        attrs = parser.parse_optional_attr_dict()
        parser.parse_punctuation(":")
        root_t = parser.parse_type()
        parser.parse_keyword("wrt")
        wrt_t = parser.parse_comma_separated_list(parser.Delimiter.NONE, parser.parse_type)
        root_v = parser.resolve_operand(root, root_t)
        seed_v = parser.resolve_operand(seed, root_t) if seed is not None else None
        wrt_v = [parser.resolve_operand(o, t) for o, t in zip(wrt, wrt_t, strict=True)]
        op = cls(root_v, wrt_v, seed_v)
        op.attributes.update(attrs)
        return op


class OptimizerOp(IRDLOperation):
    """Base of optimizer ops: one ``step()`` of one parameter group, expanded into elementwise ``pg`` ops by the
    optimizer passes. Hyperparameters (``HYPER``) are 0-d ``f64`` runtime scalars, so a schedule changes them
    without retracing; ``step`` is the 0-d ``i64`` step count before this update; ``state`` holds
    ``STATE_PER_PARAM`` buffers per parameter (all firsts, then all seconds). Results: the new step count, the new
    parameters, the new state (same order). Printed as::

        %s1, %new:4 = pg.adam lr %lr, beta1 %b1, beta2 %b2, eps %eps, weight_decay %wd step %s
                          params(%w) grads(%gw) state(%m, %v) : tensor<4x3xf32>
    """

    HYPER: ClassVar[tuple[str, ...]] = ()
    STATE_PER_PARAM: ClassVar[int] = 0
    FLAGS: ClassVar[tuple[str, ...]] = ()

    hyper = var_operand_def(TensorType(f64, []))
    step = operand_def(TensorType(i64, []))
    params = var_operand_def(TensorType)
    grads = var_operand_def(TensorType)
    state = var_operand_def(TensorType)
    outs = var_result_def(TensorType)
    irdl_options = (AttrSizedOperandSegments(as_property=True),)
    traits = traits_def(Pure())

    def __init__(
        self,
        hyper: Sequence[SSAValue],
        step: SSAValue,
        params: Sequence[SSAValue],
        grads: Sequence[SSAValue],
        state: Sequence[SSAValue],
        flags: Sequence[str] = (),
    ):
        super().__init__(
            operands=[list(hyper), step, list(params), list(grads), list(state)],
            result_types=[[step.type, *(p.type for p in params), *(s.type for s in state)]],
            attributes={f: UnitAttr() for f in flags},
        )

    def hyper_value(self, name: str) -> SSAValue:
        """The operand of hyperparameter ``name`` (one of ``HYPER``)."""
        return self.hyper[self.HYPER.index(name)]

    @property
    def new_step(self) -> SSAValue:
        return self.outs[0]

    @property
    def new_params(self) -> Sequence[SSAValue]:
        return self.outs[1 : 1 + len(self.params)]

    @property
    def new_state(self) -> Sequence[SSAValue]:
        return self.outs[1 + len(self.params) :]

    def flag(self, name: str) -> bool:
        return name in self.attributes

    def state_per_param(self) -> int:
        """Number of state buffers per parameter."""
        return self.STATE_PER_PARAM

    def verify_(self) -> None:
        if len(self.hyper) != len(self.HYPER):
            raise VerifyException(f"{self.name}: expects hyperparameters {self.HYPER}, got {len(self.hyper)}")
        n = len(self.params)
        k = self.state_per_param()
        if len(self.grads) != n or len(self.state) != n * k:
            raise VerifyException(
                f"{self.name}: {n} params need {n} grads and {n * k} state buffers, "
                f"got {len(self.grads)} and {len(self.state)}"
            )
        for i, p in enumerate(self.params):
            if not is_float(element_of(p)):
                raise VerifyException(f"{self.name}: parameter {i} is not a float tensor: {p.type}")
            others = [self.grads[i], *(self.state[j * n + i] for j in range(k))]
            for v in others:
                if v.type != p.type:
                    raise VerifyException(
                        f"{self.name}: parameter {i} has type {p.type} but its grad/state has {v.type}"
                    )
        for name in self.attributes:
            if name not in self.FLAGS:
                raise VerifyException(f"{self.name}: unknown flag '{name}', expected one of {self.FLAGS}")

    def print(self, printer: Printer) -> None:
        printer.print_string(" ")

        def print_hyper(name_value: tuple[str, SSAValue]) -> None:
            printer.print_string(f"{name_value[0]} ")
            printer.print_operand(name_value[1])

        printer.print_list(zip(self.HYPER, self.hyper, strict=True), print_hyper)
        printer.print_string(" step ")
        printer.print_operand(self.step)
        for key, vals in (("params", self.params), ("grads", self.grads), ("state", self.state)):
            printer.print_string(f" {key}(")
            printer.print_list(vals, printer.print_operand)
            printer.print_string(")")
        printer.print_op_attributes(self.attributes)
        printer.print_string(" : ")
        printer.print_list([p.type for p in self.params], printer.print_attribute)

    @classmethod
    def parse(cls, parser: Parser) -> OptimizerOp:
        start = parser.pos
        scalar = TensorType(f64, [])
        hyper = []
        for i, name in enumerate(cls.HYPER):
            if i:
                parser.parse_punctuation(",")
            parser.parse_keyword(name)
            hyper.append(parser.parse_unresolved_operand())
        parser.parse_keyword("step")
        step = parser.parse_unresolved_operand()
        lists = []
        for key in ("params", "grads", "state"):
            parser.parse_keyword(key)
            lists.append(parser.parse_comma_separated_list(parser.Delimiter.PAREN, parser.parse_unresolved_operand))
        attrs = parser.parse_optional_attr_dict()
        parser.parse_punctuation(":")
        types = parser.parse_comma_separated_list(parser.Delimiter.NONE, parser.parse_type)
        params, grads, state = lists
        state_types = types * (len(state) // max(len(types), 1))
        if len(params) != len(types) or len(grads) != len(types) or len(state) != len(state_types):
            parser.raise_error(f"{cls.name}: operand lists do not match the {len(types)} parameter types", start)
        op = cls(
            [parser.resolve_operand(h, scalar) for h in hyper],
            parser.resolve_operand(step, TensorType(i64, [])),
            [parser.resolve_operand(o, t) for o, t in zip(params, types, strict=True)],
            [parser.resolve_operand(o, t) for o, t in zip(grads, types, strict=True)],
            [parser.resolve_operand(o, t) for o, t in zip(state, state_types, strict=True)],
        )
        op.attributes.update(attrs)
        return op


@irdl_op_definition
class SGDOp(OptimizerOp):
    """``torch.optim.SGD`` (momentum, dampening, weight decay, nesterov): one momentum buffer per parameter when
    the ``momentum`` flag is set, none otherwise. Expanded by ``pg-sgd``."""

    name = "pg.sgd"
    HYPER: ClassVar[tuple[str, ...]] = ("lr", "momentum", "dampening", "weight_decay")
    FLAGS: ClassVar[tuple[str, ...]] = ("nesterov", "momentum")

    def state_per_param(self) -> int:
        return 1 if self.flag("momentum") else 0

    def verify_(self) -> None:
        super().verify_()
        if self.flag("nesterov") and not self.flag("momentum"):
            raise VerifyException("pg.sgd: nesterov needs the momentum flag")


@irdl_op_definition
class AdamOp(OptimizerOp):
    """``torch.optim.Adam`` (Kingma and Ba, 2015, Algorithm 1 with bias correction; L2 weight decay added to the
    gradient): state is the first and second moments. Expanded by ``pg-adam``."""

    name = "pg.adam"
    HYPER: ClassVar[tuple[str, ...]] = ("lr", "beta1", "beta2", "eps", "weight_decay")
    STATE_PER_PARAM: ClassVar[int] = 2


@irdl_op_definition
class AdamWOp(OptimizerOp):
    """``torch.optim.AdamW`` (Loshchilov and Hutter, 2019: decoupled weight decay ``p -= lr * wd * p``): state is
    the first and second moments. Expanded by ``pg-adamw``."""

    name = "pg.adamw"
    HYPER: ClassVar[tuple[str, ...]] = ("lr", "beta1", "beta2", "eps", "weight_decay")
    STATE_PER_PARAM: ClassVar[int] = 2


# ---------------------------------------------------------------------------------------------------------------
# Attention (issue 11): one op, so that autodiff keeps it whole and a later pass can give it a fused kernel


@irdl_op_definition
class ScaledDotProductAttentionOp(IRDLOperation):
    """``softmax(q @ k^T * scale + mask) [* dropout] @ v`` over the last two dims, as
    ``torch.nn.functional.scaled_dot_product_attention`` (Vaswani et al., "Attention is all you need", 2017).

    Shapes: ``query`` (*B, L, E), ``key`` (*B, S, E), ``value`` (*B, S, Ev), result (*B, L, Ev), one float element
    type. ``mask`` (optional) broadcasts to (*B, L, S): ``i1`` means True = attend, a float tensor is added to the
    scores. ``dropout`` (optional) is a float multiplier of shape (*B, L, S) applied to the probabilities (0 or
    1 / (1 - p), drawn by the frontend). ``causal`` keeps key j <= query i (top-left aligned). A row with every key
    masked gives zeros (as picograd's softmax). ``scale`` is an ``f64`` attribute::

        %o = pg.scaled_dot_product_attention %q, %k, %v scale = 0.25 causal
               : tensor<2x4x8x16xf32>, tensor<2x4x8x16xf32>, tensor<2x4x8x16xf32> -> tensor<2x4x8x16xf32>
    """

    name = "pg.scaled_dot_product_attention"
    query = operand_def(TensorType)
    key = operand_def(TensorType)
    value = operand_def(TensorType)
    mask = opt_operand_def(TensorType)
    dropout = opt_operand_def(TensorType)
    scale = prop_def(FloatAttr[Float64Type])
    causal = opt_prop_def(UnitAttr)
    result = result_def(TensorType)
    traits = traits_def(Pure())
    irdl_options = (AttrSizedOperandSegments(as_property=True),)
    assembly_format = (
        "$query `,` $key `,` $value (`mask` $mask^ `:` type($mask))? (`dropout` $dropout^ `:` type($dropout))? "
        "`scale` `=` $scale (`causal` $causal^)? attr-dict `:` type($query) `,` type($key) `,` type($value) `->` "
        "type($result)"
    )

    def __init__(
        self,
        query: SSAValue,
        key: SSAValue,
        value: SSAValue,
        mask: SSAValue | None = None,
        dropout: SSAValue | None = None,
        scale: float = 1.0,
        causal: bool = False,
    ):
        props: dict[str, Attribute] = {"scale": FloatAttr(float(scale), f64)}
        if causal:
            props["causal"] = UnitAttr()
        shape = (*shape_of(query)[:-1], shape_of(value)[-1])
        super().__init__(
            operands=[query, key, value, [mask] if mask is not None else [], [dropout] if dropout is not None else []],
            properties=props,
            result_types=[tensor_type(shape, element_of(query))],
        )

    @property
    def scale_value(self) -> float:
        return float(self.scale.value.data)

    @property
    def is_causal(self) -> bool:
        return self.causal is not None

    def scores_shape(self) -> tuple[int, ...]:
        """(*B, L, S): the shape of the scores and probabilities."""
        return (*shape_of(self.query)[:-1], shape_of(self.key)[-2])

    def verify_(self) -> None:
        q, k, v = shape_of(self.query), shape_of(self.key), shape_of(self.value)
        el = element_of(self.query)
        if not is_float(el) or element_of(self.key) != el or element_of(self.value) != el:
            raise VerifyException(
                f"{self.name}: query, key and value must be float tensors of one element type, got "
                f"{self.query.type}, {self.key.type}, {self.value.type}"
            )
        if len(q) < 2 or len(k) != len(q) or len(v) != len(q):
            raise VerifyException(f"{self.name}: query {q}, key {k} and value {v} need one rank >= 2")
        if q[:-2] != k[:-2] or q[:-2] != v[:-2] or q[-1] != k[-1] or k[-2] != v[-2]:
            raise VerifyException(
                f"{self.name}: shapes query {q}, key {k}, value {v} do not match (*B, L, E), (*B, S, E), (*B, S, Ev)"
            )
        scores = self.scores_shape()
        if self.mask is not None:
            m = shape_of(self.mask)
            if element_of(self.mask) not in (i1, el) or len(m) > len(scores) or broadcast_shape(m, scores) != scores:
                raise VerifyException(f"{self.name}: mask {self.mask.type} does not broadcast to scores {scores}")
        if self.dropout is not None and self.dropout.type != tensor_type(scores, el):
            raise VerifyException(f"{self.name}: dropout {self.dropout.type} must be of type {tensor_type(scores, el)}")
        _expect_shape(self.name, shape_of(self.result), (*q[:-1], v[-1]))


def _verify_attention_inputs(
    name: str, query: SSAValue, key: SSAValue, value: SSAValue | None, mask: SSAValue | None
) -> tuple[int, ...]:
    """The checks of ``pg.scaled_dot_product_attention`` on (q, k[, v][, mask]); returns the scores' shape."""
    q, k = shape_of(query), shape_of(key)
    el = element_of(query)
    if not is_float(el) or element_of(key) != el or (value is not None and element_of(value) != el):
        raise VerifyException(f"{name}: query, key and value must be float tensors of one element type")
    if len(q) < 2 or len(k) != len(q) or q[:-2] != k[:-2] or q[-1] != k[-1]:
        raise VerifyException(f"{name}: shapes query {q} and key {k} do not match (*B, L, E), (*B, S, E)")
    if value is not None:
        v = shape_of(value)
        if len(v) != len(q) or v[:-2] != q[:-2] or v[-2] != k[-2]:
            raise VerifyException(f"{name}: value {v} does not match key {k} as (*B, S, Ev)")
    scores = (*q[:-1], k[-2])
    if mask is not None:
        m = shape_of(mask)
        if element_of(mask) not in (i1, el) or len(m) > len(scores) or broadcast_shape(m, scores) != scores:
            raise VerifyException(f"{name}: mask {mask.type} does not broadcast to scores {scores}")
    return scores


@irdl_op_definition
class AttentionLseOp(IRDLOperation):
    """The row log-sum-exp of attention's masked, scaled scores, ``logsumexp(q @ k^T * scale + mask, -1)``:
    (*B, L), ``-inf`` for a row whose keys are all masked. Operands, ``scale`` and ``causal`` as
    ``pg.scaled_dot_product_attention``. The fused attention kernel computes it with the forward pass (the ``L``
    of FlashAttention-2, Dao 2023, Algorithm 1) and its backward (``pg.attention_backward``) reads it::

        %l = pg.attention_lse %q, %k scale = 0.25 causal : tensor<2x8x16xf32>, tensor<2x8x16xf32> -> tensor<2x8xf32>
    """

    name = "pg.attention_lse"
    query = operand_def(TensorType)
    key = operand_def(TensorType)
    mask = opt_operand_def(TensorType)
    scale = prop_def(FloatAttr[Float64Type])
    causal = opt_prop_def(UnitAttr)
    result = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = (
        "$query `,` $key (`mask` $mask^ `:` type($mask))? `scale` `=` $scale (`causal` $causal^)? attr-dict `:` "
        "type($query) `,` type($key) `->` type($result)"
    )

    def __init__(
        self, query: SSAValue, key: SSAValue, mask: SSAValue | None = None, scale: float = 1.0, causal: bool = False
    ):
        props: dict[str, Attribute] = {"scale": FloatAttr(float(scale), f64)}
        if causal:
            props["causal"] = UnitAttr()
        super().__init__(
            operands=[query, key, [mask] if mask is not None else []],
            properties=props,
            result_types=[tensor_type(shape_of(query)[:-1], lse_element(element_of(query)))],
        )

    @property
    def scale_value(self) -> float:
        return float(self.scale.value.data)

    @property
    def is_causal(self) -> bool:
        return self.causal is not None

    def verify_(self) -> None:
        _verify_attention_inputs(self.name, self.query, self.key, None, self.mask)
        _expect_shape(self.name, shape_of(self.result), shape_of(self.query)[:-1])


@irdl_op_definition
class AttentionBackwardOp(IRDLOperation):
    """The gradients (dq, dk, dv) of ``out = pg.scaled_dot_product_attention(q, k, v[, mask][, dropout])`` (no
    float-mask gradient) given ``dout``, the output ``out`` and the row log-sum-exp ``lse`` (``pg.attention_lse``):
    with P = exp(scale q k^T + mask - lse), Z the dropout multiplier (1 without) and D = rowsum(dout * out),
    dv = (P Z)^T dout, dS = P (Z (dout v^T) - D), dq = scale dS k, dk = scale dS^T q (FlashAttention-2, Dao 2023,
    Algorithm 2; D is rowsum(P dP) with dropout too). A row with every key masked (``lse = -inf``) has P = 0::

        %dq, %dk, %dv = pg.attention_backward %q, %k, %v, %out, %dout, %lse scale = 0.25 causal : ...
    """

    name = "pg.attention_backward"
    query = operand_def(TensorType)
    key = operand_def(TensorType)
    value = operand_def(TensorType)
    out = operand_def(TensorType)
    dout = operand_def(TensorType)
    lse = operand_def(TensorType)
    mask = opt_operand_def(TensorType)
    dropout = opt_operand_def(TensorType)
    scale = prop_def(FloatAttr[Float64Type])
    causal = opt_prop_def(UnitAttr)
    dquery = result_def(TensorType)
    dkey = result_def(TensorType)
    dvalue = result_def(TensorType)
    traits = traits_def(Pure())
    irdl_options = (AttrSizedOperandSegments(as_property=True),)
    assembly_format = (
        "$query `,` $key `,` $value `,` $out `,` $dout `,` $lse (`mask` $mask^ `:` type($mask))? "
        "(`dropout` $dropout^ `:` type($dropout))? `scale` `=` $scale (`causal` $causal^)? attr-dict `:` type($query) "
        "`,` type($key) `,` type($value) `,` type($out) `,` type($dout) `,` type($lse) `->` type($dquery) `,` "
        "type($dkey) `,` type($dvalue)"
    )

    def __init__(
        self,
        query: SSAValue,
        key: SSAValue,
        value: SSAValue,
        out: SSAValue,
        dout: SSAValue,
        lse: SSAValue,
        mask: SSAValue | None = None,
        dropout: SSAValue | None = None,
        scale: float = 1.0,
        causal: bool = False,
    ):
        props: dict[str, Attribute] = {"scale": FloatAttr(float(scale), f64)}
        if causal:
            props["causal"] = UnitAttr()
        super().__init__(
            operands=[
                query,
                key,
                value,
                out,
                dout,
                lse,
                [mask] if mask is not None else [],
                [dropout] if dropout is not None else [],
            ],
            properties=props,
            result_types=[query.type, key.type, value.type],
        )

    @property
    def scale_value(self) -> float:
        return float(self.scale.value.data)

    @property
    def is_causal(self) -> bool:
        return self.causal is not None

    def verify_(self) -> None:
        _verify_attention_inputs(self.name, self.query, self.key, self.value, self.mask)
        q, v = shape_of(self.query), shape_of(self.value)
        el = element_of(self.query)
        out = tensor_type((*q[:-1], v[-1]), el)
        if self.out.type != out or self.dout.type != out:
            raise VerifyException(f"{self.name}: out and dout must be of type {out}")
        lse = tensor_type(q[:-1], lse_element(el))
        if self.lse.type != lse:
            raise VerifyException(f"{self.name}: lse must be of type {lse}")
        scores = tensor_type((*q[:-1], shape_of(self.key)[-2]), el)
        if self.dropout is not None and self.dropout.type != scores:
            raise VerifyException(f"{self.name}: dropout {self.dropout.type} must be of type {scores}")


# ---------------------------------------------------------------------------------------------------------------
# Convolution (issue 12): one op, so that autodiff keeps it whole and a later schedule can give it an implicit-GEMM
# kernel


def conv_output_size(size: int, kernel: int, stride: int, dilation: int, low: int, high: int) -> int:
    """Output length of a convolution along one spatial dim (PyTorch's formula, with the padding split into
    ``low`` and ``high``): ``(size + low + high - dilation (kernel - 1) - 1) // stride + 1``; < 1 when the dilated
    kernel is larger than the padded input."""
    return (size + low + high - dilation * (kernel - 1) - 1) // stride + 1


@irdl_op_definition
class ConvOp(IRDLOperation):
    """An N-d grouped convolution (cross-correlation, as ``torch.nn.functional.conv1d/conv2d``), channels first:

    ``out[n, o, q] = sum_{c, k} pad(input)[n, g(o) Cg + c, q stride + k dilation] weight[o, c, k]`` with ``q`` and
    ``k`` multi-indices over the spatial dims, ``g(o) = o // (O / groups)`` and ``Cg = C / groups``; the input is
    padded with zeros by ``pad_low``/``pad_high`` per spatial dim. Shapes: input (N, C, *S), weight (O, C / groups,
    *K), result (N, O, *Q) with ``Q = conv_output_size(S, K, ...)``; one float element type; every spatial dim
    needs a padded input at least as large as the dilated kernel::

        %y = pg.conv %x, %w stride = [1, 1] dilation = [1, 1] pad_low = [1, 1] pad_high = [1, 1] groups = 1
               : (tensor<2x3x8x8xf32>, tensor<4x3x3x3xf32>) -> tensor<2x4x8x8xf32>
    """

    name = "pg.conv"
    input = operand_def(TensorType)
    weight = operand_def(TensorType)
    stride = prop_def(DenseArrayBase.constr(i64))
    dilation = prop_def(DenseArrayBase.constr(i64))
    pad_low = prop_def(DenseArrayBase.constr(i64))
    pad_high = prop_def(DenseArrayBase.constr(i64))
    groups = prop_def(IntegerAttr[I64])
    result = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = (
        "$input `,` $weight `stride` `=` $stride `dilation` `=` $dilation `pad_low` `=` $pad_low `pad_high` `=` "
        "$pad_high `groups` `=` $groups attr-dict `:` `(` type($input) `,` type($weight) `)` `->` type($result)"
    )

    def __init__(
        self,
        input: SSAValue,
        weight: SSAValue,
        stride: Sequence[int],
        dilation: Sequence[int],
        pad_low: Sequence[int],
        pad_high: Sequence[int],
        groups: int = 1,
    ):
        x, w = shape_of(input), shape_of(weight)
        spatial = [
            conv_output_size(s, k, st, d, lo, hi)
            for s, k, st, d, lo, hi in zip(x[2:], w[2:], stride, dilation, pad_low, pad_high, strict=True)
        ]
        super().__init__(
            operands=[input, weight],
            properties={
                "stride": _i64_array(stride),
                "dilation": _i64_array(dilation),
                "pad_low": _i64_array(pad_low),
                "pad_high": _i64_array(pad_high),
                "groups": IntegerAttr(groups, i64),
            },
            result_types=[tensor_type((x[0], w[0], *spatial), element_of(input))],
        )

    @property
    def strides(self) -> tuple[int, ...]:
        return _ints(self.stride)

    @property
    def dilations(self) -> tuple[int, ...]:
        return _ints(self.dilation)

    @property
    def lows(self) -> tuple[int, ...]:
        return _ints(self.pad_low)

    @property
    def highs(self) -> tuple[int, ...]:
        return _ints(self.pad_high)

    @property
    def group_count(self) -> int:
        return self.groups.value.data

    def verify_(self) -> None:
        x, w = shape_of(self.input), shape_of(self.weight)
        el = element_of(self.input)
        if not is_float(el) or element_of(self.weight) != el:
            raise VerifyException(
                f"pg.conv: input and weight must be float tensors of one element type, got {self.input.type}, "
                f"{self.weight.type}"
            )
        r = len(x) - 2
        if r < 1 or len(w) != len(x):
            raise VerifyException(f"pg.conv: input {x} and weight {w} need one rank >= 3 (N, C, *spatial)")
        props = (self.strides, self.dilations, self.lows, self.highs)
        if any(len(p) != r for p in props):
            raise VerifyException(f"pg.conv: stride, dilation, pad_low and pad_high need {r} entries each")
        if min(self.strides + self.dilations) < 1 or min(self.lows + self.highs) < 0:
            raise VerifyException("pg.conv: stride and dilation must be >= 1 and padding >= 0")
        g = self.group_count
        if g < 1 or x[1] % g or w[0] % g or w[1] * g != x[1]:
            raise VerifyException(
                f"pg.conv: input {x} and weight {w} do not match for groups = {g} (C = weight[1] * groups, "
                "both C and O divisible by groups)"
            )
        spatial = tuple(
            conv_output_size(s, k, st, d, lo, hi) for s, k, st, d, lo, hi in zip(x[2:], w[2:], *props, strict=True)
        )
        if min(spatial) < 1:
            raise VerifyException(f"pg.conv: kernel {w[2:]} (dilated) is larger than the padded input {x[2:]}")
        _expect_shape("pg.conv", shape_of(self.result), (x[0], w[0], *spatial))


PG = Dialect(
    "pg",
    [
        ConstantOp,
        IotaOp,
        NegOp,
        ExpOp,
        LogOp,
        SqrtOp,
        RsqrtOp,
        SinOp,
        CosOp,
        TanhOp,
        SigmoidOp,
        ReluOp,
        AbsOp,
        ReciprocalOp,
        ErfOp,
        StopGradientOp,
        AddOp,
        SubOp,
        MulOp,
        DivOp,
        PowOp,
        MaximumOp,
        MinimumOp,
        CmpOp,
        SelectOp,
        BroadcastToOp,
        SumOp,
        MaxOp,
        MinOp,
        ArgmaxOp,
        ArgminOp,
        ReshapeOp,
        PermuteOp,
        SliceOp,
        PadOp,
        ConcatOp,
        MatmulOp,
        GatherOp,
        CheckIndexOp,
        ScatterAddOp,
        CastOp,
        RandomOp,
        GradOp,
        SGDOp,
        AdamOp,
        AdamWOp,
        *SURFACE_OPS,
        # attention (issue 11)
        ScaledDotProductAttentionOp,
        AttentionLseOp,
        AttentionBackwardOp,
        # convolution (issue 12)
        ConvOp,
    ],
)

__all__ = ["PG", "AnyFloat", "f32", "f64", "i1", "i32", "i64"]
