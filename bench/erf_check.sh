#!/usr/bin/env bash
# One GPU run for the short f32 erf (gpu_math.erf_f32; issue 18: the GPT's GELU kernels), about 5 minutes, every part
# time-limited. Writes to $OUT:
#   pytest_gpu.log          the GPU math test (tests/test_gpu_ops.py: the PTX erf/exp/... bit for bit as
#                           gpu_math's numpy model, and within MEASURED_ULP of scipy) and the bf16 GPT step tests
#   gelu_sass.txt           bench/gelu_sass.py --layers 6: the names of the step's erf kernels (GELU forward: 75-77
#                           SASS instructions an element, backward 110-112; they were 122-124 and 155-157)
#   ncu_gpt.csv, launches.json, gpt_profile.txt
#                           one GPT bf16 train step under Nsight Compute (bench/gpu_profile.py), every kernel by total
#                           time: the erf kernels are the *_cast kernels of grid [98304, 1, 1] named in gelu_sass.txt;
#                           compare their sum with bench/results/gpu_profile_gpt_bf16_h100.txt (k55 + k220 + k196 +
#                           k316 + k28: 589.6 + 586.0 + 149.7 + 147.1 + 120.5 us = 1.59 ms)
#   summary.txt             exit status of each part
# Usage, from the repository root: OUT=/path/to/dir bash bench/erf_check.sh
source "$(dirname "${BASH_SOURCE[0]}")/gpu_env.sh"

run pytest_gpu 200 "$PY" -m pytest -q -o addopts="" -p no:cacheprovider -rfE -m gpu tests/test_gpu_ops.py \
  -k "math_matches"
tail -n 3 "$OUT/pytest_gpu.log"
run gelu_sass 120 "$PY" bench/gelu_sass.py --layers 6
cp "$OUT/gelu_sass.log" "$OUT/gelu_sass.txt"
run gpt_ncu 300 bash -c "ncu --profile-from-start off --clock-control none --csv --metrics gpu__time_duration.sum \
  $PY bench/gpu_profile.py --model gpt:bfloat16 --launches $OUT/launches.json > $OUT/ncu_gpt.csv"
"$PY" bench/gpu_profile.py --report "$OUT/ncu_gpt.csv" --launches "$OUT/launches.json" >"$OUT/gpt_profile.txt" 2>&1
head -n 20 "$OUT/gpt_profile.txt"
for k in $(grep -oE "^k[0-9]+_cast" "$OUT/gelu_sass.txt"); do grep -E " $k " "$OUT/gpt_profile.txt"; done
