"""Losses as pure functions: GAN variants, gradient penalties, reconstruction, L2.

Every function takes arrays and returns a scalar float32; none touches model state, so
each can be tested on fixed inputs.
"""

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from mangacolor_jax.nn import image_metrics

GANS = ("vanilla", "lsgan", "hinge", "none")
PENALTIES = ("none", "dragan", "r1")


def validate_loss_config(loss_config) -> None:
  """Raises ValueError naming the field of `config.loss` that cannot work."""
  if loss_config.gan not in GANS:
    raise ValueError(f"config.loss.gan={loss_config.gan!r} is not one of {GANS}")
  if loss_config.gradient_penalty not in PENALTIES:
    raise ValueError(f"config.loss.gradient_penalty={loss_config.gradient_penalty!r} is "
                     f"not one of {PENALTIES}")
  if loss_config.gan == "none" and loss_config.gradient_penalty != "none":
    raise ValueError("config.loss.gradient_penalty needs a GAN loss (config.loss.gan)")
  if loss_config.chroma_weight < 0:
    raise ValueError(f"config.loss.chroma_weight={loss_config.chroma_weight} must be >= 0")


def d_loss(real_logits: jax.Array, fake_logits: jax.Array, kind: str) -> jax.Array:
  """Discriminator loss on real and fake patch logits."""
  if kind == "vanilla":
    # 0.5 * (BCE(real, 1) + BCE(fake, 0)), as pix2pix: keeps D's pace below G's.
    return 0.5 * (optax.sigmoid_binary_cross_entropy(real_logits, 1.0).mean()
                  + optax.sigmoid_binary_cross_entropy(fake_logits, 0.0).mean())
  if kind == "lsgan":
    return 0.5 * (jnp.mean((real_logits - 1.0)**2) + jnp.mean(fake_logits**2))
  if kind == "hinge":
    return jnp.mean(jax.nn.relu(1.0 - real_logits)) + jnp.mean(jax.nn.relu(1.0 + fake_logits))
  raise ValueError(f"unknown gan loss {kind!r}; choose one of {GANS}")


def g_adv_loss(fake_logits: jax.Array, kind: str) -> jax.Array:
  """Generator's adversarial loss: make D call the fakes real."""
  if kind == "vanilla":
    return optax.sigmoid_binary_cross_entropy(fake_logits, 1.0).mean()
  if kind == "lsgan":
    return jnp.mean((fake_logits - 1.0)**2)
  if kind == "hinge":
    return -jnp.mean(fake_logits)
  raise ValueError(f"unknown gan loss {kind!r}; choose one of {GANS}")


def l1_loss(pred: jax.Array, target: jax.Array) -> jax.Array:
  return jnp.mean(jnp.abs(pred - target))


def mse_loss(pred: jax.Array, target: jax.Array) -> jax.Array:
  return jnp.mean((pred - target)**2)


def chroma(image: jax.Array) -> jax.Array:
  """Per-pixel chroma [..., H, W]: the length of (R - G, (R + G) / 2 - B), the opponent
  axes of the colourfulness metric (`image_metrics.colourfulness`); 0 on grey."""
  rg, yb = image_metrics.opponent_axes(image)
  # sqrt(x + eps) - sqrt(eps): 0 on grey, with a finite gradient there.
  return jnp.sqrt(rg**2 + yb**2 + 1e-6) - 1e-3


def chroma_loss(pred: jax.Array, target: jax.Array) -> jax.Array:
  """Mean |chroma(pred) - chroma(target)| per pixel: how far each pixel's saturation is
  from the target's, whatever its hue. L1 pays an uncertain hue's guess less the greyer
  it is; this term pays for the grey."""
  return jnp.mean(jnp.abs(chroma(pred) - chroma(target)))


def l2_penalty(params) -> jax.Array:
  """0.5 * sum of squared kernels (biases and norm scales are not penalised)."""
  leaves = [x for path, x in jax.tree_util.tree_leaves_with_path(params)
            if getattr(path[-1], "key", None) == "kernel"]
  return 0.5 * sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in leaves)


def _safe_norm(g: jax.Array) -> jax.Array:
  """Per-example L2 norm over all but the batch axis, with a finite gradient at 0."""
  sq = jnp.sum(jnp.square(g.reshape(g.shape[0], -1)), axis=-1)
  return jnp.sqrt(sq + 1e-12)


def gradient_penalty(d_fn: Callable[[jax.Array], jax.Array], real: jax.Array,
                     rng: jax.Array, kind: str) -> jax.Array:
  """Penalty on D's input gradients.

  Args:
    d_fn: maps a colour image batch to patch logits (condition already bound).
    real: real colour images in [-1, 1].
    rng: key for DRAGAN's perturbation.
    kind: "r1" (Mescheder et al. 2018: 0.5 * E||grad D(real)||^2) or "dragan" (Kodali et
      al. 2017: E(||grad D(x~)|| - 1)^2 at x~ = real + 0.5 * std(real) * U[0, 1) noise
      blended at a random alpha).

  Returns:
    The scalar penalty (the caller multiplies by the config weight).
  """
  if kind == "none":
    return jnp.zeros((), jnp.float32)
  sum_logits = lambda x: jnp.sum(d_fn(x))
  if kind == "r1":
    g = jax.grad(sum_logits)(real)
    return 0.5 * jnp.mean(jnp.sum(jnp.square(g.reshape(g.shape[0], -1)), axis=-1))
  if kind == "dragan":
    noise_rng, alpha_rng = jax.random.split(rng)
    std = jnp.std(real, axis=(1, 2, 3), keepdims=True)
    perturbed = real + 0.5 * std * jax.random.uniform(noise_rng, real.shape)
    alpha = jax.random.uniform(alpha_rng, (real.shape[0], 1, 1, 1))
    x = real + alpha * (perturbed - real)
    g = jax.grad(sum_logits)(x)
    return jnp.mean(jnp.square(_safe_norm(g) - 1.0))
  raise ValueError(f"unknown gradient penalty {kind!r}; choose one of {PENALTIES}")


def discriminator_accuracy(real_logits: jax.Array, fake_logits: jax.Array,
                           kind: str) -> tuple[jax.Array, jax.Array]:
  """Share of real patches called real and of fake patches called fake."""
  # LSGAN's targets are 0/1 with 0.5 the boundary; the others put it at logit 0.
  threshold = 0.5 if kind == "lsgan" else 0.0
  real_acc = jnp.mean((real_logits > threshold).astype(jnp.float32))
  fake_acc = jnp.mean((fake_logits <= threshold).astype(jnp.float32))
  return real_acc, fake_acc
