# shellcheck shell=bash
# Sourced by the GPU-machine scripts (bench/*_check.sh): the repository root as working directory, $OUT and $PY,
# the carried wheels installed, and run NAME SECONDS COMMAND... (time-limited, output to $OUT/NAME.log, exit status
# to $OUT/summary.txt; run returns it), so that one hang cannot eat the other parts.
# With WORK set (a scratch folder) before sourcing, the caller's $OUT becomes $FINAL, where the script copies what
# the device tool brings back (at most 8 files), and $OUT the fresh $WORK, where every log and result is written.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit
if [ -n "${WORK:-}" ]; then
  FINAL="${OUT:-/tmp/picograd-gpu-out}"
  mkdir -p "$FINAL"
  rm -rf "$WORK"
  export OUT=$WORK
fi
OUT="${OUT:-/tmp/picograd-gpu-out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"

# The wheels carried in .whl/ (xdsl and its two dependencies, tinygrad 0.14) go to /tmp/site (no network there).
if ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-deps --target /tmp/site .whl/*.whl >"$OUT/pip.log" 2>&1 || echo "pip failed (see pip.log)"
fi
export PYTHONPATH="$PWD:/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
export MPLBACKEND=Agg
: >"$OUT/summary.txt"
run() {
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS
  timeout --kill-after=10 "$limit" "$@" >"$OUT/$name.log" 2>&1
  local status=$?
  printf '%-28s exit %3d  %4ds\n' "$name" "$status" $((SECONDS - t0)) | tee -a "$OUT/summary.txt"
  return "$status"
}
