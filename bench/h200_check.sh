#!/usr/bin/env bash
# The H200 run of issue 18 in one device call of at most 10 minutes: every part has a time limit (one hang cannot
# eat the rest) and the whole run ends by DEADLINE (560 s after the start, under the call's 600 s).
#
# Usage, from the repository root (the device call: carry .whl with the xdsl and tinygrad wheels):
#   OUT=/path/to/dir bash bench/h200_check.sh [PART...]
# Parts, run in the order given (default: facts tests gemm attention models train_step):
#   part        limit (s)  what
#   facts          25      nvidia-smi (GPU, driver, clocks, power), torch/CUDA/triton/tinygrad/xdsl versions, ptxas
#   tests         150      pytest -m gpu tests (every GPU test; 8 xdist workers when pytest-xdist is there)
#   gemm          120      bench/gemm.py at 4096^3 and 8192^3 (the bars' shapes), every rung and dtype row it has
#   gemm-nt       120      bench/gemm.py --layout nt --dtypes tf32 (A @ Bt.T: the tf32 wgmma kernels' layout)
#   attention      60      bench/attention.py, if the file exists (helper attn's branch)
#   models      the rest   bench/gpu_models.py, its --budget = what is left before DEADLINE minus the later parts'
#                          limits: the models in its priority order (gpt:bfloat16 first), the rest reported skipped
#   train_step     90      bench/train_step.py: the MLP step vs torch eager, torch.compile (both modes), tinygrad
#   models-all  the rest   bench/gpu_models.py, every model (for a second call: facts models-all)
#   full-gpt    the rest   bench/gpu_models.py --full-gpt: the GPT at nanoGPT's train_shakespeare_char config, 5,000
#                          iterations, bf16, picograd then torch.compile then torch eager, best val_loss of each
#                          (for a third call: facts full-gpt; a run cut by its limit reports how far it got)
#   unroll        150      bench/unroll_sweep.py: the GPT's bf16 step under pg-schedule unroll 1, 2, 4 and 8
# Default budget (limits): about 10 s to install the wheels + 25 + 150 + 120 + 60 + models + 90 = 455 s + models,
# all within DEADLINE; models gets what the earlier parts leave of DEADLINE less train_step's 90 s and 10 s: at least
# about 95 s, more when the tests, gemm or attention end before their limits (or attention is absent). Worst case
# the script ends about 580 s after its start: run it with the call's timeout_s=600.
#
# $OUT receives at most 8 files (the device tool's limit): summary.txt (exit status and seconds of every part),
# h200_check.tar.gz (every log and result), and each JSON/JSONL result under the name it takes in bench/results/:
#   gpu_facts_h200.txt, gemm_h200.jsonl, attention_h200*.json[l], gpu_models_h200.jsonl (gpu_models_full_h200.jsonl
#   for full-gpt), train_step_h200.json.
# Turning them into the README's tables: python bench/gpu_tables.py bench/results/gpu_models_h200.jsonl
#   (and bench/results/gpu_models_full_h200.jsonl): Markdown, one row per (model, dtype) with picograd, torch eager
#   and torch.compile side by side; gemm.py and train_step.py print their own tables at the end of their logs.
# Overrides (environment): H200_DEADLINE (seconds, default 560); MODELS_ARGS, FULL_GPT_ARGS (more arguments for
# gpu_models.py, e.g. MODELS_ARGS="--models gpt:bfloat16,bert --steps 50"); GEMM_ARGS, ATTENTION_ARGS and
# TRAIN_STEP_ARGS (for gemm.py, attention.py and train_step.py: later options override the script's);
# GEMM_LIMIT and ATTENTION_LIMIT (seconds, defaults 120 and 60: head dim 128 needs about 150).
START=$SECONDS
DEADLINE=$((START + ${H200_DEADLINE:-560}))
WORK=/tmp/h200_check_work
# shellcheck source=bench/gpu_env.sh
source "$(dirname "${BASH_SOURCE[0]}")/gpu_env.sh"
export PY PYTHONUNBUFFERED=1

if [ $# -eq 0 ]; then
  set -- facts tests gemm attention models train_step
fi
PARTS=" $* "

# Copy the results into $FINAL (after every part, so that a run stopped by the call's limit keeps what it made).
pack() {
  cp "$OUT/summary.txt" "$FINAL/summary.txt"
  tar -czf "$FINAL/h200_check.tar.gz" -C "$OUT" . 2>/dev/null
  local n=2 f
  for f in "$OUT"/*.json "$OUT"/*.jsonl "$OUT"/gpu_facts_h200.txt; do
    [ -e "$f" ] || continue
    if [ $n -lt 8 ]; then
      cp "$f" "$FINAL/"
      n=$((n + 1))
    fi
  done
}

# Seconds left before DEADLINE, less the limits of the parts after the current one.
left_for() {
  local reserve=0
  case "$PARTS" in *" train_step "*) [ "$1" != train_step ] && reserve=$((reserve + 90)) ;; esac
  echo $((DEADLINE - SECONDS - reserve))
}

facts() {
  nvidia-smi
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.mem,power.draw,power.limit,temperature.gpu,persistence_mode --format=csv
  uname -a
  nproc
  free -g
  command -v ptxas && ptxas --version | tail -n 2
  "$PY" - <<'PY'
import importlib.metadata as md, platform
print("python", platform.python_version())
for p in ("torch", "triton", "numpy", "cuda-python", "cuda-bindings", "cuda-core", "xdsl", "tinygrad", "pytest-xdist"):
    try:
        print(p, md.version(p))
    except md.PackageNotFoundError:
        print(p, "absent")
import torch
print("torch CUDA", torch.version.cuda, "| available", torch.cuda.is_available())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(p.name, f"sm_{p.major}{p.minor}", p.multi_processor_count, "SMs", f"{p.total_memory / 2**30:.0f} GiB",
          f"L2 {getattr(p, 'L2_cache_size', 0) / 2**20:.0f} MiB")
PY
}

part_facts() {
  run facts 25 bash -c "$(declare -f facts); facts"
  cp "$OUT/facts.log" "$OUT/gpu_facts_h200.txt"
}

part_tests() {
  local opts=(-q -o addopts="" -p no:cacheprovider -rfE -m gpu) t0=$SECONDS status
  "$PY" -c "import pytest_timeout" 2>/dev/null && opts+=(--timeout=120)
  if "$PY" -c "import xdist" 2>/dev/null; then
    run pytest_gpu 150 "$PY" -m pytest "${opts[@]}" -n 8 tests
    status=$?
    # pytest's 3 (internal error) or 4 (usage error): xdist itself failed; the rest of the 150 s without it
    if { [ "$status" -eq 3 ] || [ "$status" -eq 4 ]; } && [ $((150 - (SECONDS - t0))) -gt 20 ]; then
      run pytest_gpu_serial $((150 - (SECONDS - t0))) "$PY" -m pytest "${opts[@]}" tests
      tail -n 3 "$OUT/pytest_gpu_serial.log"
    fi
  else
    run pytest_gpu 150 "$PY" -m pytest "${opts[@]}" tests
  fi
  tail -n 3 "$OUT/pytest_gpu.log"
}

part_gemm() {
  # shellcheck disable=SC2086 # GEMM_ARGS is a list of arguments
  run gemm "${GEMM_LIMIT:-120}" "$PY" bench/gemm.py --skip-slow --shapes 4096x4096x4096,8192x8192x8192 \
    --out "$OUT/gemm_h200.jsonl" ${GEMM_ARGS:-}
  tail -n 4 "$OUT/gemm.log"
}

part_gemm_nt() {
  run gemm_nt "${GEMM_LIMIT:-120}" "$PY" bench/gemm.py --layout nt --dtypes tf32 \
    --schedules mma-sync,wgmma,wgmma-ws,wgmma-pp,auto-sm90a --shapes 4096x4096x4096,8192x8192x8192 \
    --out "$OUT/gemm_nt_h200.jsonl"
  tail -n 12 "$OUT/gemm_nt.log"
}

part_attention() {
  if [ ! -f bench/attention.py ]; then
    echo "attention: bench/attention.py absent, skipped" | tee -a "$OUT/summary.txt"
    return
  fi
  local out=()
  "$PY" bench/attention.py --help 2>/dev/null | grep -q -- "--out" && out=(--out "$OUT/attention_h200.jsonl")
  touch "$OUT/.attention_start"
  # shellcheck disable=SC2086 # ATTENTION_ARGS is a list of arguments
  run attention "${ATTENTION_LIMIT:-60}" "$PY" bench/attention.py "${out[@]}" ${ATTENTION_ARGS:-}
  # without --out, take whatever it wrote under bench/results/ during the run
  find bench/results -maxdepth 1 -name 'attention*.json*' -newer "$OUT/.attention_start" -exec cp {} "$OUT/" \;
  tail -n 4 "$OUT/attention.log"
}

part_models() {
  local budget
  budget=$(($(left_for models) - 10))
  if [ "$budget" -lt 30 ]; then
    echo "models: only ${budget} s left, skipped" | tee -a "$OUT/summary.txt"
    return
  fi
  # shellcheck disable=SC2086 # MODELS_ARGS is a list of arguments
  run gpu_models $((budget + 15)) "$PY" bench/gpu_models.py --budget "$budget" --timeout 240 "$@" ${MODELS_ARGS:-}
  grep -E "ms/step|Error|skipped|timed out" "$OUT/gpu_models.log" | tail -n 40
}

part_full_gpt() {
  local budget
  budget=$(($(left_for full_gpt) - 10))
  # shellcheck disable=SC2086 # FULL_GPT_ARGS is a list of arguments
  run gpu_models_full $((budget + 15)) "$PY" bench/gpu_models.py --full-gpt --dtypes bfloat16 \
    --frameworks picograd,torch-compile,torch-eager --budget "$budget" --timeout 330 \
    --out "$OUT/gpu_models_full_h200.jsonl" ${FULL_GPT_ARGS:-}
  grep -E "ms/step|Error|skipped|timed out" "$OUT/gpu_models_full.log" | tail -n 20
}

part_unroll() {
  run unroll_sweep 150 "$PY" bench/unroll_sweep.py --unrolls 1,2,4,8 --out "$OUT/unroll_sweep_h200.json"
  tail -n 5 "$OUT/unroll_sweep.log"
}

part_train_step() {
  # shellcheck disable=SC2086 # TRAIN_STEP_ARGS is a list of arguments
  run train_step 90 "$PY" bench/train_step.py --steps 200 --warmup 20 --timeout 35 --out "$OUT/train_step_h200.json" \
    ${TRAIN_STEP_ARGS:-}
  tail -n 12 "$OUT/train_step.log"
}

for part in "$@"; do
  case $part in
  facts) part_facts ;;
  tests) part_tests ;;
  gemm) part_gemm ;;
  gemm-nt) part_gemm_nt ;;
  attention) part_attention ;;
  models) part_models --out "$OUT/gpu_models_h200.jsonl" ;;
  models-all) part_models --out "$OUT/gpu_models_h200.jsonl" --models "gpt:bfloat16,gpt,mlp-names,names-mlp,names-rnn,names-gru,names-lstm,names-transformer,bert,cnn,ddpm" ;;
  full-gpt) part_full_gpt ;;
  train_step) part_train_step ;;
  unroll) part_unroll ;;
  *) echo "unknown part '$part' (parts: facts tests gemm gemm-nt attention models models-all full-gpt train_step unroll)" ;;
  esac
  pack
done
echo "total $((SECONDS - START)) s"
cat "$OUT/summary.txt"
pack
