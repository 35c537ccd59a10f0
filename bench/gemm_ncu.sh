#!/usr/bin/env bash
# Why each SGEMM rung runs at the speed it does: Nsight Compute counters of one launch of every pg-matmul-schedule
# rung at 2048^3 (bench/gemm.py compiles and launches it), plus ptxas -v and the SASS instruction mix of the inner
# loop of the two best rungs. Run on the GPU machine:
#     bash bench/gemm_ncu.sh OUTDIR
# Writes OUTDIR/ncu_<rung>.csv, OUTDIR/ptxas_<rung>.txt and OUTDIR/sass_<rung>.txt.
set -euo pipefail
out=${1:-bench/results/ncu}
mkdir -p "$out"
metrics=(
  sm__pipe_fma_cycles_active.avg.pct_of_peak_sustained_active       # FMA pipe busy
  smsp__issue_active.avg.pct_of_peak_sustained_active               # issue slots used
  sm__warps_active.avg.pct_of_peak_sustained_active                 # achieved occupancy
  l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum                    # global load sectors ...
  l1tex__t_requests_pipe_lsu_mem_global_op_ld.sum                   # ... per request: 4 = coalesced f32
  l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum
  l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_st.sum
  lts__t_sector_hit_rate.pct                                        # L2 hit rate
  dram__throughput.avg.pct_of_peak_sustained_elapsed
  smsp__warp_issue_stalled_long_scoreboard_per_warp_active.pct      # waiting on global memory
  smsp__warp_issue_stalled_barrier_per_warp_active.pct
  smsp__warp_issue_stalled_mio_throttle_per_warp_active.pct         # shared-memory queue full
  smsp__warp_issue_stalled_short_scoreboard_per_warp_active.pct     # waiting on shared memory
  smsp__warp_issue_stalled_math_pipe_throttle_per_warp_active.pct
)
list=$(IFS=,; echo "${metrics[*]}" | sed 's/ *#[^,]*//g')
for rung in naive coalesced smem regtile warptile cp-async; do
  ncu --csv --metrics "$list" --kernel-name regex:k0_matmul --launch-skip 1 --launch-count 1 \
    python3 bench/gemm.py --schedules "$rung" --shapes 2048x2048x2048 --out /dev/null > "$out/ncu_$rung.csv" 2>&1 || true
done
python3 - "$out" <<'PY'
import sys
from bench.gemm import matmul_module
from picograd.driver.gpu_compile import compile_for_cuda
out = sys.argv[1]
for rung in ("warptile", "cp-async"):
    open(f"{out}/{rung}.ptx", "w").write(compile_for_cuda(matmul_module(4096, 4096, 4096), matmul_schedule=rung).ptx)
PY
for rung in warptile cp-async; do
  ptxas -arch=sm_90 -v "$out/$rung.ptx" -o "$out/$rung.cubin" > "$out/ptxas_$rung.txt" 2>&1
  cuobjdump -sass "$out/$rung.cubin" | grep -oE '^\s+/\*[0-9a-f]+\*/\s+[@!A-Z0-9_.]+( [A-Z0-9_.]+)?' \
    | awk '{print ($2 ~ /^@/) ? $3 : $2}' | sed 's/\..*//' | sort | uniq -c | sort -rn > "$out/sass_$rung.txt"
  rm -f "$out/$rung.cubin" "$out/$rung.ptx"
done
