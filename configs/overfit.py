r"""Overfit a tiny fixed subset: 8 training images, no augmentation. If the training L1
does not fall by a large factor here, the code has a bug (the series' first sanity check).

The synthetic source keeps only renderer images 0-7 for training (the validation split is
unchanged, so the train / validation gap of an overfitted model shows in TensorBoard:
WORKDIR/train and WORKDIR/eval overlay the same tags). For a folder, point
--config.data.image_dir at a folder of about ten images (one is held out for validation).

Command:
  python -m mangacolor_jax.train --config configs/overfit.py --workdir runs/overfit

Hardware and expected result (measured on the project's shared 2-core CPU machine): 1000
steps in 159 s; the training L1 falls from 0.76 (step 1) to 0.11 by step 100 and 0.043 by
step 1000 (train_g_l1, 25-step means), while eval_l1 stays at 0.17-0.19: the train/eval
pair of TensorBoard runs shows the gap. `python -m mangacolor_jax.doctor` runs the short
version of this check (overfit_tiny_subset) on any config.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.batch_size = 8
  config.num_train_steps = 1000
  config.log_every_steps = 25
  config.eval_every_steps = 250
  config.checkpoint_every_steps = 500
  config.diagnostics_every_steps = 250

  config.data.num_train = 8  # the tiny fixed subset (synthetic source)
  config.data.augment = False
  config.data.flip = False
  config.data.color_jitter = 0.0

  config.model.gen.dropout = 0.0
  config.loss.l2_weight = 0.0
  config.loss.gradient_penalty = "none"
  return config
