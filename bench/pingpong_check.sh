#!/usr/bin/env bash
# One GPU run for the ping-pong wgmma matmuls (wgmma-pp, -192, -128) against wgmma-ws and cuBLAS, about 3 minutes,
# every part time-limited (a hang of the new kernel cannot eat the call). Writes to $OUT:
#   pytest_gpu.log              the GPU tests of the wgmma schedules (tests/test_matmul_wgmma.py -m gpu: every
#                               schedule at 128^3, 1000^3 and 4096^3 against float64), ping-pong first
#   gemm_pingpong_<gpu>.jsonl   bench/gemm.py at the GPT's forward shapes (M = 16384 tokens, K = 384: qkv N = 1152,
#   gemm.log                    proj N = 384, fc N = 1536), its fc2 (K = 1536) and 4096^3 (copy to bench/results/)
#   compare.txt                 per shape: each schedule's us and % of cuBLAS, and wgmma-ws's time over the best
#                               ping-pong one's (above 1: ping-pong is faster; the figure that decides auto's choice)
#   summary.txt                 exit status of each part
# Usage, from the repository root: OUT=/path/to/dir bash bench/pingpong_check.sh
source "$(dirname "${BASH_SOURCE[0]}")/gpu_env.sh"

GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | awk '{print tolower($2)}')
run pytest_pp 120 "$PY" -m pytest -q -o addopts="" -p no:cacheprovider -rfE -m gpu tests/test_matmul_wgmma.py \
  -k "pp" -x
tail -n 3 "$OUT/pytest_pp.log"
run pytest_gpu 200 "$PY" -m pytest -q -o addopts="" -p no:cacheprovider -rfE -m gpu tests/test_matmul_wgmma.py
tail -n 3 "$OUT/pytest_gpu.log"
run gemm 300 "$PY" bench/gemm.py --dtypes bf16 --schedules wgmma-ws,wgmma-pp,wgmma-pp-192,wgmma-pp-128 \
  --shapes 16384x1152x384,16384x384x384,16384x1536x384,16384x384x1536,4096x4096x4096 \
  --out "$OUT/gemm_pingpong_$GPU.jsonl"
"$PY" - "$OUT/gemm_pingpong_$GPU.jsonl" >"$OUT/compare.txt" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
shapes = sorted({(r["m"], r["n"], r["k"]) for r in rows}, key=lambda s: (s[2], s[1]))
for shape in shapes:
    mine = {r["schedule"]: r for r in rows if (r["m"], r["n"], r["k"]) == shape and "ms" in r}
    if not mine:
        continue
    cublas = next(iter(mine.values()))["cublas_ms"]
    cells = "  ".join(f"{s} {1e3 * r['ms']:7.1f} us {100 * r['ratio_to_cublas']:3.0f}%" for s, r in mine.items())
    pp = [r["ms"] for s, r in mine.items() if s.startswith("wgmma-pp")]
    gain = f"  ws/pp {mine['wgmma-ws']['ms'] / min(pp):.2f}" if pp and "wgmma-ws" in mine else ""
    print(f"{'x'.join(map(str, shape)):>16}  cuBLAS {1e3 * cublas:7.1f} us  {cells}{gain}")
PY
cat "$OUT/compare.txt"
cat "$OUT/summary.txt"
