"""Line-art extractors: make the model's input from a colour illustration.

Two extractors with different looks, so a model does not learn one extractor's quirks:

* `xdog`: sharpened difference of Gaussians with a hard threshold (Winnemoeller et al.
  2012): clean, binary, inked-looking lines.
* `dilation_difference`: the difference between the image and its grey dilation: soft,
  pencil-like lines whose darkness follows the local contrast.

They are TensorFlow ops so that they run inside `tf.data` map functions; every random choice
(`random_lineart`) is stateless, keyed by an explicit seed, so a pipeline is reproducible bit
for bit. Images are float32 [H, W, 3] RGB in [0, 1]; line art is float32 [H, W, 1] in [0, 1]
with 1 = paper and 0 = ink.
"""

import math
from typing import Sequence, Tuple, Union

import numpy as np

from mangacolor_jax.input_pipeline import config_check
from mangacolor_jax.input_pipeline.tf_cpu import tf

EXTRACTORS = config_check.EXTRACTORS

Float = Union[float, tf.Tensor]


def _gray(image: tf.Tensor) -> tf.Tensor:
  """ITU-R 601 luma of an RGB image, [H, W, 1]."""
  return tf.image.rgb_to_grayscale(tf.convert_to_tensor(image, tf.float32))


def _gaussian_kernels(sigmas: Sequence[Float], radius: int) -> tf.Tensor:
  """Normalised 1-D Gaussian kernels, one column per sigma: [2 * radius + 1, len(sigmas)]."""
  x = tf.range(-radius, radius + 1, dtype=tf.float32)[:, None]
  sigma = tf.stack([tf.cast(s, tf.float32) for s in sigmas])[None, :]
  k = tf.exp(-0.5 * tf.square(x / sigma))
  return k / tf.reduce_sum(k, axis=0, keepdims=True)


def _blur_pair(gray: tf.Tensor, sigma: Float, k: float, radius: int) -> Tuple[tf.Tensor,
                                                                             tf.Tensor]:
  """G_sigma * gray and G_{k sigma} * gray with one separable pass, reflect padding."""
  kernels = _gaussian_kernels([sigma, k * tf.cast(sigma, tf.float32)], radius)
  # Reflect padding must be smaller than the side: on a side not longer than the radius
  # (a large sigma on a tiny image) the pad and the kernel are both cut short.
  h, w = tf.shape(gray)[0], tf.shape(gray)[1]
  pad_y = tf.minimum(radius, h - 1)
  pad_x = tf.minimum(radius, w - 1)
  x = tf.pad(gray[None], [[0, 0], [pad_y, pad_y], [pad_x, pad_x], [0, 0]], mode="REFLECT")
  # The horizontal pass makes both blurs at once (two output channels); the vertical pass
  # is depthwise so that each channel keeps its own sigma.
  kx = kernels[radius - pad_x:radius + pad_x + 1]
  ky = kernels[radius - pad_y:radius + pad_y + 1]
  x = tf.nn.conv2d(x, kx[None, :, None, :], strides=1, padding="VALID")
  x = tf.nn.depthwise_conv2d(x, ky[:, None, :, None], strides=[1, 1, 1, 1], padding="VALID")
  return x[0, :, :, 0:1], x[0, :, :, 1:2]


def _resize_by(image: tf.Tensor, factor: int, method: str) -> tf.Tensor:
  """Resizes [H, W, C] by an integer factor (> 1: up, with `method`)."""
  h, w = tf.shape(image)[0], tf.shape(image)[1]
  return tf.image.resize(image, [h * factor, w * factor], method=method)


def xdog(image: tf.Tensor,
         sigma: Float = 0.4,
         k: float = 4.5,
         p: float = 19.0,
         eps: float = 0.01,
         phi: float = 1e9,
         upscale: int = 2,
         max_sigma: float = 0.5) -> tf.Tensor:
  """Sharpened XDoG line art.

  Gray g in [0, 1] (bicubic-upscaled by `upscale` first: at 64 px the lines of small faces
  break up at native resolution), S = (1 + p) G_sigma * g - p G_{k sigma} * g, T = 1 where
  S >= eps and 1 + tanh(phi (S - eps)) elsewhere, clipped to [0, 1] and area-downsampled back
  to the input size (which anti-aliases the binary lines).

  `sigma` is in pixels of the upscaled image and `eps` is on the [0, 1] gray scale (S of a
  flat region equals its gray value, so only near-black areas fill with ink). The defaults
  (sigma 0.3-0.5 at upscale 2, k 4.5, p 19, eps 0.01, phi 1e9, i.e. a hard threshold) were
  checked by eye on the 64x64 anime faces: lines are whole and clean at sigma 0.3-0.5;
  taking sigma in input pixels instead (0.8-1.0 upscaled) thickens them and turns dark hair
  into blotches, and so does computing at native size (upscale 1). With phi this steep, eps
  anywhere in [-0.1, 0.1] changes little; what it must not be is an eps meant for [0, 255]
  images. Blurry, low-contrast JPEGs give sparse lines with some 8x8 block artefacts.

  Args:
    image: float32 [H, W, 3] RGB in [0, 1].
    sigma: Gaussian sigma in upscaled pixels; a python float or a scalar tensor.
    k: ratio of the two Gaussians' sigmas.
    p: sharpening strength.
    eps: threshold on S.
    phi: threshold steepness (1e9 is a step).
    upscale: integer factor to compute at; 1 computes at the input size.
    max_sigma: used to size the kernel when `sigma` is a tensor (its largest value).

  Returns:
    float32 [H, W, 1] in [0, 1], 1 = paper.
  """
  gray = _gray(image)
  if upscale > 1:
    gray = tf.clip_by_value(_resize_by(gray, upscale, "bicubic"), 0.0, 1.0)
  static_sigma = tf.get_static_value(tf.convert_to_tensor(sigma))
  sigma_for_size = float(static_sigma) if static_sigma is not None else max_sigma
  radius = max(1, int(math.ceil(3.0 * k * sigma_for_size)))
  g1, g2 = _blur_pair(gray, sigma, k, radius)
  s = (1.0 + p) * g1 - p * g2
  t = tf.where(s >= eps, tf.ones_like(s), 1.0 + tf.tanh(phi * (s - eps)))
  t = tf.clip_by_value(t, 0.0, 1.0)
  if upscale > 1:
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    t = tf.image.resize(t, [h, w], method="area")
  return t


def dilation_difference(image: tf.Tensor, gain: Float = 2.5, size: int = 3) -> tf.Tensor:
  """Morphological line art: 1 - clip(gain * |gray - dilate(gray)|, 0, 1).

  Dilation (a size x size max filter) brightens the dark side of every edge, so the
  difference is a line on that side whose darkness follows the contrast: soft, pencil-like
  strokes, a different look from XDoG's binary lines.

  Args:
    image: float32 [H, W, 3] RGB in [0, 1].
    gain: contrast gain; a python float or a scalar tensor.
    size: side of the square structuring element.

  Returns:
    float32 [H, W, 1] in [0, 1], 1 = paper.
  """
  gray = _gray(image)
  # SAME max pooling ignores the padding, which is the usual border rule for dilation.
  dilated = tf.nn.max_pool2d(gray[None], ksize=size, strides=1, padding="SAME")[0]
  d = tf.abs(gray - dilated) * tf.cast(gain, tf.float32)
  return 1.0 - tf.clip_by_value(d, 0.0, 1.0)


def random_lineart(image: tf.Tensor,
                   seed: tf.Tensor,
                   extractors: Sequence[str] = EXTRACTORS,
                   xdog_sigma: Tuple[float, float] = (0.3, 0.5),
                   dilate_gain: Tuple[float, float] = (2.0, 3.0),
                   upscale: int = 2) -> tf.Tensor:
  """Line art from an extractor chosen at random, with a jittered parameter.

  The extractor is uniform over `extractors` and its parameter (XDoG sigma or dilation
  gain) uniform over its range; both come from `tf.random.stateless_uniform` keyed by
  `seed`, and only the chosen extractor is computed (`tf.switch_case`).

  Args:
    image: float32 [H, W, 3] RGB in [0, 1].
    seed: int32/int64 tensor of shape [2].
    extractors: names from `EXTRACTORS`.
    xdog_sigma: (low, high) range of the XDoG sigma, in upscaled pixels.
    dilate_gain: (low, high) range of the dilation-difference gain.
    upscale: XDoG computation scale.

  Returns:
    float32 [H, W, 1] in [0, 1], 1 = paper.
  """
  extractors = tuple(extractors)
  choice, param = random_choice(seed, extractors, xdog_sigma, dilate_gain)
  image = tf.convert_to_tensor(image, tf.float32)

  def make_branch(name):
    if name == "xdog":
      return lambda: xdog(image, param, upscale=upscale, max_sigma=xdog_sigma[1])
    return lambda: dilation_difference(image, param)

  out = tf.switch_case(choice, [make_branch(name) for name in extractors])
  return tf.ensure_shape(out, image.shape[:-1] + [1])


def thicken(art: tf.Tensor, strength: tf.Tensor) -> tf.Tensor:
  """Heavier lines, as a broader pen draws them: `art` moved by `strength` in [0, 1]
  toward its 3x3 minimum (ink spreads one pixel each way). [H, W, 1] in [0, 1]."""
  spread = -tf.nn.max_pool2d(-art[None], 3, 1, "SAME")[0]
  return art + tf.cast(strength, tf.float32) * (spread - art)


def tone(art: tf.Tensor, gamma: tf.Tensor) -> tf.Tensor:
  """Lighter or darker grey levels, as other pencils and scans give: `art` ** `gamma`
  (> 1 darker, < 1 lighter; paper stays white, full ink black). [H, W, 1] in [0, 1]."""
  return tf.pow(art, tf.cast(gamma, tf.float32))


def random_choice(seed: tf.Tensor,
                  extractors: Sequence[str] = EXTRACTORS,
                  xdog_sigma: Tuple[float, float] = (0.3, 0.5),
                  dilate_gain: Tuple[float, float] = (2.0, 3.0)) -> Tuple[tf.Tensor,
                                                                          tf.Tensor]:
  """`random_lineart`'s draw: (index into `extractors`, the chosen extractor's parameter).

  The device path (`nn.lineart`) makes the line art of the same draw on the accelerator.
  """
  extractors = tuple(extractors)
  unknown = [e for e in extractors if e not in EXTRACTORS]
  if unknown or not extractors:
    raise ValueError(f"unknown line-art extractors {unknown} in {extractors}; "
                     f"valid: {EXTRACTORS}")
  u = tf.random.stateless_uniform([2], seed=seed, dtype=tf.float32)
  choice = tf.minimum(tf.cast(u[0] * len(extractors), tf.int32), len(extractors) - 1)
  ranges = [xdog_sigma if name == "xdog" else dilate_gain for name in extractors]
  # The span is taken in Python, as lo + (hi - lo) * u always was: the same float32 bits.
  lo = tf.gather(tf.constant([r[0] for r in ranges], tf.float32), choice)
  span = tf.gather(tf.constant([r[1] - r[0] for r in ranges], tf.float32), choice)
  return choice, lo + span * u[1]


EVAL_SIGMA = 0.4


def fixed_lineart(image: tf.Tensor, upscale: int = 2) -> tf.Tensor:
  """The evaluation extractor: XDoG at the middle of the default sigma range (0.4).

  Args:
    image: float32 [H, W, 3] RGB in [0, 1].
    upscale: XDoG computation scale.

  Returns:
    float32 [H, W, 1] in [0, 1], 1 = paper.
  """
  return xdog(image, EVAL_SIGMA, upscale=upscale)


def to_lineart_numpy(image: np.ndarray, upscale: int = 2) -> np.ndarray:
  """`fixed_lineart` of a uint8 image, run eagerly: for tools and notebooks.

  Args:
    image: uint8 [H, W, 3] RGB; [H, W] / [H, W, 1] gray and [H, W, 4] RGBA (composited
      on white) are accepted too.
    upscale: XDoG computation scale.

  Returns:
    float32 [H, W, 1] in [0, 1], 1 = paper.
  """
  x = np.asarray(image)
  if x.ndim == 2:
    x = x[..., None]
  x = x.astype(np.float32) / 255.0
  if x.shape[-1] == 4:
    x = x[..., :3] * x[..., 3:] + (1.0 - x[..., 3:])
  if x.shape[-1] == 1:
    x = np.repeat(x, 3, axis=-1)
  return fixed_lineart(tf.constant(x), upscale=upscale).numpy()
