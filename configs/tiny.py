r"""Tiny: a few-second run for tests and smoke checks (any CPU).

Command:
  python -m mangacolor_jax.train --config configs/tiny.py --workdir runs/tiny

Hardware and expected result: any CPU, about 30 s including compilation; the numbers are
meaningless (2 steps), it only proves the whole loop runs: metrics, eval, checkpoint.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.batch_size = 8  # divides over 8 fake test devices
  config.num_train_steps = 2
  config.log_every_steps = 1
  config.eval_every_steps = 2
  config.checkpoint_every_steps = 2
  config.data.image_size = 32
  config.data.image_width = 48  # H != W so that swapped axes fail
  config.data.num_train = 64
  config.data.num_val = 16
  config.data.max_val_images = 16
  config.model.gen.features = 8
  config.model.gen.max_features = 32
  config.model.gen.depth = 3
  config.model.disc.features = 8
  config.model.disc.layers = 2
  config.eval.num_samples = 4
  return config
