"""bench/gpu_tables.py: the README's GPU tables rendered from fabricated JSON lines of gpu_models.py (steps and a
full run, one failure, a rerun that must win) and gemm.py."""

from __future__ import annotations

import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_gpu_tables_render_the_runs(tmp_path) -> None:
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    try:
        import gpu_tables
    finally:
        del sys.path[0]
    env = {"date": "2026-12-05T10:00:00+00:00", "gpu": "NVIDIA H200", "driver": "580.159.04",
           "versions": {"torch": "2.11.0+cu130"}, "device": "cuda", "best_val_loss": None}  # fmt: skip
    gpt = {**env, "model": "gpt", "dtype": "bfloat16", "example": "examples/gpt_shakespeare.py --config gpu"}
    rows = [
        {**gpt, "framework": "picograd", "ms_per_step": 99.0, "first_call_s": 1.0},  # replaced by the rerun below
        {**gpt, "framework": "torch-eager", "ms_per_step": 13.7, "first_call_s": 0.9},
        {**gpt, "framework": "torch-compile", "error": "RuntimeError: no\nmore"},
        {**gpt, "framework": "picograd", "ms_per_step": 12.5, "first_call_s": 41.0},
        {**env, "model": "gpt-full", "dtype": "bfloat16", "framework": "picograd", "iters": 250, "partial": True,
         "ms_per_step": 13.0, "wall_s": 10.0, "best_val_loss": 2.5, "final_val_loss": 2.5},
        {**env, "model": "gpt-full", "dtype": "bfloat16", "framework": "picograd", "iters": 5000, "partial": False,
         "ms_per_step": 12.8, "wall_s": 190.4, "best_val_loss": 1.4712, "final_val_loss": 1.4801},
        {**env, "schedule": "mma-sync", "dtype": "bfloat16", "m": 4096, "n": 4096, "k": 4096, "tflops": 412.3,
         "ratio_to_cublas": 0.55},
        {**env, "schedule": "mma-sync", "dtype": "bfloat16", "m": 8192, "n": 8192, "k": 8192, "error": "Boom"},
    ]  # fmt: skip
    path = tmp_path / "runs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = gpu_tables.render(gpu_tables.read([str(path)]))
    assert "NVIDIA H200, driver 580.159.04, PyTorch 2.11.0+cu130, 2026-12-05" in text
    # the rerun wins; speed-ups are peer / picograd; the failure shows its first line only
    line = next(x for x in text.splitlines() if x.startswith("| `examples/gpt_shakespeare.py"))
    assert line == (
        "| `examples/gpt_shakespeare.py --config gpu` | bfloat16 | 12.50 | 13.70 | failed: RuntimeError: no | 1.10x "
        "| - | 41.0 / - |"
    )
    assert "| picograd | bfloat16 | 5,000 | 12.80 | 190 | 1.4712 | 1.4801 |" in text
    assert "(cut short)" not in text
    assert "| mma-sync | bfloat16 | 412.3 (55%) | failed: Boom |" in text
    assert gpu_tables.render([]) == "no rows recognised"
