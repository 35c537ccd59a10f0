"""The error of the GPU's (and the CPU JIT's) f32 ``erf`` over every f32 input (a development tool; minutes).

``gpu_math.erf_f32`` is evaluated with ``gpu_math.NumpyArith`` (the operation sequence the PTX lowering and the
CPU JIT emit, each operation rounded as the hardware rounds it) on every non-negative f32 below ``one_from`` (from
``--start``, in chunks; ``erf`` is odd and the scheme copies the sign, so the negative half is the same) and
compared with scipy's float64 ``erf`` (relative error about 1e-16, i.e. below 1e-8 f32 ulps). The error is in ulps
of the correctly rounded result (``np.spacing`` of the f32 rounding of the reference). Prints the worst error, where,
and the worst per binade; ``--json`` writes them (``bench/results/erf_f32_sweep.json``).

    python tools/erf_f32_sweep.py --json bench/results/erf_f32_sweep.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys

import numpy as np
from scipy import special

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from picograd.target import gpu_math  # noqa: E402


def errors(x: np.ndarray) -> np.ndarray:
    """Ulp errors of ``gpu_math``'s f32 erf at the f32 points ``x``."""
    got = gpu_math.evaluate("erf", "f32", x).astype(np.float64)
    want = special.erf(x.astype(np.float64))
    ulp = np.spacing(np.abs(want).astype(np.float32)).astype(np.float64)
    return np.abs(got - want) / ulp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", type=float, default=0.0, help="the least input swept (default: every f32 >= 0)")
    parser.add_argument("--stride", type=int, default=1, help="every n-th f32 only (a quick look)")
    parser.add_argument("--chunk", type=int, default=1 << 22)
    parser.add_argument("--json", help="write the result here")
    args = parser.parse_args()
    lo = int(np.float32(args.start).view(np.uint32))
    hi = int(np.float32(gpu_math.ERF_F32.one_from).view(np.uint32)) + 64  # a few past, where 1 is selected
    worst, where, count = 0.0, 0.0, 0
    per_binade: dict[int, float] = {}
    for start in range(lo, hi, args.chunk * args.stride):
        bits = np.arange(start, min(start + args.chunk * args.stride, hi), args.stride, dtype=np.uint32)
        x = bits.view(np.float32)
        err = errors(x)
        count += len(x)
        i = int(np.argmax(err))
        if err[i] > worst:
            worst, where = float(err[i]), float(x[i])
        exps = (bits >> 23).astype(np.int64) - 127
        for e in np.unique(exps):
            per_binade[int(e)] = max(per_binade.get(int(e), 0.0), float(err[exps == e].max()))
        print(f"\r{count} inputs, worst {worst:.4f} ulp at {where!r}", end="", file=sys.stderr)
    print(file=sys.stderr)
    special_x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 1e-38], np.float32)
    special_got = gpu_math.evaluate("erf", "f32", special_x)
    special_want = special.erf(special_x.astype(np.float64)).astype(np.float32)
    same = (special_got == special_want) | (np.isnan(special_got) & np.isnan(special_want))
    signs = (np.signbit(special_got) == np.signbit(special_want)) | np.isnan(special_want)  # a NaN's sign: any
    exact = "exact" if (same & signs).all() else "WRONG"
    print(f"f32 erf: {count} inputs (every {args.stride}. f32 from {args.start} to {gpu_math.ERF_F32.one_from}): "
          f"worst {worst:.4f} ulp at x = {where!r}; special values {exact}")  # fmt: skip
    for e, w in sorted(per_binade.items()):
        if w > 0.5:
            print(f"  [2**{e}, 2**{e + 1}): {w:.4f}")
    if args.json:
        result = {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, numpy model of the GPU's operations (gpu_math.NumpyArith)",
            "versions": {"numpy": np.__version__, "python": platform.python_version()},
            "scheme": "gpu_math.erf_f32 (ERF_F32)",
            "inputs": count,
            "stride": args.stride,
            "start": args.start,
            "worst_ulp": worst,
            "worst_at": where,
            "worst_ulp_per_binade": {str(e): w for e, w in sorted(per_binade.items())},
            "special_values_exact": bool((same & signs).all()),
        }
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
