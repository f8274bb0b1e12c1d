r"""Baseline: the default U-Net trained with the L1 loss alone (no discriminator).

The series' fall-back: every GAN run is compared against it on the same validation set.

Command:
  python -m mangacolor_jax.train --config configs/baseline_l1.py --workdir runs/baseline_l1

Hardware and expected result: a 2-core CPU, about 5 minutes (2,000 steps). Validation
PSNR 22.5 dB (SSIM 0.90): on the single synthetic character the default GAN is level with
it (22.4 dB).
"""

from configs import default


def get_config():
  config = default.get_config()
  config.loss.gan = "none"
  config.loss.l1_weight = 1.0
  return config
