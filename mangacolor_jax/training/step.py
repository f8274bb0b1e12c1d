"""The pure steps, `train_step(nets, state, batch)` and `eval_step`, and how they compile.

Both are pure functions of their arguments (all randomness comes from the state's key,
`seeds.step_keys`), compiled with `jax.jit` over the data-parallel mesh: state replicated,
batch split on "data", state donated. `compile_train_step` / `compile_eval_step` are the
one place that says so; the loop, the tuner, the benchmark and the scripts use them.
"""

import functools
from typing import Callable, Iterable

import jax
import jax.numpy as jnp
import optax

from mangacolor_jax.nn import hints as hints_lib
from mangacolor_jax.nn import image_metrics
from mangacolor_jax.nn import layers
from mangacolor_jax.nn import losses
from mangacolor_jax.runtime import compile as compile_lib
from mangacolor_jax.runtime import mesh as mesh_lib
from mangacolor_jax.runtime import seeds
from mangacolor_jax.training import objective
from mangacolor_jax.training import state as state_lib


def train_step(nets: state_lib.Networks, state: state_lib.GANState,
               batch: dict[str, jax.Array]) -> tuple[state_lib.GANState, dict[str, jax.Array]]:
  """One D update then one G update (`objective`), sharing one generator forward pass."""
  lc = nets.config.loss
  keys = seeds.step_keys(state.rng, state.step)
  lineart, target = batch["lineart"], batch["target"]
  g_in = nets.generator_input(lineart, objective.step_hints(
      nets, keys, target, lineart, state.g_params, state.g_batch_stats))

  def g_forward(g_params):
    return nets.generate_for_training(g_params, state.g_batch_stats, g_in, keys.dropout)

  # G runs forward once; its backward pass is taken later through the saved VJP, so the
  # D step and the G step share one generator forward pass (as pix2pix does).
  fake, g_vjp, g_batch_stats = jax.vjp(g_forward, state.g_params, has_aux=True)
  metrics = {}

  d_params, d_batch_stats, d_opt_state = (state.d_params, state.d_batch_stats,
                                          state.d_opt_state)
  if nets.use_gan:
    def d_loss_fn(params):
      return objective.discriminator_loss(nets, params, state.d_batch_stats, lineart,
                                          jax.lax.stop_gradient(fake), target, keys.penalty)

    (d_loss, d_aux), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(state.d_params)
    d_updates, d_opt_state = nets.d_tx.update(d_grads, state.d_opt_state, state.d_params)
    d_params = optax.apply_updates(state.d_params, d_updates)
    d_batch_stats = d_aux.pop("stats")
    metrics.update(d_loss=d_loss, d_lr=nets.d_lr_fn(state.step), **d_aux)

  def g_loss_fn(fake):
    return objective.generator_loss(nets, fake, target, lineart, d_params, d_batch_stats)

  (g_loss, g_terms), fake_grad = jax.value_and_grad(g_loss_fn, has_aux=True)(fake)
  (g_grads,) = g_vjp(fake_grad)
  if lc.l2_weight > 0:
    l2, l2_grads = jax.value_and_grad(losses.l2_penalty)(state.g_params)
    g_grads = jax.tree_util.tree_map(lambda g, r: g + lc.l2_weight * r, g_grads, l2_grads)
    g_terms["g_l2"] = l2
  g_updates, g_opt_state = nets.g_tx.update(g_grads, state.g_opt_state, state.g_params)
  g_params = optax.apply_updates(state.g_params, g_updates)
  metrics.update(g_loss=g_loss, lr=nets.g_lr_fn(state.step), **g_terms)

  new_state = state.replace(
      step=state.step + 1, g_params=g_params, g_batch_stats=g_batch_stats,
      g_opt_state=g_opt_state, d_params=d_params, d_batch_stats=d_batch_stats,
      d_opt_state=d_opt_state, g_ema=update_ema(state.g_ema, g_params, state.step,
                                                nets.config.model.ema_decay))
  return new_state, metrics


def update_ema(ema, params, step, decay: float):
  """The moving average of G's weights after a step (None when the run keeps none).

  The decay warms up as min(decay, (1 + step) / (10 + step)), so the average forgets the
  random initial weights within the first hundred steps instead of ~1 / (1 - decay).
  """
  if ema is None:
    return None
  d = jnp.minimum(decay, (1.0 + step) / (10.0 + step))
  return jax.tree_util.tree_map(lambda e, p: d * e + (1.0 - d) * p, ema, params)


def measures_average_stats(config) -> bool:
  """Whether a run of `config` measures G's BatchNorm statistics under its averaged weights
  before each evaluation and checkpoint (`config.model.ema_bn_batches`)."""
  return (config.model.ema_decay > 0 and config.model.ema_bn_batches > 0 and
          config.model.gen.norm == "batch")


def average_batch_stats(nets: state_lib.Networks, state: state_lib.GANState,
                        batch: dict[str, jax.Array], index: jax.Array):
  """G's BatchNorm statistics on one training batch under the averaged weights: each
  layer's batch mean and variance, as a training step computes them (the batch's line art
  with training hints drawn from a fixed key, `index` folded in)."""
  keys = seeds.step_keys(jax.random.key(seeds.AVERAGE_STATS_SEED), index)
  lineart, target = batch["lineart"], batch["target"]
  zeros = jax.tree_util.tree_map(jnp.zeros_like, state.g_batch_stats)
  g_in = nets.generator_input(lineart, objective.step_hints(
      nets, keys, target, lineart, state.g_ema, zeros))
  _, stats = nets.generate_for_training(state.g_ema, zeros, g_in, keys.dropout)
  # From zero running statistics one training-mode call leaves (1 - momentum) x the batch's.
  return jax.tree_util.tree_map(lambda s: s / (1.0 - layers.BATCH_NORM_MOMENTUM), stats)


def with_average_stats(measure: Callable, state: state_lib.GANState,
                       batches: Iterable[dict[str, jax.Array]]) -> state_lib.GANState:
  """`state` with G's BatchNorm statistics measured under its averaged weights: each
  layer's batch statistics (`measure`, a compiled `average_batch_stats`) averaged over
  `batches`, placed training batches ("precise BN"). The running statistics a training
  step keeps are the last iterate's on its last ~10 batches; the averaged weights,
  evaluated with them, score up to 1.2 dB lower (docs/quality.md, row e2)."""
  total, count = None, 0
  for index, batch in enumerate(batches):
    stats = measure(state, batch, jnp.int32(index))
    total = stats if total is None else jax.tree_util.tree_map(jnp.add, total, stats)
    count += 1
  return state.replace(g_batch_stats=jax.tree_util.tree_map(lambda s: s / count, total))


def quality_metrics(fake: jax.Array, target: jax.Array, suffix: str = ""
                    ) -> dict[str, jax.Array]:
  """Per-example image metrics of outputs against targets (both in [-1, 1])."""
  pred01, target01 = image_metrics.to_unit(fake), image_metrics.to_unit(target)
  return {
      f"psnr{suffix}": image_metrics.psnr(pred01, target01),
      f"ssim{suffix}": image_metrics.ssim(pred01, target01),
      f"lab_l1{suffix}": image_metrics.lab_l1(pred01, target01),
      f"colourfulness{suffix}": image_metrics.colourfulness(pred01),
      f"l1{suffix}": jnp.mean(jnp.abs(fake - target), axis=(1, 2, 3)),
  }


def reference_metrics(lineart: jax.Array, target: jax.Array) -> dict[str, jax.Array]:
  """Per-example numbers of the data alone: the targets' colourfulness, and the PSNR of
  the line art itself as a colour image (the trivial baseline a model must beat)."""
  return {
      "colourfulness_target": image_metrics.colourfulness(image_metrics.to_unit(target)),
      "psnr_lineart": image_metrics.psnr(
          image_metrics.to_unit(jnp.repeat(lineart, 3, axis=-1)),
          image_metrics.to_unit(target)),
  }


def eval_step(nets: state_lib.Networks, state: state_lib.GANState,
              batch: dict[str, jax.Array], hints_rng: jax.Array
              ) -> tuple[dict[str, jax.Array], jax.Array]:
  """Per-example metrics without hints (and with sampled sparse hints if the model takes
  them), plus the no-hint outputs for sample grids."""
  lineart, target = batch["lineart"], batch["target"]
  empty = hints_lib.no_hints(lineart)
  fake = nets.generate(state, lineart, empty)
  metrics = quality_metrics(fake, target)
  metrics.update(reference_metrics(lineart, target))
  if nets.use_hints:
    # Hints for every image (none dropped), as a user who gives some would.
    hint_tensor = hints_lib.evaluation_hints(hints_rng, nets.config.hints, target, lineart)
    metrics.update(quality_metrics(nets.generate(state, lineart, hint_tensor), target,
                                   "_hints"))
  return metrics, fake


def compile_train_step(nets: state_lib.Networks, mesh) -> Callable:
  """`train_step` of `nets`, jitted over `mesh`: (state, batch) -> (state, metrics), with
  the state replicated and donated and the batch split on "data"."""
  repl, data = mesh_lib.replicated(mesh), mesh_lib.data_sharded(mesh)
  return compile_lib.jit(functools.partial(train_step, nets), nets.config,
                         in_shardings=(repl, data), out_shardings=(repl, repl),
                         donate_argnums=0)


def compile_average_batch_stats(nets: state_lib.Networks, mesh) -> Callable:
  """`average_batch_stats` of `nets`, jitted over `mesh`: (state, batch, index) -> G's
  batch statistics, the state replicated and the batch split on "data"."""
  repl, data = mesh_lib.replicated(mesh), mesh_lib.data_sharded(mesh)
  return compile_lib.jit(functools.partial(average_batch_stats, nets), nets.config,
                         in_shardings=(repl, data, repl), out_shardings=repl)


def compile_eval_step(nets: state_lib.Networks, mesh) -> Callable:
  """`eval_step` of `nets`, jitted over `mesh`: (state, batch, hints key) -> (per-example
  metrics, outputs), split on "data" like the batch."""
  repl, data = mesh_lib.replicated(mesh), mesh_lib.data_sharded(mesh)
  return compile_lib.jit(functools.partial(eval_step, nets), nets.config,
                         in_shardings=(repl, data, repl), out_shardings=(data, data))
