#!/usr/bin/env bash
# The project's pix2pix training step against the PyTorch peer's, CPU, fp32, alternating
# in one run; prints min/median/max per side and the ratio (scripts/bench_vs_torch.py).
#
#   bash scripts/bench_vs_torch.sh [SIZE=256] [BATCH=4] [extra bench_vs_torch.py flags]
#   bash scripts/bench_vs_torch.sh 128 4 --rounds 8
#
# Needs the project's .venv and the peer's own environment:
#   python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch==2.13.0 numpy absl-py
# Env: TORCH_PYTHON (default /tmp/torchvenv/bin/python), PEER (default
# ../shared/bench/torch_pix2pix.py beside the repository).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
SIZE="${1:-256}"
BATCH="${2:-4}"
shift $(( $# > 2 ? 2 : $# ))
TORCH_PYTHON="${TORCH_PYTHON:-/tmp/torchvenv/bin/python}"
PEER="${PEER:-$(dirname "$ROOT")/shared/bench/torch_pix2pix.py}"
for f in "$ROOT/.venv/bin/python" "$TORCH_PYTHON" "$PEER"; do
  [ -e "$f" ] || { echo "missing $f (see the header of $0)" >&2; exit 2; }
done
if [ "$SIZE" -ge 256 ]; then ROUNDS=6; STEPS=2; else ROUNDS=8; STEPS=3; fi
exec "$ROOT/.venv/bin/python" "$HERE/bench_vs_torch.py" --size "$SIZE" --batch "$BATCH" \
  --rounds "$ROUNDS" --steps_per_round "$STEPS" --torch_python "$TORCH_PYTHON" \
  --peer "$PEER" "$@"
