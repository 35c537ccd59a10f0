"""The memory plan of the GPT train step at several context lengths: is attention's T x T matrix in it?

For ``examples/gpt_shakespeare.py`` (``--config gpu`` by default: 6 layers, 6 heads, 384 wide, batch 64, dropout
0.2), each ``--attention`` form and each ``--block-size``, this traces the train step (forward, backward, clip,
AdamW), lowers it to the ``loops`` stage (``pgc --emit=loops``: ``pg-bufferize`` plans one arena for the
intermediates) and reports

- ``arena_bytes``: the arena's size (``pg.peak_bytes`` on the function), i.e. what the step needs besides its
  inputs and outputs;
- ``t2_buffers``: the intermediates (``memref.view`` into the arena) with the last two dims (T, T), per head;
  ``t2_bytes_largest`` the biggest of them, ``t2_bytes_total`` their sum (they may share bytes);
- the step's T x T arguments (nanoGPT's ``bias`` buffer of the manual form: T x T in all, not per head).

No kernel is run: this is the compiler's plan, the same for the CPU and the GPU lowering. While
``pg-decompose-attention`` lowers the attention op before bufferization (with dropout: its multiplier is a
(B, H, T, T) tensor), the scores and probabilities are (B, H, T, T) intermediates and the arena grows as T^2; the
fused attention kernel (kind ``attention``, dropout regenerated in the kernels) removes them: rows are given for
each ``--dropouts`` rate (default: the config's and 0).

    python bench/attention_memory.py                         # blocks 256 and 1024, both forms
    python bench/attention_memory.py --blocks 64 --config cpu --out /tmp/mem.json
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from dataclasses import replace

import numpy as np
import xdsl
from xdsl.dialects import func, memref
from xdsl.dialects.builtin import IntegerAttr, MemRefType

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "examples"))

import gpt_shakespeare as gpt  # noqa: E402
from results_io import write_json  # noqa: E402

import picograd as pg  # noqa: E402
from picograd.dialects.attrs import PEAK_ATTR  # noqa: E402
from picograd.passes.buffers import byte_size  # noqa: E402
from picograd.passes.kinds.attention import ATTENTION_ATTR  # noqa: E402


def plan(cfg: gpt.Config) -> dict:
    """Trace the train step for ``cfg`` and read the memory plan of its ``loops`` stage."""
    gpt.model, gpt.opt, gpt.sched = gpt.make(cfg, 1337)
    x = pg.tensor(np.zeros((cfg.batch_size, cfg.block_size), np.int64))
    start = time.perf_counter()
    module = gpt.train_step.ir("loops", (x, x))
    seconds = time.perf_counter() - start
    (fn,) = [op for op in module.walk() if isinstance(op, func.FuncOp)]
    peak = fn.attributes[PEAK_ATTR]
    assert isinstance(peak, IntegerAttr)
    t = cfg.block_size
    fused = sum(1 for op in fn.walk() if op.attributes.get(ATTENTION_ATTR) is not None)
    views = [op.results[0].type for op in fn.walk() if isinstance(op, memref.ViewOp)]
    t2 = [v for v in views if isinstance(v, MemRefType) and tuple(v.get_shape())[-2:] == (t, t)]
    t2_args = [a.type for a in fn.args if isinstance(a.type, MemRefType) and tuple(a.type.get_shape())[-2:] == (t, t)]
    return {
        "attention": cfg.attention,
        "block_size": t,
        "attention_kernels": f"{fused} fused attention nests" if fused else "decomposed",
        "arena_bytes": peak.value.data,
        "intermediates": len(views),
        "t2_buffers": len(t2),
        "t2_shapes": sorted({"x".join(map(str, v.get_shape())) for v in t2}),
        "t2_bytes_largest": max((byte_size(v) for v in t2), default=0),
        "t2_bytes_total": sum(byte_size(v) for v in t2),
        "t2_arguments": ["x".join(map(str, a.get_shape())) for a in t2_args],
        "compile_seconds": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(gpt.CONFIGS), default="gpu")
    parser.add_argument("--blocks", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--attention", choices=["sdpa", "manual"], nargs="+", default=["sdpa", "manual"])
    parser.add_argument(
        "--dropouts", type=float, nargs="+", default=None, help="attention dropout rates (default: the config's and 0)"
    )
    parser.add_argument("--out", default=os.path.join(HERE, "results", "attention_memory.json"))
    args = parser.parse_args()
    base = gpt.CONFIGS[args.config]
    dropouts = args.dropouts if args.dropouts is not None else sorted({base.dropout, 0.0}, reverse=True)
    rows = []
    for dropout in dropouts:
        for attention in args.attention:
            for block in args.blocks:
                row = {
                    "dropout": dropout,
                    **plan(replace(base, block_size=block, attention=attention, dropout=dropout)),
                }
                rows.append(row)
                print(
                    f"dropout {dropout} {attention:6s} T={block:5d}: {row['attention_kernels']}, arena "
                    f"{row['arena_bytes'] / 2**20:9.1f} MiB, {row['t2_buffers']} T x T intermediates (largest "
                    f"{row['t2_bytes_largest'] / 2**20:.1f} MiB: {', '.join(row['t2_shapes'])})",
                    flush=True,
                )
    result = {
        "benchmark": "GPT train step memory plan (pg-bufferize arena at the loops stage)",
        "date": datetime.date.today().isoformat(),
        "machine": platform.machine(),
        "config": args.config,
        "model": {k: getattr(base, k) for k in ("n_layer", "n_head", "n_embd", "batch_size", "dropout")},
        "versions": {"python": platform.python_version(), "numpy": np.__version__, "xdsl": str(xdsl.__version__)},
        "attention_lowering": (
            "the fused attention kernel kind (picograd/passes/kinds/attention.py), dropout regenerated in the "
            "kernels; pg-decompose-attention only for element types other than f32/f64"
        ),
        "results": rows,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    write_json(args.out, result)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
