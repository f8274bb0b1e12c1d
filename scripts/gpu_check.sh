#!/usr/bin/env bash
# GPU check (H100/H200, no network, no TensorFlow): the project's pix2pix training step
# against the PyTorch peer, fp32 and bf16, batch 16 and 64, at 256x256; prints a table
# (scripts/gpu_check.py). About 4 minutes.
#
#   bash scripts/gpu_check.sh                  # from the repository root, on the GPU machine
#
# The machine's python3 must have jax (CUDA), flax, optax, orbax-checkpoint and torch.
# ml_collections (pure Python) and the peer may travel in .gpu_pkgs/ (git-ignored):
#   mkdir -p .gpu_pkgs && cp -r .venv/lib/python3.*/site-packages/ml_collections .gpu_pkgs/
#   cp ../shared/bench/torch_pix2pix.py .gpu_pkgs/
# Env: PEER (the peer's torch_pix2pix.py), OUT (where the JSON rows and the table go),
# GPU_CHECK_ARGS (extra gpu_check.py flags), GPU_PROFILE (variants of gpu_check.py to
# profile afterwards at bf16, batch 64, e.g. "phase native": ~1 min each; each writes
# $OUT/profile_VARIANT.txt, its kernels by kind, and its trace under $OUT/trace_VARIANT).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
[ -d .gpu_pkgs ] && export PYTHONPATH="$ROOT/.gpu_pkgs${PYTHONPATH:+:$PYTHONPATH}"
if [ -z "${PEER:-}" ]; then
  for p in "$ROOT/../shared/bench/torch_pix2pix.py" "$ROOT/.gpu_pkgs/torch_pix2pix.py"; do
    [ -f "$p" ] && PEER="$p" && break
  done
fi
OUT="${OUT:-/tmp/gpu_check}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
python3 -c "import jax, flax, optax, torch; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, 'torch', torch.__version__)"
python3 scripts/gpu_check.py --peer "${PEER:?no torch_pix2pix.py found: set PEER}" \
  --out "$OUT" ${GPU_CHECK_ARGS:-} 2>&1 | grep -v "^[IW][0-9]\{4\} " | tee "$OUT/gpu_check.log"
for v in ${GPU_PROFILE:-}; do
  overrides=$(python3 -c "import sys; sys.path.insert(0, 'scripts'); import gpu_check; \
print(' '.join('--config.' + o for o in gpu_check.VARIANTS['$v'].split(',')))") || continue
  timeout 150 python3 scripts/profile_step.py --config configs/pix2pix.py:256 \
    --config.batch_size=64 --config.dtype=bfloat16 $overrides --steps 3 --top 15 \
    --trace_dir "$OUT/trace_$v" 2>&1 | grep -v "^[IW][0-9]\{4\} " | tee "$OUT/profile_$v.txt"
done
