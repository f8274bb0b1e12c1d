"""The diagnostics' measurements: per-layer norms and sizes, dead units, the step's
gradients, pre-activations, train-against-validation terms, call order, and the warnings.

Pure functions of explicit inputs (jit-able ones first, then host-side ones), shared by the
TensorBoard writer (`writer.Diagnostics`) and the doctor (`debug/`): `loss_gradients`,
`capture`, `layer_norms`, `dead_fraction`, `call_order`, `gradient_warnings`.
"""

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from mangacolor_jax.nn import hints as hints_lib
from mangacolor_jax.nn import layers as layers_lib
from mangacolor_jax.nn import losses
from mangacolor_jax.runtime import seeds
from mangacolor_jax.training import objective

# The module whose output feeds each network's output non-linearity (tanh / the logits).
OUTPUT_LAYERS = {"gen": "dec0_up", "disc": "logits"}


# ------------------------------------------------------------------- pure, jit-able parts


def layer_of(path) -> str:
  """"enc1_conv" for the parameter path ('enc1_conv', 'kernel'): the owning module."""
  return jax.tree_util.keystr(tuple(path[:-1]), simple=True, separator="/")


def layer_sq_sums(tree) -> dict[str, jax.Array]:
  """Sum of squares of the parameters of each layer (module) of a parameter tree."""
  out = {}
  for path, x in jax.tree_util.tree_leaves_with_path(tree):
    v = jnp.sum(jnp.square(x.astype(jnp.float32)))
    name = layer_of(path)
    out[name] = out[name] + v if name in out else v
  return out


def layer_norms(tree) -> dict[str, jax.Array]:
  """L2 norm of each layer's parameters (or gradients, or updates)."""
  return {k: jnp.sqrt(v) for k, v in layer_sq_sums(tree).items()}


def layer_sizes(tree) -> dict[str, int]:
  out = {}
  for path, x in jax.tree_util.tree_leaves_with_path(tree):
    out[layer_of(path)] = out.get(layer_of(path), 0) + int(np.prod(x.shape))
  return out


def dead_fraction(pre: jax.Array) -> jax.Array:
  """Share of channels whose pre-activation is <= 0 at every position of every example."""
  return jnp.mean(jnp.all(pre <= 0, axis=tuple(range(pre.ndim - 1))).astype(jnp.float32))


def loss_gradients(nets, state, batch) -> tuple[Any, Any]:
  """(G gradients, D gradients) of the training step's objective at `state` on `batch`.

  The same keys, hints, dropout, losses and weights as `step.train_step`. One difference:
  the step takes G's adversarial term against D after that step's D update; here D is the
  one of `state` (so D's gradients are exactly the step's, and G's are when there is no
  GAN).
  """
  lc = nets.config.loss
  keys = seeds.step_keys(state.rng, state.step)
  lineart, target = batch["lineart"], batch["target"]
  g_in = nets.generator_input(lineart, objective.step_hints(
      nets, keys, target, lineart, state.g_params, state.g_batch_stats))

  def g_forward(g_params):
    return nets.generate_for_training(g_params, state.g_batch_stats, g_in, keys.dropout)[0]

  d_grads = jax.tree_util.tree_map(jnp.zeros_like, state.d_params)
  if nets.use_gan:
    fake = jax.lax.stop_gradient(g_forward(state.g_params))
    d_grads = jax.grad(lambda p: objective.discriminator_loss(
        nets, p, state.d_batch_stats, lineart, fake, target, keys.penalty)[0])(state.d_params)

  def g_loss_fn(g_params):
    total, _ = objective.generator_loss(nets, g_forward(g_params), target, lineart,
                                        state.d_params, state.d_batch_stats)
    if lc.l2_weight > 0:
      total = total + lc.l2_weight * losses.l2_penalty(g_params)
    return total

  return jax.grad(g_loss_fn)(state.g_params), d_grads


def adam_gradient(opt_before, opt_after, b1: float):
  """The gradient an Adam step applied, from its first moment before and after the step:
  m_t = b1 m_(t-1) + (1 - b1) g_t (after clipping, when config.optim.grad_clip is set: the
  gradient Adam saw). Exact up to float32 rounding (the cancellation costs about
  log10(|m| / |g|) digits). None when the state holds no (single) Adam `mu`; frozen
  parameters (`optax.multi_transform`) have no moment and are left out."""
  try:
    mu0 = optax.tree_utils.tree_get(opt_before, "mu")
    mu1 = optax.tree_utils.tree_get(opt_after, "mu")
  except KeyError:  # several Adam states: ambiguous
    return None
  if mu0 is None or mu1 is None or not 0.0 <= b1 < 1.0:
    return None
  return jax.tree_util.tree_map(lambda a, b: (b - b1 * a) / (1.0 - b1), mu0, mu1)


def step_gradients(nets, before, after, batch) -> tuple[Any, Any]:
  """(G, D) gradients of the step from `before` to `after` on `batch`: from Adam's moments
  (`adam_gradient`), else recomputed by `loss_gradients`."""
  b1 = float(nets.config.optim.b1)
  g = adam_gradient(before.g_opt_state, after.g_opt_state, b1)
  d = adam_gradient(before.d_opt_state, after.d_opt_state, b1)
  if g is None or d is None:
    g_loss, d_loss = loss_gradients(nets, before, batch)
    g = g_loss if g is None else g
    d = d_loss if d is None else d
  return g, d


def capture(nets, state, lineart, target, train: bool = False
            ) -> tuple[dict[str, jax.Array], jax.Array]:
  """Pre-activations of every activation module, and G's output, on one batch.

  G runs as at inference (running statistics, no dropout, no hints), or with `train` as in
  training (batch statistics, dropout with a fixed key); D as in training (batch statistics)
  on the real pair. No model change is needed: a flax method interceptor records the input
  of each `layers.Activation` and the output of `OUTPUT_LAYERS`.

  Returns:
    ({"gen/enc1_act": [B, h, w, C], ..., "disc/logits": ...}, G's output [B, H, W, 3]).
  """
  records = {}

  def recorder(net):
    def intercept(next_fun, args, kwargs, context):
      out = next_fun(*args, **kwargs)
      if context.method_name == "__call__":
        name = "/".join(context.module.path)
        if isinstance(context.module, layers_lib.Activation):
          records[f"{net}/{name}"] = args[0]
        elif name == OUTPUT_LAYERS[net]:
          records[f"{net}/{name}"] = out
      return out
    return intercept

  with nn.intercept_methods(recorder("gen")):
    if train:
      fake, _ = nets.generate_for_training(
          state.g_params, state.g_batch_stats,
          nets.generator_input(lineart, hints_lib.no_hints(lineart)), jax.random.key(0))
    else:
      fake = nets.generate(state, lineart, hints_lib.no_hints(lineart))
  if nets.use_gan:
    with nn.intercept_methods(recorder("disc")):
      nets.discriminate(state.d_params, state.d_batch_stats, lineart, target)
  return records, fake


def curve_terms(nets, state, batch) -> dict[str, jax.Array]:
  """The train-against-validation scalars, computed alike on any batch: G's L1 at
  inference and, with a GAN, D's loss and accuracies (D as in training)."""
  lineart, target = batch["lineart"], batch["target"]
  fake = nets.generate(state, lineart, hints_lib.no_hints(lineart))
  out = {"l1": losses.l1_loss(fake, target)}
  if nets.use_gan:
    def d(image):
      return nets.discriminate(state.d_params, state.d_batch_stats, lineart, image)[0]
    real_logits, fake_logits = d(target), d(fake)
    kind = nets.config.loss.gan
    out["d_loss"] = losses.d_loss(real_logits, fake_logits, kind)
    out["d_real_acc"], out["d_fake_acc"] = losses.discriminator_accuracy(
        real_logits, fake_logits, kind)
  return out


def call_order(module, *args, **kwargs) -> list[str]:
  """Module paths ("enc0_conv", "dec2_up/conv", ...) in the order a forward pass calls
  them: input side first. Traced abstractly (no compute)."""
  order = []

  def intercept(next_fun, a, k, context):
    name = "/".join(context.module.path)
    if name and name not in order:
      order.append(name)
    return next_fun(*a, **k)

  with nn.intercept_methods(intercept):
    jax.eval_shape(lambda: module.init(jax.random.key(0), *args, **kwargs))
  return order


# ------------------------------------------------------------------------ host-side parts


def gradient_warnings(net: str, norms: dict[str, float], sizes: dict[str, int],
                      order: list[str], opts: dict[str, Any]) -> list[str]:
  """Warnings for vanishing / exploding per-layer gradient norms, and for gradients whose
  RMS shrinks by more than `grad_shrink_factor` from the output layer to the input layer."""
  out = []
  for layer, g in norms.items():
    if not math.isfinite(g):
      out.append(f"non-finite gradient in {net}/{layer}")
    elif g < opts["grad_norm_min"]:
      out.append(f"vanishing gradient in {net}/{layer}: norm {g:.3g} < "
                 f"{opts['grad_norm_min']:g} (config.diagnostics.grad_norm_min)")
    elif g > opts["grad_norm_max"]:
      out.append(f"exploding gradient in {net}/{layer}: norm {g:.3g} > "
                 f"{opts['grad_norm_max']:g} (config.diagnostics.grad_norm_max)")
  ordered = [name for name in order if name in norms]
  if len(ordered) >= 2:
    first, last = ordered[0], ordered[-1]
    rms_in = norms[first] / math.sqrt(sizes[first])
    rms_out = norms[last] / math.sqrt(sizes[last])
    if math.isfinite(rms_in) and math.isfinite(rms_out) and rms_out > 0 and (
        rms_in == 0 or rms_out / rms_in > opts["grad_shrink_factor"]):
      ratio = rms_out / rms_in if rms_in > 0 else math.inf
      out.append(f"gradients of {net} shrink {ratio:.3g}x from its output layer {last} "
                 f"(RMS {rms_out:.3g}) to its input layer {first} (RMS {rms_in:.3g}): more "
                 f"than config.diagnostics.grad_shrink_factor={opts['grad_shrink_factor']:g}")
  return out


def update_ratio_warning(net: str, ratios: dict[str, float], opts: dict[str, Any]
                         ) -> str | None:
  """A warning when the median |dW| / |W| over the layers leaves the configured range."""
  values = [r for r in ratios.values() if math.isfinite(r)]
  if not values:
    return None
  median = float(np.median(values))
  lo, hi = opts["update_ratio_min"], opts["update_ratio_max"]
  if median < lo:
    return (f"median update ratio |dW|/|W| of {net} is {median:.3g} < {lo:g}: the weights "
            "barely move (learning rate too low, or vanishing gradients)")
  if median > hi:
    return (f"median update ratio |dW|/|W| of {net} is {median:.3g} > {hi:g}: the weights "
            "move too fast (learning rate too high)")
  return None
