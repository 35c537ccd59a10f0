"""Where a course model's compiled CPU step spends its time: every kernel of the step timed on its own, at one thread.

For the models of ``bench/cpu_models.py`` (same configs, same cases): the step is called until it is compiled,
then ``CpuFunction.profile`` runs it ``--repeats`` more times with each kernel its own call (no runs fused into one
call, one thread) and the minimum over the repeats of each kernel is kept. Kernels are grouped by their name with
the trailing number dropped (``k12_sum`` -> ``sum``; ``copy``; numpy and BLAS launches keep their tag), and the
top ``--top`` kernels are listed. The whole step, timed as ``bench/cpu_models.py`` does (median of ``--repeats``),
beside PyTorch eager's, says how much the per-kernel split adds.

    python bench/cpu_profile.py --model ddpm
    python bench/cpu_profile.py --model gpt --top 30
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import statistics
import sys
import time
from typing import Any

_THREADS = sys.argv[sys.argv.index("--threads") + 1] if "--threads" in sys.argv else "1"
os.environ.setdefault("OPENBLAS_NUM_THREADS", _THREADS)  # before numpy loads BLAS, as bench/cpu_models.py's child
os.environ.setdefault("OMP_NUM_THREADS", _THREADS)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import cpu_models  # noqa: E402


def kind_of(name: str) -> str:
    """A kernel's group: its name without the leading ``k<number>_`` (``k12_sum`` -> ``sum``)."""
    return re.sub(r"^k\d+_?", "", name) or name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ddpm", help=f"one of {', '.join(cpu_models.MODELS)}")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--top", type=int, default=25, help="kernels listed one by one")
    parser.add_argument("--threads", type=int, default=1, help="at more than 1: the steps of a threaded call")
    parser.add_argument("--median", action="store_true", help="each step's median over the repeats, not its minimum")
    parser.add_argument("--all", help="write every kernel's time (ms, in step order) to this file")
    args = parser.parse_args()

    import torch

    import picograd as pg
    from picograd.runtime import cpu_jit

    torch.set_num_threads(args.threads)
    pg.set_num_threads(args.threads)
    seen: list[tuple[Any, tuple[Any, ...]]] = []
    call = cpu_jit.CpuFunction.__call__

    def spy(self: Any, *a: Any) -> Any:
        seen.append((self, a))
        return call(self, *a)

    ours, theirs, batches = cpu_models.make_case(args.model, args.repeats + 3)
    cpu_jit.CpuFunction.__call__ = spy  # type: ignore[method-assign]
    ours(batches[0])
    cpu_jit.CpuFunction.__call__ = call  # type: ignore[method-assign]
    exe, call_args = max(seen, key=lambda s: len(s[0].step_names[False]))
    kept = [tuple(a.copy() for a in call_args)]
    t_ours, t_theirs = [], []
    for b in batches[1:]:
        t0 = time.perf_counter()
        ours(b)
        t1 = time.perf_counter()
        theirs(b)
        t_theirs.append(time.perf_counter() - t1)
        t_ours.append(t1 - t0)
    seen_times: dict[int, list[float]] = collections.defaultdict(list)
    names: list[str] = []
    for _ in range(args.repeats):
        times = exe.profile(*kept[0], threads=args.threads)
        names = [n for n, _ in times]
        for i, (_, t) in enumerate(times):
            seen_times[i].append(t)
    pick = statistics.median if args.median else min
    best = {i: pick(ts) for i, ts in seen_times.items()}
    total = sum(best.values())
    raw = names
    names = [re.sub(r"^(run|region)\d*: .*", r"\1", n) if args.threads > 1 else n for n in names]
    by_kind: collections.Counter[str] = collections.Counter()
    count: collections.Counter[str] = collections.Counter()
    for i, name in enumerate(names):
        by_kind[kind_of(name)] += best[i]
        count[kind_of(name)] += 1
    step, peer = 1e3 * statistics.median(t_ours), 1e3 * statistics.median(t_theirs)
    print(f"{args.model}: step {step:.2f} ms (PyTorch {peer:.2f}); steps one by one {1e3 * total:.2f} ms, {len(names)}")
    print("\nby kind (ms, calls):")
    for kind, t in by_kind.most_common():
        print(f"  {1e3 * t:8.3f}  {count[kind]:4d}  {kind}")
    if args.all:
        with open(args.all, "w") as f:
            f.writelines(f"{1e3 * best[i]:.4f} {name}\n" for i, name in enumerate(raw))
    print(f"\ntop {args.top} JIT kernels (ms):")
    for i in sorted((i for i in best if "(" not in names[i]), key=lambda i: -best[i])[: args.top]:
        print(f"  {1e3 * best[i]:8.3f}  {names[i]}")


if __name__ == "__main__":
    main()
