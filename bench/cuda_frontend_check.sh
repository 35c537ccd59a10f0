#!/usr/bin/env bash
# One GPU run of the "tensors on cuda" work, for the H200 machine (about 8 minutes; every part has a time limit, so
# one hang cannot eat the others). Writes everything to $OUT:
#   pytest_cuda_frontend.log / .xml   tests/test_cuda_frontend.py (GPU cases and the fake-runtime cases)
#   losses_cpu_100.json, losses_cuda_100.json, losses_compare.txt
#                                     the first 100 losses of examples/mlp_names.py on both devices, compared
#                                     (max relative difference must be <= 1e-4)
#   mlp_names_cuda.log, mlp_names_loss_cuda.png, losses_cuda_full.json
#                                     the whole recipe (200,000 steps) on the GPU: loss curve and val_loss=
#   train_step_h200.json, train_step.log
#                                     bench/train_step.py (copy the JSON to bench/results/)
#   summary.txt                       exit status of each part
# Usage, from the repository root: OUT=/path/to/dir bash bench/cuda_frontend_check.sh
source "$(dirname "${BASH_SOURCE[0]}")/gpu_env.sh"

"$PY" -c "from picograd.runtime import cuda; print('cuda available:', cuda.available()); print(cuda.device().name)" \
  2>&1 | tee "$OUT/device.txt"

# 1. Tests: every op and gradient on cuda vs the CPU executor, compiled SGD/AdamW steps vs CPU, the plumbing.
run pytest_cuda_frontend 150 "$PY" -m pytest -q -o addopts="" -p no:cacheprovider -rfE \
  --junitxml="$OUT/pytest_cuda_frontend.xml" tests/test_cuda_frontend.py

# 2. The example: the first 100 losses on both devices (same seed, same batches), then the whole recipe on the GPU.
run mlp_names_cpu_100 40 "$PY" examples/mlp_names.py --steps 100 --samples 0 \
  --plot "$OUT/loss_cpu_100.png" --log-losses "$OUT/losses_cpu_100.json"
run mlp_names_cuda_100 60 "$PY" examples/mlp_names.py --device cuda --steps 100 --samples 0 \
  --plot "$OUT/loss_cuda_100.png" --log-losses "$OUT/losses_cuda_100.json"
"$PY" - "$OUT" <<'EOF' 2>&1 | tee "$OUT/losses_compare.txt"
import json, sys
import numpy as np
out = sys.argv[1]
a = np.array(json.load(open(f"{out}/losses_cpu_100.json"))["losses"][:100])
b = np.array(json.load(open(f"{out}/losses_cuda_100.json"))["losses"][:100])
rel = np.abs(a - b) / np.abs(a)
print(f"first 100 losses, cpu vs cuda: max relative difference {rel.max():.3e} at step {rel.argmax()}",
      "OK" if rel.max() <= 1e-4 else "FAIL (> 1e-4)")
EOF
run mlp_names_cuda 150 "$PY" examples/mlp_names.py --device cuda \
  --plot "$OUT/mlp_names_loss_cuda.png" --log-losses "$OUT/losses_cuda_full.json"
grep -E "steps in|train_loss=|val_loss=|samples:" "$OUT/mlp_names_cuda.log"

# 3. The benchmark: picograd, PyTorch eager, torch.compile (two modes), tinygrad TinyJit; batch 32 and 4096.
run train_step 250 "$PY" bench/train_step.py --steps 300 --timeout 90 --out "$OUT/train_step_h200.json"
tail -n 14 "$OUT/train_step.log"
cat "$OUT/summary.txt"
