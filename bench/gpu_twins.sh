#!/usr/bin/env bash
# The course examples' full recipes on the GPU beside their PyTorch twins (issue 18, item 4): each bench/*_twin.py
# with --device cuda runs picograd's compiled step and the twin's step on the same batches in one process, from
# picograd's initial state_dict, and writes both final metrics, the median ms a step and the wall time of every
# step summed; with --compile the twin's forward runs under torch.compile. One device call of at most 10 minutes:
# every run has a time limit and none starts once DEADLINE (default 540 s after the start) is too close.
#
# Usage, from the repository root (the device call carries .whl with the xdsl wheels):
#   OUT=/path/to/dir bash bench/gpu_twins.sh [RUN...]
# Runs (default, in this order: the short recipes first): cnn cnn-compile ddpm ddpm-compile bert bert-compile
#   names-lstm names-transformer names-gru names-rnn names-mlp mlp mlp-compile (mlp: examples/mlp_names.py's 200,000
#   steps, ~330-420 s); also names-<type>-compile (not in the default: the whole list takes more than three calls).
#   Each writes twin_<run>.json and its log, packed into $OUT/twins.tar.gz (with $OUT/summary.txt: exit status and
#   seconds of every run).
START=$SECONDS
DEADLINE=$((START + ${TWINS_DEADLINE:-540}))
WORK=/tmp/gpu_twins_work
# shellcheck source=bench/gpu_env.sh
source "$(dirname "${BASH_SOURCE[0]}")/gpu_env.sh"

if [ $# -eq 0 ]; then
  set -- cnn cnn-compile ddpm ddpm-compile bert bert-compile names-lstm names-transformer names-gru names-rnn names-mlp \
    mlp mlp-compile
fi

# twin RUN LIMIT SCRIPT ARGS...: skipped when fewer than LIMIT seconds are left before DEADLINE
twin() {
  local name=$1 limit=$2
  shift 2
  if [ $((DEADLINE - SECONDS)) -lt "$limit" ]; then
    echo "$name: $((DEADLINE - SECONDS)) s left, needs $limit: skipped" | tee -a "$OUT/summary.txt"
    return
  fi
  run "twin_$name" "$limit" "$PY" "$@" --device cuda --out "$WORK/twin_$name.json"
  tail -n 2 "$WORK/twin_$name.log"
  pack
}

# The device tool brings back at most 8 files: everything goes into $FINAL/twins.tar.gz (after every run, so that a
# run cut by the call's limit keeps what it made), with summary.txt beside it.
pack() {
  tar -czf "$FINAL/twins.tar.gz" -C "$WORK" . 2>/dev/null
  cp "$WORK/summary.txt" "$FINAL/summary.txt"
}

for r in "$@"; do
  case $r in
  cnn) twin cnn 60 bench/cnn_digits_twin.py ;;
  cnn-compile) twin cnn-compile 90 bench/cnn_digits_twin.py --compile ;;
  ddpm) twin ddpm 120 bench/ddpm_digits_twin.py --resample ;;
  ddpm-compile) twin ddpm-compile 150 bench/ddpm_digits_twin.py --compile --resample ;;
  bert) twin bert 120 bench/bert_shakespeare_twin.py ;;
  bert-compile) twin bert-compile 150 bench/bert_shakespeare_twin.py --compile ;;
  mlp) twin mlp 400 bench/mlp_names_twin.py ;;
  mlp-compile) twin mlp-compile 450 bench/mlp_names_twin.py --compile ;;
  names-*-compile)
    t=${r#names-}
    twin "$r" 150 bench/names_twin.py --type "${t%-compile}" --compile
    ;;
  names-*) twin "$r" 150 bench/names_twin.py --type "${r#names-}" ;;
  *) echo "unknown run '$r'" ;;
  esac
done
echo "total $((SECONDS - START)) s"
cat "$WORK/summary.txt"
pack
