#!/usr/bin/env bash
# The quality protocol (docs/quality.md): the faces recipe (configs/anime_faces.py), the same
# recipe with the L1 loss alone, and the PyTorch pix2pix peer, each trained from scratch for
# the same budgets of images seen with the same seeds, and scored on the faces' test split
# (10 % by a hash of the file name, never read by training or validation).
#
#   bash scripts/quality.sh [WORKDIR] [IMAGES] [SEEDS]     # defaults: runs/quality 32000 0,1,2
#
# A finished run is kept: rerunning continues where it stopped. The table is written to
# WORKDIR/results.md. Needs ../shared/data/anime_faces and, for the peer, torch in the same
# environment (pip install torch==2.13.0). On 2 CPU cores a 32k-image run of the recipe
# takes about 15-25 minutes and one of the peer about an hour.
set -euo pipefail
cd "$(dirname "$0")/.."
workdir=${1:-runs/quality}
images=${2:-32000}
seeds=${3:-0,1,2}
python=${PYTHON:-.venv/bin/python}
faces=../shared/data/anime_faces/faces64
common=(--config.data.image_dir="$faces" --config.eval_every_steps=250)
"$python" -m mangacolor_jax.quality --config configs/anime_faces.py --workdir "$workdir" \
    --name faces --images "$images" --seeds "$seeds" "${common[@]}"
"$python" -m mangacolor_jax.quality --config configs/anime_faces.py --workdir "$workdir" \
    --name faces_l1 --images "$images" --seeds "$seeds" "${common[@]}" --config.loss.gan=none
"$python" scripts/torch_peer.py --config configs/anime_faces.py --workdir "$workdir" \
    --images "$images" --seeds "$seeds" "${common[@]}"
"$python" -m mangacolor_jax.quality --workdir "$workdir" --table_only
