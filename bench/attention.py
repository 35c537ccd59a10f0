"""Attention on the GPU: picograd's fused FlashAttention-2 kernels against PyTorch's ``scaled_dot_product_attention``
(flash and cuDNN backends) and its unfused math backend, in the same run.

For each head dim (64, 128), sequence length T (512 ... 8192), causal and not, and direction (``fwd``: out =
attention(q, k, v); ``fwd+bwd``: out and dq, dk, dv of sum(out * dout)), on (batch, 16 heads, T, d) with batch =
``--tokens`` / T (the same number of query rows at every T), this times

- ``picograd-bf16``: the step compiled by picograd's pipeline (``compile_for_cuda``: the ``attention`` kernel kind
  under its ``flash-mma`` schedule, kernels ``flash-mma-forward``, ``flash-mma-dkdv``, ``flash-mma-dq`` on
  ``mma.sync`` tensor cores, plus the ``D = rowsum(dout * out)`` kernel) in bf16, run by the CUDA runtime on device
  buffers; ``picograd``: the same in fp32 (the SIMT ``flash`` kernels: rows say ``dtype = float32``);
- ``picograd-wgmma``: the bf16 forward on wgmma + TMA (``compile_for_cuda(arch="sm_90a",
  attention_schedule="flash-wgmma")``, ``picograd/passes/kinds/attention_wgmma.py``; ``fwd`` rows only: its backward
  is another schedule's). The row is an error, not a timing, when the compiled program has no ``flash-wgmma``
  kernel (bf16 attention decomposed, or a shape it does not take);
- ``torch-flash``, ``torch-cudnn`` (``torch.nn.attention.sdpa_kernel``), ``torch-math`` (the unfused reference: two
  matmuls and a softmax, T x T in memory) in bf16, and ``torch-math`` in fp32 (the like-for-like peer of picograd's
  fp32 kernels).

FLOP counts (FlashAttention's convention): forward 4 B H T^2 d (two matmuls), fwd+bwd 3.5x that (the backward is 2.5x
the forward: five matmuls), halved when causal. Timing: CUDA events around back-to-back calls, median after warm-up
(``picograd.runtime.cuda.time_ms``). A backend that refuses a shape (or runs out of memory: ``torch-math`` at 8192) is
written as a row with ``error``.

Output: one JSON object per line (``--out``, default ``bench/results/attention_<gpu>.jsonl``) with ``date``, ``gpu``,
``impl``, ``dtype``, ``head_dim``, ``seq_len``, ``batch``, ``heads``, ``causal``, ``direction``, ``ms``, ``tflops``,
``ratio_to_torch_flash`` (its TFLOP/s over the bf16 flash backend's on the same row), versions. ``--check`` only
compiles picograd's kernels for a tiny shape and assembles them (no GPU needed).

    python bench/attention.py                                  # the full grid (GPU)
    python bench/attention.py --head-dims 64 --seq 1024 --impls picograd,torch-flash
    python bench/attention.py --gpt                            # the GPT example's shape, with its dropout
    python bench/attention.py --check                          # the CPU-side compile path, tiny shape
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

SEQ = (512, 1024, 2048, 4096, 8192)
IMPLS = ("picograd-bf16", "picograd", "picograd-wgmma", "torch-flash", "torch-cudnn", "torch-math", "torch-math-fp32")


def attention_module(
    batch: int, heads: int, length: int, d: int, causal: bool, backward: bool, dtype: str = "f32", dropout: float = 0.0
):
    """``f(q, k, v[, dout][, seed, offset]) -> out[, dq, dk, dv]``: picograd's attention op, (batch, heads, T, d), at
    the ``grad`` stage (``pg-autodiff`` run: the backward is ``pg.attention_backward``). ``dropout > 0``: the
    probabilities dropped as ``F.scaled_dot_product_attention(dropout_p=...)`` traces it (a uniform ``pg.random``
    of the scores' shape in q's dtype from the 0-d i64 ``seed`` and ``offset``, kept where ``>= dropout``, scaled by
    ``1 / (1 - dropout)``)."""
    from xdsl.dialects import func
    from xdsl.dialects.builtin import DenseIntOrFPElementsAttr, FunctionType, ModuleOp, TensorType, bf16, f32, f64, i64
    from xdsl.ir import Block, Region

    from picograd.dialects import make_context, pg
    from picograd.passes.autodiff import PgAutodiff

    el = {"f32": f32, "f64": f64, "bf16": bf16}[dtype]
    t = TensorType(el, [batch, heads, length, d])
    scalar = TensorType(i64, [])
    block = Block(arg_types=[t] * (4 if backward else 3) + [scalar] * (2 if dropout > 0 else 0))
    q, k, v = block.args[:3]
    drop = None
    if dropout > 0:
        scores = TensorType(el, [batch, heads, length, length])

        def const(x: float) -> Any:
            c = pg.ConstantOp(DenseIntOrFPElementsAttr.from_list(scores, [x]))
            block.add_op(c)
            return c.result

        u = pg.RandomOp("uniform", block.args[-2], block.args[-1], scores)
        block.add_op(u)
        keep = pg.CmpOp("ge", u.result, const(dropout))
        block.add_op(keep)
        sel = pg.SelectOp(keep.result, const(1.0 / (1.0 - dropout)), const(0.0))
        block.add_op(sel)
        drop = sel.result
    attn = pg.ScaledDotProductAttentionOp(q, k, v, None, drop, d**-0.5, causal)
    block.add_op(attn)
    results = [attn.result]
    if backward:
        prod = pg.MulOp(attn.result, block.args[3])
        loss = pg.SumOp(prod.result, [0, 1, 2, 3])
        grad = pg.GradOp(loss.result, [q, k, v])
        for op in (prod, loss, grad):
            block.add_op(op)
        results += list(grad.grads)
    block.add_op(func.ReturnOp(*results))
    fn = func.FuncOp(
        "attention", FunctionType.from_lists(list(block.arg_types), [r.type for r in results]), Region(block)
    )
    module = ModuleOp([fn])
    if backward:
        PgAutodiff().apply(make_context(), module)
    return module


def flops(batch: int, heads: int, length: int, d: int, causal: bool, backward: bool) -> float:
    f = 4.0 * batch * heads * length * length * d * (3.5 if backward else 1.0)
    return f / 2 if causal else f


def check() -> None:
    """Compile and assemble picograd's kernels for a tiny shape (no GPU): the path the GPU run takes."""
    from picograd.driver.gpu_compile import compile_for_cuda

    for dtype in ("f32", "bf16"):
        for backward in (False, True):
            prog = compile_for_cuda(attention_module(1, 2, 40, 64, True, backward, dtype))
            result = prog.assemble(strict=True)
            kernels = [k for k in prog.kernels if "attention" in k]
            mma = prog.ptx.count("mma.sync")
            print(f"{dtype:4s} {'fwd+bwd' if backward else 'fwd':8s} kernels {kernels}, mma.sync {mma}, spills "
                  f"{result.spills}")  # fmt: skip
            assert kernels and not result.spills and (mma > 0) == (dtype == "bf16")
    gpt = compile_for_cuda(attention_module(2, 6, 256, 64, True, True, "bf16", 0.2), arch="sm_90a")
    result = gpt.assemble(strict=True)
    print(f"GPT fwd+bwd (dropout 0.2, sm_90a) kernels {[k for k in gpt.kernels if 'attention' in k]}, spills "
          f"{result.spills}")  # fmt: skip
    assert not result.spills
    prog = wgmma_program(1, 2, 128, 64, True)
    result = prog.assemble(strict=True)
    print(f"fwd      flash-wgmma (sm_90a) kernels {list(prog.kernels)}, spills {result.spills}")
    assert not result.spills


def wgmma_program(batch: int, heads: int, length: int, d: int, causal: bool) -> Any:
    """The bf16 forward compiled with the ``flash-wgmma`` schedule for sm_90a; raises ``RuntimeError`` when the
    program does not run that kernel (then the row would time something else)."""
    from picograd.driver.gpu_compile import compile_for_cuda
    from picograd.passes.kinds import attention_wgmma

    module = attention_module(batch, heads, length, d, causal, False, dtype="bf16")
    prog = compile_for_cuda(module, arch="sm_90a", attention_schedule=attention_wgmma.STRATEGY)
    from picograd.runtime import cuda

    launches = [s for s in prog.steps if isinstance(s, cuda.Launch) and s.args]
    if not any(isinstance(s.args[0], cuda.TensorMap) for s in launches):  # its tensor maps: q, k, v
        raise RuntimeError("the compiled program has no flash-wgmma kernel (bf16 attention decomposed?)")
    return prog


def time_picograd_wgmma(torch: Any, batch: int, heads: int, length: int, d: int, causal: bool) -> dict:
    """``picograd-wgmma``: the bf16 flash-wgmma forward, checked against torch's fp64 math on (batch 0, heads 0-1)."""
    import ml_dtypes

    from picograd.runtime import cuda

    t0 = time.perf_counter()
    prog = wgmma_program(batch, heads, length, d, causal)
    exe = prog.executable()
    compile_s = time.perf_counter() - t0
    gen = torch.Generator(device="cuda").manual_seed(0)
    shape = (batch, heads, length, d)
    q, k, v = (torch.randn(shape, device="cuda", dtype=torch.bfloat16, generator=gen) for _ in range(3))
    ins = [cuda.DeviceBuffer.from_numpy(x.view(torch.int16).cpu().numpy().view(ml_dtypes.bfloat16)) for x in (q, k, v)]
    outs = exe(*ins)
    cuda.synchronize()
    part = (slice(0, 1), slice(0, 2))
    ref = torch.nn.functional.scaled_dot_product_attention(*(x[part].double() for x in (q, k, v)), is_causal=causal)
    got = torch.from_numpy(outs[0].to_numpy()[part].astype(np.float64)).to("cuda")
    err = float(torch.linalg.norm(got - ref) / torch.linalg.norm(ref))
    ms = cuda.time_ms(lambda: exe(*ins, out=outs), warmup=3, iters=20)
    return {"ms": ms, "rel_err": err, "compile_s": round(compile_s, 1), "dtype": "bfloat16"}


def time_picograd(
    torch: Any, batch: int, heads: int, length: int, d: int, causal: bool, backward: bool, dtype: str = "f32",
    dropout: float = 0.0, arch: str = "sm_90",
) -> dict:  # fmt: skip
    import ml_dtypes

    from picograd.driver.gpu_compile import compile_for_cuda
    from picograd.runtime import cuda

    t0 = time.perf_counter()
    prog = compile_for_cuda(attention_module(batch, heads, length, d, causal, backward, dtype, dropout), arch=arch)
    exe = prog.executable()
    compile_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    shape = (batch, heads, length, d)
    np_dtype = ml_dtypes.bfloat16 if dtype == "bf16" else np.float32
    host = [rng.standard_normal(shape).astype(np_dtype) for _ in range(4 if backward else 3)]
    seeds = [np.array(12345, np.int64), np.array(678, np.int64)] if dropout > 0 else []
    ins = [cuda.DeviceBuffer.from_numpy(x) for x in host + seeds]
    outs = exe(*ins)
    err: float | None = None
    if dropout == 0:  # check (batch 0, heads 0 and 1) against torch's fp64 math on the same inputs
        part = (slice(0, 1), slice(0, 2))
        wide = [x[part].astype(np.float64) for x in host]  # the bf16 inputs exactly
        q, k, v = (torch.tensor(x, dtype=torch.float64, device="cuda", requires_grad=backward) for x in wide[:3])
        ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
        want = [ref]
        if backward:
            (ref * torch.tensor(wide[3], dtype=torch.float64, device="cuda")).sum().backward()
            want += [q.grad, k.grad, v.grad]
        err = 0.0
        for o, w in zip(outs, want, strict=True):
            w64 = w.detach().cpu().numpy()
            got = o.to_numpy()[part].astype(np.float64)
            err = max(err, float(np.linalg.norm(got - w64) / max(np.linalg.norm(w64), 1e-30)))
    ms = cuda.time_ms(lambda: exe(*ins, out=outs), warmup=3, iters=20)
    strategy = "flash-mma" if "mma.sync" in prog.ptx else "flash"
    kernels = [k for k in prog.kernels if "attention" in k or "flash" in k]
    return {"ms": ms, "rel_err": err, "compile_s": round(compile_s, 1), "kernels": kernels,
            "dtype": "bfloat16" if dtype == "bf16" else "float32", "schedule": strategy}  # fmt: skip


def time_torch(
    torch: Any, impl: str, batch: int, heads: int, length: int, d: int, causal: bool, backward: bool,
    dropout: float = 0.0,
) -> dict:  # fmt: skip
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backend = {
        "torch-flash": SDPBackend.FLASH_ATTENTION,
        "torch-cudnn": SDPBackend.CUDNN_ATTENTION,
        "torch-math": SDPBackend.MATH,
        "torch-math-fp32": SDPBackend.MATH,
    }[impl]
    dtype = torch.float32 if impl == "torch-math-fp32" else torch.bfloat16
    gen = torch.Generator(device="cuda").manual_seed(0)
    shape = (batch, heads, length, d)
    q, k, v, dout = (torch.randn(shape, device="cuda", dtype=dtype, generator=gen) for _ in range(4))
    for x in (q, k, v):
        x.requires_grad_(backward)

    def step() -> None:
        with sdpa_kernel(backend):
            out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal, dropout_p=dropout)
            if backward:
                torch.autograd.grad(out, (q, k, v), dout)

    step()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    samples = []
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    for _ in range(20):
        start.record()
        step()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end))
    return {"ms": float(np.median(samples)), "dtype": "float32" if dtype == torch.float32 else "bfloat16"}


GPT = {"batch": 64, "heads": 6, "seq_len": 256, "head_dim": 64, "causal": True}
"""The attention of the GPT example's GPU config (nanoGPT's ``train_shakespeare_char``: batch 64, 6 heads of 64,
block 256, causal, dropout 0.2)."""


def gpt_rows(torch: Any, env: dict, impls: list[str]) -> list[dict]:
    """``--gpt``: the GPT's attention, bf16, with its dropout (0.2) and without, forward and forward+backward:
    picograd (compiled for sm_90a as the GPT step is: the ``flash-mma`` kernels, or without dropout the
    ``flash-wgmma`` forward) against PyTorch's flash, cuDNN and math backends. Rows with dropout carry no
    ``rel_err`` (the generators differ; the kernels are checked against float64 by the tests)."""
    g = GPT
    rows = []
    for dropout in (0.2, 0.0):
        for backward in (False, True):
            case = {**g, "dropout": dropout, "direction": "fwd+bwd" if backward else "fwd"}
            f = flops(g["batch"], g["heads"], g["seq_len"], g["head_dim"], True, backward)
            found = []
            for impl in ["torch-flash", *[i for i in impls if i != "torch-flash"]]:
                try:
                    if impl == "picograd-bf16":
                        r = time_picograd(torch, g["batch"], g["heads"], g["seq_len"], g["head_dim"], True, backward,
                                          "bf16", dropout, arch="sm_90a")  # fmt: skip
                    else:
                        r = time_torch(torch, impl, g["batch"], g["heads"], g["seq_len"], g["head_dim"], True,
                                       backward, dropout)  # fmt: skip
                    r["tflops"] = f / r["ms"] / 1e9
                except Exception as e:  # one failing backend must not lose the others
                    r = {"error": f"{type(e).__name__}: {e}"[:500]}
                torch.cuda.empty_cache()
                found.append({**env, "impl": impl, **case, **r})
            flash = found[0].get("ms")
            for row in found:
                if "ms" in row and flash:
                    row["ratio_to_torch_flash"] = flash / row["ms"]
                if row["impl"] in impls:
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--head-dims", default="64,128")
    ap.add_argument("--seq", default=",".join(map(str, SEQ)))
    ap.add_argument("--impls", default=",".join(IMPLS))
    ap.add_argument("--tokens", type=int, default=16384, help="batch x T (batch = tokens / T, at least 1)")
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--check", action="store_true", help="compile picograd's kernels for a tiny shape, no GPU")
    ap.add_argument(
        "--gpt",
        action="store_true",
        help="only the GPT example's attention (B=64, H=6, T=256, d=64, causal, dropout 0.2 and 0) in bf16",
    )
    ap.add_argument("--out", default=None)
    opts = ap.parse_args()
    if opts.check:
        check()
        return

    import torch
    from results_io import gpu_results_path, gpu_rows_env

    gpu, env = gpu_rows_env(torch)
    out = opts.out or gpu_results_path("attention", gpu)
    impls = opts.impls.split(",")
    if opts.gpt:
        impls = [i for i in impls if i in ("picograd-bf16", "torch-flash", "torch-cudnn", "torch-math")]
        out = opts.out or os.path.join(HERE, "results", f"attention_gpt_{gpu.split()[-1].lower()}.jsonl")
        rows = gpt_rows(torch, env, impls)
        with open(out + ".tmp", "w") as fh:
            for row in rows:
                fh.write(json.dumps(row) + "\n")
        os.replace(out + ".tmp", out)
        print(f"wrote {len(rows)} lines to {out}")
        return
    rows = []
    for d in (int(x) for x in opts.head_dims.split(",")):
        for length in (int(x) for x in opts.seq.split(",")):
            batch = max(1, opts.tokens // length)
            for causal in (False, True):
                for backward in (False, True):
                    case = {"head_dim": d, "seq_len": length, "batch": batch, "heads": opts.heads, "causal": causal,
                            "direction": "fwd+bwd" if backward else "fwd"}  # fmt: skip
                    f = flops(batch, opts.heads, length, d, causal, backward)
                    found: list[dict] = []
                    for impl in ["torch-flash", *[i for i in impls if i != "torch-flash"]]:
                        try:
                            if impl in ("picograd", "picograd-bf16"):
                                dt = "bf16" if impl == "picograd-bf16" else "f32"
                                r = time_picograd(torch, batch, opts.heads, length, d, causal, backward, dt)
                            elif impl == "picograd-wgmma":
                                if backward:
                                    continue  # a forward schedule
                                r = time_picograd_wgmma(torch, batch, opts.heads, length, d, causal)
                            else:
                                r = time_torch(torch, impl, batch, opts.heads, length, d, causal, backward)
                            r["tflops"] = f / r["ms"] / 1e9
                        except Exception as e:  # one failing backend must not lose the others
                            r = {"error": f"{type(e).__name__}: {e}"[:500]}
                        torch.cuda.empty_cache()
                        found.append({**env, "impl": impl, **case, **r})
                    flash = found[0].get("tflops")
                    for row in found:
                        if "tflops" in row and flash:
                            row["ratio_to_torch_flash"] = row["tflops"] / flash
                        if row["impl"] in impls:
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
