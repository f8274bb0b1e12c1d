"""The state of a run (`GANState`) and the networks that act on it (`Networks`).

`create_networks(config)` builds a run's generator, discriminator and their optimisers;
`Networks.create_state(init_rng)` the initial state. The networks are immutable: a tool
that needs a variant (the tuner's rescaled optimisers) makes one with
`dataclasses.replace`.
"""

import dataclasses
from typing import Any

import flax
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax

from mangacolor_jax.input_pipeline import config_check as data_check
from mangacolor_jax.nn import models
from mangacolor_jax.runtime import seeds
from mangacolor_jax.training import optim


@flax.struct.dataclass
class GANState:
  """Everything a run needs to continue: both networks, their optimisers, step and key."""
  step: jax.Array
  g_params: Any
  g_batch_stats: Any
  g_opt_state: Any
  d_params: Any
  d_batch_stats: Any
  d_opt_state: Any
  rng: jax.Array  # typed key; step s draws its randomness from seeds.step_keys(rng, s)
  # The exponential moving average of g_params (config.model.ema_decay > 0), else None.
  g_ema: Any = None


@dataclasses.dataclass(frozen=True, eq=False)
class Networks:
  """A run's generator and discriminator, with their optimisers and learning rates."""
  config: ml_collections.ConfigDict
  gen: models.UNetGenerator
  disc: models.PatchDiscriminator
  g_tx: optax.GradientTransformation
  d_tx: optax.GradientTransformation
  g_lr_fn: optax.Schedule
  d_lr_fn: optax.Schedule

  @property
  def use_gan(self) -> bool:
    """False for the plain reconstruction baseline, which has no discriminator."""
    return self.config.loss.gan != "none"

  @property
  def use_hints(self) -> bool:
    return self.config.hints.mode != "none"

  @property
  def image_hw(self) -> tuple[int, int]:
    return data_check.image_hw(self.config)

  def create_state(self, init_rng: jax.Array) -> GANState:
    """Initial state from `init_rng` (a pure function: use with jax.eval_shape or jit)."""
    g_rng, d_rng, train_rng = seeds.state_keys(init_rng)
    h, w = self.image_hw
    lineart = jnp.zeros((1, h, w, models.input_channels(self.config)), jnp.float32)
    g_vars = self.gen.init(g_rng, lineart, train=False)
    g_params = g_vars["params"]
    if self.use_gan:
      d_vars = self.disc.init(d_rng, lineart[..., :1], jnp.zeros((1, h, w, 3)), train=False)
    else:
      d_vars = {"params": {}}
    return GANState(
        step=jnp.zeros((), jnp.int32),
        g_params=g_params,
        g_batch_stats=g_vars.get("batch_stats", {}),
        g_opt_state=self.g_tx.init(g_params),
        d_params=d_vars["params"],
        d_batch_stats=d_vars.get("batch_stats", {}),
        d_opt_state=self.d_tx.init(d_vars["params"]),
        rng=train_rng,
        g_ema=g_params if self.config.model.ema_decay > 0 else None)

  def generator_input(self, lineart, hint_tensor):
    """The generator's input: the line art, and the hints when the model takes them."""
    if not self.use_hints:
      return lineart
    return jnp.concatenate([lineart, hint_tensor], axis=-1)

  def generate(self, state: GANState, lineart, hint_tensor):
    """Inference: the averaged weights when the run keeps them (`GANState.g_ema`), batch
    statistics from training, dropout off."""
    g_in = self.generator_input(lineart, hint_tensor)
    params = state.g_params if state.g_ema is None else state.g_ema
    return self.gen.apply({"params": params, "batch_stats": state.g_batch_stats}, g_in,
                          train=False)

  def generate_for_training(self, g_params, g_batch_stats, g_in, dropout_rng):
    """G as in training (batch statistics, dropout): (output, updated statistics)."""
    fake, new_vars = self.gen.apply({"params": g_params, "batch_stats": g_batch_stats},
                                    g_in, train=True, mutable=["batch_stats"],
                                    rngs={"dropout": dropout_rng})
    return fake, new_vars.get("batch_stats", {})

  def discriminate(self, d_params, d_batch_stats, lineart, image):
    """D as in training (batch statistics): (patch logits, updated statistics)."""
    logits, new_vars = self.disc.apply({"params": d_params, "batch_stats": d_batch_stats},
                                       lineart, image, train=True, mutable=["batch_stats"])
    return logits, new_vars.get("batch_stats", {})


def create_networks(config: ml_collections.ConfigDict) -> Networks:
  """The networks of `config`: models from `config.model`, Adam from `config.optim`;
  parameters under `config.model.freeze` get zero updates."""
  gen, disc = models.create_models(config)
  freeze = tuple(config.model.freeze)
  g_tx, g_lr_fn = optim.create_optimizer(
      config, config.optim.g_lr, tuple(f[4:] for f in freeze if f.startswith("gen/")))
  d_tx, d_lr_fn = optim.create_optimizer(
      config, config.optim.d_lr, tuple(f[5:] for f in freeze if f.startswith("disc/")))
  return Networks(config, gen, disc, g_tx, d_tx, g_lr_fn, d_lr_fn)


def all_finite(state: GANState) -> jax.Array:
  """True when every parameter and statistic is finite (checked before each save)."""
  leaves = jax.tree_util.tree_leaves((state.g_params, state.g_batch_stats, state.d_params,
                                      state.d_batch_stats))
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))
