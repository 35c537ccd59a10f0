"""From a traced step to what the CUDA runtime runs: PTX text plus a launch plan.

``compile_for_cuda(module)`` takes a module holding one ``func.func`` at any stage from ``pg`` to ``ptx``
(the frontend hands over the ``simplify`` stage), runs the passes that remain (``picograd.driver.pipeline.STAGES``),
prints the PTX of its kernels and reads the launch plan off the host function that ``pg-to-gpu`` left:

- **inputs** are the function's input buffers in order (``Input(i)``), then one hidden input per dense constant
  (``memref.global``) the kernels read, whose contents the executable uploads once on its first call: PTX could hold
  them as initialized ``.global`` data, which the ``ptx`` dialect has no op for yet;
- **checks**: a hidden input that is the error flag of a ``pg.check_index`` (a mutable global with the
  ``pg.index_check`` message; see ``pg-to-loops``) is listed with its message: the executable reads the flags at
  the next synchronization and raises ``IndexError`` there (``CudaProgram.index_error``, ``ProgramExecutable``);
- **outputs** are its result buffers (the arguments marked ``pg.result = k``, ``Output(k)``);
- **temps** are the buffers the function allocates: the arena of the memory plan (one ``uint8`` buffer of
  ``pg.peak_bytes`` bytes) and any scratch buffer of a kernel (``Temp(j)`` in allocation order). Intermediates are
  views of the arena at constant byte offsets, which the kernels add to the arena pointer themselves, so a launch
  argument is a whole buffer (a slot) and the launch plan has no scalar arguments; only a kernel that several
  launches share (``pg-outline-kernels``) takes its buffers as they are, and its launches pass views of the arena
  (``View(slot, byte offset)``, the arena's address plus the offset);
- **steps** are the ``gpu.launch_func`` ops in order (``Launch(kernel, grid, block, args)``, the kernel parameters
  being the slots of the ``gpu.func`` arguments) and ``memref.copy`` ops (``Copy``: a function returning an
  argument or one value twice);
- **params** are the kernels' parameter lists, read off the ``ptx.func`` ops, so the runtime checks each launch
  against them without parsing the PTX text;
- **tensor maps**: a kernel with tensor-map parameters (the ``wgmma`` matmuls) takes them first, each a
  ``cuda.TensorMap`` describing one of its buffers (dims, strides, box, swizzle, byte offset), which the runtime
  encodes with ``cuTensorMapEncodeTiled`` when it binds the buffers; its dynamic shared memory is the launch's
  ``shmem``.

``CudaProgram.executable()`` builds the ``picograd.runtime.cuda.Executable`` (it assembles the PTX; running it needs a
GPU). ``CudaProgram.assemble()`` only checks the PTX with ptxas (no GPU).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from xdsl.dialects import arith, func, gpu, memref
from xdsl.dialects.builtin import (
    DenseIntOrFPElementsAttr,
    DenseResourceAttr,
    IntegerAttr,
    MemRefType,
    ModuleOp,
    StringAttr,
)
from xdsl.ir import Operation, SSAValue
from xdsl.utils.exceptions import DiagnosticException, VerifyException

from picograd.dialects import pg
from picograd.dialects.attrs import RESULT_ATTR, SHARED_BYTES_ATTR
from picograd.dialects.pg_numpy import numpy_dtype
from picograd.errors import CompileError, DeviceError
from picograd.runtime import cuda

__all__ = ["CudaProgram", "compile_for_cuda", "detect_stage"]


@dataclass
class CudaProgram:
    """A function compiled for the GPU: its PTX and the launch plan (see the module docstring).

    ``inputs``/``outputs``/``temps`` are the ``BufferSpec`` of each slot; ``constants`` the contents of the hidden
    inputs that follow the function's own (``Input(len(inputs) + j)``); ``module`` the ``ptx``-stage module.
    """

    name: str
    ptx: str
    steps: tuple[cuda.Step, ...]
    inputs: tuple[cuda.BufferSpec, ...]
    outputs: tuple[cuda.BufferSpec, ...]
    temps: tuple[cuda.BufferSpec, ...]
    constants: tuple[np.ndarray, ...] = ()
    arch: str = "sm_90"
    module: ModuleOp | None = field(default=None, repr=False)
    checks: tuple[tuple[int, str], ...] = ()  # (constant index, message template): the error flags of index checks
    params: dict[str, tuple[cuda.Param, ...]] = field(default_factory=dict)  # each kernel's, from the ptx dialect

    def index_error(self, flags: Sequence[np.ndarray]) -> Exception | None:
        """The error (``pg.check_error``) that the error flags of the index checks (``flags[j]`` holding the contents
        of the constant of ``checks[j]`` after a run: (1, the bad index) once a kernel saw one) report, or None."""
        for (_, template), flag in zip(self.checks, flags, strict=True):
            if flag[0]:
                return pg.check_error(template.replace("{}", str(int(flag[1])), 1))
        return None

    @property
    def kernels(self) -> list[str]:
        """The kernels launched, in launch order (with repeats)."""
        return [s.kernel for s in self.steps if isinstance(s, cuda.Launch)]

    def assemble(self, strict: bool = False) -> Any:
        """Assemble the PTX with ptxas (or nvJitLink) for ``arch``: a ``ptxas.AssemblyResult``; ``CompileError``
        with the log when the PTX is invalid or no assembler is installed. No GPU needed."""
        from picograd.target import ptxas

        return ptxas.assemble(self.ptx, self.arch, strict=strict)

    def executable(self, **options: Any) -> cuda.Executable:
        """The ``cuda.Executable`` running this program: called with one ``DeviceBuffer`` per input, it returns one
        per output. ``options`` go to ``Executable`` (``use_graph``, ``max_graphs``, ``capture_after``)."""
        options.setdefault("name", self.name)
        return ProgramExecutable(self, **options)


_MAX_UNCHECKED_CALLS = 64  # calls of a program with index checks after which it synchronizes to read its flags


class ProgramExecutable(cuda.Executable):
    """``cuda.Executable`` plus the program's constant buffers, uploaded on the first call and appended to the
    inputs of every call.

    A program with index checks (``pg.check_index``) keeps their error flags in one buffer of mapped host memory
    (``DeviceBuffer.mapped``; device memory read by one copy where there is none) and reads it at the next
    synchronization (``cuda.defer_check``: the user's ``.item()``, ``.numpy()`` or ``cuda.synchronize()``, or
    every ``_MAX_UNCHECKED_CALLS`` calls), never in the call itself: a step does not wait for the device. A flag that
    is set raises ``IndexError`` naming the bad index, the dim's size and the user's ``file:line`` there, and the
    outputs of the calls made since the last check are marked failed (``cuda.mark_failed``: reading one, or passing
    one to an executable, raises the same error). When one call was made since the last check, its ``undo`` (given by
    the caller: the frontend puts back the values its write-back replaced) runs first, so that the failed step
    leaves the state as it found it."""

    def __init__(self, program: CudaProgram, **options: Any) -> None:
        const_specs = [cuda.BufferSpec(c.shape, c.dtype) for c in program.constants]
        super().__init__(
            program.ptx,
            program.steps,
            inputs=[*program.inputs, *const_specs],
            outputs=program.outputs,
            temps=program.temps,
            params=program.params,
            **options,
        )
        self.program = program
        self.user_inputs = len(program.inputs)
        self._constant_buffers: tuple[cuda.DeviceBuffer, ...] | None = None
        self._flags: cuda.DeviceBuffer | None = None  # the index checks' flags, (checks, 2) int64
        self._flag_host: np.ndarray | None = None  # the same bytes seen from the host, when they are mapped memory
        self._unchecked: list[tuple[list[weakref.ref], Callable[[], None] | None]] = []  # calls since the check

    def __call__(
        self,
        *inputs: cuda.DeviceBuffer,
        out: Sequence[cuda.DeviceBuffer] | None = None,
        undo: Callable[[], None] | None = None,
    ) -> tuple[cuda.DeviceBuffer, ...]:
        if not self.program.constants:
            return super().__call__(*inputs, out=out)
        if len(inputs) != self.user_inputs:
            raise TypeError(f"{self.name} takes {self.user_inputs} input buffers, got {len(inputs)}")
        if self._constant_buffers is None:
            self._constant_buffers = self._upload_constants()
        outs = super().__call__(*inputs, *self._constant_buffers, out=out)
        if self.program.checks:
            unchecked = self._unchecked
            if not unchecked:
                cuda.defer_check(self._check)
            elif unchecked[0][1] is not None:  # several calls to undo: their state is not kept
                unchecked[0] = (unchecked[0][0], None)
                undo = None
            unchecked.append(([weakref.ref(b) for b in outs], undo if not unchecked else None))
            if len(unchecked) >= _MAX_UNCHECKED_CALLS:
                cuda.synchronize()  # runs the check
        return outs

    def note_outputs(self, buffers: Sequence[cuda.DeviceBuffer]) -> None:
        """Count ``buffers`` (copies the caller made of the last call's outputs) among that call's outputs, which a
        failed index check marks failed."""
        if self._unchecked:
            self._unchecked[-1][0].extend(weakref.ref(b) for b in buffers)

    def _upload_constants(self) -> tuple[cuda.DeviceBuffer, ...]:
        """The constants on the device; the index checks' flags are views of one zeroed buffer (read in one copy)."""
        constants = self.program.constants
        flag_views: dict[int, cuda.DeviceBuffer] = {}
        if self.program.checks:
            shape = (len(self.program.checks), 2)
            try:  # in mapped host memory: read with no copy
                flags, self._flag_host = cuda.DeviceBuffer.mapped(shape, np.int64)
                self._flag_host[...] = 0
            except DeviceError:  # no page-locked memory to be had: device memory, read by a copy
                flags = cuda.DeviceBuffer(shape, np.int64)
                flags.copy_from(np.zeros(shape, np.int64))
            self._flags = flags
            for k, (j, _) in enumerate(self.program.checks):
                assert constants[j].shape == (2,) and constants[j].dtype == np.int64, constants[j]
                flag_views[j] = flags.view(16 * k, (2,), np.int64)
        return tuple(flag_views.get(j) or cuda.DeviceBuffer.from_numpy(c) for j, c in enumerate(constants))

    def _check(self) -> None:
        """Read the flags (after a synchronization); raise the error of a set one (see the class docstring)."""
        unchecked, self._unchecked = self._unchecked, []
        if self._flags is None:
            return
        host = self._flag_host
        if host is not None and not host.any():  # the common case: no flag set, nothing copied
            return
        flags = host.copy() if host is not None else self._flags.to_numpy()
        if not flags[:, 0].any():
            return
        error = self.program.index_error(list(flags))
        assert error is not None
        if host is not None:  # cleared for the next call (the device is idle: this runs after a synchronization)
            host[...] = 0
        else:
            self._flags.copy_from(np.zeros(flags.shape, np.int64))
        if len(unchecked) == 1 and unchecked[0][1] is not None:
            unchecked[0][1]()
        for refs, _ in unchecked:
            for ref in refs:
                b = ref()
                if b is not None:
                    cuda.mark_failed(b, error)
        raise error


# ---------------------------------------------------------------------------------------------------------------
# Compiling


def detect_stage(module: ModuleOp) -> str:
    """The stage of ``module`` (a name of ``picograd.driver.pipeline.STAGES``), from the ops it holds."""
    from picograd.dialects import kernel, ptx

    has: set[str] = set()
    for op in module.walk():
        if isinstance(op, ptx.ModuleOp):
            return "ptx"
        if isinstance(op, gpu.ModuleOp):
            return "gpu"
        if isinstance(op, kernel.LaunchOp):
            has.add("launch")
        elif isinstance(op, kernel.FusedOp):
            has.add("kernels")
        elif isinstance(op, pg.GradOp):
            has.add("pg")
        elif isinstance(op, pg.OptimizerOp):
            has.add("grad")
        elif isinstance(op, func.FuncOp) and any(isinstance(t, MemRefType) for t in op.function_type.inputs.data):
            has.add("memref")
    for stage in ("pg", "grad", "kernels"):
        if stage in has:
            return stage
    if "launch" in has:
        raise CompileError("compile_for_cuda: the module is half-way through the loops stage (run pg-to-loops)")
    if "memref" in has:
        return "loops"
    return "step"


def _passes_after(stage: str, arch: str, matmul_schedule: str = "auto", attention_schedule: str = "auto") -> list[str]:
    from picograd.driver.pipeline import STAGES, passes_until

    done = len(passes_until(stage))
    return passes_until(list(STAGES)[-1], matmul_schedule, arch, attention_schedule)[done:]


def compile_for_cuda(
    module: ModuleOp,
    arch: str = "sm_90",
    stage: str | None = None,
    matmul_schedule: str = "auto",
    attention_schedule: str = "auto",
) -> CudaProgram:
    """Compile the one function of ``module`` for the GPU (see the module docstring). ``module`` is not changed
    (a copy is lowered). ``stage`` is the stage the module is at (detected from its ops when None).
    ``matmul_schedule`` is the ``schedule`` option of ``pg-matmul-schedule`` (``auto`` or a rung's name),
    ``attention_schedule`` the ``attention`` option of ``pg-schedule`` (``auto`` or ``flash-wgmma``).

    Raises ``CompileError`` when a pass rejects the function or the module does not hold exactly one function."""
    from picograd.dialects import ptx
    from picograd.driver.pipeline import run_passes
    from picograd.target.ptx_printer import print_ptx

    work = module.clone()
    stage = stage or detect_stage(work)
    try:
        work.verify()  # a hand-built module the passes would otherwise take as it is (the frontend's verify)
        run_passes(work, _passes_after(stage, arch, matmul_schedule, attention_schedule))
    except (VerifyException, DiagnosticException) as e:
        raise CompileError(f"compiling for CUDA failed: {e}") from None
    fns = [op for op in work.ops if isinstance(op, func.FuncOp) and not op.is_declaration]
    if len(fns) != 1:
        raise CompileError(f"compile_for_cuda: expected one function in the module, found {len(fns)}")
    fn = fns[0]
    pmods = [op for op in work.ops if isinstance(op, ptx.ModuleOp)]
    if pmods:
        text = print_ptx(pmods[0], verify=False)  # run_passes verified the module
    else:  # nothing to launch (the function only copies its arguments)
        text = print_ptx(ptx.ModuleOp(target=arch))
    kernels = {k.sym_name.data: k for m in pmods[:1] for k in m.walk() if isinstance(k, ptx.FuncOp)}
    plan = _launch_plan(work, fn, kernels)
    params = {name: kernel_params(k) for name, k in kernels.items()}
    return CudaProgram(fn.sym_name.data, text, *plan[:5], arch=arch, module=work, checks=plan[5], params=params)


def kernel_params(kernel: Any) -> tuple[cuda.Param, ...]:
    """The parameters of a ``ptx.func`` kernel as the runtime checks launches against them (from the IR, so the
    runtime need not read them back out of the PTX text)."""
    from picograd.dialects import ptx

    return tuple(
        cuda.Param(kernel.param_name(i), None, ptx.TENSOR_MAP_BYTES)
        if a.type.kind == ptx.TENSOR_MAP
        else cuda.Param.scalar(kernel.param_name(i), a.type.kind)
        for i, a in enumerate(kernel.args)
    )


def _with_tensor_maps(step: cuda.Launch, kernel: Any) -> cuda.Launch:
    """A launch with its kernel's dynamic shared memory (``pg.dynamic_shared``: the wgmma matmuls, kernels whose
    workgroup buffers pass the static limit) and tensor-map parameters (the wgmma matmuls): those come first, each a
    ``cuda.TensorMap`` of one of the launch's buffers (``picograd.passes.kinds.matmul_wgmma.TensorMapSpec``; of
    the arena, from the view's offset on, for a ``cuda.View``), then the buffers; the dynamic shared memory is the
    kernel's ``pg.dynamic_shared``."""
    from picograd.passes.kinds import matmul_wgmma

    specs = matmul_wgmma.tensor_maps(kernel)
    shared = kernel.attributes.get(SHARED_BYTES_ATTR)
    shmem = shared.value.data if isinstance(shared, IntegerAttr) else step.shmem
    if not specs:  # a kernel past the static shared-memory limit (pg-to-ptx): its dynamic shared memory alone
        return cuda.Launch(step.kernel, step.grid, step.block, step.args, shmem)
    maps = []
    for _, t in sorted(specs.items()):
        # an outlined kernel's operand is a View into the arena: the map covers the arena from the view's offset
        arg = step.args[t.operand]
        base, offset = (arg.base, arg.offset) if isinstance(arg, cuda.View) else (arg, 0)
        maps.append(cuda.TensorMap(base, t.dtype, t.shape, t.strides, t.box, t.swizzle, t.offset + offset))  # type: ignore[arg-type]
    return cuda.Launch(step.kernel, step.grid, step.block, (*maps, *step.args), shmem)


def _spec(t: Any) -> cuda.BufferSpec:
    assert isinstance(t, MemRefType), t
    return cuda.BufferSpec(tuple(t.get_shape()), numpy_dtype(t.get_element_type()))


def _global_array(module: ModuleOp, op: memref.GetGlobalOp) -> np.ndarray:
    name = op.name_.root_reference.data
    for g in module.ops:
        if isinstance(g, memref.GlobalOp) and g.sym_name.data == name:
            value = g.initial_value
            t = op.memref.type
            assert isinstance(t, MemRefType)
            dtype = numpy_dtype(t.get_element_type())
            shape = tuple(t.get_shape())
            if isinstance(value, DenseIntOrFPElementsAttr):
                data = np.asarray(value.get_values(), dtype=dtype)
                return np.broadcast_to(data, shape).copy() if data.size == 1 else data.reshape(shape)
            if isinstance(value, DenseResourceAttr):
                raise CompileError(f"compile_for_cuda: global @{name} holds a dense resource (not supported)")
            raise CompileError(f"compile_for_cuda: global @{name} has no initial value")
    raise CompileError(f"compile_for_cuda: no memref.global @{name}")


def _index_check(module: ModuleOp, op: memref.GetGlobalOp) -> str | None:
    """The message template of the global ``op`` reads when it is the error flag of an index check."""
    name = op.name_.root_reference.data
    for g in module.ops:
        if isinstance(g, memref.GlobalOp) and g.sym_name.data == name:
            attr = g.attributes.get(pg.INDEX_CHECK_ATTR)
            return attr.data if isinstance(attr, StringAttr) else None
    return None


def _launch_plan(
    module: ModuleOp, fn: func.FuncOp, kernels: dict[str, Any] | None = None
) -> tuple[
    tuple[cuda.Step, ...],
    tuple[cuda.BufferSpec, ...],
    tuple[cuda.BufferSpec, ...],
    tuple[cuda.BufferSpec, ...],
    tuple[np.ndarray, ...],
    tuple[tuple[int, str], ...],
]:
    block = fn.body.block
    slots: dict[SSAValue, cuda.Slot] = {}
    inputs: list[cuda.BufferSpec] = []
    outputs: dict[int, cuda.BufferSpec] = {}
    attrs = fn.arg_attrs.data if fn.arg_attrs is not None else [None] * len(block.args)
    for arg, attr in zip(block.args, attrs, strict=True):
        mark = attr.data.get(RESULT_ATTR) if attr is not None else None
        if isinstance(mark, IntegerAttr):
            k = mark.value.data
            slots[arg] = cuda.Output(k)
            outputs[k] = _spec(arg.type)
        else:
            slots[arg] = cuda.Input(len(inputs))
            inputs.append(_spec(arg.type))
    if sorted(outputs) != list(range(len(outputs))):
        raise CompileError(f"compile_for_cuda: @{fn.sym_name.data}: result buffers {sorted(outputs)} are not 0..n-1")
    temps: list[cuda.BufferSpec] = []
    constants: list[np.ndarray] = []
    checks: list[tuple[int, str]] = []
    steps: list[cuda.Step] = []

    def slot(v: SSAValue, user: Operation) -> cuda.Slot:
        if v not in slots:
            raise CompileError(f"compile_for_cuda: '{user.name}' uses a buffer that is not a root buffer ({v.type})")
        return slots[v]

    def launch_arg(v: SSAValue, user: Operation) -> cuda.Slot | cuda.View:
        """A root buffer's slot, or a view of one at a constant byte offset (a kernel shared by several
        launches: ``pg-outline-kernels``)."""
        view = v.owner
        if isinstance(view, memref.ViewOp) and view.source in slots and not view.sizes:
            shift = view.byte_shift.owner
            if isinstance(shift, arith.ConstantOp) and isinstance(shift.value, IntegerAttr):
                return cuda.View(slots[view.source], shift.value.value.data)
        return slot(v, user)

    for op in block.ops:
        if isinstance(op, memref.AllocOp):
            t = op.memref.type
            assert isinstance(t, MemRefType)
            slots[op.memref] = cuda.Temp(len(temps))
            el = t.get_element_type()
            spec = _spec(t)
            if spec.dtype == np.dtype(np.int8) and el.width.data == 8:  # type: ignore[attr-defined]
                spec = cuda.BufferSpec(spec.shape, np.uint8)  # the byte arena
            temps.append(spec)
        elif isinstance(op, memref.GetGlobalOp):
            constants.append(_global_array(module, op))
            template = _index_check(module, op)
            if template is not None:
                checks.append((len(constants) - 1, template))
            slots[op.memref] = _Constant(len(constants) - 1)  # type: ignore[assignment]  # an Input, after the others
        elif isinstance(op, gpu.LaunchFuncOp):
            sizes = []
            for v in (op.gridSizeX, op.gridSizeY, op.gridSizeZ, op.blockSizeX, op.blockSizeY, op.blockSizeZ):
                c = v.owner
                if not (isinstance(c, arith.ConstantOp) and isinstance(c.value, IntegerAttr)):
                    raise CompileError("compile_for_cuda: launch sizes must be constants")
                sizes.append(c.value.value.data)
            kernel_name = op.kernel.nested_references.data[-1].data if op.kernel.nested_references.data else ""
            args = tuple(launch_arg(v, op) for v in op.kernelOperands)
            steps.append(cuda.Launch(kernel_name, tuple(sizes[:3]), tuple(sizes[3:]), args))  # type: ignore[arg-type]
        elif isinstance(op, memref.CopyOp):
            steps.append(cuda.Copy(slot(op.destination, op), slot(op.source, op)))
        elif isinstance(op, arith.ConstantOp | memref.DeallocOp | func.ReturnOp):
            continue
        elif isinstance(op, memref.ViewOp) and all(isinstance(u.operation, gpu.LaunchFuncOp) for u in op.result.uses):
            continue  # launches pass it as a cuda.View
        else:
            raise CompileError(f"compile_for_cuda: '{op.name}' on the host side has no runtime step")
    # Constants are hidden inputs after the function's own.
    n_in = len(inputs)

    def fix(a: Any) -> Any:
        if isinstance(a, cuda.View):
            return cuda.View(fix(a.base), a.offset)
        return cuda.Input(n_in + a.index) if isinstance(a, _Constant) else a

    fixed: list[cuda.Step] = []
    for s in steps:
        if isinstance(s, cuda.Launch):
            launch = cuda.Launch(s.kernel, s.grid, s.block, tuple(fix(a) for a in s.args), s.shmem)
            kernel = (kernels or {}).get(s.kernel)
            fixed.append(_with_tensor_maps(launch, kernel) if kernel is not None else launch)
        elif isinstance(s, cuda.Copy):
            fixed.append(cuda.Copy(fix(s.dst), fix(s.src)))
        else:
            fixed.append(s)
    return (
        tuple(fixed),
        tuple(inputs),
        tuple(outputs[k] for k in range(len(outputs))),
        tuple(temps),
        tuple(constants),
        tuple(checks),
    )


@dataclass(frozen=True)
class _Constant:
    """A constant's slot before the number of inputs is known."""

    index: int
