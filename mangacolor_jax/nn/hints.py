"""Sparse colour hints: sampled from the target in training, drawn by a user at inference.

A hint tensor has 4 channels: the hint colour in [-1, 1] (zero where there is no hint) and a
0/1 mask. Training samples a random number of hint pixels per image and gives a share of the
images no hint at all: the series' denoising constraint, which teaches the model to colour
with few or no hints.
"""

import jax
import jax.numpy as jnp
import numpy as np


MODES = ("none", "sparse")


def validate_hints_config(hints_config) -> None:
  """Raises ValueError naming the field of `config.hints` that cannot work."""
  if hints_config.mode not in MODES:
    raise ValueError(f"config.hints.mode={hints_config.mode!r} is not one of {MODES}")
  if not 0.0 <= hints_config.drop_prob <= 1.0:
    raise ValueError(f"config.hints.drop_prob={hints_config.drop_prob} must be in [0, 1]")


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
