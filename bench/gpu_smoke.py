"""GPU smoke test and launch-overhead benchmark of the CUDA runtime (picograd.runtime.cuda), for one run on the GPU
machine.

1. Prints the CUDA environment (driver, cuda.core, cuda.bindings, linker backend, device).
2. Runs the runtime's tests: `pytest tests/test_cuda_runtime.py` (the GPU tests, plus the compile tests).
3. Times a tiny chain of three elementwise kernels, out = (a + b) * c + a on --n float32 elements, issued
   - as three `picograd.runtime.cuda.launch` calls (argument checks and conversion on every call),
   - as three bare `cuda.core.launch` calls with prebuilt configs (the floor for plain launches from Python),
   - through an `Executable` with use_graph=False (plain launches from the launch list),
   - through an `Executable` replaying its CUDA graph (fixed buffers via out=; and fresh outputs every call),
   - as a `Graph` bound once and replayed.
   Host time: wall clock of --calls calls then one synchronize, per call. GPU span: median over --calls of the
   time between CUDA events recorded around each call (it includes the GPU's idle time waiting for the host).
   The kernels themselves take about a microsecond each at the default size, so this measures dispatch overhead.

Run from the repository root with picograd and xdsl importable, e.g. `PYTHONPATH=. python bench/gpu_smoke.py`.
Exit status: that of pytest (the timings are printed either way).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)


def chain_ptx() -> str:
    """Two f32 kernels, add2 and mul2: out[i] = a[i] (+|*) b[i] for i < n."""
    parts = [".version 8.0", ".target sm_90", ".address_size 64"]
    for name, op in (("add2", "add"), ("mul2", "mul")):
        parts.append(
            f""".visible .entry {name}(.param .u64 {name}_a, .param .u64 {name}_b, .param .u64 {name}_c,
                                  .param .u32 {name}_n)
{{
    .reg .pred %p<2>;
    .reg .b32 %r<6>;
    .reg .f32 %f<4>;
    .reg .b64 %rd<8>;
    ld.param.u32 %r1, [{name}_n];
    mov.u32 %r2, %ctaid.x;
    mov.u32 %r3, %ntid.x;
    mov.u32 %r4, %tid.x;
    mad.lo.s32 %r5, %r2, %r3, %r4;
    setp.ge.u32 %p1, %r5, %r1;
    @%p1 bra DONE;
    mul.wide.u32 %rd7, %r5, 4;
    ld.param.u64 %rd1, [{name}_a];
    cvta.to.global.u64 %rd2, %rd1;
    add.s64 %rd2, %rd2, %rd7;
    ld.global.f32 %f1, [%rd2];
    ld.param.u64 %rd3, [{name}_b];
    cvta.to.global.u64 %rd4, %rd3;
    add.s64 %rd4, %rd4, %rd7;
    ld.global.f32 %f2, [%rd4];
    {op}.rn.f32 %f3, %f1, %f2;
    ld.param.u64 %rd5, [{name}_c];
    cvta.to.global.u64 %rd6, %rd5;
    add.s64 %rd6, %rd6, %rd7;
    st.global.f32 [%rd6], %f3;
DONE:
    ret;
}}"""
        )
    return "\n".join(parts) + "\n"


def environment() -> dict[str, str]:
    import cuda.bindings
    import cuda.core
    from cuda.bindings import driver

    from picograd.runtime import cuda as rt

    dev = rt.device()
    err, version = driver.cuDriverGetVersion()
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cuda.core": cuda.core.__version__,
        "cuda.bindings": cuda.bindings.__version__,
        "driver CUDA version": f"{version // 1000}.{version % 1000 // 10}" if err == 0 else str(err),
        "linker backend": str(cuda.core.Linker.which_backend()),
        "device": f"{dev.name} (sm_{dev.arch})",
    }


def run_tests() -> int:
    command = [sys.executable, "-m", "pytest", "tests/test_cuda_runtime.py", "-q", "-rs", "-p", "no:cacheprovider"]
    print("$", " ".join(command), flush=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p))
    return subprocess.run(command, cwd=ROOT, env=env).returncode


def measure(fn: Callable[[], object], calls: int) -> tuple[float, float]:
    """(host microseconds per call, median GPU span in microseconds per call)."""
    from picograd.runtime import cuda as rt

    for _ in range(20):
        fn()
    rt.synchronize()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    rt.synchronize()
    host_us = (time.perf_counter() - start) / calls * 1e6
    span_us = rt.time_ms(fn, warmup=5, iters=calls) * 1e3
    return host_us, span_us


def bench(n: int, calls: int) -> list[dict[str, object]]:
    import cuda.core

    from picograd.runtime import cuda as rt
    from picograd.runtime.cuda import BufferSpec, DeviceBuffer, Executable, Input, Launch, Output, Temp

    module = rt.compile_ptx(chain_ptx())
    add, mul = module.kernel("add2"), module.kernel("mul2")
    block = 256
    grid = (n + block - 1) // block
    rng = np.random.default_rng(0)
    host = [rng.standard_normal(n, dtype=np.float32) for _ in range(3)]
    expected = (host[0] + host[1]) * host[2] + host[0]
    a, b, c = (DeviceBuffer.from_numpy(h) for h in host)
    t, u, out = (DeviceBuffer((n,), np.float32) for _ in range(3))

    def three_launches() -> None:
        rt.launch(add, grid, block, (a, b, t, n))
        rt.launch(mul, grid, block, (t, c, u, n))
        rt.launch(add, grid, block, (u, a, out, n))

    stream = rt.stream()
    config = cuda.core.LaunchConfig(grid=(grid, 1, 1), block=(block, 1, 1), shmem_size=0)
    n32 = np.uint32(n)
    add_h, mul_h = add.handle, mul.handle

    def bare_launches() -> None:
        cuda.core.launch(stream, config, add_h, a.buffer, b.buffer, t.buffer, n32)
        cuda.core.launch(stream, config, mul_h, t.buffer, c.buffer, u.buffer, n32)
        cuda.core.launch(stream, config, add_h, u.buffer, a.buffer, out.buffer, n32)

    spec = BufferSpec((n,), np.float32)
    steps = [
        Launch("add2", grid, block, (Input(0), Input(1), Temp(0), n)),
        Launch("mul2", grid, block, (Temp(0), Input(2), Temp(1), n)),
        Launch("add2", grid, block, (Temp(1), Input(0), Output(0), n)),
    ]
    plain = Executable(module, steps, [spec] * 3, [spec], [spec, spec], use_graph=False, name="chain (plain)")
    graphed = Executable(module, steps, [spec] * 3, [spec], [spec, spec], name="chain (graph)")
    fresh = Executable(module, steps, [spec] * 3, [spec], [spec, spec], name="chain (graph, fresh outputs)")
    graph = rt.Graph()
    graph.launch(add, grid, block, (a, b, t, n))
    graph.launch(mul, grid, block, (t, c, u, n))
    graph.launch(add, grid, block, (u, a, out, n))

    variants: list[tuple[str, Callable[[], object], Callable[[], np.ndarray]]] = [
        ("3 x picograd launch()", three_launches, out.to_numpy),
        ("3 x bare cuda.core launch", bare_launches, out.to_numpy),
        ("Executable, plain launches", lambda: plain(a, b, c, out=(out,)), out.to_numpy),
        ("Executable, graph, out= fixed", lambda: graphed(a, b, c, out=(out,)), out.to_numpy),
        ("Executable, graph, fresh output", lambda: fresh(a, b, c), lambda: fresh(a, b, c)[0].to_numpy()),
        ("Graph.replay (bound once)", graph.replay, out.to_numpy),
    ]
    rows: list[dict[str, object]] = []
    for name, fn, result in variants:
        out.fill_zero()
        fn()
        ok = bool(np.array_equal(result(), expected))
        host_us, span_us = measure(fn, calls)
        rows.append({"variant": name, "host_us_per_call": host_us, "gpu_span_us_median": span_us, "correct": ok})
    rows.append({"variant": "fresh-output executable stats", **vars(fresh.stats)})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1024, help="elements per tensor (default 1024)")
    ap.add_argument("--calls", type=int, default=2000, help="calls per measurement (default 2000)")
    ap.add_argument("--skip-tests", action="store_true", help="only the benchmark")
    ap.add_argument("--json", default=os.path.join(HERE, "results", "gpu_smoke.json"), help="where to write results")
    args = ap.parse_args()

    from picograd.runtime import cuda as rt

    if not rt.available():
        try:
            rt.device()
        except Exception as e:
            print(f"no GPU: {e}")
        return 1
    env = environment()
    for key, value in env.items():
        print(f"{key:>20}: {value}")
    status = 0 if args.skip_tests else run_tests()
    print(f"\npytest exit status: {status}\n")

    rows = bench(args.n, args.calls)
    print(f"3-kernel chain on {args.n} float32 elements, {args.calls} calls each")
    print(f"{'variant':<34} {'host us/call':>13} {'GPU span us':>12} {'correct':>8}")
    for row in rows:
        if "host_us_per_call" in row:
            print(
                f"{row['variant']:<34} {row['host_us_per_call']:>13.2f} {row['gpu_span_us_median']:>12.2f} "
                f"{row['correct']!s:>8}"
            )
        else:
            print(f"{row['variant']}: {', '.join(f'{k}={v}' for k, v in row.items() if k != 'variant')}")
    result = {
        "benchmark": "gpu smoke: 3-kernel elementwise chain dispatch",
        "date": datetime.date.today().isoformat(),
        "versions": env,
        "n": args.n,
        "calls": args.calls,
        "pytest_status": None if args.skip_tests else status,
        "results": rows,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(result, f, indent=2)
    print(f"\nwrote {args.json}")
    return status


if __name__ == "__main__":
    sys.exit(main())
