"""SASS instruction counts of the GPT step's kernels that compute an ``erf`` (the GELU forward and backward): no GPU.

Traces ``examples/gpt_shakespeare.py``'s train step at its ``gpu`` config (as ``bench/gpu_launches.py`` does; one
layer by default, the kernels of every layer being the same), lowers it for ``sm_90a`` to the ``gpu`` stage, keeps
the kernels holding a ``math.erf``, lowers them to PTX, assembles them with ``ptxas`` and disassembles them with
``cuobjdump --dump-sass``. For each kernel: its SASS instructions (without ``NOP``s) on the main path (up to the
first unconditional ``EXIT``: what a thread runs unless it takes a slow path, such as ``div.rn.f32``'s subroutine)
and in all, the opcodes by count, the ``math.erf`` ops it holds and its ``STG`` stores (one per thread: the
elements each thread computes), so that the instructions per element can be compared before and after a change of
``gpu_math.erf``:

    python bench/gelu_sass.py                       # print
    python bench/gelu_sass.py --json bench/results/gelu_sass.json
    python bench/gelu_sass.py --accurate-erf --json bench/results/gelu_sass_before.json   # the erf before
    python bench/gelu_sass.py --dump DIR            # also write each kernel's PTX and SASS there
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, "..", "examples")]


@contextlib.contextmanager
def accurate_erf() -> Iterator[None]:
    """Within the block, the code generators expand ``erf`` with ``gpu_math.erf_accurate`` in every precision (the
    scheme f32 used before ``gpu_math.erf_f32``)."""
    from picograd.target import gpu_math

    saved = gpu_math.FUNCTIONS["erf"]
    gpu_math.FUNCTIONS["erf"] = gpu_math.erf_accurate
    try:
        yield
    finally:
        gpu_math.FUNCTIONS["erf"] = saved


def erf_kernels(layers: int, dtype: str, arch: str) -> tuple[str, dict[str, int]]:
    """The PTX text of the GPT step's kernels that hold a ``math.erf``, and the count of those ops per kernel."""
    from gpu_launches import trace
    from xdsl.dialects import builtin, gpu, math

    from picograd.driver.pipeline import passes_until, run_passes
    from picograd.target.ptx_printer import print_ptx

    module = trace(layers, dtype)
    run_passes(module, passes_until("gpu", arch=arch)[len(passes_until("simplify")) :], verify=False)
    erfs: dict[str, int] = {}
    for op in module.walk():
        if isinstance(op, gpu.ModuleOp):
            for k in list(op.body.block.ops):
                n = sum(isinstance(o, math.ErfOp) for o in k.walk())
                if isinstance(k, gpu.FuncOp) and n:
                    erfs[k.sym_name.data] = n
                else:
                    op.body.block.erase_op(k)
    host = [op for op in module.ops if not isinstance(op, gpu.ModuleOp)]
    for op in host:
        module.body.block.detach_op(op)
    kernels_only = builtin.ModuleOp([])
    for op in list(module.ops):
        module.body.block.detach_op(op)
        kernels_only.body.block.add_op(op)
    run_passes(kernels_only, passes_until("ptx", arch=arch)[-1:], verify=False)
    (pmod,) = kernels_only.ops
    return print_ptx(pmod, verify=False), erfs


def sass_of(ptx_text: str, arch: str) -> dict[str, list[str]]:
    """Each kernel's SASS instructions (opcode with modifiers and operands, ``NOP`` left out)."""
    from picograd.target.ptxas import find_cuobjdump

    tool = find_cuobjdump()
    assert tool is not None, "no cuobjdump"
    with tempfile.TemporaryDirectory() as tmp:
        src, cubin = os.path.join(tmp, "k.ptx"), os.path.join(tmp, "k.cubin")
        open(src, "w").write(ptx_text)
        ptxas = os.environ.get("PTXAS", "/usr/local/bin/ptxas")
        subprocess.run([ptxas, f"-arch={arch}", "--warn-on-spills", "-Werror", src, "-o", cubin], check=True)
        env = dict(os.environ, PATH=os.pathsep.join([os.path.dirname(tool), os.environ.get("PATH", "")]))
        out = subprocess.run([tool, "--dump-sass", cubin], capture_output=True, text=True, env=env, check=True).stdout
    kernels: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in out.splitlines():
        m = re.match(r"\s*Function : (\S+)", line)
        if m:
            current = kernels.setdefault(m.group(1), [])
            continue
        m = re.match(r"\s*/\*[0-9a-f]{4,}\*/\s+(.*?);", line)
        if m and current is not None:
            text = re.sub(r"^@!?U?P\w+\s+", "", m.group(1).strip())
            if not text.startswith("NOP"):
                current.append(m.group(1).strip())
    return kernels


def opcode(instr: str) -> str:
    return re.sub(r"^@!?U?P\w+\s+", "", instr).split()[0].split(".")[0]


def measure(layers: int, dtype: str, arch: str, dump: str | None) -> dict[str, Any]:
    ptx_text, erfs = erf_kernels(layers, dtype, arch)
    sass = sass_of(ptx_text, arch)
    rows = {}
    for name, instrs in sorted(sass.items()):
        ops = collections.Counter(opcode(i) for i in instrs)
        stores = sum(1 for i in instrs if opcode(i) == "STG")
        main = next(i for i, instr in enumerate(instrs) if instr.startswith("EXIT"))
        rows[name] = {
            "erf_ops": erfs.get(name, 0),
            "main_path": main + 1,
            "sass_instructions": len(instrs),
            "stg": stores,
            "opcodes": dict(ops.most_common()),
        }
        if dump:
            os.makedirs(dump, exist_ok=True)
            open(os.path.join(dump, f"{name}.sass"), "w").write("\n".join(instrs) + "\n")
    if dump:
        open(os.path.join(dump, "erf_kernels.ptx"), "w").write(ptx_text)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    parser.add_argument("--arch", default="sm_90a")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--dump", help="write each kernel's PTX and SASS into this folder")
    parser.add_argument("--accurate-erf", action="store_true", help="with gpu_math.erf_accurate (the scheme before)")
    args = parser.parse_args()
    with accurate_erf() if args.accurate_erf else contextlib.nullcontext():
        rows = measure(args.layers, args.dtype, args.arch, args.dump)
    for name, row in rows.items():
        top = ", ".join(f"{k} {v}" for k, v in list(row["opcodes"].items())[:12])
        print(f"{name}: {row['main_path']} SASS instructions to the first EXIT ({row['sass_instructions']} in all), "
              f"{row['erf_ops']} erf, {row['stg']} STG  ({top})")  # fmt: skip
    if args.json:
        from results_io import compiled_only_header, write_json

        write_json(
            args.json,
            {
                **compiled_only_header(
                    "no GPU (ptxas + cuobjdump only)",
                    f"examples/gpt_shakespeare.py CONFIGS['gpu'], {args.layers} layers, {args.dtype}, {args.arch}",
                ),
                "erf": "gpu_math.erf_accurate" if args.accurate_erf else "gpu_math.erf",
                "kernels": rows,
            },
            indent=1,
        )


if __name__ == "__main__":
    main()
