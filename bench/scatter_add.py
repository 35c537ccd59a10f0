"""The embedding gradient on the GPU: picograd's scatter-add kernels against PyTorch's, in the same run.

At the GPT's token embedding (``examples/gpt_shakespeare.py --config gpu``: 64 x 256 tokens, 384 columns, a 65-row
table; the tokens are real windows of the Shakespeare text, whose skew — a space is 15% of the characters — is what
makes atomics contend) and at a GPT-2-sized one (8 x 1024 tokens, 768 columns, 50304 rows, uniform tokens), this
times, each with its zero fill:

- ``picograd``: ``pg.scatter_add`` compiled by ``compile_for_cuda`` under the schedule the scatter-add kind's table
  chooses (``shared_rows`` for the small table: rows privatized in shared memory, one global atomic per (chunk, row,
  column); ``atomic`` for the large one);
- ``picograd-atomic``: the same op with the table forced to ``atomic`` (one global atomic per update);
- ``torch-index_add``: ``zeros(rows, C).index_add_(0, idx, g)``;
- ``torch-embedding_backward``: ``aten.embedding_dense_backward`` (what ``nn.Embedding``'s backward runs: sort the
  ids, then a segmented sum; deterministic).

Each result is checked against numpy's float64 ``add.at`` (``rel_err``: the largest error over the largest magnitude
of the reference). Timing: CUDA events around back-to-back calls, median of 50 after 5 warm-up calls. ``gbps`` is
the bytes the scatter must move (the updates, the ids and the table) over the time.

Output: one JSON object per line (``--out``, default ``bench/results/scatter_add_<gpu>.jsonl``) with ``date``,
``gpu``, ``case``, ``impl``, ``schedule``, ``ms``, ``us``, ``gbps``, ``rel_err``, versions. ``--check`` compiles
and assembles picograd's kernels at both shapes (no GPU needed) and prints their schedules.

    python bench/scatter_add.py            # GPU
    python bench/scatter_add.py --check    # CPU: compile and assemble only
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [ROOT, os.path.join(ROOT, "examples")]

IMPLS = ("picograd", "picograd-atomic", "torch-index_add", "torch-embedding_backward")


@dataclass(frozen=True)
class Shape:
    name: str
    batch: int
    block: int
    columns: int
    rows: int
    text: bool  # token ids from the Shakespeare text (else uniform)


CASES = (
    Shape("gpt-shakespeare", 64, 256, 384, 65, True),
    Shape("gpt2-vocab", 8, 1024, 768, 50304, False),
)


def token_ids(s: Shape) -> np.ndarray:
    rng = np.random.default_rng(0)
    if s.text:
        import gpt_shakespeare as ex

        data = ex.CharData()
        assert len(data.chars) == s.rows, (len(data.chars), s.rows)
        return data.batch("train", rng, s.batch, s.block)[0]
    return rng.integers(0, s.rows, (s.batch, s.block)).astype(np.int64)


def program(s: Shape, force_atomic: bool) -> Any:
    """``compile_for_cuda`` of ``pg.scatter_add`` (B, T, C) f32 at (B, T) int64 ids into (rows, C), with the kind's
    table or (``force_atomic``) a table of one ``atomic`` row."""
    from xdsl.dialects import func
    from xdsl.dialects.builtin import FunctionType, ModuleOp, TensorType, f32, i64

    from picograd.dialects import pg
    from picograd.driver.gpu_compile import compile_for_cuda
    from picograd.passes.kinds import scatter_add

    ut, it = TensorType(f32, [s.batch, s.block, s.columns]), TensorType(i64, [s.batch, s.block])
    fn = func.FuncOp("scatter", FunctionType.from_lists([ut, it], [TensorType(f32, [s.rows, s.columns])]))
    u, i = fn.body.block.args
    op = pg.ScatterAddOp(u, i, 0, (s.rows, s.columns))
    fn.body.block.add_ops([op, func.ReturnOp(op.result)])
    rules = scatter_add.RULES
    if force_atomic:
        scatter_add.RULES = (scatter_add.Rule(scatter_add.ATOMIC, lambda _: True),)
    try:
        return compile_for_cuda(ModuleOp([fn]))
    finally:
        scatter_add.RULES = rules


def schedule_of(prog: Any) -> str:
    return "shared_rows" if "red.shared" in prog.ptx else "atomic"


def check() -> None:
    for s in CASES:
        for force in (False, True):
            prog = program(s, force)
            res = prog.assemble(strict=True)
            kernels = {k: (r.registers, r.shared_bytes) for k, r in res.kernels.items()}
            print(s.name, "atomic forced" if force else "table", schedule_of(prog), prog.steps, kernels)


def bytes_moved(s: Shape) -> int:
    tokens = s.batch * s.block
    return tokens * s.columns * 4 + tokens * 8 + s.rows * s.columns * 4


def torch_scatter(torch: Any, impl: str, s: Shape, g: Any, ids: Any) -> Any:
    """A call of torch's ``impl`` on the updates ``g`` (tokens, C) and ``ids`` (tokens,), returning the table."""
    if impl == "torch-index_add":
        return lambda: torch.zeros(s.rows, s.columns, device="cuda").index_add_(0, ids, g)
    if impl == "torch-embedding_backward":
        return lambda: torch.ops.aten.embedding_dense_backward(g, ids, s.rows, -1, False)
    raise ValueError(f"unknown implementation {impl!r}: expected one of {', '.join(IMPLS)}")


def time_events(torch: Any, fn: Any) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    samples = []
    for _ in range(50):
        start.record()
        fn()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end))
    return float(np.median(samples))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--impls", default=",".join(IMPLS))
    ap.add_argument("--check", action="store_true", help="compile and assemble picograd's kernels, no GPU")
    ap.add_argument("--out", default=None)
    opts = ap.parse_args()
    if opts.check:
        check()
        return

    import torch
    from results_io import gpu_results_path, gpu_rows_env

    from picograd.runtime import cuda

    gpu, env = gpu_rows_env(torch)
    out = opts.out or gpu_results_path("scatter_add", gpu)
    rows = []
    for s in CASES:
        ids = token_ids(s)
        g = np.random.default_rng(1).standard_normal((s.batch, s.block, s.columns)).astype(np.float32)
        want = np.zeros((s.rows, s.columns))
        np.add.at(want, ids.reshape(-1), g.reshape(-1, s.columns).astype(np.float64))
        scale = float(np.abs(want).max())
        tg, ti = torch.from_numpy(g).cuda(), torch.from_numpy(ids).cuda()
        flat_g, flat_i = tg.view(-1, s.columns), ti.view(-1)
        for impl in opts.impls.split(","):
            row: dict[str, Any] = {**env, "case": s.name, "tokens": s.batch * s.block, "columns": s.columns,
                                   "rows": s.rows, "impl": impl}  # fmt: skip
            try:
                if impl.startswith("picograd"):
                    prog = program(s, impl == "picograd-atomic")
                    exe = prog.executable()
                    ins = [cuda.DeviceBuffer.from_numpy(g), cuda.DeviceBuffer.from_numpy(ids)]
                    outs = exe(*ins)
                    got = outs[0].to_numpy()
                    row["ms"] = cuda.time_ms(lambda exe=exe, ins=ins, outs=outs: exe(*ins, out=outs), 5, 50)
                    row["schedule"] = schedule_of(prog)
                else:
                    fn = torch_scatter(torch, impl, s, flat_g, flat_i)
                    got = fn().cpu().numpy()
                    row["ms"] = time_events(torch, fn)
                row["us"] = 1e3 * row["ms"]
                row["gbps"] = bytes_moved(s) / row["ms"] / 1e6
                row["rel_err"] = float(np.abs(got - want).max() / scale)
            except Exception as e:  # one failing implementation must not lose the others
                row["error"] = f"{type(e).__name__}: {e}"[:500]
            rows.append(row)
            print(json.dumps(row), flush=True)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out + ".tmp", "w") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    os.replace(out + ".tmp", out)
    print(f"wrote {len(rows)} lines to {out}")


if __name__ == "__main__":
    main()
