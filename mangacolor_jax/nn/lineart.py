"""Line art on the accelerator: the extractors of `input_pipeline.lineart` as pure JAX.

With `config.data.lineart_on = "device"` the input pipeline only decodes, crops, flips and
rotates; each example carries its extractor (`kind`, an index into `EXTRACTORS`) and that
extractor's parameter (XDoG sigma or dilation gain), drawn on the host exactly as the CPU
path draws them, and `lineart` makes the line art of the whole batch inside a jitted
function next to the step. Both paths compute the same thing with the same ops (ITU-R 601
gray, a bicubic 2x upscale, a reflect-padded separable Gaussian pair with the same kernel
radius, the hard threshold, an area downsample; a 3x3 max filter for dilation): they agree
to float rounding, except where XDoG's hard threshold falls between the two roundings
(tests/nn/test_lineart.py measures both).

Images are float32 [B, H, W, 3] RGB in [0, 1]; line art is float32 [B, H, W, 1] in [0, 1],
1 = paper.
"""

import math

import jax
import jax.numpy as jnp

EXTRACTORS = ("xdog", "dilate")  # the index is an example's `kind`
XDOG_K, XDOG_P, XDOG_EPS = 4.5, 19.0, 0.01
EVAL_SIGMA = 0.4  # the evaluation's fixed XDoG (`input_pipeline.lineart.fixed_lineart`)
_LUMA = (0.2989, 0.5870, 0.1140)  # tf.image.rgb_to_grayscale's weights


def kernel_radius(max_sigma: float) -> int:
  """Half-width of the Gaussian pair's kernels, as the CPU path sizes them."""
  return max(1, int(math.ceil(3.0 * XDOG_K * max_sigma)))


def gray(image: jax.Array) -> jax.Array:
  """[B, H, W, 3] -> [B, H, W, 1] luma."""
  return jnp.sum(image * jnp.asarray(_LUMA, image.dtype), axis=-1, keepdims=True)


def _cubic_weights(frac: float):
  """Keys' cubic convolution weights (a = -0.5) of the 4 taps around an offset `frac`."""
  a = -0.5

  def w(d):
    d = abs(d)
    if d <= 1:
      return (a + 2) * d**3 - (a + 3) * d**2 + 1
    return a * d**3 - 5 * a * d**2 + 8 * a * d - 4 * a

  return [w(frac + 1), w(frac), w(1 - frac), w(2 - frac)]


def _upscale2_axis(x: jax.Array, axis: int) -> jax.Array:
  """Bicubic 2x along one axis, half-pixel centres, TF's edge rule: taps outside the
  image get no weight and the others are renormalised.

  Output 2i samples input i - 1/4 and output 2i + 1 samples i + 1/4, so each parity is a
  fixed 4-tap filter over the input padded by 2 zeros on each side.
  """
  n = x.shape[axis]
  pad = [(0, 0)] * x.ndim
  pad[axis] = (2, 2)
  xp = jnp.pad(x, pad)
  inside = jnp.pad(jnp.ones((n,), x.dtype), (2, 2))
  shape = [1] * x.ndim
  shape[axis] = n

  def parity(frac, first):
    taps = list(zip(_cubic_weights(frac), range(first, first + 4)))
    total = sum(c * jax.lax.slice_in_dim(xp, j, j + n, axis=axis) for c, j in taps)
    norm = sum(c * inside[j:j + n] for c, j in taps)
    return total / norm.reshape(shape)

  # even outputs: taps i-2 .. i+1, at 0.75 past i-1; odd outputs: taps i-1 .. i+2, 0.25.
  out = jnp.stack([parity(0.75, 0), parity(0.25, 1)], axis=axis + 1)
  shape = list(x.shape)
  shape[axis] = 2 * n
  return out.reshape(shape)


def upscale2(x: jax.Array) -> jax.Array:
  """[B, H, W, C] -> [B, 2H, 2W, C], bicubic like `tf.image.resize(..., "bicubic")`."""
  return _upscale2_axis(_upscale2_axis(x, 1), 2)


def _blur_axis(x: jax.Array, weights: jax.Array, radius: int, axis: int) -> jax.Array:
  """Per-example 1-D filter along `axis` of [B, H, W, 1]: weights [B, 2r + 1], reflect
  padding (cut short, with the kernel, on a side not longer than the radius)."""
  n = x.shape[axis]
  r = min(radius, n - 1)
  pad = [(0, 0)] * x.ndim
  pad[axis] = (r, r)
  xp = jnp.pad(x, pad, mode="reflect")
  w = weights[:, radius - r:radius + r + 1]
  out = 0.0
  for j in range(2 * r + 1):
    out = out + w[:, j, None, None, None] * jax.lax.slice_in_dim(xp, j, j + n, axis=axis)
  return out


def _gaussian(sigma: jax.Array, radius: int) -> jax.Array:
  """Normalised Gaussian kernels [B, 2r + 1] of per-example sigmas [B]."""
  x = jnp.arange(-radius, radius + 1, dtype=jnp.float32)[None, :]
  k = jnp.exp(-0.5 * jnp.square(x / sigma[:, None]))
  return k / jnp.sum(k, axis=1, keepdims=True)


def xdog(image: jax.Array, sigma: jax.Array, radius: int, upscale: int = 2) -> jax.Array:
  """Sharpened XDoG of a batch (`input_pipeline.lineart.xdog`, per-example sigma [B]).

  `radius` is the kernels' half-width: `kernel_radius` of the largest sigma the CPU path
  would size them for (the range's top in training, the fixed sigma at evaluation).
  """
  g = gray(image)
  if upscale == 2:
    g = jnp.clip(upscale2(g), 0.0, 1.0)
  elif upscale != 1:
    raise ValueError(f"config.data.lineart_upscale={upscale}: the device path computes at "
                     "1x or 2x")
  sigma = sigma.astype(jnp.float32)
  blur = lambda s: _blur_axis(_blur_axis(g, _gaussian(s, radius), radius, 2),
                              _gaussian(s, radius), radius, 1)
  s = (1.0 + XDOG_P) * blur(sigma) - XDOG_P * blur(XDOG_K * sigma)
  t = jnp.clip(jnp.where(s >= XDOG_EPS, 1.0, 1.0 + jnp.tanh(1e9 * (s - XDOG_EPS))), 0.0, 1.0)
  if upscale == 2:
    b, h, w, c = t.shape
    t = t.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))
  return t


def dilation_difference(image: jax.Array, gain: jax.Array, size: int = 3) -> jax.Array:
  """1 - clip(gain * |gray - dilate(gray)|, 0, 1), per-example gain [B]."""
  g = gray(image)
  lo, hi = (size - 1) // 2, size // 2
  dilated = jax.lax.reduce_window(g, -jnp.inf, jax.lax.max, (1, size, size, 1),
                                  (1, 1, 1, 1), ((0, 0), (lo, hi), (lo, hi), (0, 0)))
  d = jnp.abs(g - dilated) * gain.astype(jnp.float32)[:, None, None, None]
  return 1.0 - jnp.clip(d, 0.0, 1.0)


def thicken(art: jax.Array, strength: jax.Array) -> jax.Array:
  """`input_pipeline.lineart.thicken` on a batch: [B, H, W, 1], per-example strength [B]."""
  spread = jax.lax.reduce_window(art, jnp.inf, jax.lax.min, (1, 3, 3, 1), (1, 1, 1, 1),
                                 ((0, 0), (1, 1), (1, 1), (0, 0)))
  return art + strength.astype(jnp.float32)[:, None, None, None] * (spread - art)


def tone(art: jax.Array, gamma: jax.Array) -> jax.Array:
  """`input_pipeline.lineart.tone` on a batch: [B, H, W, 1], per-example gamma [B]."""
  return art ** gamma.astype(jnp.float32)[:, None, None, None]


def lineart(target: jax.Array, kind: jax.Array, param: jax.Array, max_sigma: float,
            upscale: int = 2, weight: jax.Array | None = None,
            gamma: jax.Array | None = None) -> jax.Array:
  """Each example's line art by its extractor: [B, H, W, 3] in [-1, 1] -> [B, H, W, 1]
  in [-1, 1] (-1 = ink), as the CPU path feeds the model.

  Args:
    target: the colour batch, in [-1, 1].
    kind: int [B], index into `EXTRACTORS`.
    param: float [B], the XDoG sigma or dilation gain of each example.
    max_sigma: the largest XDoG sigma the batch may hold (sizes the kernels).
    upscale: XDoG computation scale (`config.data.lineart_upscale`).
    weight: optional float [B], each example's `thicken` strength.
    gamma: optional float [B], each example's `tone` power (after `thicken`).
  """
  image = (target.astype(jnp.float32) + 1.0) * 0.5
  is_xdog = kind == EXTRACTORS.index("xdog")
  sigma = jnp.where(is_xdog, param, max_sigma)  # every sigma a valid one
  art = jnp.where(is_xdog[:, None, None, None],
                  xdog(image, sigma, kernel_radius(max_sigma), upscale),
                  dilation_difference(image, jnp.where(is_xdog, 0.0, param)))
  if weight is not None:
    art = thicken(art, weight)
  if gamma is not None:
    art = tone(art, gamma)
  return art * 2.0 - 1.0
