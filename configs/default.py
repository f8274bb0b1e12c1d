r"""Default: learn one procedurally drawn character's colours from its line art (CPU).

The data is rendered on the fly (no files, no network): one character -- head, hair,
eyes, clothes -- in its own fixed palette, with black outlines, at a random pose, size and
position. Line art is extracted from each colour image (XDoG or dilation-difference, chosen at
random per sample), as for real illustrations.

Command:
  python -m mangacolor_jax.train --config configs/default.py --workdir runs/default

Hardware and expected result: a 2-core CPU, about 5 minutes (2,000 steps of batch 16 at
64x64; compilation, 5 evaluations and 4 diagnostic steps included). Validation PSNR
22.6 dB (SSIM 0.90), against 9.9 dB for the line art itself and 7.5 dB for the untrained
model; the samples under
runs/default/samples show the character in its own colours from step 500 on.
"""

import ml_collections


def get_config():
  """Returns the default configuration."""
  config = ml_collections.ConfigDict()
  # Root of every random source. -1 draws a fresh seed (logged and checkpointed).
  config.seed = 0
  config.batch_size = 16
  config.num_train_steps = 2000
  config.log_every_steps = 50
  config.eval_every_steps = 500
  config.checkpoint_every_steps = 500
  # Checkpoints kept: the latest plus the best `keep_best_checkpoints` by eval PSNR.
  config.keep_best_checkpoints = 1
  # Stop when eval PSNR has not improved by min_delta for `patience` evaluations (0: off).
  config.early_stopping_patience = 0
  config.early_stopping_min_delta = 0.0
  # TensorBoard diagnostics (histograms, gradient flow, update ratios...; 0: off). Every 500
  # steps they cost about 2% of a run's time. The bounds below only decide when the log
  # warns (mangacolor_jax/diagnostics.py).
  config.diagnostics_every_steps = 500
  config.diagnostics = ml_collections.ConfigDict()
  config.diagnostics.grad_norm_min = 1e-7  # a layer's gradient norm below: vanishing
  config.diagnostics.grad_norm_max = 1e3  # above: exploding
  config.diagnostics.grad_shrink_factor = 1e3  # output -> input layer RMS-gradient ratio
  config.diagnostics.update_ratio_min = 1e-4  # median |dW| / |W| per layer below: too slow
  config.diagnostics.update_ratio_max = 1e-2  # above: too fast (the series' ~1e-3 rule)
  config.diagnostics.dead_max = 0.5  # share of dead units in one activation layer
  # "net/activation layer" whose top-9 validation patches are drawn, for a few feature maps.
  config.diagnostics.patch_layers = ("gen/enc2_act", "disc/act2")
  config.diagnostics.patch_features = 4
  # Compute dtype; parameters, optimiser state and losses stay float32.
  config.dtype = "float32"
  # CPU (glibc): keep each training step's scratch buffer mapped for the next step instead
  # of the OS mapping it afresh (-9% per step at 256x256, -18% at 128; see
  # mangacolor_jax/runtime/host_memory.py). Process-wide: synchronous CPU dispatch and mallopt.
  config.cpu_reuse_step_memory = True
  # CPU: convolutions by Eigen, matrix products and reductions by YNNPACK (True: all by
  # YNNPACK, XLA's default; why and how much: mangacolor_jax/runtime/compile.py).
  config.cpu_ynnpack_convolutions = False

  config.data = ml_collections.ConfigDict()
  config.data.source = "synthetic"  # synthetic | folder | tfds
  config.data.image_dir = ""  # folder source: any folder of JPEG/PNG/WebP illustrations
  config.data.tfds_dir = ""  # tfds source: the --output folder of mangacolor_jax.data.prepare
  config.data.tfds_train_split = "train"
  config.data.tfds_eval_split = "validation"  # "test" for final numbers only
  # False: each record is read from disk when needed (host memory flat in the data set's
  # size); True: each split is read whole into host memory first (small sets).
  config.data.tfds_in_memory = False
  config.data.image_size = 64  # training crop height (and width unless image_width > 0)
  config.data.image_width = 0  # 0: square crops
  config.data.num_train = 4096  # synthetic source: images in the train split
  config.data.num_val = 256  # synthetic source: images in the validation split
  # folder source, training split: how broken files are found (input_pipeline/sources.py):
  # decode (every file once at start-up) | lazy (each when first read, from its first and
  # last bytes; for millions of files) | auto (decode up to 20,000 files, else lazy).
  config.data.file_check = "auto"
  config.data.val_fraction = 0.05  # folder source: share of files held out (fixed split)
  # folder source: share of files held out first as the test split (fixed, by a hash of the
  # file name), never read by training or validation; the quality protocol scores on it.
  config.data.test_fraction = 0.0
  config.data.max_val_images = 256  # cap on validation images per evaluation
  # Line-art extractors chosen at random per training sample, with jittered parameters.
  config.data.extractors = ("xdog", "dilate")
  # XDoG's sigma, in upscaled pixels. On the faces, (0.3, 0.6) colours heavier XDoG-like line
  # art much better (+0.95 dB at sigma 0.8) for -0.05 dB at 0.4 (docs/quality.md, a1_sigma06).
  config.data.xdog_sigma = (0.3, 0.5)
  config.data.dilate_gain = (2.0, 3.0)
  config.data.lineart_upscale = 2  # extract at 2x then downsample: lines stay whole
  # Where the line art is made: host (the input pipeline's CPU) | device (the accelerator,
  # next to the step: the CPU only decodes and augments; training.inputs).
  config.data.lineart_on = "host"
  # Augmentation (training only): random resized crop + flip; colour jitter of the target.
  config.data.augment = True
  config.data.crop_scale = (0.8, 1.0)
  config.data.flip = True
  config.data.max_rotation = 0.0  # degrees of random rotation (zoomed: no empty corners)
  config.data.color_jitter = 0.0  # 0 keeps the character's palette
  # Training line art moved by a random share in [0, line_weight] toward its 3x3 minimum:
  # heavier lines, as other pens draw them (0: off).
  config.data.line_weight = 0.0
  # Training line art's grey levels raised to a random power, log-uniform in
  # [exp(-line_tone), exp(line_tone)]: lighter and darker lines, as other pencils and scans
  # give (0: off; docs/quality.md, r1: 0.5 on the faces, +0.20 dB on thick XDoG for -0.08
  # on XDoG).
  config.data.line_tone = 0.0

  config.model = ml_collections.ConfigDict()
  # How the 4x4/2 convolutions of both networks are computed: conv | space_to_depth | auto,
  # the same function and parameters; auto is the fastest on a CPU (default step -5%,
  # anime_faces -12%).
  config.model.downsample = "auto"
  # The generator: the fields of nn.models.UNetGenerator.
  config.model.gen = ml_collections.ConfigDict()
  config.model.gen.features = 32  # first U-Net level width
  config.model.gen.max_features = 256
  config.model.gen.depth = 4  # downsamplings; image sides must be multiples of 2**depth
  # resize (nearest + conv) | transpose | subpixel | phase (transpose's function and
  # weights without input dilation, nn.resampling.Upsample)
  config.model.gen.upsample = "resize"
  config.model.gen.norm = "batch"  # batch | instance | layer | none
  config.model.gen.activation = "relu"  # relu | leaky_relu | prelu (decoder)
  config.model.gen.dropout = 0.0  # decoder dropout rate
  # With hints: every encoder level also sees the hints pooled to its resolution.
  config.model.gen.hint_pyramid = False
  # > 0: a full-resolution head of this width reads the decoder's output beside the input
  # (line art, hints) before the last conv to RGB (0: pix2pix's outermost level).
  config.model.gen.head_features = 0
  # Residual 3x3 layers at each level's resolution, after every encoder level but the
  # innermost and every decoder level but the outermost (0: one convolution a level).
  config.model.gen.res_blocks = 0
  # Decoder levels (1 to depth - 1; level i works at 1/2**i of the image's side) followed
  # by a residual self-attention layer over all their positions (memory grows with the
  # square of their number: keep to the coarse levels).
  config.model.gen.attention_levels = ()
  # Decoder levels (0 to depth - 1; 0 makes the full-resolution output) that upsample by
  # sub-pixel convolution whatever gen.upsample says.
  config.model.gen.subpixel_levels = ()
  # The discriminator: the fields of nn.models.PatchDiscriminator.
  config.model.disc = ml_collections.ConfigDict()
  config.model.disc.features = 32
  config.model.disc.layers = 3  # PatchGAN: 3 gives a 70x70 receptive field
  config.model.disc.norm = "batch"  # batch | instance | layer | none
  # Parameter-path prefixes kept fixed (zero updates), e.g. ("gen/enc0_conv", "disc/conv0").
  config.model.freeze = ()
  # Exponential moving average of the generator's weights, kept in the state and used for
  # evaluation and inference when > 0 (e.g. 0.999); 0 keeps none.
  config.model.ema_decay = 0.0
  # With an average and a BatchNorm G: before each evaluation and checkpoint, G's BatchNorm
  # statistics are measured under the averaged weights on this many fixed training batches
  # (the last iterate's running statistics do not fit them); 0 keeps the running ones.
  config.model.ema_bn_batches = 50

  config.loss = ml_collections.ConfigDict()
  config.loss.gan = "lsgan"  # vanilla | lsgan | hinge | none (plain reconstruction)
  config.loss.gan_weight = 1.0
  config.loss.gradient_penalty = "none"  # none | dragan | r1
  config.loss.gp_weight = 10.0
  config.loss.l1_weight = 100.0
  config.loss.mse_weight = 0.0
  # L1 between output and target per-pixel chroma (saturation, blind to hue): pays for
  # the grey that L1 alone settles on when a colour is in doubt. 0 turns it off; on the
  # faces it tinted everything mauve rather than commit to hues (docs/quality.md, c1, c2).
  config.loss.chroma_weight = 0.0
  config.loss.l2_weight = 0.0  # L2 penalty on the generator's kernels

  config.optim = ml_collections.ConfigDict()
  config.optim.g_lr = 2e-4
  config.optim.d_lr = 2e-4
  config.optim.b1 = 0.5
  config.optim.b2 = 0.999
  # constant | linear_decay (to 0 at the end) | exponential (x decay_rate every
  # decay_every steps) | cosine
  config.optim.schedule = "constant"
  config.optim.decay_rate = 0.95
  config.optim.decay_every = 1000
  config.optim.warmup_steps = 0
  config.optim.grad_clip = 0.0  # global-norm clip; 0 turns it off

  config.hints = ml_collections.ConfigDict()
  config.hints.mode = "none"  # none | sparse (pixels) | strokes (as a person paints)
  config.hints.max_points = 32  # sparse mode: U[0, 32] hint pixels per image, on average
  config.hints.drop_prob = 0.5  # share of training images given no hint at all
  config.hints.max_strokes = 30  # strokes mode: strokes per image at most (log-uniform)
  config.hints.stroke_length = (0.05, 0.25)  # share of the shorter side
  config.hints.stroke_width = (1.0, 3.0)  # pixels at 64 px, scaled with the image
  config.hints.region_tolerance = 0.25  # a stroke covers colours this close to its start's
  # strokes mode: share of training images whose strokes start where G's own colouring of
  # them without hints is wrong (as a person paints, and the quality protocol's guided
  # strokes); it costs an extra forward pass of G a step. The others' start anywhere on
  # paper (0: all of them).
  config.hints.guided_share = 0.0

  config.eval = ml_collections.ConfigDict()
  config.eval.num_samples = 8  # images in the sample grids
  return config
