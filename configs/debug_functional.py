r"""Functional first: the series' settings for getting the code to work before tuning it.

No regularisation (no L2, no gradient penalty, no dropout), Adam with its default
hyper-parameters (lr 1e-3, betas 0.9 / 0.999, constant, no warm-up or clipping), ReLU in
the decoder, no augmentation (centred crops, no flip, no colour jitter), fewer layers (a
3-level U-Net, a 2-layer PatchGAN), a small batch and a short run; the diagnostics are on,
so TensorBoard shows the histograms, gradient flow and update ratios from the start. Once
this learns, add back one thing at a time (the default config is the full set).

Commands:
  python -m mangacolor_jax.doctor --config configs/debug_functional.py --workdir runs/debug
  python -m mangacolor_jax.train --config configs/debug_functional.py --workdir runs/debug

Hardware and expected result (measured on the project's shared 2-core CPU machine): the
doctor 25 s, 16 checks PASS; training 500 steps 99 s, eval_psnr 7.5 -> 22.3 dB (the line
art itself as an image: eval_psnr_lineart 9.9 dB), eval_ssim 0.90, no diagnostics warning.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.batch_size = 8
  config.num_train_steps = 500
  config.log_every_steps = 25
  config.eval_every_steps = 100
  config.checkpoint_every_steps = 250
  config.diagnostics_every_steps = 100

  config.data.augment = False
  config.data.flip = False
  config.data.color_jitter = 0.0

  config.model.gen.depth = 3
  config.model.disc.layers = 2
  config.model.gen.activation = "relu"
  config.model.gen.dropout = 0.0

  config.loss.gradient_penalty = "none"
  config.loss.l2_weight = 0.0

  config.optim.g_lr = 1e-3
  config.optim.d_lr = 1e-3
  config.optim.b1 = 0.9
  config.optim.b2 = 0.999
  config.optim.schedule = "constant"
  config.optim.warmup_steps = 0
  config.optim.grad_clip = 0.0
  return config
