"""The doctor's model checks: the networks, the objective and the training step.

Each check takes a `state.Networks` (`nets`), a state and a fixed numpy batch, runs
unsharded on the default device, and returns a `checklist.Result`: initialisation, the
initial loss against chance, one real step (loss, update ratio, gradients reaching every
layer, frozen parameters), dead units, dropout and BatchNorm in training and at inference,
non-square shapes, and overfitting a few images.
"""

import functools
import math
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mangacolor_jax.debug import checklist
from mangacolor_jax.nn import hints as hints_lib
from mangacolor_jax.nn import layers as layers_lib
from mangacolor_jax.nn import models
from mangacolor_jax.runtime import compile as compile_lib
from mangacolor_jax.training import objective
from mangacolor_jax.training import state as state_lib
from mangacolor_jax.training import step as step_lib
from mangacolor_jax.training.diagnostics import stats
from mangacolor_jax.training.diagnostics import writer as diagnostics_writer

# Tolerances; each is the boundary between a healthy and a broken run for this project's
# models and data (measured on the default and anime_faces configs).
INIT_SPREAD = (0.5, 2.0)  # kernel std / initializer std: PASS inside
INIT_SPREAD_FAIL = (0.1, 10.0)  # ... FAIL outside
# Initial L1 / L1 of predicting gray, PASS inside. A tanh output bounds it by about
# (1 + mean|target|) / mean|target| (~2.2 here); random saturated outputs give ~1.3.
CHANCE_RATIO = (0.75, 1.33)
CHANCE_RATIO_FAIL = (0.5, 1.6)
DEAD_WARN = 0.1  # share of dead units in one layer beyond: WARN (FAIL: dead_max)
# Median |dW| / |W| over the layers in one step from the initial state. Adam's first step
# moves each weight by about the learning rate, so this is lr / rms(W): the series' ~1e-3
# rule, with room for the first step (default 1e-2, Adam's default lr 5e-2). PASS inside.
UPDATE_RATIO = (1e-4, 1e-1)
UPDATE_RATIO_FAIL = (1e-6, 1.0)


def expected_init_std() -> float:
  """Standard deviation of the project's kernel initializer (`layers_lib.conv_init`)."""
  return float(np.std(np.asarray(layers_lib.conv_init(jax.random.key(0), (64, 64, 16)))))


def check_weights_init(state, expected_std: float | None = None) -> checklist.Result:
  """Kernels not all zero, with the initializer's spread (ratio of std to expected)."""
  expected = expected_init_std() if expected_std is None else expected_std
  ratios = {}
  for net, params in (("gen", state.g_params), ("disc", state.d_params)):
    for path, x in jax.tree_util.tree_leaves_with_path(jax.device_get(params)):
      if getattr(path[-1], "key", None) == "kernel":
        ratios[f"{net}/{jax.tree_util.keystr(path[:-1], simple=True, separator='/')}"] = \
            float(np.std(np.asarray(x))) / expected
  if not ratios:
    return checklist.Result("weights_init", checklist.FAIL, None,
                            "no kernels found in the parameters")
  lo_name, lo = min(ratios.items(), key=lambda kv: kv[1])
  hi_name, hi = max(ratios.items(), key=lambda kv: kv[1])
  fail = lo < INIT_SPREAD_FAIL[0] or hi > INIT_SPREAD_FAIL[1]
  warn = lo < INIT_SPREAD[0] or hi > INIT_SPREAD[1]
  zero = [k for k, r in ratios.items() if r == 0.0]
  if zero:
    meaning = (f"{len(zero)} of {len(ratios)} kernels are all zero ({', '.join(zero[:3])}): "
               "zero initialisation, the units of a layer stay identical and gradients die")
  elif fail or warn:
    meaning = "kernel spread far from the initializer's: a wrong or rescaled initializer"
  else:
    meaning = f"every kernel has about the initializer's N(0, {expected:.3g}) spread"
  return checklist.Result(
      "weights_init", checklist.status(not fail, warn), lo,
      f"kernel std / expected in [{lo:.3g} ({lo_name}), {hi:.3g} ({hi_name})]: {meaning}")


@functools.lru_cache(maxsize=8)
def _jit_step(nets: state_lib.Networks) -> Callable:
  """The training step of `nets`, compiled once per `nets`."""
  return compile_lib.jit(functools.partial(step_lib.train_step, nets), nets.config)


def _recon_loss(nets: state_lib.Networks, state, batch):
  """G's reconstruction objective (`objective.reconstruction_loss`, the step's: L1 and MSE
  with their weights; L1 when both weights are 0) in training mode, without dropout
  randomness (fixed key), on `batch`."""
  lc = nets.config.loss
  lineart, target = jnp.asarray(batch["lineart"]), jnp.asarray(batch["target"])
  g_in = nets.generator_input(lineart, hints_lib.no_hints(lineart))
  fake, _ = nets.generate_for_training(state.g_params, state.g_batch_stats, g_in,
                                       jax.random.key(0))
  total, terms = objective.reconstruction_loss(lc, fake, target)
  # A config with both weights 0 trains G on the adversarial term alone; the check still
  # needs a loss that one step on this batch should lower, so it takes the L1 term.
  if lc.l1_weight == 0 and lc.mse_weight == 0:
    return terms["g_l1"]
  return total


def check_initial_loss(nets, state, batch) -> checklist.Result:
  """The untrained generator's L1 against chance: the L1 of predicting gray (0) for every
  pixel, which is what a small random generator should be close to."""
  lineart, target = jnp.asarray(batch["lineart"]), jnp.asarray(batch["target"])
  fake = jax.jit(nets.generate)(state, lineart, hints_lib.no_hints(lineart))
  l1 = float(jnp.mean(jnp.abs(fake - target)))
  chance = float(jnp.mean(jnp.abs(target)))
  ratio = l1 / chance if chance > 0 else math.inf
  ok = math.isfinite(ratio) and CHANCE_RATIO_FAIL[0] <= ratio <= CHANCE_RATIO_FAIL[1]
  warn = not CHANCE_RATIO[0] <= ratio <= CHANCE_RATIO[1]
  meaning = ("the untrained model is about as good as chance, as it should be" if ok and
             not warn else "the initial loss is far from chance: saturated or biased outputs "
             "(initialisation, output layer) or a loss that does not compare like with like")
  return checklist.Result("initial_loss", checklist.status(ok, warn), ratio,
                          f"initial L1 {l1:.4f} vs {chance:.4f} for predicting gray (ratio "
                          f"{ratio:.3g}): {meaning}")


def check_one_step(nets, state, batch) -> checklist.Result:
  """One real training step (D then G) on a fixed batch lowers G's reconstruction loss on
  that batch."""
  loss = jax.jit(functools.partial(_recon_loss, nets))
  before = float(loss(state, batch))
  new_state, _ = _jit_step(nets)(state, batch)
  after = float(loss(new_state, batch))
  change = (after - before) / before if before else math.inf
  ok = math.isfinite(after) and after < before
  meaning = ("one gradient step lowers the loss" if ok else
             "the loss did not fall after one step on the same batch: learning rate far too "
             "high, a sign error, or updates not applied")
  return checklist.Result(
      "one_step_lowers_loss", checklist.status(ok), change,
      f"reconstruction loss {before:.5g} -> {after:.5g} ({change:+.2%}): {meaning}")


def check_update_ratio(nets, state, batch) -> checklist.Result:
  """The median update-to-weight ratio |dW| / |W| of one real step, per network: far above
  the rule the learning rate is too high (weights jump), far below too low."""
  new_state, _ = _jit_step(nets)(state, batch)
  medians = {}
  for net, old, new in (("gen", state.g_params, new_state.g_params),
                        ("disc", state.d_params, new_state.d_params)):
    if not jax.tree_util.tree_leaves(old):
      continue
    w = jax.device_get(stats.layer_norms(old))
    dw = jax.device_get(stats.layer_norms(
        jax.tree_util.tree_map(lambda a, b: a - b, new, old)))
    ratios = [float(dw[k]) / float(w[k]) for k in w if float(w[k]) > 0]
    medians[net] = float(np.median(ratios)) if ratios else 0.0
  worst_net, worst = max(medians.items(), key=lambda kv: abs(math.log10(max(kv[1], 1e-30)) + 3))
  inside = lambda bounds: all(bounds[0] <= m <= bounds[1] for m in medians.values())
  ok, warn = inside(UPDATE_RATIO_FAIL), not inside(UPDATE_RATIO)
  if ok and not warn:
    meaning = "the first step moves the weights at a healthy rate"
  elif worst > UPDATE_RATIO[1]:
    meaning = ("the weights jump: learning rate far too high (Adam's first step moves each "
               "weight by about lr)")
  else:
    meaning = "the weights barely move: learning rate far too low, or vanishing gradients"
  listed = ", ".join(f"{k} {v:.3g}" for k, v in medians.items())
  return checklist.Result("update_ratio", checklist.status(ok, warn), worst,
                          f"median |dW|/|W| of one step: {listed} (healthy {UPDATE_RATIO[0]:g} to "
                          f"{UPDATE_RATIO[1]:g}): {meaning}")


def check_gradients(nets, state, batch, opts: dict[str, Any] | None = None) -> checklist.Result:
  """Every layer of G and D gets a non-zero, finite, not exploding gradient; WARN when the
  gradient RMS shrinks by more than grad_shrink_factor from output to input layer."""
  opts = opts or diagnostics_writer.options(nets.config)
  batch = {k: jnp.asarray(batch[k]) for k in ("lineart", "target")}
  grads = jax.jit(functools.partial(stats.loss_gradients, nets))(state, batch)
  h, w = nets.image_hw
  cin = models.input_channels(nets.config)
  zero, bad, shrink = [], [], []
  smallest = math.inf
  for net, g, params in (("gen", grads[0], state.g_params), ("disc", grads[1],
                                                              state.d_params)):
    if not jax.tree_util.tree_leaves(params):
      continue
    norms = {k: float(v) for k, v in jax.device_get(stats.layer_norms(g)).items()}
    smallest = min(smallest, min(norms.values()))
    zero += [f"{net}/{k}" for k, v in norms.items() if v == 0.0]
    bad += [f"{net}/{k}={v:.3g}" for k, v in norms.items()
            if not math.isfinite(v) or v > opts["grad_norm_max"]]
    if net == "gen":
      order = stats.call_order(nets.gen, jnp.zeros((1, h, w, cin)), train=False)
    else:
      order = stats.call_order(nets.disc, jnp.zeros((1, h, w, 1)),
                               jnp.zeros((1, h, w, 3)), train=False)
    sizes = stats.layer_sizes(params)
    shrink += [m for m in stats.gradient_warnings(net, norms, sizes, order, opts)
               if "shrink" in m]
  ok = not zero and not bad
  if zero:
    meaning = (f"no gradient reaches {', '.join(zero[:4])}: a layer cut off from the loss "
               "(output unused, stop_gradient) or dead")
  elif bad:
    meaning = f"exploding or non-finite gradients: {', '.join(bad[:4])}"
  elif shrink:
    meaning = shrink[0]
  else:
    meaning = "every layer gets a finite, non-zero gradient"
  return checklist.Result("gradients_reach_layers", checklist.status(ok, bool(shrink)), smallest,
                          f"smallest layer gradient norm {smallest:.3g}: {meaning}")


def check_dead_units(nets, state, batch, opts: dict[str, Any] | None = None) -> checklist.Result:
  """Share of dead units (pre-activation <= 0 for every example and position) after each
  activation, G and D in training mode on a validation batch."""
  opts = opts or diagnostics_writer.options(nets.config)

  def fractions(state, lineart, target):
    records, _ = stats.capture(nets, state, lineart, target, train=True)
    return {k: stats.dead_fraction(v) for k, v in records.items()
            if k.split("/")[-1] not in stats.OUTPUT_LAYERS.values()}

  dead = jax.device_get(jax.jit(fractions)(state, jnp.asarray(batch["lineart"]),
                                           jnp.asarray(batch["target"])))
  if not dead:
    return checklist.Result("dead_units", checklist.PASS, 0.0, "no ReLU-like activation layers")
  name, worst = max(((k, float(v)) for k, v in dead.items()), key=lambda kv: kv[1])
  ok = worst <= opts["dead_max"]
  meaning = ("few or no dead units" if worst <= DEAD_WARN else
             "many units never fire: zero or bad initialisation, uncentred inputs, or a "
             "learning rate that pushed them negative")
  return checklist.Result("dead_units", checklist.status(ok, worst > DEAD_WARN), worst,
                          f"largest share of dead units {worst:.1%} in {name} (FAIL above "
                          f"{opts['dead_max']:.0%}): {meaning}")


def check_frozen(nets, state, batch, freeze: Sequence[str]) -> checklist.Result:
  """After one step, the parameters under the `freeze` prefixes ("gen/...", "disc/...") are
  bit-identical and every other parameter tensor changed (none frozen by accident)."""
  new_state, _ = _jit_step(nets)(state, batch)
  trees = jax.device_get({"gen": (state.g_params, new_state.g_params),
                          "disc": (state.d_params, new_state.d_params)})
  moved_frozen, stuck = [], []
  count = 0
  for net, (old, new) in trees.items():
    new_leaves = dict(jax.tree_util.tree_leaves_with_path(new))
    for path, x in jax.tree_util.tree_leaves_with_path(old):
      name = f"{net}/{jax.tree_util.keystr(path, simple=True, separator='/')}"
      frozen = any(name == f or name.startswith(f.rstrip("/") + "/") for f in freeze)
      same = np.array_equal(np.asarray(x), np.asarray(new_leaves[path]))
      count += 1
      if frozen and not same:
        moved_frozen.append(name)
      elif not frozen and same:
        stuck.append(name)
  ok = not moved_frozen and not stuck
  if moved_frozen:
    meaning = f"frozen parameters changed: {', '.join(moved_frozen[:4])}"
  elif stuck:
    meaning = (f"parameters that should train did not change: {', '.join(stuck[:4])} "
               "(frozen by accident, or no gradient reaches them)")
  elif freeze:
    meaning = f"parameters under {', '.join(freeze)} stay frozen; all others train"
  else:
    meaning = "nothing is frozen (config.model.freeze) and every parameter tensor trains"
  return checklist.Result("frozen_stay_frozen", checklist.status(ok),
                          float(len(moved_frozen) + len(stuck)),
                          f"{count} parameter tensors checked: {meaning}")


def check_inference_deterministic(nets, state, batch) -> checklist.Result:
  """Inference twice gives bit-identical outputs (dropout off); with dropout configured,
  training-mode outputs differ between dropout keys (dropout on in training)."""
  lineart = jnp.asarray(batch["lineart"])
  empty = hints_lib.no_hints(lineart)
  a = np.asarray(nets.generate(state, lineart, empty))
  b = np.asarray(nets.generate(state, lineart, empty))
  diff = float(np.max(np.abs(a - b)))
  problems = []
  if diff != 0.0:
    problems.append(f"two inference runs differ by up to {diff:.3g}: dropout (or other "
                    "randomness) is on at inference")
  dropout = float(nets.config.model.gen.dropout)
  if dropout > 0:
    g_in = nets.generator_input(lineart, empty)
    run = lambda key: np.asarray(nets.gen.apply(
        {"params": state.g_params, "batch_stats": state.g_batch_stats}, g_in, train=True,
        mutable=["batch_stats"], rngs={"dropout": jax.random.key(key)})[0])
    if np.array_equal(run(1), run(2)):
      problems.append(f"config.model.gen.dropout={dropout} but training outputs do not depend "
                      "on the dropout key: dropout is off in training")
  ok = not problems
  meaning = problems[0] if problems else (
      "inference is deterministic" + (" and dropout is active in training" if dropout > 0
                                      else " (no dropout configured)"))
  return checklist.Result("inference_deterministic", checklist.status(ok), diff, meaning)


def check_batchnorm(nets, state, batch) -> checklist.Result:
  """BatchNorm statistics change in a training-mode pass and stay put at inference."""
  lineart, target = jnp.asarray(batch["lineart"]), jnp.asarray(batch["target"])
  g_in = nets.generator_input(lineart, hints_lib.no_hints(lineart))
  problems, checked = [], 0
  networks = [("gen", nets.gen, state.g_params, state.g_batch_stats, (g_in,))]
  if nets.use_gan:
    networks.append(("disc", nets.disc, state.d_params, state.d_batch_stats,
                     (lineart, target)))
  for net, module, params, batch_stats, args in networks:
    if not jax.tree_util.tree_leaves(batch_stats):
      continue
    checked += 1
    for train in (True, False):
      _, new = module.apply({"params": params, "batch_stats": batch_stats}, *args,
                            train=train,
                            mutable=["batch_stats"], rngs={"dropout": jax.random.key(0)})
      same = [np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(
          jax.tree_util.tree_leaves(batch_stats),
          jax.tree_util.tree_leaves(new["batch_stats"]))]
      if train and any(same):
        problems.append(f"{net}: {sum(same)} of {len(same)} statistics did not update "
                        "in training")
      if not train and not all(same):
        problems.append(f"{net}: statistics changed at inference")
  if not checked:
    return checklist.Result("batchnorm_updates", checklist.PASS, 0.0, "no BatchNorm in this config")
  ok = not problems
  return checklist.Result(
      "batchnorm_updates", checklist.status(ok), float(len(problems)),
      problems[0] if problems else "BatchNorm statistics update in training and "
      "stay fixed at inference")


def non_square_hw(nets) -> tuple[int, int]:
  """A height and width that differ and fit the networks (multiples of 2**depth)."""
  h, w = nets.image_hw
  if h != w:
    return h, w
  return h, w + 2**int(nets.config.model.gen.depth)


def check_output_shapes(nets, state) -> checklist.Result:
  """On a non-square input (H != W, so swapped axes fail), G gives [B, H, W, 3] in [-1, 1]
  in training and at inference, and D one logit per patch [B, h, w, 1] with h/w = H/W."""
  h, w = non_square_hw(nets)
  rng = np.random.default_rng(0)
  lineart = jnp.asarray(rng.uniform(-1, 1, (2, h, w, 1)), jnp.float32)
  target = jnp.asarray(rng.uniform(-1, 1, (2, h, w, 3)), jnp.float32)
  empty = hints_lib.no_hints(lineart)
  problems = []
  inference = nets.generate(state, lineart, empty)
  training, _ = nets.gen.apply({"params": state.g_params, "batch_stats": state.g_batch_stats},
                               nets.generator_input(lineart, empty), train=True,
                               mutable=["batch_stats"], rngs={"dropout": jax.random.key(0)})
  for mode, out in (("inference", inference), ("training", training)):
    if out.shape != (2, h, w, 3):
      problems.append(f"G {mode} output {out.shape} for input {(2, h, w, 1)}")
    elif float(jnp.max(jnp.abs(out))) > 1.0:
      problems.append(f"G {mode} output leaves [-1, 1]")
  if nets.use_gan:
    logits, _ = nets.disc.apply({"params": state.d_params, "batch_stats": state.d_batch_stats},
                                lineart, target, train=True, mutable=["batch_stats"])
    # One logit per patch, the patch grid as long as the image on the same axis.
    if logits.ndim != 4 or logits.shape[0] != 2 or logits.shape[-1] != 1 or min(
        logits.shape[1:3]) < 1 or np.sign(logits.shape[1] - logits.shape[2]) != np.sign(h - w):
      problems.append(f"D logits {logits.shape} for a {h}x{w} input")
  ok = not problems
  return checklist.Result(
      "non_square_shapes", checklist.status(ok), float(len(problems)),
      problems[0] if problems else f"{h}x{w} input: G gives {h}x{w}x3 in [-1, 1] "
      "in training and at inference" + (", D a patch grid" if nets.use_gan else ""))


def check_overfit(nets, state, batch, steps: int = 200, factor: float = 5.0,
                  every: int = 10) -> checklist.Result:
  """Training on one fixed small batch (no augmentation: the same images every step)
  drives G's L1 down by `factor` within `steps` steps; otherwise the code cannot learn."""
  step_fn = _jit_step(nets)
  first, best, done = None, math.inf, 0
  history = []
  t0 = time.perf_counter()
  for i in range(1, steps + 1):
    state, metrics = step_fn(state, batch)
    if i == 1 or i % every == 0 or i == steps:
      l1 = float(jax.device_get(metrics["g_l1"]))
      history.append(l1)
      done = i
      if first is None:
        first = l1
      if not math.isfinite(l1):
        break
      best = min(best, l1)
      if best <= first / factor:
        break
  reduction = first / best if best > 0 and math.isfinite(best) else (
      math.inf if best == 0 else 0.0)
  ok = reduction >= factor
  meaning = (f"the code can learn: L1 fell {reduction:.3g}x within {done} steps" if ok else
             f"L1 did not fall {factor:g}x within {done} steps on {batch['target'].shape[0]} "
             "fixed images: a bug, a learning rate far off, or a model that cannot fit")
  return checklist.Result("overfit_tiny_subset", checklist.status(ok), reduction,
                          f"L1 {first:.4f} -> best {best:.4f} ({time.perf_counter() - t0:.0f} s): "
                          f"{meaning}")
