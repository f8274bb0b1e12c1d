r"""Real illustrations: any folder of colour images (development: 8,000 64x64 anime faces).

Trained with colour hints painted as a person paints them (short strokes of a region's
colour, none on a quarter of the images), so one model colours both without and with hints;
the generator's weights are averaged (EMA), and evaluation, colorize and the quality
protocol use the average. `docs/quality.md` holds the ablation behind each choice.

Command:
  python -m mangacolor_jax.train --config configs/anime_faces.py --workdir runs/faces \
      --config.data.image_dir=PATH

Hardware and expected result: a 2-core CPU at 0.8-1.6 steps/s (2,000 steps, 32k images, in
21-42 minutes; 24-27 on the 2 cores the protocol ran on). The quality protocol
(docs/quality.md: 32k images, the faces' test split) measures 17.54 +- 0.03 dB PSNR without
hints on XDoG line art (17.39 and 15.27 on dilation and thick-XDoG line art), colourfulness
0.71 of the targets', +1.7 / +2.6 dB with 10 / 30 painted strokes at random places and
+2.4 / +3.7 dB with 10 / 30 strokes where its colours are wrong, painted in rounds of ten
(row z1, seeds 0, 1, 2; the baseline before the ablation, one seed: 14.9 dB, -0.9 and -2.7
dB with strokes). G's BatchNorm statistics are measured under the averaged weights before
each evaluation and checkpoint (config.model.ema_bn_batches): with the last iterate's
statistics, longer runs seemed to fall after about 3,000 steps; measured, this recipe with
G 48 channels wide (row u3) scores 17.80 dB at 128k images (8,000 steps, seeds 0, 1, 2) at
its last checkpoint (18.27 and 15.94 on dilation and thick XDoG), colourfulness 0.76, and
+2.6 / +4.0 dB from 10 / 30 strokes where its colours are wrong; the 64-wide G has not been
run at 128k. colorize and serve load the best checkpoint, which the run keeps. On a GPU,
raise batch_size and num_train_steps.
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
  # No colour jitter on the targets: it makes a character's colours unpredictable from
  # its line art (docs/quality.md, a1: +0.44 dB).
  config.data.color_jitter = 0.0
  # The whole image, as it is scored and coloured, not 80-100% zooms of it (flips stay):
  # d1, +0.30 dB over three seeds, ahead on each (docs/quality.md).
  config.data.crop_scale = (1.0, 1.0)
  config.data.test_fraction = 0.1  # held out for the quality protocol (docs/quality.md)
  config.model.gen.depth = 5
  # The average of G's weights removes the late fall of the last iterate (a2: +1.2 dB); its
  # BatchNorm statistics are measured under it (configs/default.py: model.ema_bn_batches;
  # e2: +0.29 dB over three seeds, and no fall at 128k images).
  config.model.ema_decay = 0.999
  # Painted strokes, as colorize --hints reads them (a3: +1.1 dB at 10 strokes, where
  # single-pixel hints cost 1.6 dB).
  config.hints.mode = "strokes"
  # A quarter of the images without hints, and the hints pooled to every encoder level:
  # the model leans on strokes more (c3: +0.4 / +0.6 dB at 10 / 30 strokes, -0.1 without).
  config.hints.drop_prob = 0.25
  config.model.gen.hint_pyramid = True
  # Up to 60 strokes an image in training (log-uniform), not 30: more images with many
  # strokes (o1: +0.26 / +0.32 dB from 30 random / guided strokes over three seeds, the
  # same without hints, -0.04 dB from one to three strokes).
  config.hints.max_strokes = 60
  # Half of the training images get their strokes where G's own colouring of them without
  # hints is wrong, as a person paints them (v1: +0.15 / +0.24 dB from 10 / 30 strokes where the
  # colours are wrong over three seeds, -0.03 dB without hints). It costs an extra forward pass
  # of G: a step takes about 1.3x as long on 2 CPU cores.
  config.hints.guided_share = 0.5
  # A full-resolution head: the last layer reads 16 decoder channels beside the line art and
  # the hints at 64x64 (e1: +0.25 dB on dilation line art, SSIM 0.768 -> 0.791 over three
  # seeds, for +22% of G's FLOPs).
  config.model.gen.head_features = 16
  # A wider G: 64 channels at the first level, up to 512 (G 23.0M parameters). From 32 to 48
  # (p2): +0.11 dB on XDoG, +0.17 on dilation and +0.12 on thick XDoG over three seeds; from
  # 48 to 64 on today's recipe (z1): +0.05 dB on XDoG and +0.10 on dilation over three
  # seeds, ahead on each, thick XDoG the same, +0.05 / +0.07 dB more from 30 strokes at
  # random places / where wrong. 64 costs a training step 1.43x and inference 1.8x as long
  # as 48 on 2 CPU cores: at equal compute, about level with 48 shown more images.
  config.model.gen.features = 64
  config.model.gen.max_features = 512
  # One residual 3x3 layer at every level's resolution, in the encoder and the decoder
  # (t1: +0.14 dB on XDoG over three seeds, ahead on each, +0.36 on dilation, +0.11 on thick
  # XDoG; with strokes it scores what p2 did, so their gains are smaller). A training step
  # costs 1.23x, inference 1.36x as long on 2 CPU cores.
  config.model.gen.res_blocks = 1
  # The decoder upsamples as pix2pix's 4x4/2 transposed convolution, computed densely: each
  # of a 2x2 block's four output pixels gets its own 2x2 kernel, where nearest-neighbour
  # resizing and a 3x3 conv tie them (u3: +0.06 dB on XDoG, +0.09 on dilation and +0.04 on
  # thick XDoG over three seeds, XDoG ahead on each; the strokes' gains the same). Fewer
  # FLOPs: a training step takes 0.83x, inference 0.75x as long on 2 CPU cores.
  config.model.gen.upsample = "phase"
  # G learns five times faster than pix2pix's 2e-4 (D keeps it): the average smooths the
  # noise this adds (b1, b2: +0.6 dB; docs/quality.md).
  config.optim.g_lr = 1e-3
  return config
