"""Image-quality metrics for colorization, in pure jax.numpy.

Used by the trainer's evaluation step and by the evaluate command. Every metric
takes float images in [0, 1] with shape [B, H, W, 3] (NHWC) and returns one
value per image, shape [B], so the caller can mask padded examples before
averaging. All of them are jit-compatible and have finite gradients everywhere
on [0, 1], black and constant images included.

Inputs of lower precision (bfloat16/float16 from mixed-precision models) are
computed and returned in float32; float64 inputs stay float64 so gradients can
be checked numerically.
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Array = Any

# Exact matmuls/convs: on GPU the default precision may use TF32, which moves
# SSIM and Lab values by ~1e-3 and makes eval numbers depend on the hardware.
_HIGHEST = jax.lax.Precision.HIGHEST

# MSE floor: identical images give 10 * log10(max_val**2 / 1e-10) (100 dB at
# max_val=1) instead of inf, so averages over a batch stay finite.
_PSNR_MIN_MSE = 1e-10

# sRGB (IEC 61966-2-1) linear RGB -> XYZ, D65 white point.
_RGB_TO_XYZ = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ]
)
# D65 reference white; these are the row sums above, so white maps to a=b=0.
_D65_WHITE = np.array([0.95047, 1.0, 1.08883])
_LAB_DELTA = 6.0 / 29.0

# Added inside the colourfulness square roots (units of 0..255 squared) so the
# gradient at zero variance / zero mean is finite. It is also subtracted
# outside so a gray image scores exactly 0.
_COLOURFULNESS_EPS = 1e-6


def _as_float(x: Array) -> jax.Array:
  """Returns `x` as a float array of at least float32 precision."""
  x = jnp.asarray(x)
  dtype = jnp.promote_types(x.dtype, jnp.float32)
  return x.astype(dtype)


def _check_images(name: str, *images: Array) -> None:
  """Raises ValueError unless all images are [B, H, W, C] of one shape."""
  for image in images:
    if image.ndim != 4:
      raise ValueError(
          f"{name} expects images of shape [B, H, W, C], got {image.shape}."
      )
  if any(image.shape != images[0].shape for image in images[1:]):
    raise ValueError(
        f"{name} expects images of equal shape, got "
        f"{[image.shape for image in images]}."
    )


def psnr(pred: Array, target: Array, max_val: float = 1.0) -> jax.Array:
  """Peak signal-to-noise ratio per image, in dB.

  Args:
    pred: Images [B, H, W, C] in [0, max_val].
    target: Images of the same shape as `pred`.
    max_val: Dynamic range of the images.

  Returns:
    Array [B]. Identical images give a finite cap (100 dB at max_val=1)
    because the MSE is clamped at 1e-10.
  """
  pred, target = _as_float(pred), _as_float(target)
  _check_images("psnr", pred, target)
  mse = jnp.mean(jnp.square(pred - target), axis=(1, 2, 3))
  mse = jnp.maximum(mse, _PSNR_MIN_MSE)
  return 10.0 * jnp.log10(jnp.square(max_val) / mse)


def _gaussian_kernel_1d(size: int, sigma: float, dtype) -> jax.Array:
  """Normalised 1-D Gaussian taps, centred on the middle of `size` taps."""
  coords = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
  taps = np.exp(-0.5 * np.square(coords / sigma))
  return jnp.asarray(taps / taps.sum(), dtype=dtype)


def _gaussian_filter_valid(x: jax.Array, taps: jax.Array) -> jax.Array:
  """Depthwise 'VALID' Gaussian blur of NHWC `x`, as two 1-D passes.

  The 2-D Gaussian is the outer product of the 1-D one (tf.image.ssim builds
  the same kernel with a softmax), so two passes give the same result at
  2k instead of k^2 multiplies per pixel.
  """
  channels = x.shape[-1]
  size = taps.shape[0]
  dimension_numbers = ("NHWC", "HWIO", "NHWC")
  # Depthwise: one group per channel, kernel input dim 1.
  kernel_h = jnp.broadcast_to(
      taps.reshape(size, 1, 1, 1), (size, 1, 1, channels)
  )
  kernel_w = jnp.broadcast_to(
      taps.reshape(1, size, 1, 1), (1, size, 1, channels)
  )
  for kernel in (kernel_h, kernel_w):
    x = jax.lax.conv_general_dilated(
        x,
        kernel,
        window_strides=(1, 1),
        padding="VALID",
        dimension_numbers=dimension_numbers,
        feature_group_count=channels,
        precision=_HIGHEST,
    )
  return x


def ssim(
    pred: Array,
    target: Array,
    max_val: float = 1.0,
    filter_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> jax.Array:
  """Structural similarity (Wang et al. 2004) per image.

  Gaussian-window SSIM computed on each channel over the valid (unpadded)
  window positions, averaged over positions and then over channels. Matches
  `tf.image.ssim` with the same arguments.

  Args:
    pred: Images [B, H, W, C] in [0, max_val].
    target: Images of the same shape as `pred`.
    max_val: Dynamic range of the images.
    filter_size: Gaussian window size. When the image is smaller, the window
      shrinks to the image's smaller side (made odd) instead of failing, as
      `tf.image.ssim` would; the result then equals `tf.image.ssim` called with
      that smaller `filter_size`.
    sigma: Standard deviation of the Gaussian window.
    k1: Luminance stabiliser, c1 = (k1 * max_val)**2.
    k2: Contrast stabiliser, c2 = (k2 * max_val)**2.

  Returns:
    Array [B] in [-1, 1]; 1 for identical images.
  """
  pred, target = _as_float(pred), _as_float(target)
  _check_images("ssim", pred, target)
  _, height, width, channels = pred.shape
  size = min(filter_size, height, width)
  if size < filter_size and size % 2 == 0:
    # An odd window keeps its centre on a pixel.
    size -= 1
  taps = _gaussian_kernel_1d(size, sigma, pred.dtype)

  # One blur call for the four local moments; the channel order is
  # [x, y, x*y, x^2 + y^2], each block `channels` wide.
  moments = jnp.concatenate(
      [pred, target, pred * target, jnp.square(pred) + jnp.square(target)],
      axis=-1,
  )
  moments = _gaussian_filter_valid(moments, taps)
  mu_x, mu_y, e_xy, e_xx_yy = jnp.split(moments, 4, axis=-1)

  c1 = jnp.square(k1 * max_val)
  c2 = jnp.square(k2 * max_val)
  # Same algebra as tf.image.ssim (biased covariance, no compensation), so the
  # two agree to rounding. c1, c2 > 0 keep both ratios finite for black and
  # constant images, where every numerator and denominator term is 0.
  num0 = 2.0 * mu_x * mu_y
  den0 = jnp.square(mu_x) + jnp.square(mu_y)
  luminance = (num0 + c1) / (den0 + c1)
  contrast_structure = (2.0 * e_xy - num0 + c2) / (e_xx_yy - den0 + c2)
  ssim_map = luminance * contrast_structure
  return jnp.mean(ssim_map, axis=(1, 2, 3))


def _srgb_to_linear(rgb: jax.Array) -> jax.Array:
  """Inverse sRGB companding, with finite gradients for every input."""
  threshold = 0.04045
  # The power branch only sees inputs above the threshold: its value (and its
  # gradient, which jnp.where multiplies by 0) stays finite even where the
  # linear branch is taken, e.g. for slightly negative model outputs.
  safe = jnp.maximum(rgb, threshold)
  power = jnp.power((safe + 0.055) / 1.055, 2.4)
  return jnp.where(rgb > threshold, power, rgb / 12.92)


def _lab_f(t: jax.Array) -> jax.Array:
  """CIE f(t) with finite gradients for every input (black included)."""
  threshold = _LAB_DELTA**3
  # cbrt has an infinite slope at 0; feed it only values above the threshold
  # so the branch that jnp.where discards cannot turn 0 * inf into NaN.
  safe = jnp.maximum(t, threshold)
  return jnp.where(
      t > threshold,
      jnp.cbrt(safe),
      t / (3.0 * _LAB_DELTA**2) + 4.0 / 29.0,
  )


def rgb_to_lab(rgb: Array) -> jax.Array:
  """Converts sRGB in [0, 1] to CIE L*a*b* (D65, 2 degree observer).

  Args:
    rgb: Array [..., 3] of sRGB values in [0, 1].

  Returns:
    Array [..., 3] of (L, a, b): L in [0, 100], a and b within about
    +-110 for sRGB inputs. White is (100, 0, 0), black (0, 0, 0).
  """
  rgb = _as_float(rgb)
  if rgb.shape[-1] != 3:
    raise ValueError(f"rgb_to_lab expects [..., 3], got {rgb.shape}.")
  linear = _srgb_to_linear(rgb)
  matrix = jnp.asarray(_RGB_TO_XYZ, dtype=rgb.dtype)
  xyz = jnp.einsum("...c,dc->...d", linear, matrix, precision=_HIGHEST)
  xyz = xyz / jnp.asarray(_D65_WHITE, dtype=rgb.dtype)
  fx, fy, fz = jnp.moveaxis(_lab_f(xyz), -1, 0)
  lightness = 116.0 * fy - 16.0
  a = 500.0 * (fx - fy)
  b = 200.0 * (fy - fz)
  return jnp.stack([lightness, a, b], axis=-1)


def lab_l1(pred: Array, target: Array) -> jax.Array:
  """Mean absolute error in CIE Lab per image.

  Args:
    pred: sRGB images [B, H, W, 3] in [0, 1].
    target: Images of the same shape as `pred`.

  Returns:
    Array [B]: mean over pixels and the L, a, b channels of |pred - target|
    in Lab units (L in [0, 100]).
  """
  pred, target = _as_float(pred), _as_float(target)
  _check_images("lab_l1", pred, target)
  diff = jnp.abs(rgb_to_lab(pred) - rgb_to_lab(target))
  return jnp.mean(diff, axis=(1, 2, 3))


def opponent_axes(image: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The opponent colour axes of RGB [..., 3]: (R - G, (R + G) / 2 - B), each [...]."""
  red, green, blue = jnp.moveaxis(image, -1, 0)
  return red - green, 0.5 * (red + green) - blue


def colourfulness(image: Array) -> jax.Array:
  """Hasler & Suesstrunk (2003) colourfulness M per image.

  M = sqrt(std_rg^2 + std_yb^2) + 0.3 sqrt(mean_rg^2 + mean_yb^2), with
  rg = R - G and yb = (R + G) / 2 - B on the 0..255 scale and population
  (ddof=0) statistics over all pixels of the image.

  Args:
    image: sRGB images [B, H, W, 3] in [0, 1].

  Returns:
    Array [B]: 0 for gray images, up to about 300 otherwise (the paper rates
    M = 109 "extremely colourful").
  """
  image = _as_float(image)
  _check_images("colourfulness", image)
  if image.shape[-1] != 3:
    raise ValueError(f"colourfulness expects 3 channels, got {image.shape}.")
  rg, yb = opponent_axes(255.0 * image)
  axes = (1, 2)
  mean_rg, mean_yb = jnp.mean(rg, axis=axes), jnp.mean(yb, axis=axes)
  var_rg = jnp.mean(jnp.square(rg - mean_rg[:, None, None]), axis=axes)
  var_yb = jnp.mean(jnp.square(yb - mean_yb[:, None, None]), axis=axes)
  eps = _COLOURFULNESS_EPS
  sqrt_eps = np.sqrt(eps)
  std_root = jnp.sqrt(var_rg + var_yb + eps) - sqrt_eps
  mean_sq = jnp.square(mean_rg) + jnp.square(mean_yb)
  mean_root = jnp.sqrt(mean_sq + eps) - sqrt_eps
  return std_root + 0.3 * mean_root


def to_unit(x: Array) -> jax.Array:
  """Maps model space [-1, 1] to [0, 1], clipping values outside."""
  x = _as_float(x)
  return jnp.clip((x + 1.0) * 0.5, 0.0, 1.0)
