#!/usr/bin/env bash
# One GPU run for the wgmma kernels at the GPT's matmul shapes: wgmma-ws (128x256) and wgmma-ws-192 (128x192), each
# also with its old epilogue (-pairs: 4-byte stores of a column pair), and the ping-pong wgmma-pp-128, against
# cuBLAS, about 2 minutes, every part time-limited (a hang of a
# kernel cannot eat the call). Writes to $OUT:
#   pytest_gpu.log              the GPU tests of the wgmma schedules (tests/test_matmul_wgmma.py -m gpu: every
#                               schedule at 128^3, 1000^3 and 4096^3 against float64), ping-pong and -192 first
#   gemm_gpt_n?_<gpu>.jsonl     bench/gemm.py at the GPT's shapes (M = 16384 tokens; copy to bench/results/): the
#   gemm_nt.log, gemm_nn.log    forward x @ W.T (--layout nt: qkv N = 1152, proj N = 384, fc N = 1536 at K = 384,
#                               fc2 K = 1536) and the backward dX = dY @ W (--layout nn: B stored [k, n])
#   compare.txt                 per shape and layout: each schedule's us and % of cuBLAS, and the fastest
#                               (the figures that decide auto's choice, matmul_rungs.wgmma_choice)
#   summary.txt                 exit status of each part
# Usage, from the repository root: OUT=/path/to/dir bash bench/pingpong_check.sh
source "$(dirname "${BASH_SOURCE[0]}")/gpu_env.sh"

GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | awk '{print tolower($2)}')
run pytest_pp 120 "$PY" -m pytest -q -o addopts="" -p no:cacheprovider -rfE -m gpu tests/test_matmul_wgmma.py \
  -k "pp or 192" -x
tail -n 3 "$OUT/pytest_pp.log"
SCHEDULES=wgmma-ws,wgmma-ws-pairs,wgmma-ws-192,wgmma-ws-192-pairs,wgmma-pp-128
run gemm_nt 150 "$PY" bench/gemm.py --dtypes bf16 --layout nt --schedules $SCHEDULES \
  --shapes 16384x1152x384,16384x384x384,16384x1536x384,16384x384x1536 --out "$OUT/gemm_gpt_nt_$GPU.jsonl"
run gemm_nn 150 "$PY" bench/gemm.py --dtypes bf16 --layout nn --schedules $SCHEDULES \
  --shapes 16384x384x1152,16384x384x384,16384x1536x384,16384x384x1536 --out "$OUT/gemm_gpt_nn_$GPU.jsonl"
"$PY" - "$OUT"/gemm_gpt_n?_"$GPU".jsonl >"$OUT/compare.txt" <<'PY'
import json, sys
rows = [json.loads(line) for path in sys.argv[1:] for line in open(path)]
cases = sorted({(r.get("layout"), r["m"], r["n"], r["k"]) for r in rows}, key=str)
for case in cases:
    mine = {r["schedule"]: r for r in rows if (r.get("layout"), r["m"], r["n"], r["k"]) == case and "ms" in r}
    if not mine:
        continue
    cublas = next(iter(mine.values()))["cublas_ms"]
    cells = "  ".join(f"{s} {1e3 * r['ms']:6.1f} us {100 * r['ratio_to_cublas']:3.0f}%" for s, r in mine.items())
    best = min(mine, key=lambda s: mine[s]["ms"])
    print(f"{case[0]} {'x'.join(map(str, case[1:])):>16}  cuBLAS {1e3 * cublas:6.1f} us  {cells}  best {best}")
PY
cat "$OUT/compare.txt"
cat "$OUT/summary.txt"
