"""An interpreter of picograd's loop stage (tests only: tiny shapes).

The loop stage (``pg-bufferize`` then ``pg-to-loops``) is a ``func.func`` over ``memref`` buffers holding
``scf``/``memref``/``arith``/``math`` ops. This module runs it with xDSL's own interpreter
(``xdsl.interpreter.Interpreter`` with xDSL's ``scf``, ``memref``, ``arith``, ``math``, ``func`` and builtin
functions registered) plus :class:`LoopStageFunctions`, which adds what xDSL 0.74 lacks and fixes what it gets
wrong for us:

- ``scf.parallel`` (run sequentially, in row-major order) and its ``scf.reduce`` terminator;
- ``memref.view`` (an alias into the byte arena of the memory plan), ``memref.copy``, and ``memref.alloc``
  filled with ``0xFF`` bytes (NaN for floats, -1 for integers) instead of zeros, so that a kernel reading a buffer
  nobody wrote shows up as a mismatch instead of passing by luck;
- float ops with IEEE semantics in the op's own precision (``f32`` results rounded to ``f32`` after every op, no
  Python ``ZeroDivisionError``/``OverflowError``/``ValueError``: ``1/0`` is ``inf``, ``log(-1)`` is NaN);
- the ``math`` ops xDSL does not run (``erf``, ``tanh``, ``sin``, ``cos``, ``rsqrt``, ``log1p``, ``powf``,
  ``absf``, ``absi``) and the ``arith`` ops it does not run (casts between widths and kinds, ``shrui``,
  ``mului_extended``, ``maxsi``/``minsi``, ``divf``, ``negf``, ...).

Integers follow xDSL's convention: a Python ``int`` in the signed range of its width (an ``i1`` true is -1).

:func:`run_function` is the entry point: numpy arrays in, numpy arrays out, with the destination-passing
convention of ``pg-bufferize`` (inputs first, then one output buffer per result, marked ``pg.result``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import special
from xdsl.dialects import arith, func, memref, scf
from xdsl.dialects import math as mathd
from xdsl.dialects.builtin import (
    DictionaryAttr,
    Float32Type,
    Float64Type,
    IndexType,
    IntegerAttr,
    IntegerType,
    MemRefType,
    ModuleOp,
    StringAttr,
)
from xdsl.interpreter import (
    Interpreter,
    InterpreterFunctions,
    PythonValues,
    ReturnedValues,
    TerminatorValue,
    impl,
    impl_terminator,
    register_impls,
)
from xdsl.interpreters.arith import ArithFunctions
from xdsl.interpreters.builtin import BuiltinFunctions, xtype_for_el_type
from xdsl.interpreters.func import FuncFunctions
from xdsl.interpreters.math import MathFunctions
from xdsl.interpreters.memref import MemRefFunctions
from xdsl.interpreters.scf import ScfFunctions
from xdsl.interpreters.shaped_array import ShapedArray
from xdsl.interpreters.utils.ptr import RawPtr, TypedPtr
from xdsl.ir import Attribute, Operation
from xdsl.traits import SymbolTable
from xdsl.utils.comparisons import to_signed, to_unsigned

from picograd.dialects import pg
from picograd.dialects.attrs import RESULT_ATTR
from picograd.dialects.pg_numpy import numpy_dtype

POISON_BYTE = 0xFF


# ---------------------------------------------------------------------------------------------------------------
# Scalars


def _float_type(t: Attribute) -> type[np.floating]:
    if isinstance(t, Float32Type):
        return np.float32
    if isinstance(t, Float64Type):
        return np.float64
    if pg.is_low_precision(t):  # bf16/f16: only conversions produce them (the loop stage computes them in f32)
        return numpy_dtype(t).type
    raise NotImplementedError(f"loop interpreter: no float semantics for {t}")


def _width(t: Attribute, interpreter: Interpreter) -> int:
    if isinstance(t, IndexType):
        return interpreter.index_bitwidth
    assert isinstance(t, IntegerType), f"expected an integer type, got {t}"
    return t.width.data


def _fl(op: Operation, fn: Any, *args: Any) -> tuple[float]:
    """``fn`` applied to ``args`` as numpy scalars of the result's float type, back as a Python float."""
    ft = _float_type(op.results[0].type)
    return (float(fn(*(ft(a) for a in args))),)


def _int_result(op: Operation, interpreter: Interpreter, value: int) -> tuple[int]:
    """``value`` wrapped to the width of the op's (first) result, in the signed range."""
    w = _width(op.results[0].type, interpreter)
    return (to_signed(value & ((1 << w) - 1), w),)


# ---------------------------------------------------------------------------------------------------------------
# The extension


@register_impls
class LoopStageFunctions(InterpreterFunctions):
    """What the loop stage needs beyond xDSL 0.74's interpreter functions (see the module docstring). Register it
    after xDSL's with ``override=True``: its float ops replace xDSL's."""

    def __init__(self) -> None:
        super().__init__()
        self.flags: dict[str, ShapedArray[Any]] = {}  # the error flags of index checks, by global name

    @impl(memref.GetGlobalOp)
    def run_get_global(self, interpreter: Interpreter, op: memref.GetGlobalOp, args: PythonValues) -> PythonValues:
        """Globals as xDSL reads them, except the error flags of index checks (``pg.INDEX_CHECK_ATTR``), which
        are mutable: one array per global for the whole run, which ``run_function`` reads at the end."""
        name = op.name_.root_reference.data
        if name in self.flags:
            return (self.flags[name],)
        mem = SymbolTable.lookup_symbol(op, op.name_)
        (array,) = MemRefFunctions.run_get_global(self, interpreter, op, args).values  # type: ignore[arg-type]
        if isinstance(mem, memref.GlobalOp) and pg.INDEX_CHECK_ATTR in mem.attributes:
            self.flags[name] = array
        return (array,)

    def index_error(self, module: ModuleOp) -> IndexError | None:
        """The ``IndexError`` an index check reported during the run, or None."""
        for op in module.ops:
            if isinstance(op, memref.GlobalOp) and op.sym_name.data in self.flags:
                flag = self.flags[op.sym_name.data]
                if flag.load((0,)):
                    template = op.attributes[pg.INDEX_CHECK_ATTR]
                    assert isinstance(template, StringAttr)
                    return IndexError(template.data.replace("{}", str(int(flag.load((1,)))), 1))
        return None

    # --- scf ---------------------------------------------------------------------------------------------------

    @impl(scf.ParallelOp)
    def run_parallel(self, interpreter: Interpreter, op: scf.ParallelOp, args: PythonValues) -> PythonValues:
        n = len(op.lowerBound)
        lbs, ubs, steps = args[:n], args[n : 2 * n], args[2 * n : 3 * n]
        interpreter.interpreter_assert(not op.initVals, "scf.parallel with reductions is not supported")
        for ivs in itertools.product(*(range(lb, ub, st) for lb, ub, st in zip(lbs, ubs, steps, strict=True))):
            interpreter.run_ssacfg_region(op.body, ivs, "parallel")
        return ()

    @impl_terminator(scf.ReduceOp)
    def run_reduce(
        self, interpreter: Interpreter, op: scf.ReduceOp, args: PythonValues
    ) -> tuple[TerminatorValue, PythonValues]:
        return ReturnedValues(()), ()

    # --- memref ------------------------------------------------------------------------------------------------

    @impl(memref.AllocOp)
    def run_alloc(self, interpreter: Interpreter, op: memref.AllocOp, args: PythonValues) -> PythonValues:
        t = op.memref.type
        assert isinstance(t, MemRefType)
        return (_poisoned(t, interpreter),)

    @impl(memref.ViewOp)
    def run_view(self, interpreter: Interpreter, op: memref.ViewOp, args: PythonValues) -> PythonValues:
        source, shift, *_ = args
        t = op.result.type
        assert isinstance(t, MemRefType)
        base: ShapedArray[Any] = source
        el = xtype_for_el_type(t.get_element_type(), interpreter.index_bitwidth)
        size = math.prod(t.get_shape()) * el.compile_time_size
        interpreter.interpreter_assert(
            0 <= shift and shift + size <= base.size,
            f"memref.view: bytes [{shift}, {shift + size}) lie outside the {base.size}-byte source",
        )
        return (ShapedArray(TypedPtr(base.data_ptr.raw + shift, xtype=el), list(t.get_shape())),)

    @impl(memref.CopyOp)
    def run_copy(self, interpreter: Interpreter, op: memref.CopyOp, args: PythonValues) -> PythonValues:
        src, dst = args
        n = src.size * src.element_type.compile_time_size
        s, d = src.data_ptr.raw, dst.data_ptr.raw
        d.memory[d.offset : d.offset + n] = s.memory[s.offset : s.offset + n]
        return ()

    # --- float arithmetic in the op's precision --------------------------------------------------------------

    @impl(arith.AddfOp)
    def run_addf(self, interpreter: Interpreter, op: arith.AddfOp, args: PythonValues) -> PythonValues:
        return _fl(op, lambda a, b: a + b, *args)

    @impl(arith.SubfOp)
    def run_subf(self, interpreter: Interpreter, op: arith.SubfOp, args: PythonValues) -> PythonValues:
        return _fl(op, lambda a, b: a - b, *args)

    @impl(arith.MulfOp)
    def run_mulf(self, interpreter: Interpreter, op: arith.MulfOp, args: PythonValues) -> PythonValues:
        return _fl(op, lambda a, b: a * b, *args)

    @impl(arith.DivfOp)
    def run_divf(self, interpreter: Interpreter, op: arith.DivfOp, args: PythonValues) -> PythonValues:
        return _fl(op, lambda a, b: a / b, *args)

    @impl(arith.NegfOp)
    def run_negf(self, interpreter: Interpreter, op: arith.NegfOp, args: PythonValues) -> PythonValues:
        return _fl(op, lambda a: -a, *args)

    @impl(arith.MaximumfOp)
    def run_maximumf(self, interpreter: Interpreter, op: arith.MaximumfOp, args: PythonValues) -> PythonValues:
        return _fl(op, np.maximum, *args)

    @impl(arith.MinimumfOp)
    def run_minimumf(self, interpreter: Interpreter, op: arith.MinimumfOp, args: PythonValues) -> PythonValues:
        return _fl(op, np.minimum, *args)

    @impl(arith.MaxnumfOp)
    def run_maxnumf(self, interpreter: Interpreter, op: arith.MaxnumfOp, args: PythonValues) -> PythonValues:
        return _fl(op, np.fmax, *args)

    @impl(arith.MinnumfOp)
    def run_minnumf(self, interpreter: Interpreter, op: arith.MinnumfOp, args: PythonValues) -> PythonValues:
        return _fl(op, np.fmin, *args)

    # --- integer arithmetic xDSL lacks -----------------------------------------------------------------------

    @impl(arith.MaxSIOp)
    def run_maxsi(self, interpreter: Interpreter, op: arith.MaxSIOp, args: PythonValues) -> PythonValues:
        w = _width(op.results[0].type, interpreter)
        return (max(to_signed(args[0], w), to_signed(args[1], w)),)

    @impl(arith.MinSIOp)
    def run_minsi(self, interpreter: Interpreter, op: arith.MinSIOp, args: PythonValues) -> PythonValues:
        w = _width(op.results[0].type, interpreter)
        return (min(to_signed(args[0], w), to_signed(args[1], w)),)

    @impl(arith.MaxUIOp)
    def run_maxui(self, interpreter: Interpreter, op: arith.MaxUIOp, args: PythonValues) -> PythonValues:
        w = _width(op.results[0].type, interpreter)
        return _int_result(op, interpreter, max(to_unsigned(args[0], w), to_unsigned(args[1], w)))

    @impl(arith.MinUIOp)
    def run_minui(self, interpreter: Interpreter, op: arith.MinUIOp, args: PythonValues) -> PythonValues:
        w = _width(op.results[0].type, interpreter)
        return _int_result(op, interpreter, min(to_unsigned(args[0], w), to_unsigned(args[1], w)))

    @impl(arith.DivUIOp)
    def run_divui(self, interpreter: Interpreter, op: arith.DivUIOp, args: PythonValues) -> PythonValues:
        w = _width(op.results[0].type, interpreter)
        return _int_result(op, interpreter, to_unsigned(args[0], w) // to_unsigned(args[1], w))

    @impl(arith.RemUIOp)
    def run_remui(self, interpreter: Interpreter, op: arith.RemUIOp, args: PythonValues) -> PythonValues:
        w = _width(op.results[0].type, interpreter)
        return _int_result(op, interpreter, to_unsigned(args[0], w) % to_unsigned(args[1], w))

    @impl(arith.ShRUIOp)
    def run_shrui(self, interpreter: Interpreter, op: arith.ShRUIOp, args: PythonValues) -> PythonValues:
        w = _width(op.results[0].type, interpreter)
        return _int_result(op, interpreter, to_unsigned(args[0], w) >> to_unsigned(args[1], w))

    @impl(arith.MulUIExtendedOp)
    def run_mului_extended(
        self, interpreter: Interpreter, op: arith.MulUIExtendedOp, args: PythonValues
    ) -> PythonValues:
        w = _width(op.results[0].type, interpreter)
        product = to_unsigned(args[0], w) * to_unsigned(args[1], w)
        return (to_signed(product & ((1 << w) - 1), w), to_signed(product >> w, w))

    @impl(arith.TruncIOp)
    def run_trunci(self, interpreter: Interpreter, op: arith.TruncIOp, args: PythonValues) -> PythonValues:
        return _int_result(op, interpreter, args[0])

    @impl(arith.ExtSIOp)
    def run_extsi(self, interpreter: Interpreter, op: arith.ExtSIOp, args: PythonValues) -> PythonValues:
        return (to_signed(args[0], _width(op.input.type, interpreter)),)

    @impl(arith.ExtUIOp)
    def run_extui(self, interpreter: Interpreter, op: arith.ExtUIOp, args: PythonValues) -> PythonValues:
        return _int_result(op, interpreter, to_unsigned(args[0], _width(op.input.type, interpreter)))

    # --- conversions -------------------------------------------------------------------------------------------

    @impl(arith.SIToFPOp)
    def run_sitofp(self, interpreter: Interpreter, op: arith.SIToFPOp, args: PythonValues) -> PythonValues:
        v = to_signed(args[0], _width(op.input.type, interpreter))
        return (float(_float_type(op.result.type)(v)),)

    @impl(arith.UIToFPOp)
    def run_uitofp(self, interpreter: Interpreter, op: arith.UIToFPOp, args: PythonValues) -> PythonValues:
        v = to_unsigned(args[0], _width(op.input.type, interpreter))
        return (float(_float_type(op.result.type)(v)),)

    @impl(arith.FPToSIOp)
    def run_fptosi(self, interpreter: Interpreter, op: arith.FPToSIOp, args: PythonValues) -> PythonValues:
        x = args[0]
        if math.isnan(x) or math.isinf(x):  # undefined in MLIR; numpy gives INT_MIN on x86
            return (-(1 << (_width(op.result.type, interpreter) - 1)),)
        return _int_result(op, interpreter, int(x))

    @impl(arith.ExtFOp)
    def run_extf(self, interpreter: Interpreter, op: arith.ExtFOp, args: PythonValues) -> PythonValues:
        return (float(args[0]),)

    @impl(arith.TruncFOp)
    def run_truncf(self, interpreter: Interpreter, op: arith.TruncFOp, args: PythonValues) -> PythonValues:
        return _fl(op, lambda a: a, *args)

    # --- math --------------------------------------------------------------------------------------------------

    @impl(mathd.ExpOp)
    def run_exp(self, interpreter: Interpreter, op: mathd.ExpOp, args: PythonValues) -> PythonValues:
        return _fl(op, np.exp, *args)

    @impl(mathd.LogOp)
    def run_log(self, interpreter: Interpreter, op: mathd.LogOp, args: PythonValues) -> PythonValues:
        return _fl(op, np.log, *args)

    @impl(mathd.Log1pOp)
    def run_log1p(self, interpreter: Interpreter, op: mathd.Log1pOp, args: PythonValues) -> PythonValues:
        return _fl(op, np.log1p, *args)

    @impl(mathd.SqrtOp)
    def run_sqrt(self, interpreter: Interpreter, op: mathd.SqrtOp, args: PythonValues) -> PythonValues:
        return _fl(op, np.sqrt, *args)

    @impl(mathd.RsqrtOp)
    def run_rsqrt(self, interpreter: Interpreter, op: mathd.RsqrtOp, args: PythonValues) -> PythonValues:
        return _fl(op, lambda a: 1 / np.sqrt(a), *args)

    @impl(mathd.SinOp)
    def run_sin(self, interpreter: Interpreter, op: mathd.SinOp, args: PythonValues) -> PythonValues:
        return _fl(op, np.sin, *args)

    @impl(mathd.CosOp)
    def run_cos(self, interpreter: Interpreter, op: mathd.CosOp, args: PythonValues) -> PythonValues:
        return _fl(op, np.cos, *args)

    @impl(mathd.TanhOp)
    def run_tanh(self, interpreter: Interpreter, op: mathd.TanhOp, args: PythonValues) -> PythonValues:
        return _fl(op, np.tanh, *args)

    @impl(mathd.ErfOp)
    def run_erf(self, interpreter: Interpreter, op: mathd.ErfOp, args: PythonValues) -> PythonValues:
        return _fl(op, special.erf, *args)

    @impl(mathd.AbsFOp)
    def run_absf(self, interpreter: Interpreter, op: mathd.AbsFOp, args: PythonValues) -> PythonValues:
        return _fl(op, np.abs, *args)

    @impl(mathd.PowFOp)
    def run_powf(self, interpreter: Interpreter, op: mathd.PowFOp, args: PythonValues) -> PythonValues:
        return _fl(op, np.power, *args)

    # the operator surface (issue 20): numpy's functions in the op's precision

    @impl(mathd.FloorOp)
    def run_floor(self, interpreter: Interpreter, op: mathd.FloorOp, args: PythonValues) -> PythonValues:
        return _fl(op, np.floor, *args)

    @impl(mathd.CeilOp)
    def run_ceil(self, interpreter: Interpreter, op: mathd.CeilOp, args: PythonValues) -> PythonValues:
        return _fl(op, np.ceil, *args)

    @impl(mathd.RoundEvenOp)
    def run_roundeven(self, interpreter: Interpreter, op: mathd.RoundEvenOp, args: PythonValues) -> PythonValues:
        return _fl(op, np.rint, *args)

    @impl(mathd.TruncOp)
    def run_trunc(self, interpreter: Interpreter, op: mathd.TruncOp, args: PythonValues) -> PythonValues:
        return _fl(op, np.trunc, *args)

    @impl(mathd.Log2Op)
    def run_log2(self, interpreter: Interpreter, op: mathd.Log2Op, args: PythonValues) -> PythonValues:
        return _fl(op, np.log2, *args)

    @impl(mathd.Exp2Op)
    def run_exp2(self, interpreter: Interpreter, op: mathd.Exp2Op, args: PythonValues) -> PythonValues:
        return _fl(op, np.exp2, *args)

    @impl(mathd.ExpM1Op)
    def run_expm1(self, interpreter: Interpreter, op: mathd.ExpM1Op, args: PythonValues) -> PythonValues:
        return _fl(op, np.expm1, *args)

    @impl(mathd.AsinOp)
    def run_asin(self, interpreter: Interpreter, op: mathd.AsinOp, args: PythonValues) -> PythonValues:
        return _fl(op, np.arcsin, *args)

    @impl(mathd.AcosOp)
    def run_acos(self, interpreter: Interpreter, op: mathd.AcosOp, args: PythonValues) -> PythonValues:
        return _fl(op, np.arccos, *args)

    @impl(mathd.AtanOp)
    def run_atan(self, interpreter: Interpreter, op: mathd.AtanOp, args: PythonValues) -> PythonValues:
        return _fl(op, np.arctan, *args)

    @impl(mathd.AsinhOp)
    def run_asinh(self, interpreter: Interpreter, op: mathd.AsinhOp, args: PythonValues) -> PythonValues:
        return _fl(op, np.arcsinh, *args)

    @impl(mathd.AcoshOp)
    def run_acosh(self, interpreter: Interpreter, op: mathd.AcoshOp, args: PythonValues) -> PythonValues:
        return _fl(op, np.arccosh, *args)

    @impl(mathd.AtanhOp)
    def run_atanh(self, interpreter: Interpreter, op: mathd.AtanhOp, args: PythonValues) -> PythonValues:
        return _fl(op, np.arctanh, *args)

    @impl(mathd.Atan2Op)
    def run_atan2(self, interpreter: Interpreter, op: mathd.Atan2Op, args: PythonValues) -> PythonValues:
        return _fl(op, np.arctan2, *args)

    @impl(mathd.CopySignOp)
    def run_copysign(self, interpreter: Interpreter, op: mathd.CopySignOp, args: PythonValues) -> PythonValues:
        return _fl(op, np.copysign, *args)

    @impl(mathd.AbsIOp)
    def run_absi(self, interpreter: Interpreter, op: mathd.AbsIOp, args: PythonValues) -> PythonValues:
        w = _width(op.results[0].type, interpreter)
        return _int_result(op, interpreter, abs(to_signed(args[0], w)))


# ---------------------------------------------------------------------------------------------------------------
# Buffers


def _poisoned(t: MemRefType, interpreter: Interpreter) -> ShapedArray[Any]:
    el = xtype_for_el_type(t.get_element_type(), interpreter.index_bitwidth)
    shape = list(t.get_shape())
    raw = RawPtr(bytearray([POISON_BYTE]) * (math.prod(shape) * el.compile_time_size))
    return ShapedArray(TypedPtr(raw, xtype=el), shape)


def to_buffer(array: np.ndarray, t: MemRefType) -> ShapedArray[Any]:
    """A fresh interpreter buffer of type ``t`` holding ``array`` (cast to the element type of ``t``)."""
    el = t.get_element_type()
    dtype = np.dtype(np.int8) if el == IntegerType(1) else numpy_dtype(el)
    a = np.asarray(array).astype(dtype.newbyteorder("<"), order="C")
    if a.shape != tuple(t.get_shape()):
        raise ValueError(f"expected an array of shape {tuple(t.get_shape())}, got {a.shape}")
    return ShapedArray(TypedPtr(RawPtr(bytearray(a.tobytes())), xtype=xtype_for_el_type(el, 64)), list(a.shape))


def from_buffer(buffer: ShapedArray[Any], t: MemRefType) -> np.ndarray:
    """The contents of an interpreter buffer of type ``t`` as a numpy array (i1 buffers as bool)."""
    el = t.get_element_type()
    raw = buffer.data_ptr.raw
    n = math.prod(t.get_shape())
    if el == IntegerType(1):
        flat = np.frombuffer(bytes(raw.memory[raw.offset : raw.offset + n]), dtype=np.int8) != 0
    else:
        dtype = numpy_dtype(el).newbyteorder("<")
        data = bytes(raw.memory[raw.offset : raw.offset + n * dtype.itemsize])
        flat = np.frombuffer(data, dtype=dtype).astype(numpy_dtype(el))
    return flat.reshape(tuple(t.get_shape())).copy()


# ---------------------------------------------------------------------------------------------------------------
# Entry points


def make_interpreter(module: ModuleOp, loop_functions: LoopStageFunctions | None = None) -> Interpreter:
    """xDSL's interpreter over ``module`` with its func/scf/memref/arith/math/builtin functions and
    :class:`LoopStageFunctions` (``loop_functions``, or a new one; it overrides some of them)."""
    interpreter = Interpreter(module, index_bitwidth=64)
    for functions in (
        FuncFunctions(),
        ScfFunctions(),
        MemRefFunctions(),
        ArithFunctions(),
        MathFunctions(),
        BuiltinFunctions(),
    ):
        interpreter.register_implementations(functions)
    interpreter.register_implementations(loop_functions or LoopStageFunctions(), override=True)
    return interpreter


def output_positions(fn: func.FuncOp) -> list[int]:
    """Argument positions of the output buffers of a bufferized function, in result order (``pg.result``)."""
    found: dict[int, int] = {}
    if fn.arg_attrs is not None:
        for i, attrs in enumerate(fn.arg_attrs.data):
            assert isinstance(attrs, DictionaryAttr)
            k = attrs.data.get(RESULT_ATTR)
            if isinstance(k, IntegerAttr):
                found[k.value.data] = i
    return [found[k] for k in sorted(found)]


def run_function(module: ModuleOp, name: str, inputs: Sequence[np.ndarray]) -> tuple[np.ndarray, ...]:
    """Run the bufferized function ``name`` of ``module`` (the loop stage) on numpy ``inputs``.

    ``inputs`` are the arrays of the function's input buffers (its arguments without ``pg.result``), in order.
    Output buffers start poisoned (0xFF bytes), are written by the function and come back as numpy arrays, one
    per ``pg.result`` in result order. Raises ``ValueError`` on a wrong number or shape of inputs, xDSL's
    ``InterpretationError`` when an op has no implementation or fails, and the ``IndexError`` an index check
    (``pg.check_index``) reported through its error flag, as the GPU runtime does.
    """
    fn = _find_func(module, name)
    loop_functions = LoopStageFunctions()
    interpreter = make_interpreter(module, loop_functions)
    outs = output_positions(fn)
    arg_types = list(fn.function_type.inputs.data)
    in_positions = [i for i in range(len(arg_types)) if i not in outs]
    if len(inputs) != len(in_positions):
        raise ValueError(f"@{name} takes {len(in_positions)} input buffers, got {len(inputs)}")
    args: list[Any] = [None] * len(arg_types)
    for i, array in zip(in_positions, inputs, strict=True):
        t = arg_types[i]
        assert isinstance(t, MemRefType), f"@{name}: argument {i} is not a memref ({t}); run pg-bufferize first"
        args[i] = to_buffer(array, t)
    for i in outs:
        t = arg_types[i]
        assert isinstance(t, MemRefType)
        args[i] = _poisoned(t, interpreter)
    with np.errstate(all="ignore"):
        interpreter.call_op(fn, tuple(args))
    error = loop_functions.index_error(module)
    if error is not None:
        raise error
    return tuple(from_buffer(args[i], arg_types[i]) for i in outs)  # type: ignore[arg-type]


def _find_func(module: ModuleOp, name: str) -> func.FuncOp:
    for op in module.ops:
        if isinstance(op, func.FuncOp) and op.sym_name.data == name:
            return op
    raise KeyError(f"no function @{name} in the module")
