#!/usr/bin/env bash
# One GPU run for the embedding gradient (scatter_add's shared_rows) and the dropout RNG (random kernels, 4 numbers a
# Philox call), about 6 minutes, every part time-limited. Writes to $OUT:
#   pytest_gpu.log          the GPU tests of both (tests/test_scatter_add.py, tests/test_random_points.py: float64 /
#                           the CPU stream at the GPT's shapes)
#   scatter_add_<gpu>.jsonl bench/scatter_add.py: shared_rows and atomic against torch's index_add_ and
#                           embedding_dense_backward at the GPT's shape and a GPT-2 vocabulary (copy to bench/results/)
#   ncu_gpt.csv, launches.json, gpt_profile.txt
#                           one GPT bf16 train step under Nsight Compute (bench/gpu_profile.py), every kernel by total
#                           time: compare k441_scatter_add_1 (was 1143 us) and k7_random x12 / k0_random (414 / 35 us)
#                           with bench/results/gpu_profile_gpt_bf16_h100.txt
#   summary.txt             exit status of each part
# Usage, from the repository root: OUT=/path/to/dir bash bench/scatter_check.sh
source "$(dirname "${BASH_SOURCE[0]}")/gpu_env.sh"

run pytest_gpu 200 "$PY" -m pytest -q -o addopts="" -p no:cacheprovider -rfE -m gpu tests/test_scatter_add.py \
  tests/test_random_points.py
tail -n 3 "$OUT/pytest_gpu.log"
run scatter_add 150 "$PY" bench/scatter_add.py --out "$OUT/scatter_add_$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | awk '{print tolower($NF)}').jsonl"
cat "$OUT/scatter_add.log"
run gpt_ncu 300 bash -c "ncu --profile-from-start off --clock-control none --csv --metrics gpu__time_duration.sum \
  $PY bench/gpu_profile.py --model gpt:bfloat16 --launches $OUT/launches.json > $OUT/ncu_gpt.csv"
"$PY" bench/gpu_profile.py --report "$OUT/ncu_gpt.csv" --launches "$OUT/launches.json" >"$OUT/gpt_profile.txt" 2>&1
head -n 20 "$OUT/gpt_profile.txt"
grep -E "scatter_add|random" "$OUT/gpt_profile.txt"
