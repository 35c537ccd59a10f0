#!/usr/bin/env bash
# The float32 GPT step on the GPU (issue 18, helper fp32gpt), one device call of at most 10 minutes: every part has
# a time limit and the parts run in the order given.
#
# Usage, from the repository root (the device call: carry .whl with the xdsl wheels, as for bench/h200_check.sh):
#   OUT=/path/to/dir bash bench/fp32_gpt_check.sh [PART...]
# Parts (default: tests gemm models profile):
#   part      limit (s)  what
#   tests        120      pytest -m gpu tests/test_split_k.py: auto's split-K on the GPU, the f32 weight gradients'
#                         shapes among them (384x384, 1152x384, 65x384 over 16384; the DDPM's 256x32x2048), against
#                         float64, the same bits twice
#   gemm          90      bench/gemm.py fp32 at the GPT's shapes: auto-sm90a (64x64 cp-async, split-K at the weight
#                         gradients) against the forced cp-async rung (128x128, no split) and cuBLAS (no TF32)
#   models       200      bench/gpu_models.py --models gpt (float32): picograd, PyTorch eager, torch.compile, median
#                         of 40 steps after 5; the figure to compare: 55.45 ms (H100, 19:30) against eager 33.35
#   profile      180      ncu over one float32 GPT step (bench/gpu_profile.py), then its report: each kernel's time,
#                         to set beside the estimates of bench/results/gpu_launches_gpt_fp32_analysis.md
# About 9.5 minutes at the limits; run with the call's timeout_s=600 (or two calls: tests gemm models, then profile).
# $OUT receives: summary.txt, *.log, gemm_fp32_gpt_h100.jsonl, gpu_models_gpt_fp32_h100.jsonl, ncu_gpt_fp32.csv,
# launches_gpt_fp32.json, profile_gpt_fp32.txt (the report: copy to bench/results/gpu_profile_gpt_fp32_h100.txt).
source "$(dirname "${BASH_SOURCE[0]}")/gpu_env.sh"

SHAPES=384x384x16384,1152x384x16384,384x1536x16384,1536x384x16384,65x384x16384,16384x1536x384,16384x384x1536
parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(tests gemm models profile)
for part in "${parts[@]}"; do
  case $part in
    tests)
      run tests 120 "$PY" -m pytest -q -o addopts="" -p no:cacheprovider -rfE -m gpu tests/test_split_k.py
      tail -n 3 "$OUT/tests.log" ;;
    gemm)
      run gemm 90 "$PY" bench/gemm.py --dtypes fp32 --schedules auto-sm90a,cp-async --shapes "$SHAPES" \
        --out "$OUT/gemm_fp32_gpt_h100.jsonl"
      tail -n 20 "$OUT/gemm.log" ;;
    models)
      run models 200 "$PY" bench/gpu_models.py --models gpt --steps 40 --warmup 5 --budget 190 --timeout 190 \
        --out "$OUT/gpu_models_gpt_fp32_h100.jsonl"
      tail -n 8 "$OUT/models.log" ;;
    profile)
      # ncu's CSV on stdout into its own file, the rest in profile.log
      run profile 180 bash -c 'ncu --profile-from-start off --clock-control none --csv \
        --metrics gpu__time_duration.sum "$1" bench/gpu_profile.py --model gpt:float32 \
        --launches "$2/launches_gpt_fp32.json" >"$2/ncu_gpt_fp32.csv"' profile "$PY" "$OUT"
      "$PY" bench/gpu_profile.py --report "$OUT/ncu_gpt_fp32.csv" --launches "$OUT/launches_gpt_fp32.json" \
        >"$OUT/profile_gpt_fp32.txt" 2>&1
      head -n 40 "$OUT/profile_gpt_fp32.txt" ;;
    *) echo "unknown part $part" ;;
  esac
done
cat "$OUT/summary.txt"
