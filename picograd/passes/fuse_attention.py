"""``pg-fuse-attention``: hand-written attention becomes one ``pg.scaled_dot_product_attention`` op.

Runs in the ``grad`` stage before ``pg-autodiff``, so the gradient of the rewritten attention is the op's vjp (which
recomputes the probabilities instead of keeping the T x T matrix alive) and the whole of it can later become one
fused kernel. It matches what the frontend records for nanoGPT's non-flash path::

    att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
    att = att.masked_fill(self.bias[:, :, :T, :T] == 0, float("-inf"))
    att = F.softmax(att, dim=-1)
    att = self.attn_dropout(att)
    y = att @ v

that is, working back from the final ``pg.matmul``:

- *dropout* (optional): ``select(keep, p * c, 0)`` with an ``i1`` ``keep`` and scalar constants ``c`` and ``0``
  (``F.dropout``'s form) becomes the op's multiplier ``select(keep, c, 0)``;
- *softmax over the last dim*: the frontend's stable softmax (row max, detached, 0 where it is -inf; ``exp`` of
  the shifted scores; row sum, 1 where it is 0; the quotient), with or without ``cse`` having merged its two
  ``exp``; a softmax over another dim is left alone;
- *masks*, each step one of ``select(b, -inf, s)`` (``masked_fill``: attend where ``b`` is False),
  ``select(b, s, -inf)`` (``where``: attend where ``b``) and ``s + m`` (an additive float mask). A boolean step
  whose value the pass can compute (it depends only on ``pg.constant`` and ``pg.iota`` values: ``arange``-style
  comparisons of iotas, ``tril``/``triu`` of constants, a constant mask) and that keeps exactly key ``j <= i``
  becomes ``causal``; one that keeps every key is dropped. Any other step becomes the op's mask: at most one
  such step (two user masks are left unfused). A mask that depends on a function argument (a step input, such as
  nanoGPT's registered ``bias`` buffer, whose values may change between calls) cannot be proven causal: it stays
  an explicit boolean mask, never a guess. A fill other than -inf, or a mask applied by a product, is not a mask
  of the op and is left alone;
- *scale*: products and quotients by scalar constants of the scores, of ``q``, of ``k`` or of ``k^T`` (a splat
  ``pg.constant``, possibly broadcast); none means scale 1. A non-constant or non-scalar factor is left alone;
- *scores*: ``q @ permute(k)`` with the permutation swapping the last two dims; ``q``, ``k`` and ``v`` of one
  float type, batch dims equal.

The rewrite happens only when the scores, masked scores, probabilities and dropout product are used by nothing
but the pattern (otherwise the T x T values stay alive anyway), and the replaced ops are erased. Values are those
of the unfused form up to rounding (a quotient by ``c`` becomes a product by ``1 / c``; factors of the scale are
multiplied in ``f64``). One documented difference: an additive mask applied *before* a causal fill is applied
after it by the op, which differs only where that mask holds ``+inf`` or NaN.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import DenseIntOrFPElementsAttr, ModuleOp, TensorType, i1
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter
from xdsl.traits import is_side_effect_free

from picograd.dialects import pg
from picograd.dialects.pg import broadcast_shape, element_of, is_float, shape_of
from picograd.dialects.pg_numpy import constant_array, op_kernel
from picograd.passes.canonicalize import splat_value

# Masks whose value is computed to prove them causal are at most this many elements (before broadcasting).
MAX_EVALUATED_ELEMENTS = 1 << 24


def _owner(value: SSAValue, cls: type[Operation]) -> Operation | None:
    op = value.owner
    return op if isinstance(op, cls) else None


def _splat(value: SSAValue) -> float | None:
    """The scalar of a splat constant (possibly broadcast), as a Python float, or None."""
    v = splat_value(value)
    return None if v is None else float(v)


def _is_splat(value: SSAValue, x: float) -> bool:
    v = _splat(value)
    return v is not None and (v == x or (math.isnan(x) and math.isnan(v)))


def _last_dim_reduce(value: SSAValue, cls: type[pg.ReduceOp], rank: int) -> pg.ReduceOp | None:
    op = _owner(value, cls)
    if isinstance(op, pg.ReduceOp) and op.dim_list == (rank - 1,) and op.keepdim is not None:
        return op
    return None


def _unbroadcast(value: SSAValue) -> SSAValue:
    op = value.owner
    return op.input if isinstance(op, pg.BroadcastToOp) else value


@dataclass
class _Match:
    """What one attention pattern computes, and the ops it replaces."""

    query: SSAValue | None = None
    key: SSAValue | None = None
    value: SSAValue | None = None
    scale: float = 1.0
    causal: bool = False
    mask: SSAValue | None = None  # as found: an i1 keep mask or a float additive mask
    negate_mask: SSAValue | None = None  # an i1 "masked out" value whose negation is the keep mask
    keep: SSAValue | None = None  # dropout: the i1 keep value
    keep_scale: SSAValue | None = None  # dropout: the splat 1 / (1 - p), of the scores' type
    keep_zero: SSAValue | None = None  # dropout: the splat 0, of the scores' type
    interior: list[Operation] = field(default_factory=list)  # replaced ops, used only inside the pattern


def _softmax(p: SSAValue, interior: list[Operation]) -> SSAValue | None:
    """The scores ``x`` when ``p`` is the frontend's ``softmax(x, dim=-1)``, adding its ops to ``interior``."""
    rank = len(shape_of(p))
    div = _owner(p, pg.DivOp)
    if not isinstance(div, pg.DivOp) or rank < 1:
        return None
    den_b = _owner(div.rhs, pg.BroadcastToOp)  # none when the last dim is 1
    den = _owner(_unbroadcast(div.rhs), pg.SelectOp)
    if not isinstance(den, pg.SelectOp) or not _is_splat(den.lhs, 1.0):
        return None
    total = _last_dim_reduce(den.rhs, pg.SumOp, rank)
    is_zero = _owner(den.cond, pg.CmpOp)
    if (
        total is None
        or not isinstance(is_zero, pg.CmpOp)
        or is_zero.predicate.data != "eq"
        or is_zero.lhs != den.rhs
        or not _is_splat(is_zero.rhs, 0.0)
    ):
        return None
    shifted = [_shifted_exp(div.lhs, rank), _shifted_exp(total.input, rank)]
    if shifted[0] is None or shifted[1] is None or shifted[0][:2] != shifted[1][:2]:
        return None
    x, m, ops_num = shifted[0]
    _, _, ops_den = shifted[1]
    guard = _owner(m, pg.SelectOp)
    if not isinstance(guard, pg.SelectOp) or not _is_splat(guard.lhs, 0.0):
        return None
    is_inf = _owner(guard.cond, pg.CmpOp)
    if (
        not isinstance(is_inf, pg.CmpOp)
        or is_inf.predicate.data != "eq"
        or is_inf.lhs != guard.rhs
        or not _is_splat(is_inf.rhs, -math.inf)
    ):
        return None
    row_max = guard.rhs
    detach = _owner(row_max, pg.StopGradientOp)
    if detach is not None:
        row_max = detach.operands[0]
    mx = _last_dim_reduce(row_max, pg.MaxOp, rank)
    if mx is None or mx.input != x:
        return None
    ops: list[Operation] = [div, den, total, is_zero, *ops_num, *ops_den, guard, is_inf, mx]
    ops += [o for o in (den_b, detach) if o is not None]
    interior.extend(dict.fromkeys(ops))  # the two exp chains may be one (after cse)
    return x


def _shifted_exp(e: SSAValue, rank: int) -> tuple[SSAValue, SSAValue, list[Operation]] | None:
    """``(x, m, ops)`` when ``e`` is ``exp(x - broadcast(m))``."""
    exp = _owner(e, pg.ExpOp)
    sub = _owner(exp.operands[0], pg.SubOp) if exp is not None else None
    if not isinstance(sub, pg.SubOp):
        return None
    m = _unbroadcast(sub.rhs)
    if shape_of(m) != (*shape_of(e)[:-1], 1):
        return None
    assert exp is not None
    return sub.lhs, m, [exp, sub] + ([sub.rhs.owner] if m is not sub.rhs else [])  # type: ignore[list-item]


def _evaluate(value: SSAValue, memo: dict[SSAValue, np.ndarray | None]) -> np.ndarray | None:
    """The value of ``value`` when it depends only on ``pg.constant`` and ``pg.iota`` through side-effect-free
    ``pg`` ops (the numpy executor's kernels), else None."""
    if value in memo:
        return memo[value]
    memo[value] = None
    op = value.owner
    if not isinstance(op, Operation) or isinstance(op, pg.RandomOp | pg.CheckIndexOp) or len(op.results) != 1:
        return None
    if not is_side_effect_free(op) or math.prod(shape_of(value)) > MAX_EVALUATED_ELEMENTS:
        return None
    if isinstance(op, pg.ConstantOp):
        result: np.ndarray | None = constant_array(op.value)
    else:
        args = [_evaluate(v, memo) for v in op.operands]
        if any(a is None for a in args):
            return None
        try:
            result = np.asarray(op_kernel(op)(*args))
        except NotImplementedError:
            return None
    memo[value] = result
    return result


def _keep_pattern(keep: np.ndarray, scores: tuple[int, ...]) -> str | None:
    """``"causal"`` when the boolean ``keep`` broadcast to ``scores`` keeps exactly key j <= query i, ``"all"``
    when it keeps every key, else None."""
    if keep.ndim > len(scores) or broadcast_shape(keep.shape, scores) != scores:
        return None
    lead = (1,) * (len(scores) - keep.ndim) + keep.shape
    full = np.broadcast_to(keep.reshape(lead), (*lead[:-2], *scores[-2:]))
    if np.array_equal(full, np.broadcast_to(np.tri(*scores[-2:], dtype=np.bool_), full.shape)):
        return "causal"
    return "all" if keep.all() else None


def _masks(x: SSAValue, m: _Match) -> Iterator[tuple[SSAValue, _Match]]:
    """Every way of reading ``x`` as mask steps over unmasked scores ``s``: ``(s, match with the masks)``."""
    yield x, m
    op = x.owner
    scores = shape_of(x)
    if isinstance(op, pg.SelectOp) and op.cond.type == pg.tensor_type(scores, pg.i1):
        for fill, kept, inverted in ((op.lhs, op.rhs, True), (op.rhs, op.lhs, False)):
            if not _is_splat(fill, -math.inf):
                continue
            cond = _unbroadcast(op.cond)
            value = _evaluate(cond, {})
            kind = _keep_pattern(~value if inverted else value, scores) if value is not None else None
            step = _Match(**{**vars(m), "interior": [*m.interior, op]})
            if kind == "causal":
                step.causal = True
            elif kind is None:
                if m.mask is not None or m.negate_mask is not None:
                    continue
                if inverted:
                    step.negate_mask = cond
                else:
                    step.mask = cond
            yield from _masks(kept, step)
    if isinstance(op, pg.AddOp) and m.mask is None and m.negate_mask is None:
        for s, mask in ((op.lhs, op.rhs), (op.rhs, op.lhs)):
            yield from _masks(s, _Match(**{**vars(m), "interior": [*m.interior, op], "mask": _unbroadcast(mask)}))


def _scaled(x: SSAValue, interior: list[Operation] | None) -> tuple[SSAValue, float]:
    """``(y, c)`` with ``x = y * c`` through products and quotients by scalar constants (added to ``interior``
    when given)."""
    scale = 1.0
    while True:
        op = x.owner
        if isinstance(op, pg.MulOp):
            c, y = _splat(op.rhs), op.lhs
            if c is None:
                c, y = _splat(op.lhs), op.rhs
        elif isinstance(op, pg.DivOp):
            c, y = _splat(op.rhs), op.lhs
            c = None if c is None or c == 0.0 else 1.0 / c
        else:
            return x, scale
        if c is None or not math.isfinite(c) or not isinstance(op, Operation):
            return x, scale
        scale *= c
        if interior is not None:
            interior.append(op)
        x = y


def _scores(s: SSAValue, m: _Match) -> _Match | None:
    """Complete ``m`` when ``s`` is ``(q @ k^T) * scale``."""
    interior = list(m.interior)
    s, scale = _scaled(s, interior)
    mm = _owner(s, pg.MatmulOp)
    if not isinstance(mm, pg.MatmulOp):
        return None
    kt, kt_scale = _scaled(mm.rhs, None)
    perm = _owner(kt, pg.PermuteOp)
    rank = len(shape_of(s))
    swap = (*range(rank - 2), rank - 1, rank - 2)
    if not isinstance(perm, pg.PermuteOp) or rank < 2 or perm.perm_list != swap:
        return None
    q, q_scale = _scaled(mm.lhs, None)
    k, k_scale = _scaled(perm.input, None)
    scale *= q_scale * k_scale * kt_scale
    return _Match(**{**vars(m), "interior": [*interior, mm], "query": q, "key": k, "scale": scale})


def _match(final: pg.MatmulOp) -> _Match | None:
    m = _Match(value=final.rhs, interior=[final])
    p = final.lhs
    drop = _owner(p, pg.SelectOp)
    if isinstance(drop, pg.SelectOp) and element_of(drop.cond) == pg.i1 and _is_splat(drop.rhs, 0.0):
        prod = _owner(drop.lhs, pg.MulOp)
        if isinstance(prod, pg.MulOp):
            for probs, c in ((prod.lhs, prod.rhs), (prod.rhs, prod.lhs)):
                if _splat(c) is not None and _owner(probs, pg.DivOp) is not None:
                    m.keep, m.keep_scale, m.keep_zero = drop.cond, c, drop.rhs
                    m.interior += [drop, prod]
                    p = probs
                    break
    x = _softmax(p, m.interior)
    if x is None:
        return None
    for s, masked in _masks(x, m):
        found = _scores(s, masked)
        if found is not None and _fits(found):
            return found
    return None


def _fits(m: _Match) -> bool:
    """Whether the op takes these operands, and the replaced values are used only inside the pattern."""
    assert m.query is not None and m.key is not None and m.value is not None
    q, k, v = shape_of(m.query), shape_of(m.key), shape_of(m.value)
    el = element_of(m.query)
    if not is_float(el) or element_of(m.key) != el or element_of(m.value) != el:
        return False
    if len(q) < 2 or len(k) != len(q) or len(v) != len(q) or q[:-2] != k[:-2] or q[:-2] != v[:-2]:
        return False
    if q[-1] != k[-1] or k[-2] != v[-2]:
        return False
    scores = (*q[:-1], k[-2])
    for mask in (m.mask, m.negate_mask):
        if mask is not None:
            ms = shape_of(mask)
            if element_of(mask) not in (pg.i1, el) or len(ms) > len(scores) or broadcast_shape(ms, scores) != scores:
                return False
    inside = set(m.interior)
    final = m.interior[0]
    return all(use.operation in inside for op in m.interior if op is not final for r in op.results for use in r.uses)


def _rewrite(final: pg.MatmulOp, m: _Match) -> None:
    assert m.query is not None and m.key is not None and m.value is not None
    new: list[Operation] = []
    mask = m.mask
    if m.negate_mask is not None:
        mask = _negation(m.negate_mask, new)
    dropout = None
    if m.keep is not None:
        assert m.keep_scale is not None and m.keep_zero is not None
        new.append(pg.SelectOp(m.keep, m.keep_scale, m.keep_zero))
        dropout = new[-1].results[0]
    attn = pg.ScaledDotProductAttentionOp(m.query, m.key, m.value, mask, dropout, m.scale, m.causal)
    new.append(attn)
    for op in new:
        op.location = final.location
    Rewriter.insert_op(new, InsertPoint.before(final))
    final.result.replace_all_uses_with(attn.result)
    _erase_dead(m.interior)


def _negation(cond: SSAValue, new: list[Operation]) -> SSAValue:
    """Ops computing ``not cond`` (appended to ``new``): the opposite comparison where that is exact (``eq``/``ne``,
    or any predicate on integers), else ``cond == false``."""
    opposite = {"eq": "ne", "ne": "eq", "lt": "ge", "ge": "lt", "le": "gt", "gt": "le"}
    cmp = _owner(cond, pg.CmpOp)
    if isinstance(cmp, pg.CmpOp):
        pred = cmp.predicate.data
        if pred in ("eq", "ne") or not is_float(element_of(cmp.lhs)):
            new.append(pg.CmpOp(opposite[pred], cmp.lhs, cmp.rhs))
            return new[-1].results[0]
    false = pg.ConstantOp(DenseIntOrFPElementsAttr.from_list(TensorType(i1, []), [0]))
    new.append(false)
    new.append(pg.BroadcastToOp(false.result, shape_of(cond)))
    new.append(pg.CmpOp("eq", cond, new[-1].results[0]))
    return new[-1].results[0]


def _erase_dead(roots: list[Operation]) -> None:
    """Erase ``roots`` and, transitively, the side-effect-free ops feeding them, as they are left without uses."""
    candidates = dict.fromkeys(roots)
    changed = True
    while changed:
        changed = False
        for op in list(candidates):
            if op.parent is None:
                del candidates[op]
            elif not any(r.uses for r in op.results) and is_side_effect_free(op):
                candidates.update(dict.fromkeys(v.owner for v in op.operands if isinstance(v.owner, Operation)))
                Rewriter.erase_op(op)
                del candidates[op]
                changed = True


@dataclass(frozen=True)
class PgFuseAttention(ModulePass):
    """Rewrite hand-written attention into ``pg.scaled_dot_product_attention`` (see the module docs)."""

    name = "pg-fuse-attention"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for f in [o for o in op.walk() if isinstance(o, func.FuncOp)]:
            for mm in [o for o in f.walk() if isinstance(o, pg.MatmulOp)]:
                if mm.parent is None:
                    continue
                found = _match(mm)
                if found is not None:
                    _rewrite(mm, found)
