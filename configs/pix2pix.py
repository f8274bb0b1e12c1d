r"""pix2pix at the paper's sizes: the configuration compared against the PyTorch peer.

The networks of Isola et al. (2017) as ../shared/bench/torch_pix2pix.py builds them: a U-Net
with ngf 64 (widths 64, 128, 256, 512, 512, ...) and log2(size) stride-2 downsamplings (8 at
256x256, 7 at 128x128), the 70x70 PatchGAN with ndf 64, BatchNorm, decoder dropout 0.5,
vanilla GAN + 100 x L1, Adam 2e-4 / (0.5, 0.999), batch 4. The one layer choice that
differs is how two layers are computed, not what they compute: the decoder's 4x4/2
ConvTranspose as `phase` upsampling (one 2x2 convolution per output phase, the same
16 * c_in * c_out weights) and the 4x4/2 convolutions with `downsample="auto"` (their input
gradient computed the same way): dense convolutions, which XLA:CPU runs far faster than
input-dilated ones; on small inputs (sides <= 16 down; <= 4 up, or <= 8 for the 1024->512
layers) both are plain matrix products (docs/performance.md). Same parameters, same
count as the peer's (57,178,564 at 256).

Select the size with the config argument (default 256):
  python -m mangacolor_jax.benchmark --config configs/pix2pix.py:128 --input_batches 0
  bash scripts/bench_vs_torch.sh 128        # against the PyTorch peer, alternating
  python -m mangacolor_jax.train --config configs/pix2pix.py:256 --workdir runs/pix2pix \
      --config.data.source=folder --config.data.image_dir=/path/to/illustrations

Hardware and expected result: measured on this project's 2-core CPU machines and one H200,
see docs/performance.md (speed only: this config is the benchmark's, not a tuned recipe).
"""

import math

from configs import default


def get_config(arg: str = "256"):
  """pix2pix networks for square `arg` x `arg` crops (a power of two, 128 or 256 usually)."""
  size = int(arg) if arg else 256
  depth = int(round(math.log2(size)))
  if 2**depth != size:
    raise ValueError(f"configs/pix2pix.py:{arg}: the size must be a power of two")
  config = default.get_config()
  config.batch_size = 4
  config.dtype = "float32"
  config.data.image_size = size
  config.data.image_width = 0

  gen, disc = config.model.gen, config.model.disc
  gen.features = 64  # ngf
  gen.max_features = 512  # ngf * 8
  gen.depth = depth  # num_downs = log2(size)
  # ConvTranspose 4x4/2, computed as four 2x2 convolutions; off the CPU as cuDNN's
  # backward-data convolution.
  gen.upsample = "phase"
  gen.norm = "batch"
  gen.activation = "relu"
  gen.dropout = 0.5
  disc.features = 64  # ndf
  disc.layers = 3  # 70x70 PatchGAN
  disc.norm = "batch"
  # Conv 4x4/2: strided, its input gradient as a phase transposed conv; one matrix product
  # on inputs of side <= 16 (the same function and weights either way). Off the CPU: the
  # plain strided Conv, which cuDNN runs fastest, or space-to-depth for 1-4 channel inputs.
  config.model.downsample = "auto"

  config.loss.gan = "vanilla"
  config.loss.gan_weight = 1.0
  config.loss.gradient_penalty = "none"
  config.loss.l1_weight = 100.0
  config.loss.mse_weight = 0.0
  config.loss.l2_weight = 0.0

  config.optim.g_lr = 2e-4
  config.optim.d_lr = 2e-4
  config.optim.b1 = 0.5
  config.optim.b2 = 0.999
  config.optim.schedule = "constant"
  config.optim.warmup_steps = 0
  config.optim.grad_clip = 0.0
  return config
