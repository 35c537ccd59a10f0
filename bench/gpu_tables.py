"""Markdown tables for the README from the GPU runs' JSON lines (bench/h200_check.sh's results).

Reads any number of JSONL files and renders, for the rows it recognises:

- ``bench/gpu_models.py`` step timings (rows with ``framework`` and ``ms_per_step``, no ``iters``): one row per
  (example, dtype) with picograd, PyTorch eager and ``torch.compile`` ms per step side by side, picograd's speed-up
  over each (above 1: picograd faster) and the first calls (tracing and compiling);
- ``bench/gpu_models.py --full-gpt`` runs (rows with ``iters``): iterations, ms per step, wall time to the end
  (evaluations included) and the best and final val_loss of each framework;
- ``bench/gemm.py`` rows (with ``schedule``): TFLOP/s and the share of cuBLAS for each rung, dtype and shape.

Where a file holds the same (model, dtype, framework) more than once the last row wins (a rerun appended later).
Failed rows show their error's first words. Each table is headed by the date, GPU, driver and PyTorch version.

    python bench/gpu_tables.py bench/results/gpu_models_h200.jsonl bench/results/gpu_models_full_h200.jsonl
    python bench/gpu_tables.py bench/results/gemm_h200.jsonl
"""

from __future__ import annotations

import argparse
import json
from typing import Any

FRAMEWORKS = ("picograd", "torch-eager", "torch-compile")
Row = dict[str, Any]


def read(paths: list[str]) -> list[Row]:
    rows = []
    for path in paths:
        with open(path) as f:
            rows += [json.loads(line) for line in f if line.strip()]
    return rows


def _failed(row: Row | None) -> str:
    if row is None:
        return "not run"
    error = str(row.get("error") or "no result").splitlines()[0]
    return "failed: " + (error if len(error) <= 40 else error[:37] + "...")


def _ms(row: Row | None) -> str:
    return f"{row['ms_per_step']:.2f}" if row and "ms_per_step" in row else _failed(row)


def _heading(rows: list[Row], what: str) -> str:
    first = rows[0]
    dates = sorted({str(r.get("date", ""))[:10] for r in rows})
    torch = (first.get("versions") or {}).get("torch", "?")
    driver = f", driver {first['driver']}" if first.get("driver") else ""
    when = " to ".join(dict.fromkeys([dates[0], dates[-1]]))
    return f"{what}: {first.get('gpu', '?')}{driver}, PyTorch {torch}, {when}"


def steps_table(rows: list[Row]) -> str:
    """picograd vs PyTorch eager vs torch.compile, ms per step, one line per (example, dtype)."""
    cells: dict[tuple[str, str], dict[str, Row]] = {}
    for r in rows:
        cells.setdefault((r["model"], r["dtype"]), {})[r["framework"]] = r  # the last row wins
    lines = [
        _heading(rows, "Train step on the GPU, median ms per step (upload, step, loss read back)"),
        "",
        "| example | dtype | picograd | PyTorch eager | torch.compile | speed-up vs eager | vs compile | "
        "first call (s): picograd / compile |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for (model, dtype), by in cells.items():
        ours = by.get("picograd")
        example = next((r["example"] for r in by.values() if r.get("example")), model)

        def speedup(peer: Row | None, ours: Row | None = ours) -> str:
            if ours and peer and "ms_per_step" in ours and "ms_per_step" in peer:
                return f"{peer['ms_per_step'] / ours['ms_per_step']:.2f}x"
            return "-"

        first = " / ".join(
            f"{by[f]['first_call_s']:.1f}" if f in by and "first_call_s" in by[f] else "-"
            for f in ("picograd", "torch-compile")
        )
        lines.append(
            f"| `{example}` | {dtype} | {_ms(ours)} | {_ms(by.get('torch-eager'))} | {_ms(by.get('torch-compile'))} "
            f"| {speedup(by.get('torch-eager'))} | {speedup(by.get('torch-compile'))} | {first} |"
        )
    return "\n".join(lines)


def full_table(rows: list[Row]) -> str:
    """The full-length GPT runs: time to the end and best val_loss per framework."""
    last: dict[tuple[str, str], Row] = {}
    for r in rows:
        last[(r["dtype"], r["framework"])] = r
    lines = [
        _heading(rows, "nanoGPT's train_shakespeare_char on the GPU"),
        "",
        "| framework | dtype | iterations | ms per step | wall to the end (s) | best val_loss | final val_loss |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for (dtype, framework), r in last.items():
        if "iters" not in r:
            lines.append(f"| {framework} | {dtype} | {_failed(r)} | | | | |")
            continue
        iters = f"{r['iters']:,}" + (" (cut short)" if r.get("partial") else "")
        lines.append(
            f"| {framework} | {dtype} | {iters} | {r['ms_per_step']:.2f} | {r['wall_s']:.0f} | "
            f"{r['best_val_loss']:.4f} | {r['final_val_loss']:.4f} |"
        )
    return "\n".join(lines)


def gemm_table(rows: list[Row]) -> str:
    """bench/gemm.py: TFLOP/s and share of cuBLAS per rung, dtype and shape."""
    shapes = list(dict.fromkeys(f"{r['m']}x{r['n']}x{r['k']}" for r in rows))
    cells: dict[tuple[str, str], dict[str, Row]] = {}
    for r in rows:
        cells.setdefault((r["schedule"], r.get("dtype", "float32")), {})[f"{r['m']}x{r['n']}x{r['k']}"] = r
    lines = [
        _heading(rows, "GEMM, TFLOP/s (share of cuBLAS)"),
        "",
        "| schedule | dtype | " + " | ".join(shapes) + " |",
        "|---|---|" + "---:|" * len(shapes),
    ]
    for (schedule, dtype), by in cells.items():
        text = [
            f"{by[s]['tflops']:.1f} ({by[s]['ratio_to_cublas']:.0%})" if s in by and "tflops" in by[s]
            else ("-" if s not in by else _failed(by[s]))
            for s in shapes
        ]  # fmt: skip
        lines.append(f"| {schedule} | {dtype} | " + " | ".join(text) + " |")
    return "\n".join(lines)


def render(rows: list[Row]) -> str:
    """Every table the rows allow, separated by blank lines."""
    steps = [r for r in rows if r.get("framework") in FRAMEWORKS and r.get("model") != "gpt-full"]
    full = [r for r in rows if r.get("model") == "gpt-full"]
    gemm = [r for r in rows if "schedule" in r and "m" in r]
    tables = [f(part) for f, part in ((steps_table, steps), (full_table, full), (gemm_table, gemm)) if part]
    return "\n\n".join(tables) if tables else "no rows recognised"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", help="JSONL files (bench/results/gpu_models_h200.jsonl, ...)")
    print(render(read(parser.parse_args().files)))


if __name__ == "__main__":
    main()
