"""SASS opcode counts of every GEMM schedule at 4096^3, and the MLP's kernel count: a check that needs no GPU.

For each rung of the matmul schedule table and ``auto``, the 4096 x 4096 x 4096 float32 matmul of
``bench/gemm.py`` is compiled by picograd's pipeline to PTX, assembled with ``ptxas -arch=sm_90`` and
disassembled with ``cuobjdump --dump-sass`` (PyPI ``nvidia-cuda-cuobjdump`` and ``nvidia-cuda-nvdisasm``); the
opcodes (without modifiers: ``LDG.E.128`` counts as ``LDG``) of the whole cubin are counted, and ptxas's register
and shared-memory use kept. The 64x64 tile that ``auto`` takes at 512^3 is recorded too (``auto@512``). The MLP
example's kernel count is the number of ``.entry`` kernels of ``pgc examples/mlp_names.py --emit=ptx``.

A refactor of the lowering passes that changes none of the generated code leaves this file unchanged, so:

    python bench/gemm_sass.py --out bench/results/gemm_sass_opcodes.json      # record
    python bench/gemm_sass.py --check bench/results/gemm_sass_opcodes.json    # compare (exit 1 on a difference)
"""

from __future__ import annotations

import argparse
import collections
import datetime
import glob
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

SIZE = 4096
PTXAS = os.environ.get("PTXAS", "/usr/local/bin/ptxas")


def cuobjdump() -> str:
    """The ``cuobjdump`` binary: on PATH, else the one of the PyPI package ``nvidia-cuda-cuobjdump``."""
    found = shutil.which("cuobjdump")
    if found:
        return found
    import nvidia

    for root in nvidia.__path__:
        hits = sorted(glob.glob(os.path.join(root, "*", "bin", "cuobjdump")))
        if hits:
            return hits[-1]
    sys.exit("cuobjdump not found: pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm")


def schedules() -> list[str]:
    """Every rung and ``auto`` on float32, then each tensor-core rung on bf16 (``NAME``) and tf32 (``NAME@tf32``),
    the wgmma kernels, and the ``mma-sync`` variants (``MMA_SYNC_VARIANTS``) on bf16 and tf32."""
    from picograd.passes.kinds.matmul_rungs import MMA_SYNC_VARIANTS, SCHEDULES, WGMMA

    tensor_core = [s for s in SCHEDULES if SCHEDULES[s].tensor_core]
    variants = [*MMA_SYNC_VARIANTS, *(f"{s}@tf32" for s in MMA_SYNC_VARIANTS)]
    return ["auto", *SCHEDULES, *(f"{s}@tf32" for s in tensor_core), *WGMMA, *variants]  # wgmma: bf16, sm_90a


def precision_of(entry: str) -> str:
    """The dtype ``bench/gemm.py``'s module takes for an entry: bf16 for a tensor-core rung, tf32 for ``@tf32``."""
    from picograd.passes.kinds.matmul_rungs import RUNGS, WGMMA

    name, _, dtype = entry.partition("@")
    if dtype:
        return dtype
    return "bf16" if (name in RUNGS and RUNGS[name].tensor_core) or name in WGMMA else "fp32"


TENSOR_CORE_OPCODES = ("HMMA", "HGMMA")
"""The tensor-core instructions (``mma.sync``, ``wgmma``) whose loop is a tensor-core kernel's main loop."""


def main_loop(sass: str) -> list[str]:
    """The instruction lines of the main loop of the SASS: from the target of a backward branch (``BRA 0xf70`` at a
    later address) to that branch; of those loops, the shortest that holds a tensor-core instruction (the K loop,
    not an ``mbarrier`` spin loop inside it, nor a persistent kernel's loop over tiles around it), else the
    shortest."""
    code = []
    for line in sass.splitlines():
        m = re.match(r"\s+/\*([0-9a-f]{4,})\*/\s+(.*?);", line)
        if m:
            code.append((int(m.group(1), 16), m.group(2), line))
    loops: list[list[str]] = []
    for addr, text, _ in code:
        b = re.search(r"\bBRA\s+(?:`\()?(0x[0-9a-f]+)", text)
        if b and int(b.group(1), 16) < addr:
            loops.append([line for a, _, line in code if int(b.group(1), 16) <= a <= addr])
    tensor_core = [body for body in loops if any(op in count_opcodes(body) for op in TENSOR_CORE_OPCODES)]
    return min(tensor_core or loops, key=len, default=[])


def count_opcodes(lines: list[str]) -> dict[str, int]:
    """Opcodes (without modifiers and predicates) of SASS instruction lines."""
    opcodes: collections.Counter[str] = collections.Counter()
    for line in lines:
        m = re.match(r"\s+/\*[0-9a-f]{4,}\*/\s+(.*?);", line)
        if not m:
            continue
        words = m.group(1).split()
        if words and words[0].startswith("@"):
            words = words[1:]
        if words:
            opcodes[words[0].split(".")[0]] += 1
    return dict(sorted(opcodes.items()))


def sass_counts(ptx: str, tmp: str, loop: bool = False, arch: str = "sm_90") -> dict:
    """ptxas's resource use and the opcode counts of the cubin assembled from ``ptx`` (with ``loop``, those of
    its main loop too)."""
    src, cubin = os.path.join(tmp, "k.ptx"), os.path.join(tmp, "k.cubin")
    with open(src, "w") as f:
        f.write(ptx)
    log = subprocess.run(
        [PTXAS, f"-arch={arch}", "-v", src, "-o", cubin], check=True, capture_output=True, text=True
    ).stderr
    regs = re.search(r"Used (\d+) registers", log)
    smem = re.search(r"(\d+) bytes smem", log)
    tool = cuobjdump()  # it runs nvdisasm (PyPI nvidia-cuda-nvdisasm), found beside it
    env = {**os.environ, "PATH": os.path.dirname(tool) + os.pathsep + os.environ.get("PATH", "")}
    sass = subprocess.run([tool, "--dump-sass", cubin], check=True, capture_output=True, text=True, env=env).stdout
    opcodes = count_opcodes(sass.splitlines())
    out = {
        "registers": int(regs.group(1)) if regs else None,
        "smem_bytes": int(smem.group(1)) if smem else 0,
        "instructions": sum(opcodes.values()),
        "opcodes": opcodes,
    }
    if loop:  # tensor cores: HMMA in the main loop, and no local memory (LDL/STL) anywhere
        out["main_loop_opcodes"] = count_opcodes(main_loop(sass))
        out["local_memory"] = sum(opcodes.get(op, 0) for op in ("LDL", "STL"))
    return out


SMALL = 512
"""``auto`` at 512^3 takes the 64x64 tile (16 tiles of 128x128 are too few for the SMs): recorded as ``auto@512``."""


def gemm_entry(schedule: str, tmp: str, size: int = SIZE) -> dict:
    from bench.gemm import matmul_module
    from picograd.driver.gpu_compile import compile_for_cuda
    from picograd.passes.kinds.matmul_rungs import WGMMA

    dtype = precision_of(schedule)
    module = matmul_module(size, size, size, dtype)
    arch = "sm_90a" if schedule in WGMMA else "sm_90"  # wgmma and setmaxnreg need sm_90a
    program = compile_for_cuda(module, arch=arch, matmul_schedule=schedule.partition("@")[0])
    kernels = re.findall(r"\.entry\s+(\w+)", program.ptx)
    entry = {"kernels": len(kernels), **sass_counts(program.ptx, tmp, loop=dtype != "fp32", arch=arch)}
    dynamic = max((getattr(s, "shmem", 0) for s in program.steps), default=0)
    if dynamic:  # the stages live in dynamic shared memory (wgmma; mma-sync variants past 48 KiB)
        entry["dynamic_smem_bytes"] = dynamic
    return entry


def mlp_kernels() -> int:
    """``.entry`` kernels in ``pgc examples/mlp_names.py --emit=ptx``."""
    pgc = os.path.join(os.path.dirname(sys.executable), "pgc")
    out = subprocess.run(
        [pgc if os.path.exists(pgc) else "pgc", os.path.join(ROOT, "examples", "mlp_names.py"), "--emit=ptx"],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    ).stdout
    return len(re.findall(r"^\.visible \.entry|^\.entry", out, flags=re.M))


def measure() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        gemm = {s: gemm_entry(s, tmp) for s in schedules()}
        gemm[f"auto@{SMALL}"] = gemm_entry("auto", tmp, SMALL)
    return {"size": SIZE, "arch": "sm_90", "gemm": gemm, "mlp_names_ptx_kernels": mlp_kernels()}


def versions() -> dict:
    ptxas = subprocess.run([PTXAS, "--version"], capture_output=True, text=True).stdout.strip().splitlines()[-1]
    cob = subprocess.run([cuobjdump(), "--version"], capture_output=True, text=True).stdout.strip().splitlines()[-1]
    import xdsl

    return {"python": platform.python_version(), "xdsl": str(xdsl.__version__), "ptxas": ptxas, "cuobjdump": cob}


def compare(old: dict, new: dict) -> list[str]:
    """The differences that matter: a schedule's opcode counts, registers or shared memory; more MLP kernels."""
    diffs = []
    for name in sorted(set(old["gemm"]) | set(new["gemm"])):
        a, b = old["gemm"].get(name), new["gemm"].get(name)
        if a is None or b is None:
            diffs.append(f"{name}: {'added' if a is None else 'removed'}")
            continue
        for key in ("kernels", "registers", "smem_bytes", "instructions"):
            if a[key] != b[key]:
                diffs.append(f"{name}: {key} {a[key]} -> {b[key]}")
        for op in sorted(set(a["opcodes"]) | set(b["opcodes"])):
            if a["opcodes"].get(op, 0) != b["opcodes"].get(op, 0):
                diffs.append(f"{name}: {op} {a['opcodes'].get(op, 0)} -> {b['opcodes'].get(op, 0)}")
    if new["mlp_names_ptx_kernels"] > old["mlp_names_ptx_kernels"]:
        diffs.append(f"mlp_names kernels {old['mlp_names_ptx_kernels']} -> {new['mlp_names_ptx_kernels']}")
    return diffs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="write the counts (JSON) here")
    parser.add_argument("--check", help="compare with the counts recorded here; exit 1 on a difference")
    args = parser.parse_args()
    result = measure()
    for name, e in result["gemm"].items():
        regs, smem = e["registers"], e["smem_bytes"]
        print(f"{name:10s} kernels={e['kernels']} regs={regs} smem={smem} SASS={e['instructions']}")
    print(f"mlp_names --emit=ptx: {result['mlp_names_ptx_kernels']} kernels")
    if args.out:
        record = {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.node()} ({platform.machine()}, no GPU: ptxas + cuobjdump only)",
            "versions": versions(),
            **result,
        }
        with open(args.out, "w") as f:
            json.dump(record, f, indent=1)
            f.write("\n")
    if args.check:
        with open(args.check) as f:
            diffs = compare(json.load(f), result)
        print("\n".join(diffs) if diffs else f"same as {args.check}")
        return 1 if diffs else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
