"""The launch list of the GPT's compiled GPU train step, and the bytes its kernels move, computed without a GPU.

Traces ``examples/gpt_shakespeare.py``'s ``train_step`` at its ``gpu`` config (6 layers, 384 wide, 6 heads, block
256, batch 64, dropout 0.2; ``--dtype bfloat16``: bf16 mixed precision, the default, as on the GPU), compiles it
for ``--arch`` (``sm_90a``: the H100/H200 kernels) as ``picograd.driver.gpu_compile.compile_for_cuda`` does, and
reads the launches off the host function. A launch's *bytes* are the sizes of the buffers it is passed: a whole
buffer for a function argument or a buffer a kernel shares (``pg-outline-kernels``), else each typed view of the
arena the kernel takes (``memref.view``): what it may read and write, an upper bound of its DRAM traffic (a gather
counts its whole table). Prints the launch count, the bytes per step, and the kernels by bytes (each kernel's
launches summed); ``--json`` writes them, ``--compare OLD.json`` prints the change against an earlier run.

    python bench/gpu_launches.py --json bench/results/gpu_launches_gpt_bf16.json
    python bench/gpu_launches.py --compare bench/results/gpu_launches_gpt_bf16_before.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
from collections import defaultdict
from dataclasses import replace
from typing import Any

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, "..", "examples")]


def memref_bytes(t: Any) -> int:
    from picograd.dialects.pg_numpy import numpy_dtype

    return int(np.prod(t.get_shape(), dtype=np.int64)) * numpy_dtype(t.get_element_type()).itemsize


def launch_bytes(module: Any) -> list[tuple[str, list[int], int]]:
    """``(kernel, grid, bytes)`` of each ``gpu.launch_func`` of the ``gpu``-stage ``module``'s host function, in
    order (bytes as the module docstring says)."""
    from xdsl.dialects import arith, func, gpu, memref
    from xdsl.dialects.builtin import IntegerAttr, MemRefType

    kernels: dict[str, Any] = {op.sym_name.data: op for op in module.walk() if isinstance(op, gpu.FuncOp)}
    views: dict[str, list[int]] = {}  # per kernel: the bytes of each arena view it makes of each argument
    for name, k in kernels.items():
        per_arg = [0] * len(k.body.block.args)
        seen: set[tuple[int, Any, Any]] = set()
        for op in k.walk():
            if isinstance(op, memref.ViewOp) and op.source in k.body.block.args:
                i = k.body.block.args.index(op.source)
                key = (i, op.byte_shift, op.result.type)
                if key not in seen:
                    seen.add(key)
                    per_arg[i] += memref_bytes(op.result.type)
        views[name] = per_arg
    (fn,) = (op for op in module.ops if isinstance(op, func.FuncOp) and not op.is_declaration)
    out = []
    for op in fn.walk():
        if not isinstance(op, gpu.LaunchFuncOp):
            continue
        name = op.kernel.nested_references.data[-1].data
        grid = []
        for v in (op.gridSizeX, op.gridSizeY, op.gridSizeZ):
            c = v.owner
            known = isinstance(c, arith.ConstantOp) and isinstance(c.value, IntegerAttr)
            grid.append(c.value.value.data if known else -1)  # type: ignore[union-attr]
        total = 0
        for i, v in enumerate(op.kernelOperands):
            assert isinstance(v.type, MemRefType)
            shaped = views.get(name, [])
            total += shaped[i] if i < len(shaped) and shaped[i] else memref_bytes(v.type)
        out.append((name, grid, total))
    return out


def trace(layers: int, dtype: str) -> Any:
    """The ``simplify``-stage module of the GPT train step at the ``gpu`` config with ``layers`` layers."""
    import gpt_shakespeare as ex

    import picograd as pg

    cfg = replace(ex.CONFIGS["gpu"], n_layer=layers, dtype=dtype)
    ex.model, ex.opt, ex.sched = ex.make(cfg, 1337)
    step = pg.compile(ex.train_step.fn, example_inputs=(pg.Spec((cfg.batch_size, cfg.block_size), "int64"),) * 2)
    return step.ir("simplify")


def measure(layers: int, dtype: str, arch: str) -> dict[str, Any]:
    from picograd.driver.pipeline import passes_until, run_passes

    module = trace(layers, dtype)
    run_passes(module, passes_until("gpu", arch=arch)[len(passes_until("simplify")) :], verify=False)
    launches = launch_bytes(module)
    by_kernel: dict[str, dict[str, Any]] = defaultdict(lambda: {"launches": 0, "bytes": 0})
    for name, grid, nbytes in launches:
        row = by_kernel[name]
        row["launches"] += 1
        row["bytes"] += nbytes
        row["grid"] = grid
    return {
        "launches": len(launches),
        "bytes": sum(b for _, _, b in launches),
        "kernels": dict(sorted(by_kernel.items(), key=lambda kv: -kv[1]["bytes"])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    parser.add_argument("--arch", default="sm_90a")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--compare", help="an earlier --json to compare with")
    args = parser.parse_args()
    result = measure(args.layers, args.dtype, args.arch)
    print(f"GPT gpu config, {args.layers} layers, {args.dtype}, {args.arch}: {result['launches']} launches, "
          f"{result['bytes'] / 1e9:.3f} GB of kernel buffers per step")  # fmt: skip
    for name, row in list(result["kernels"].items())[: args.top]:
        print(f"{row['bytes'] / 1e6:10.1f} MB  x{row['launches']:<3d} {name}  grid {row['grid']}")
    if args.compare:
        old = json.load(open(args.compare))
        print(f"before ({args.compare}): {old['launches']} launches, {old['bytes'] / 1e9:.3f} GB; now "
              f"{result['launches']} launches ({result['launches'] - old['launches']:+d}), "
              f"{result['bytes'] / 1e9:.3f} GB ({100 * (result['bytes'] / old['bytes'] - 1):+.1f}%)")  # fmt: skip
    if args.json:
        import xdsl
        from results_io import write_json

        commit = os.popen(f"git -C {HERE} rev-parse --short HEAD").read().strip()
        result = {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, no GPU (compiled only)",
            "commit": commit,
            "versions": {"xdsl": str(xdsl.__version__), "numpy": np.__version__, "python": platform.python_version()},
            "model": f"examples/gpt_shakespeare.py CONFIGS['gpu'], {args.layers} layers, {args.dtype}, {args.arch}",
            **result,
        }
        write_json(args.json, result, indent=1)


if __name__ == "__main__":
    main()
