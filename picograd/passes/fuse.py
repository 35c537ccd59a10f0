"""``pg-fuse``: kernel formation. Groups the ``pg`` ops of each function into ``kernel.fused`` ops.

Runs on the ``simplify`` stage: straight-line functions of ``pg`` ops, with no ``pg.grad`` or optimizer op left
(the pass refuses those, and any op that is not a ``pg`` op). Every ``pg`` op ends up in a kernel; the function
then holds only ``kernel.fused`` ops and its ``func.return``. A kernel's inputs are the values it reads from
outside (function arguments or other kernels' outputs) and its outputs are the values it computes that are used
outside it (by other kernels, or returned).

How ops are grouped (producer-consumer fusion in the style of XLA's loop and input fusion, and of tinygrad's
scheduler):

- *Elementwise* ops (unary, binary, ``cmp``, ``select``, ``cast``, ``stop_gradient``, ``check_index``), the *views*
  ``broadcast_to`` and ``reshape`` (a reshape of a row-major tensor is a pure re-indexing, so it is absorbed into
  an elementwise kernel like any elementwise op) and the *generators* ``constant`` and ``iota`` form elementwise
  kernels. A reduction (``sum``, ``max``, ``min``) forms a kernel with the elementwise ops that feed it (its
  prologue); the ops that consume a reduction's result start a new kernel (no epilogue fusion).
- Every other op is a kernel on its own, holding just that op: ``matmul``, ``gather``, ``scatter_add``,
  ``argmax``/``argmin`` (kind ``reduction``), ``permute``/``slice``/``pad``/``concat`` (``movement``) and
  ``random``. A reshape that such an op reads (and that is not returned) is a ``movement`` kernel of its own (a
  reshape between a gather and a matmul, or between a LayerNorm's bf16 output and the next matmul), which
  bufferization turns into an aliasing view: the ops it reshapes keep their own iteration shape, so they may merge
  with the kernels of that shape (below). The exception is a ``permute`` whose only user is a ``matmul``: it joins
  the matmul's kernel, which reads the operand transposed in place; with ``views`` (the CPU's choice) a ``reshape``
  read only by matmul kernels is copied into each as a view.
- Consumers first: an elementwise op joins the kernel of its users when they all lie in one elementwise or
  reduction kernel. An op whose users lie in several kernels (or that is returned, or read by a kernel of the
  third bullet) is computed once, in a kernel of its own, and written out; it is never recomputed, except for
  *cheap* ops, which are copied into every kernel that uses them: generators, views and elementwise ops on one
  element (0-d scalars such as a learning rate cast to ``f32``) as long as the scalar computation reads at most
  ``MAX_SCALAR_READS`` values. Constants are therefore never kernel inputs. With ``recompute`` (the CPU backend's
  choice), elementwise ops that read little more than their own size (``_recomputable``) are copied too, into the
  kernels of their several fusible users (a returned value with one fusible user rides in its kernel instead);
  with ``keep-erf`` (the CPU's choice) an ``erf`` never (``NOT_RECOMPUTED``).
- Then multi-output fusion: a kernel of elementwise ops whose output has the iteration shape of a consuming
  elementwise kernel (its output shape) or reduction kernel (the shape of the reduction's input) merges into it,
  so that one pass over the data computes both and the value is written out on the way (``exp(x - max)``
  feeding both the softmax sum and the backward pass, say). A merge is made only when no path leads from the
  producer to the consumer through a third kernel (which would make a cycle), and a kernel holds at most one
  reduction.

Each ``kernel.fused`` takes the location of its main op (the reduction, the single op, or the last output of an
elementwise kernel); the ops moved into kernels keep their own. Kernel names are ``k<n>_<main op>``, unique in the
module. With ``report=true`` the pass prints ``pg-fuse: @<function>: <n> kernels`` to stderr.
"""

from __future__ import annotations

import heapq
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import FileLineColLoc, ModuleOp
from xdsl.ir import Block, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.utils.exceptions import PassFailedException

from picograd.dialects import kernel, pg
from picograd.dialects.pg import shape_of
from picograd.dialects.pg_numpy import numpy_dtype
from picograd.passes.kinds.attention import ATTENTION_OPS, attention_partner, dropout_ops

ELEMENTWISE = (pg.UnaryOp, pg.BinaryOp, pg.CmpOp, pg.SelectOp, pg.CastOp, pg.CheckIndexOp)
VIEWS = (pg.BroadcastToOp, pg.ReshapeOp)
GENERATORS = (pg.ConstantOp, pg.IotaOp)
REDUCTIONS = (pg.SumOp, pg.MaxOp, pg.MinOp)
SINGLE_KINDS: dict[type[Operation], str] = {
    pg.MatmulOp: "matmul",
    pg.GatherOp: "gather",
    pg.ScatterAddOp: "scatter_add",
    pg.ArgmaxOp: "reduction",
    pg.ArgminOp: "reduction",
    pg.PermuteOp: "movement",
    pg.SliceOp: "movement",
    pg.PadOp: "movement",
    pg.ConcatOp: "movement",
    pg.RandomOp: "random",
    pg.ScaledDotProductAttentionOp: "attention",
    pg.AttentionLseOp: "attention",
    pg.AttentionBackwardOp: "attention",
}
"""Ops that form a kernel of their own, with its kind."""
MOVEMENT = (pg.PermuteOp, pg.PadOp, pg.SliceOp, pg.ReshapeOp)
"""Ops that, with ``movement``, join the kernel reading them (see the module docstring)."""
MOVEMENT_READERS = ("elementwise", "reduction", "gather", "movement")
"""Kinds of kernels whose loops read their values at an index (``pg-to-loops`` computes a movement op there)."""
MAX_PERMUTE_SPAN = 16 * 1024
"""With ``movement``, a permute joins its reader only while the elements of its result's innermost dim lie within
this many bytes of its input (half a level-1 data cache): the reader's inner loop then stays in the cache. A
permute that moves the innermost dim never joins a gather: the gather's rows (a convolution's im2col windows,
runs of channels) would be copied element by element across the input's rows; after the permute (one transposing
copy of the input, a ninth of the windows' size for a 3x3 kernel) they are contiguous and the gather's inner loop
copies them with vector loads and stores (DDPM step: gathers 8.9 -> 4.3 ms, the permutes 2.2 ms)."""

FUSIBLE = (*ELEMENTWISE, *VIEWS, *GENERATORS)


def _where(op: Operation) -> str:
    loc = op.location
    if isinstance(loc, FileLineColLoc):
        return f" at {loc.filename.data}:{loc.line.data}"
    return ""


MAX_SCALAR_READS = 16
"""A one-element elementwise op is copied into the kernels that use it only while the scalar computation it heads
(it and the cheap ops it depends on, all copied with it) reads at most this many values from outside: a gradient
clipping's total norm, the sum of one squared norm per parameter, is computed once in a kernel of its own rather
than by every parameter's update (which made the update kernels, and the compile time, grow with the square of the
parameter count)."""


def _is_scalar(op: Operation) -> bool:
    return isinstance(op, ELEMENTWISE) and int(np.prod(shape_of(op.results[0]))) == 1


def _scalar_reads(op: Operation) -> int:
    """The number of values from outside that ``op`` and the generators, views and one-element elementwise ops it
    depends on read (counted up to ``MAX_SCALAR_READS + 1``)."""
    reads: set[SSAValue] = set()
    seen = {op}
    stack = [op]
    while stack:
        for v in stack.pop().operands:
            owner = v.owner
            if isinstance(owner, GENERATORS + VIEWS) or (isinstance(owner, Operation) and _is_scalar(owner)):
                if owner not in seen:
                    seen.add(owner)
                    stack.append(owner)
            elif v not in reads:
                reads.add(v)
                if len(reads) > MAX_SCALAR_READS:
                    return len(reads)
    return len(reads)


MAX_RECOMPUTE_OPS = 8
"""With ``recompute``, an elementwise op is copied into the kernels that use it while it and the elementwise ops it
depends on (copied with it) are at most this many and read little more memory than the op's result holds."""


NOT_RECOMPUTED = (pg.ErfOp,)
"""Elementwise ops that ``recompute`` never copies under ``keep-erf``: an ``erf`` was about 50 vector operations per
element on the CPU (``gpu_math``'s accurate scheme: two branches, one with an ``exp`` and a division), ten times what
writing it once and reading it back cost (the exact GELU's backward kernel recomputed it: BERT's 4096 x 512, 3.2 ms
of a 320 ms step). The f32 ``erf`` is now ``gpu_math.erf_f32``, about 30 (0.7 times the CPU time of the GELU
kernels, ``bench/erf_cpu.py``); not measured again with this rule off."""


def _recomputable(op: Operation, never: tuple[type[Operation], ...]) -> bool:
    """Whether ``op`` (elementwise) and the elementwise ops, generators and views it depends on, at most
    ``MAX_RECOMPUTE_OPS`` of them and none of ``never``, read at most 9/8 of the elements of ``op``'s
    result from outside: recomputing it where it is used reads about as much memory as reading it back would, and
    saves writing it (the GELU's ``0.5 * x`` and ``x / sqrt(2)`` of ``x = h + bias``, which the backward pass uses
    too)."""
    if isinstance(op, never):
        return False
    budget = 9 * int(np.prod(shape_of(op.results[0]))) // 8
    reads: set[SSAValue] = set()
    seen = {op}
    stack = [op]
    ops = 1
    while stack:
        for v in stack.pop().operands:
            owner = v.owner
            if isinstance(owner, FUSIBLE):
                if isinstance(owner, never):
                    return False
                if owner not in seen:
                    seen.add(owner)
                    stack.append(owner)
                    ops += isinstance(owner, ELEMENTWISE)
                    if ops > MAX_RECOMPUTE_OPS:
                        return False
            elif v not in reads:
                reads.add(v)
                budget -= int(np.prod(shape_of(v)))
                if budget < 0:
                    return False
    return True


def _stride(v: SSAValue, d: int) -> int:
    """The distance in elements between neighbours along dim ``d`` of ``v`` in the tensor it is a permuted or
    reshaped view of (followed through permutes, and reshapes that keep the dim whole)."""
    while True:
        op = v.owner
        if isinstance(op, pg.PermuteOp):
            v, d = op.input, op.perm_list[d]
            continue
        if isinstance(op, pg.ReshapeOp):
            out, src = shape_of(v), shape_of(op.input)
            after = int(np.prod(out[d + 1 :]))
            same = [j for j in range(len(src)) if src[j] == out[d] and int(np.prod(src[j + 1 :])) == after]
            if same:
                v, d = op.input, same[0]
                continue
        return int(np.prod(shape_of(v)[d + 1 :]))


def _transposes(g: Group) -> bool:
    """Whether the kernel ``g`` reads through a permute that moves the innermost dim."""
    return any(isinstance(op, pg.PermuteOp) and op.perm_list[-1] != len(op.perm_list) - 1 for op in g.home)


def is_cheap(op: Operation) -> bool:
    """Whether ``op`` is copied into each kernel that uses it rather than computed once: generators, views, and
    elementwise ops with a one-element result whose computation reads at most ``MAX_SCALAR_READS`` values."""
    if isinstance(op, GENERATORS + VIEWS):
        return True
    return _is_scalar(op) and _scalar_reads(op) <= MAX_SCALAR_READS


@dataclass(eq=False)
class Group:
    """A kernel being formed: its ops (``home`` ones computed here and possibly written out, plus copies of cheap
    ops), its kind (``elementwise``, ``reduction`` with one reduction, a single-op kind, or ``opaque`` for a
    ``kernel.fused`` already there) and its iteration shape."""

    kind: str
    main: Operation
    iter_shape: tuple[int, ...]
    ops: set[Operation] = field(default_factory=set)
    home: set[Operation] = field(default_factory=set)

    @property
    def fusible(self) -> bool:
        """Whether elementwise producers may join this group."""
        return self.kind in ("elementwise", "reduction")


class _Former:
    """Forms the groups of one function body (see the module docstring) and rewrites it into kernels."""

    def __init__(
        self,
        fn: func.FuncOp,
        names: _Names,
        recompute: bool = False,
        movement: bool = False,
        views: bool = False,
        keep_erf: bool = False,
        contiguous_reductions: bool = False,
        windows: bool = False,
    ):
        self.fn = fn
        self.windows = windows
        self.recompute = recompute
        self.movement = movement
        self.views = views
        self.contiguous_reductions = contiguous_reductions
        self.never: tuple[type[Operation], ...] = NOT_RECOMPUTED if keep_erf else ()
        self.names = names
        if len(fn.body.blocks) != 1:
            raise PassFailedException(f"pg-fuse: @{fn.sym_name.data} has {len(fn.body.blocks)} blocks, expected one")
        self.block: Block = fn.body.block
        self.ops = [op for op in self.block.ops if not isinstance(op, func.ReturnOp)]
        self.pos = {op: i for i, op in enumerate(self.ops)}
        self.groups_of: dict[Operation, list[Group]] = {}
        self.home_of: dict[Operation, Group] = {}
        self.live: set[Operation] = set()
        for op in self.ops:
            self._check(op)

    def _check(self, op: Operation) -> None:
        if isinstance(op, pg.GradOp):
            raise PassFailedException(
                f"pg-fuse: pg.grad{_where(op)} is not expanded: run pg-autodiff first (kernels are formed after the "
                "'step' stage)"
            )
        if isinstance(op, pg.OptimizerOp):
            raise PassFailedException(
                f"pg-fuse: {op.name}{_where(op)} is not expanded: run its optimizer pass (pg-sgd, pg-adam, pg-adamw) "
                "first (kernels are formed after the 'step' stage)"
            )
        if not isinstance(op, FUSIBLE + REDUCTIONS + tuple(SINGLE_KINDS) + (kernel.FusedOp,)):
            raise PassFailedException(
                f"pg-fuse: cannot place {op.name}{_where(op)} in a kernel (only pg ops are fused)"
            )

    # -- phase 1: consumer-first grouping ------------------------------------------------------------------------

    def _new_group(self, kind: str, op: Operation, iter_shape: tuple[int, ...]) -> Group:
        g = Group(kind, op, iter_shape)
        self._add(g, op, home=True)
        return g

    def _add(self, g: Group, op: Operation, home: bool) -> None:
        g.ops.add(op)
        self.groups_of.setdefault(op, []).append(g)
        if home:
            g.home.add(op)
            self.home_of[op] = g

    def group(self) -> None:
        """Phase 1: walk the ops from last to first, putting each in a group."""
        self.live = self._live()
        for op in reversed(self.ops):
            if isinstance(op, kernel.FusedOp):
                self._new_group("opaque", op, ())
            elif op not in self.live:
                continue  # dead: dropped (cse and dce leave none)
            elif (g := self._matmul_of_operand(op)) is not None:
                self._add(g, op, home=True)
            elif self.windows and (g := self._matmul_of_windows(op)) is not None:
                self._add(g, op, home=True)
            elif self.movement and (g := self._reader_of(op)) is not None:
                self._add(g, op, home=True)
            elif self.views and (matmuls := self._matmuls_of_reshape(op)):
                for g in matmuls:
                    self._add(g, op, home=False)
            elif isinstance(op, ATTENTION_OPS):
                self._attention(op)
            elif type(op) in SINGLE_KINDS:
                self._new_group(SINGLE_KINDS[type(op)], op, shape_of(op.results[0]))
            elif isinstance(op, REDUCTIONS):
                self._new_group("reduction", op, shape_of(op.input))
            else:
                self._group_fusible(op)

    def _attention(self, op: Operation) -> None:
        """An attention kernel: the forward joins the kernel of its row log-sum-exp (one pass computes both), and
        the ops drawing the dropout multiplier are copied in (the kernels regenerate it instead of reading a T x T
        tensor)."""
        partner = attention_partner(op)
        if partner is not None and partner in self.home_of:
            g = self.home_of[partner]
            self._add(g, op, home=True)
            g.main = op
        else:
            g = self._new_group("attention", op, shape_of(op.results[0]))
        for d in dropout_ops(op):
            self._add(g, d, home=False)

    def _matmul_of_operand(self, op: Operation) -> Group | None:
        """The matmul kernel that a ``permute`` feeding only it joins (a transposed operand is read in place, with
        swapped indices, as the backward pass's ``x^T @ dy`` needs), or None."""
        if not isinstance(op, pg.PermuteOp):
            return None
        users = {use.operation for use in op.results[0].uses}
        if len(users) != 1:
            return None
        (user,) = users
        groups = self.groups_of.get(user, [])
        if isinstance(user, pg.MatmulOp) and len(groups) == 1 and groups[0].kind == "matmul":
            return groups[0]
        return None

    def _matmul_of_windows(self, op: Operation) -> Group | None:
        """With ``windows``, the matmul kernel one of whose operands is the ``pg.gather`` ``op`` of rows (dim 1 of
        a 3-D operand: a convolution's im2col windows, the lhs of its forward and input gradient, the rhs of its
        weight gradient) through reshapes alone, read by nothing else: the gather joins it (the kernel reads that
        operand through the index, an implicit GEMM); else None."""
        if not isinstance(op, pg.GatherOp) or op.dim_index != 1 or len(shape_of(op.input)) != 3:
            return None
        value = op.results[0]
        while True:
            users = [use.operation for use in value.uses]
            if len(users) != 1:
                return None
            (user,) = users
            if isinstance(user, pg.MatmulOp):
                break
            if not isinstance(user, pg.ReshapeOp):
                return None
            value = user.results[0]
        groups = self.groups_of.get(user, [])
        if (user.operands[0] is value) != (user.operands[1] is value) and len(groups) == 1:
            return groups[0] if groups[0].kind == "matmul" else None
        return None

    def _matmuls_of_reshape(self, op: Operation) -> list[Group]:
        """With ``movement``, the matmul kernels that a ``reshape`` read only by matmuls (directly or through the
        permute of a transposed operand) is copied into, a view of their operand: the reshape needs no kernel of its
        own, so the elementwise kernel it reads (the GELU's ``(B, T, 4C)`` output, flattened for ``c_proj``) keeps its
        own iteration shape and merges with the kernels of that shape (the GELU's ``1 + erf``); else empty."""
        if not isinstance(op, pg.ReshapeOp):
            return []
        groups: dict[int, Group] = {}
        for use in op.results[0].uses:
            found = self.groups_of.get(use.operation, [])
            if use.operation not in self.live or not found or any(g.kind != "matmul" for g in found):
                return []
            groups.update((id(g), g) for g in found)
        return list(groups.values())

    def _reader_of(self, op: Operation) -> Group | None:
        """The one kernel reading the movement op ``op`` at an index, which it joins with ``movement``, or None
        (several kernels read it, or it is returned)."""
        if not isinstance(op, MOVEMENT):
            return None
        if isinstance(op, pg.PermuteOp):
            result = shape_of(op.results[0])
            stride = _stride(op.results[0], len(result) - 1)
            if stride * result[-1] * numpy_dtype(pg.element_of(op.input)).itemsize > MAX_PERMUTE_SPAN:
                return None
        users = {use.operation for use in op.results[0].uses}
        groups = {id(g): g for u in users for g in self.groups_of.get(u, [])}
        if len(groups) != 1 or any(isinstance(u, func.ReturnOp) or u not in self.live for u in users):
            return None
        (g,) = groups.values()
        if isinstance(op, pg.PermuteOp) and g.kind == "gather" and op.perm_list[-1] != len(op.perm_list) - 1:
            return None  # see MAX_PERMUTE_SPAN
        return g if g.kind in MOVEMENT_READERS and all(u in g.ops for u in users) else None

    def _live(self) -> set[Operation]:
        """The ops the function's results (or a kernel already formed) depend on."""
        ret = self.block.last_op
        roots: list[Operation] = [op for op in self.ops if isinstance(op, kernel.FusedOp)]
        if ret is not None:
            roots.append(ret)
        live: set[Operation] = set()
        stack = list(roots)
        while stack:
            op = stack.pop()
            for v in op.operands:
                owner = v.owner
                if isinstance(owner, Operation) and owner not in live:
                    live.add(owner)
                    stack.append(owner)
        return live

    def _group_fusible(self, op: Operation) -> None:
        targets: list[Group] = []  # the fusible groups of its users, in order, once each
        written = False  # whether the value must be written out: returned or read by a non-fusible kernel
        returned = False
        for use in op.results[0].uses:
            user = use.operation
            if user not in self.live and not isinstance(user, func.ReturnOp | kernel.FusedOp):
                continue
            if isinstance(user, func.ReturnOp):
                written = returned = True
                continue
            for g in self.groups_of.get(user, ()):
                if op in g.ops:
                    continue  # the kernel computes it itself (an attention kernel's dropout)
                if not g.fusible:
                    written = True
                elif g not in targets:
                    targets.append(g)
        if not targets and not written:
            return  # dead (cse/dce leave none); nothing needs it
        # recomputed where that saves reading the value back: not for a returned value with a single fusible user,
        # which rides in that kernel instead (multi-output fusion below: one pass writes it and uses it)
        shared = len(targets) > 1 or (len(targets) == 1 and written and not returned)
        copies = self.recompute and shared and isinstance(op, ELEMENTWISE) and _recomputable(op, self.never)
        if is_cheap(op) or copies:
            for g in targets:
                self._add(g, op, home=False)
            if written and not returned and isinstance(op, pg.ReshapeOp):
                self._new_group("movement", op, shape_of(op.results[0]))  # a view of its input's buffer
            elif written:
                self._new_group("elementwise", op, shape_of(op.results[0]))
        elif len(targets) == 1 and not written:
            self._add(targets[0], op, home=True)
        else:
            self._new_group("elementwise", op, shape_of(op.results[0]))

    # -- the group graph --------------------------------------------------------------------------------------------

    def live_groups(self) -> list[Group]:
        """The groups, once each, by the position of their main op."""
        seen: dict[int, Group] = {}
        for groups in self.groups_of.values():
            for g in groups:
                seen.setdefault(id(g), g)
        return sorted(seen.values(), key=lambda g: self.pos[g.main])

    def external_inputs(self, g: Group) -> list[SSAValue]:
        """Values the ops of ``g`` read from outside it, in order of first use."""
        found: dict[SSAValue, None] = {}
        for op in sorted(g.ops, key=self.pos.__getitem__):
            for v in op.operands:
                if v.owner not in g.ops:
                    found.setdefault(v, None)
        return list(found)

    def producers(self, g: Group) -> set[int]:
        """The ids of the groups ``g`` reads from."""
        out: set[int] = set()
        for v in self.external_inputs(g):
            if isinstance(v.owner, Operation):
                out.add(id(self.home_of[v.owner]))
        return out

    # -- phase 2: multi-output fusion -----------------------------------------------------------------------------

    def merge(self) -> None:
        """Phase 2: merge elementwise groups into the consumers whose iteration shape they share, while no cycle
        forms, until nothing changes."""
        groups = self.live_groups()
        by_id = {id(g): g for g in groups}
        preds = {id(g): self.producers(g) for g in groups}
        succs: dict[int, set[int]] = {id(g): set() for g in groups}
        for g in groups:
            for k in preds[id(g)]:
                succs[k].add(id(g))
        changed = True
        while changed:
            changed = False
            for p in sorted(by_id.values(), key=lambda g: self.pos[g.main]):
                if p.kind != "elementwise" or id(p) not in by_id:
                    continue
                candidates = sorted(
                    (by_id[k] for k in succs[id(p)]), key=lambda c: (c.kind != "reduction", self.pos[c.main])
                )
                for c in candidates:
                    if c.kind == "reduction" and self.contiguous_reductions and _transposes(p):
                        continue
                    if c.fusible and c.iter_shape == p.iter_shape and not self._reaches_through(p, c, succs):
                        self._merge_into(p, c)
                        self._merge_edges(p, c, by_id, preds, succs)
                        changed = True
                        break

    @staticmethod
    def _reaches_through(p: Group, c: Group, succs: dict[int, set[int]]) -> bool:
        """Whether a path leads from ``p`` to ``c`` through some other group."""
        stack = [k for k in succs[id(p)] if k != id(c)]
        seen = set(stack)
        while stack:
            k = stack.pop()
            for h in succs[k]:
                if h == id(c):
                    return True
                if h not in seen:
                    seen.add(h)
                    stack.append(h)
        return False

    @staticmethod
    def _merge_edges(
        p: Group, c: Group, by_id: dict[int, Group], preds: dict[int, set[int]], succs: dict[int, set[int]]
    ) -> None:
        """Update the group graph after ``p`` merged into ``c``: ``c`` takes over ``p``'s edges."""
        kp, kc = id(p), id(c)
        for k in preds.pop(kp):
            succs[k].discard(kp)
            if k != kc:
                succs[k].add(kc)
                preds[kc].add(k)
        for k in succs.pop(kp):
            preds[k].discard(kp)
            if k != kc:
                preds[k].add(kc)
                succs[kc].add(k)
        del by_id[kp]

    def _merge_into(self, p: Group, c: Group) -> None:
        for op in p.ops:
            self.groups_of[op] = [g for g in self.groups_of[op] if g is not p]
            if c not in self.groups_of[op]:
                self.groups_of[op].append(c)
            c.ops.add(op)
        for op in p.home:
            c.home.add(op)
            self.home_of[op] = c
        if c.kind == "elementwise" and self.pos[p.main] > self.pos[c.main]:
            c.main = p.main

    # -- phase 3: rewriting -------------------------------------------------------------------------------------

    def _kind(self, g: Group) -> str:
        if g.kind != "elementwise":
            return g.kind
        work = [op for op in g.ops if not isinstance(op, GENERATORS)]
        return "movement" if work and all(isinstance(op, VIEWS) for op in work) else "elementwise"

    def _toposort(self, groups: list[Group]) -> list[Group]:
        """The groups in an order where each comes after those it reads from (ties by program position)."""
        by_id = {id(g): g for g in groups}
        preds = {id(g): self.producers(g) for g in groups}
        succs: dict[int, list[int]] = {id(g): [] for g in groups}
        for g in groups:
            for p in preds[id(g)]:
                succs[p].append(id(g))
        indegree = {k: len(v) for k, v in preds.items()}
        ready = [(self.pos[g.main], id(g)) for g in groups if indegree[id(g)] == 0]
        heapq.heapify(ready)
        order: list[Group] = []
        while ready:
            _, k = heapq.heappop(ready)
            order.append(by_id[k])
            for s in succs[k]:
                indegree[s] -= 1
                if indegree[s] == 0:
                    heapq.heappush(ready, (self.pos[by_id[s].main], s))
        assert len(order) == len(groups), "pg-fuse: the kernel graph has a cycle"
        return order

    def rewrite(self) -> int:
        """Phase 3: replace the function body by one ``kernel.fused`` per group; returns the number of kernels."""
        groups = self._toposort(self.live_groups())
        ret = self.block.last_op
        assert isinstance(ret, func.ReturnOp)
        needed: set[SSAValue] = set(ret.operands)
        inputs = {id(g): self.external_inputs(g) for g in groups}
        for ins in inputs.values():
            needed.update(ins)
        new_value: dict[SSAValue, SSAValue] = {}
        for g in groups:
            if g.kind == "opaque":
                g.main.operands = [new_value.get(v, v) for v in g.main.operands]
                g.main.detach()
                self.block.insert_op_before(g.main, ret)
                continue
            ins = inputs[id(g)]
            outs = [r for op in sorted(g.home, key=self.pos.__getitem__) for r in op.results if r in needed]
            if not outs:
                continue  # feeds only dead ops
            region, body = kernel.FusedOp.build_body([v.type for v in ins])
            mapper: dict[SSAValue, SSAValue] = dict(zip(ins, body.args, strict=True))
            for v, arg in mapper.items():
                arg.name_hint = v.name_hint
            for op in sorted(g.ops, key=self.pos.__getitem__):
                body.add_op(op.clone(mapper))
            body.add_op(kernel.YieldOp([mapper[v] for v in outs]))
            main = g.main.name.removeprefix("pg.")
            fused = kernel.FusedOp(
                self.names.next(main), self._kind(g), [new_value.get(v, v) for v in ins], [v.type for v in outs], region
            )
            fused.location = g.main.location
            for v, r in zip(outs, fused.outputs, strict=True):
                r.name_hint = v.name_hint
            self.block.insert_op_before(fused, ret)
            new_value.update(zip(outs, fused.outputs, strict=True))
        ret.operands = [new_value.get(v, v) for v in ret.operands]
        opaque = {g.main for g in groups if g.kind == "opaque"}
        for op in reversed(self.ops):
            if op not in opaque:
                self.block.erase_op(op, safe_erase=False)
        return sum(1 for op in self.block.ops if isinstance(op, kernel.FusedOp))


class _Names:
    """Kernel names unique in a module: ``k<n>_<main op>``."""

    def __init__(self, taken: Iterable[str]):
        self.taken = set(taken)
        self.count = 0

    def next(self, main: str) -> str:
        while True:
            name = f"k{self.count}_{main}"
            self.count += 1
            if name not in self.taken:
                self.taken.add(name)
                return name


def fuse_function(
    fn: func.FuncOp,
    names: _Names | None = None,
    recompute: bool = False,
    movement: bool = False,
    views: bool = False,
    keep_erf: bool = False,
    contiguous_reductions: bool = False,
    windows: bool = False,
) -> int:
    """Form the kernels of one function in place (see the module docstring); returns how many it has."""
    names = names or _Names(())
    former = _Former(fn, names, recompute, movement, views, keep_erf, contiguous_reductions, windows)
    former.group()
    former.merge()
    return former.rewrite()


def _functions(module: ModuleOp) -> Sequence[func.FuncOp]:
    return [op for op in module.walk() if isinstance(op, func.FuncOp)]


@dataclass(frozen=True)
class PgFuse(ModulePass):
    """Group each function's ``pg`` ops into ``kernel.fused`` ops (see the module docstring). Raises
    ``PassFailedException`` on a function that still has ``pg.grad`` or optimizer ops, or non-``pg`` ops.

    Option ``report`` (default false): print ``pg-fuse: @<function>: <n> kernels`` to stderr. Option ``recompute``
    (default false; the CPU backend's choice): cheap elementwise ops used by several kernels are recomputed in each
    rather than written out once and read back (see ``_recomputable``). Option ``movement`` (default false; the CPU
    backend's choice): a movement op read by one kernel that reads at an index joins it (``MOVEMENT_READERS``).
    Option ``views`` (default false; the CPU backend's choice, whose matmul kernels read any view of an operand): a
    ``reshape`` read only by matmul kernels is copied into each of them as a view. Option ``keep-erf`` (default
    false; the CPU backend's choice, where an erf costs ten times writing it and reading it back): ``recompute``
    never copies an ``erf`` (``NOT_RECOMPUTED``). Option ``contiguous-reductions`` (default false; the CPU
    backend's choice): an elementwise kernel reading through a permute that moves the innermost dim (with
    ``movement``: a convolution's product back to channels first) does not merge into the reduction reading it; it
    writes its result and the reduction reads that contiguously (a per-channel sum over (N, H, W) of a
    channels-last operand read every element across a cache line, serially: the DDPM's bias and GroupNorm
    gradients' sums 2.65 -> 1.60 ms a step, their elementwise kernels +0.45 ms). Option ``windows`` (default false;
    the CPU backend's choice, whose runtime runs such a kernel as an implicit GEMM): a gather of rows read through
    reshapes only as one operand of a matmul (a convolution's im2col windows) joins the matmul's kernel
    (``_matmul_of_windows``) instead of being written out; the movement ops it reads stay kernels of their own (a
    matmul kernel reads no movement op at an index), so the padded channels-last input is written once."""

    name = "pg-fuse"

    report: bool = False
    recompute: bool = False
    movement: bool = False
    views: bool = False
    keep_erf: bool = False
    contiguous_reductions: bool = False
    windows: bool = False

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        names = _Names(o.sym_name.data for o in op.walk() if isinstance(o, kernel.FusedOp | kernel.LaunchOp))
        for fn in _functions(op):
            if not fn.body.blocks:
                continue  # a declaration
            count = fuse_function(
                fn,
                names,
                self.recompute,
                self.movement,
                self.views,
                self.keep_erf,
                self.contiguous_reductions,
                self.windows,
            )
            if self.report:
                print(f"pg-fuse: @{fn.sym_name.data}: {count} kernels", file=sys.stderr)
