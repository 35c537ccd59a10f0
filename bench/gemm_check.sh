#!/usr/bin/env bash
# One GPU run for the matmul schedules (pg-matmul-schedule), for the H200 machine (about 8 minutes; every part has a
# time limit). Writes to $OUT:
#   pytest_gpu.log            every GPU test (tests marked gpu: ops, vjps, compiled steps, every matmul schedule)
#   gemm_h200.jsonl, gemm.log bench/gemm.py: every rung and auto on the six shapes against cuBLAS (copy the JSONL to
#                             bench/results/)
#   sass_mix.txt              ptxas -v and the SASS instruction mix of the cp-async kernel's K loop at 4096^3
#   mlp_names_cuda.log        examples/mlp_names.py --device cuda (the whole recipe)
#   train_step_h200.json      bench/train_step.py (copy to bench/results/)
#   summary.txt               exit status of each part
# Usage, from the repository root: OUT=/path/to/dir bash bench/gemm_check.sh
source "$(dirname "${BASH_SOURCE[0]}")/gpu_env.sh"

run pytest_gpu 200 "$PY" -m pytest -q -o addopts="" -p no:cacheprovider -rfE -m gpu tests
tail -n 3 "$OUT/pytest_gpu.log"
run gemm 200 "$PY" bench/gemm.py --out "$OUT/gemm_h200.jsonl"
"$PY" - >"$OUT/cp-async.ptx" <<'PY'
from bench.gemm import matmul_module
from picograd.driver.gpu_compile import compile_for_cuda
print(compile_for_cuda(matmul_module(4096, 4096, 4096), matmul_schedule="cp-async").ptx)
PY
{
  ptxas -arch=sm_90 -v "$OUT/cp-async.ptx" -o "$OUT/cp-async.cubin" 2>&1 | grep -E "Used|spill"
  # The K loop is the code between the first BAR.SYNC after the prologue and the backward branch to it.
  cuobjdump -sass "$OUT/cp-async.cubin" | "$PY" -c '
import re, sys, collections
lines = [l for l in sys.stdin if re.match(r"\s+/\*[0-9a-f]{4}\*/", l)]
ops = [(int(re.match(r"\s+/\*([0-9a-f]+)\*/", l).group(1), 16), l.split("*/", 1)[1].split(";")[0].split()) for l in lines]
back = [(a, int(w[-1], 16)) for a, w in ops if "BRA" in " ".join(w[:3]) and w[-1].startswith("0x") and int(w[-1], 16) < a]
start, end = max(back, key=lambda b: b[0] - b[1])[::-1]
mix = collections.Counter((w[1] if w[0].startswith("@") else w[0]).split(".")[0] for a, w in ops if start <= a <= end)
print(f"K loop: {sum(mix.values())} instructions")
for name, n in mix.most_common(): print(f"{n:6d} {name}")
'
} >"$OUT/sass_mix.txt" 2>&1
rm -f "$OUT/cp-async.cubin" "$OUT/cp-async.ptx"
run mlp_names_cuda 150 "$PY" examples/mlp_names.py --device cuda --plot "$OUT/mlp_names_loss_cuda.png"
grep -E "steps in|val_loss=" "$OUT/mlp_names_cuda.log"
run train_step 250 "$PY" bench/train_step.py --steps 300 --timeout 90 --out "$OUT/train_step_h200.json"
tail -n 12 "$OUT/train_step.log"
cat "$OUT/summary.txt"
