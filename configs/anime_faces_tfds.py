r"""Anime faces from a prepared TFDS data set: `anime_faces` fed by the data-set commands.

Build the data set (each step reads the previous one's output and never changes it), check
the batches, then train; from the repository root:

  python -m mangacolor_jax.data.clean --input ../shared/data/anime_faces/faces64 \
      --output /tmp/faces_clean
  python -m mangacolor_jax.data.prepare --input /tmp/faces_clean --output /tmp/faces_tfds
  python -m mangacolor_jax.data.inspect --config configs/anime_faces_tfds.py \
      --config.data.tfds_dir=/tmp/faces_tfds --output /tmp/faces_inspect
  python -m mangacolor_jax.train --config configs/anime_faces_tfds.py \
      --config.data.tfds_dir=/tmp/faces_tfds --workdir runs/faces_tfds

Measured on faces64, 2-core CPU: clean keeps 7855 of 8000 (82 near duplicates, 63 too
intricate) in about 30 s; prepare splits them 5498 / 1571 / 786 in about 15 s; inspect
passes in about 20 s; a 50-step smoke run (--config.num_train_steps=50) takes about 2.5 min
wall and moves validation PSNR from 10.6 to 12.7 dB. The full run is `configs/anime_faces.py`
(same model, hints and steps) on this data set's train split, evaluated on its validation
split (the first 400 by id), with a small rotation added to the augmentation.
"""

from configs import anime_faces


def get_config():
  config = anime_faces.get_config()
  config.data.source = "tfds"
  config.data.tfds_dir = ""  # required: the --output folder of mangacolor_jax.data.prepare
  config.data.tfds_train_split = "train"
  config.data.tfds_eval_split = "validation"  # "test" for final numbers only
  config.data.max_rotation = 5.0  # degrees; the series' "small rotation" augmentation
  return config
