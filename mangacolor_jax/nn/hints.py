"""Colour hints: simulated from the target in training and evaluation, painted by a user at
inference.

A hint tensor has 4 channels: the hint colour in [-1, 1] (zero where there is no hint) and a
0/1 mask. A user paints strokes (`hints_from_rgba` reads them from an RGBA image); training
simulates them the same way (`stroke_hints`: short strokes and dabs of one region's mean
colour, never on the line art), or, in the older `sparse` mode, isolated pixels of the
target (`sample_hints`). Training gives a share of the images no hint at all: the series'
denoising constraint, which teaches the model to colour with few or no hints.
"""

import jax
import jax.numpy as jnp
import numpy as np


MODES = ("none", "sparse", "strokes")


def validate_hints_config(hints_config) -> None:
  """Raises ValueError naming the field of `config.hints` that cannot work."""
  if hints_config.mode not in MODES:
    raise ValueError(f"config.hints.mode={hints_config.mode!r} is not one of {MODES}")
  if not 0.0 <= hints_config.drop_prob <= 1.0:
    raise ValueError(f"config.hints.drop_prob={hints_config.drop_prob} must be in [0, 1]")
  if not 0.0 <= hints_config.guided_share <= 1.0:
    raise ValueError(f"config.hints.guided_share={hints_config.guided_share} must be "
                     "in [0, 1]")
  if int(hints_config.max_strokes) < 1:
    raise ValueError(f"config.hints.max_strokes={hints_config.max_strokes} must be >= 1")
  for field, low in (("stroke_length", 0.0), ("stroke_width", 0.5)):
    lo, hi = hints_config[field]
    if not low < lo <= hi:
      raise ValueError(f"config.hints.{field}={tuple(hints_config[field])} must be a "
                       f"(low, high) pair with {low} < low <= high")


def training_hints(rng: jax.Array, hints_config, target: jax.Array, lineart: jax.Array,
                   plain: jax.Array | None = None) -> jax.Array:
  """The hints of one training batch, as `hints_config.mode` draws them.

  With `hints_config.guided_share` > 0 and `plain`, G's own colouring of the batch without
  hints ([B, H, W, 3]), that share of the images get their strokes where `plain` is wrong
  (`error_weight`, as the quality protocol's guided strokes and a person place them); the
  others', and all without `plain`, start anywhere on paper.
  """
  if hints_config.mode == "sparse":
    return sample_hints(rng, target, hints_config.max_points, hints_config.drop_prob)
  count_rng, stroke_rng = jax.random.split(rng)
  counts = stroke_counts(count_rng, target.shape[0], hints_config.max_strokes,
                         hints_config.drop_prob)
  start_weight = None
  if hints_config.guided_share > 0 and plain is not None:
    picked = (jax.random.uniform(jax.random.fold_in(rng, 1), (target.shape[0],))
              < hints_config.guided_share)
    start_weight = jnp.where(picked[:, None, None], error_weight(plain, target), 1.0)
  return stroke_hints(stroke_rng, target, lineart, counts, hints_config, start_weight)


def error_weight(plain: jax.Array, target: jax.Array) -> jax.Array:
  """[B, H, W]: where a colouring `plain` is wrong, as a person sees it: the square of the
  mean over channels of |plain - target|, averaged over each pixel's 5x5 neighbourhood (the
  weight the quality protocol's guided strokes start by)."""
  error = jnp.mean(jnp.abs(plain - target), axis=-1)
  window = jax.lax.reduce_window(error, 0.0, jax.lax.add, (1, 5, 5), (1, 1, 1), "SAME")
  return jnp.square(window / _window_counts(error.shape[1:], 5))


def _window_counts(hw: tuple[int, int], size: int) -> np.ndarray:
  """[H, W]: the pixels inside each SAME `size` x `size` window, counted here: XLA would fold a
  window sum over a constant of ones at compile time, slowly and with a logged alarm."""
  r = size // 2
  rows, cols = (np.minimum(np.arange(n) + r, n - 1) - np.maximum(np.arange(n) - r, 0) + 1
                for n in hw)
  return np.outer(rows, cols).astype(np.float32)


# Strokes per image in the evaluation's "with hints" metrics (training evaluation and the
# evaluate command); the quality protocol scores 1, 3, 10 and 30.
EVAL_STROKES = 10


def evaluation_hints(rng: jax.Array, hints_config, target: jax.Array,
                     lineart: jax.Array) -> jax.Array:
  """Hints for every image of an evaluation batch (none dropped), as a user who gives
  some would: `max_points` sparse pixels, or `EVAL_STROKES` strokes."""
  if hints_config.mode == "sparse":
    return sample_hints(rng, target, hints_config.max_points, 0.0)
  counts = jnp.full((target.shape[0],), EVAL_STROKES, jnp.int32)
  return stroke_hints(rng, target, lineart, counts, hints_config)


def stroke_counts(rng: jax.Array, batch: int, max_strokes: int,
                  drop_prob: float) -> jax.Array:
  """Strokes per image: none with probability `drop_prob`, else log-uniform over
  [1, max_strokes] (as many images with one to three strokes as with ten to thirty)."""
  drop_rng, count_rng = jax.random.split(rng)
  u = jax.random.uniform(count_rng, (batch,))
  counts = jnp.clip(jnp.floor(jnp.exp(u * jnp.log(max_strokes + 1.0))), 1, max_strokes)
  keep = jax.random.uniform(drop_rng, (batch,)) >= drop_prob
  return jnp.where(keep, counts, 0).astype(jnp.int32)


def _segment_distance(yy, xx, ay, ax, by, bx):
  """Distance of each pixel (yy, xx) to the segment from (ay, ax) to (by, bx)."""
  vy, vx = by - ay, bx - ax
  t = ((yy - ay) * vy + (xx - ax) * vx) / jnp.maximum(vy * vy + vx * vx, 1e-6)
  t = jnp.clip(t, 0.0, 1.0)
  return jnp.hypot(yy - (ay + t * vy), xx - (ax + t * vx))


def stroke_hints(rng: jax.Array, target: jax.Array, lineart: jax.Array, counts: jax.Array,
                 hints_config, start_weight: jax.Array | None = None) -> jax.Array:
  """Hints as a person paints them: `counts[b]` strokes on image b, [B, H, W, 4].

  Each stroke starts on paper (line art > 0, never on a line), runs a random length
  (`stroke_length`, a share of the shorter side) in a random direction with a random bend,
  at a random width (`stroke_width`, pixels at 64 px, scaled with the image), and covers
  only the pixels of the region it started in (colours within `region_tolerance` of the
  start's): a person colours inside the lines. It carries the mean colour of the target
  under it, a region's colour, not a raw pixel's. Where strokes overlap their colours mix.

  Args:
    rng: key of the strokes' places and shapes.
    target: [B, H, W, 3] in [-1, 1].
    lineart: [B, H, W, 1] in [-1, 1] (1 = paper).
    counts: int [B], strokes per image (at most `hints_config.max_strokes`).
    hints_config: `config.hints`.
    start_weight: [B, H, W] >= 0, or None: where strokes start, in proportion (on paper
      only); None starts them anywhere on paper with equal chance.

  Returns:
    The hint tensor (colour in [-1, 1] where painted, and the 0/1 mask).
  """
  b, h, w, _ = target.shape
  s = int(hints_config.max_strokes)
  side = float(min(h, w))
  rngs = jax.random.split(rng, 5)
  paper = lineart[..., 0] > 0
  weight = 0.0 if start_weight is None else jnp.log(start_weight + 1e-6)
  logits = jnp.where(paper, weight, -1e9).reshape(b, 1, h * w)
  start = jax.random.categorical(rngs[0], logits, shape=(b, s))
  y0, x0 = (start // w).astype(jnp.float32), (start % w).astype(jnp.float32)
  angle = jax.random.uniform(rngs[1], (b, s), maxval=2 * jnp.pi)
  length = jax.random.uniform(rngs[2], (b, s), minval=hints_config.stroke_length[0],
                              maxval=hints_config.stroke_length[1]) * side
  bend = jax.random.uniform(rngs[3], (b, s), minval=-0.3, maxval=0.3) * length
  width = jax.random.uniform(rngs[4], (b, s), minval=hints_config.stroke_width[0],
                             maxval=hints_config.stroke_width[1]) * side / 64.0
  dy, dx = jnp.sin(angle), jnp.cos(angle)
  y2, x2 = y0 + length * dy, x0 + length * dx
  ym, xm = (y0 + y2) / 2 + bend * dx, (x0 + x2) / 2 - bend * dy
  at = lambda v: v[:, :, None, None]
  yy = jnp.arange(h, dtype=jnp.float32)[:, None]
  xx = jnp.arange(w, dtype=jnp.float32)[None, :]
  dist = jnp.minimum(_segment_distance(yy, xx, at(y0), at(x0), at(ym), at(xm)),
                     _segment_distance(yy, xx, at(ym), at(xm), at(y2), at(x2)))
  start_colour = jnp.take_along_axis(target.reshape(b, h * w, 3), start[..., None], axis=1)
  region = jnp.max(jnp.abs(target[:, None] - start_colour[:, :, None, None, :]), axis=-1)
  active = jnp.arange(s)[None, :] < counts[:, None]
  masks = ((dist <= width[:, :, None, None] / 2) & (region <= 2 * hints_config.region_tolerance)
           & paper[:, None] & active[:, :, None, None]).astype(target.dtype)  # [B, S, H, W]
  area = jnp.maximum(jnp.sum(masks, axis=(2, 3)), 1.0)
  colours = jnp.einsum("bshw,bhwc->bsc", masks, target) / area[..., None]
  cover = jnp.sum(masks, axis=1)[..., None]
  colour = jnp.einsum("bshw,bsc->bhwc", masks, colours) / jnp.maximum(cover, 1.0)
  mask = (cover > 0).astype(target.dtype)
  return jnp.concatenate([colour * mask, mask], axis=-1)


def sample_hints(rng: jax.Array, target: jax.Array, max_points: int,
                 drop_prob: float) -> jax.Array:
  """Samples sparse hints from `target` ([B, H, W, 3] in [-1, 1]); returns [B, H, W, 4].

  Each image gets on average U[0, max_points] hint pixels at uniform random places, and
  with probability `drop_prob` none. A Bernoulli mask keeps shapes static under jit.
  """
  b, h, w, _ = target.shape
  count_rng, drop_rng, place_rng = jax.random.split(rng, 3)
  expected = jax.random.uniform(count_rng, (b, 1, 1, 1)) * max_points
  keep = jax.random.uniform(drop_rng, (b, 1, 1, 1)) >= drop_prob
  mask = jax.random.uniform(place_rng, (b, h, w, 1)) < expected / (h * w)
  mask = (mask & keep).astype(target.dtype)
  return jnp.concatenate([target * mask, mask], axis=-1)


def no_hints(lineart: jax.Array) -> jax.Array:
  """An all-empty hint tensor shaped like `lineart` ([B, H, W, 1])."""
  return jnp.zeros(lineart.shape[:-1] + (4,), lineart.dtype)


def hints_from_rgba(rgba: np.ndarray) -> np.ndarray:
  """User hints from an RGBA image ([H, W, 4] uint8): opaque pixels are hints.

  Returns a float32 [H, W, 4] hint tensor (colour in [-1, 1] and the mask).
  """
  rgba = np.asarray(rgba)
  if rgba.ndim != 3 or rgba.shape[-1] != 4:
    raise ValueError(f"hints must be an RGBA image, got shape {rgba.shape}")
  mask = (rgba[..., 3:4] >= 128).astype(np.float32)
  colour = rgba[..., :3].astype(np.float32) / 127.5 - 1.0
  return np.concatenate([colour * mask, mask], axis=-1)
