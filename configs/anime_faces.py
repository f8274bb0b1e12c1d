r"""Real illustrations: any folder of colour images (development: 8,000 64x64 anime faces).

Trained with sparse colour hints sampled from the target, most of them dropped at random
(half of the images get none), so one model colours both without and with hints;
`evaluate` reports both.

Command:
  python -m mangacolor_jax.train --config configs/anime_faces.py --workdir runs/faces \
      --config.data.image_dir=PATH

Hardware and expected result: a 2-core CPU; measured at 1.2-1.5 steps/s while other jobs
shared the 2 cores (3,000 steps: 42 minutes), faster alone. Measured after 3,000 steps on the 8,000 development faces (64x64): validation
PSNR 16.2 dB without hints and 17.3 dB with sparse hints, against 9.4 dB for the line art
and 10.5 dB untrained; on a GPU, raise batch_size and num_train_steps.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.batch_size = 16
  config.num_train_steps = 6000
  config.eval_every_steps = 1000
  config.checkpoint_every_steps = 1000
  config.data.source = "folder"
  config.data.image_dir = ""  # required: --config.data.image_dir=PATH
  config.data.image_size = 64
  config.data.max_val_images = 400
  config.data.color_jitter = 0.3  # real palettes vary: colour distortion is augmentation
  config.data.test_fraction = 0.1  # held out for the quality protocol (docs/quality.md)
  config.model.gen.depth = 5
  config.hints.mode = "sparse"
  config.hints.max_points = 32
  config.hints.drop_prob = 0.5
  return config
