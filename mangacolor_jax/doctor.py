r"""Command line: run the series' debugging checklist on a config, in a few minutes on a CPU.

  python -m mangacolor_jax.doctor --config configs/default.py --workdir runs/doctor

Prints one line per check -- PASS / WARN / FAIL, the measured number, what it means -- writes
the same to WORKDIR/doctor.json, and exits with status 1 when any check FAILs (2 when the
config itself is invalid). Nothing is trained or checkpointed in the workdir.

The checks, in order (MISSION.md part 5):

  data       input_range, input_centring, batches_differ, target_aligned, input_shapes,
             finite
  model      weights_init, initial_loss, one_step_lowers_loss, update_ratio,
             gradients_reach_layers, dead_units, frozen_stay_frozen,
             inference_deterministic, batchnorm_updates, non_square_shapes
  last       overfit_tiny_subset (the slowest: up to --overfit_steps training steps)

Every check is a function of explicit inputs (batches, a `state.Networks`, a state), so
tests plant a fault -- zero weights, a pipeline repeating one batch, unscaled [0, 255]
inputs, a learning rate 1e4 times too high, a layer cut off from the loss -- by passing a
broken input, and see that check FAIL. The model checks run unsharded on the default device
on a fixed batch of `--images` training images; a check that raises counts as a FAIL.
"""

import dataclasses
import functools
import json
import math
import os
import sys
import time
from typing import Any, Callable, Iterable, Sequence

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags
import numpy as np

FLAGS = flags.FLAGS

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"

# Tolerances; each is the boundary between a healthy and a broken run for this project's
# models and data (measured on the default and anime_faces configs).
RANGE_TOLERANCE = 1e-3  # inputs live in [-1, 1]
MEAN_WARN = 0.75  # |mean| of the targets beyond: not centred (white backgrounds
# make illustrations' means positive: ~0.3 to 0.55 here)
DIFFERENT = 1e-6  # mean |a - b| below: two batches (or images) are the same
ALIGN_MARGIN = 0.2  # SSIM(aligned) must exceed SSIM(misaligned) by this much
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


@dataclasses.dataclass
class Result:
  """The outcome of one check."""
  name: str
  status: str  # PASS | WARN | FAIL
  value: float | None  # the measured number
  message: str  # what it means

  def line(self) -> str:
    value = "-" if self.value is None else f"{self.value:.4g}"
    return f"{self.status:4}  {self.name:<24} {value:>10}  {self.message}"


def _status(ok: bool, warn: bool = False) -> str:
  return PASS if ok and not warn else (WARN if ok else FAIL)


# ------------------------------------------------------------------------------ data


def _stack(batches: Sequence[dict], key: str) -> np.ndarray:
  return np.concatenate([np.asarray(b[key]) for b in batches])


def check_input_range(train_batches: Sequence[dict], eval_batches: Sequence[dict]
                      ) -> Result:
  """Line art and targets of training and validation batches in the model's [-1, 1]."""
  parts = []
  worst = 0.0
  for split, batches in (("train", train_batches), ("validation", eval_batches)):
    for key in ("lineart", "target"):
      x = _stack(batches, key)
      lo, hi = float(np.nanmin(x)), float(np.nanmax(x))
      worst = max(worst, abs(lo), abs(hi))
      parts.append(f"{split} {key} [{lo:.3g}, {hi:.3g}]")
  ok = worst <= 1.0 + RANGE_TOLERANCE
  meaning = ("inputs and targets are in [-1, 1] like the generator's tanh output" if ok else
             "values outside [-1, 1]: unscaled inputs (e.g. [0, 255]) or a wrong "
             "normalisation; the tanh output can never match them")
  return Result("input_range", _status(ok), worst, f"{'; '.join(parts)}: {meaning}")


def check_input_centring(train_batches: Sequence[dict]) -> Result:
  """Inputs use both halves of [-1, 1] (ink at -1, paper at +1; dark and light colours):
  data left in [0, 1] or [0, 255] never goes below 0. Targets should be roughly centred;
  line art is mostly paper, so its mean is high by nature."""
  target, art = _stack(train_batches, "target"), _stack(train_batches, "lineart")
  t_mean, a_mean = float(np.mean(target)), float(np.mean(art))
  t_min, a_min = float(np.min(target)), float(np.min(art))
  constant = min(float(np.std(target)), float(np.std(art))) < 1e-3
  one_sided = max(t_min, a_min) >= 0.0
  off = abs(t_mean) > MEAN_WARN
  if constant:
    meaning = "an input is constant: nothing to learn from (blank line art or targets)"
  elif one_sided:
    meaning = ("no value below 0: the data is not shifted to [-1, 1] (still [0, 1] or "
               "[0, 255]), so inputs are not centred")
  elif off:
    meaning = f"targets far from zero mean (|mean| > {MEAN_WARN}): check the scaling"
  else:
    meaning = "inputs centred on [-1, 1] (line art is mostly paper: its mean is high)"
  return Result("input_centring", _status(not (constant or one_sided), off), t_mean,
                f"target mean {t_mean:.3f} (min {t_min:.3g}), line art mean {a_mean:.3f} "
                f"(min {a_min:.3g}): {meaning}")


def check_batches_differ(train_batches: Sequence[dict]) -> Result:
  """Consecutive batches (and the images inside one) are not copies of each other."""
  if len(train_batches) < 2:
    return Result("batches_differ", FAIL, None, "need at least 2 batches to compare")
  targets = [np.asarray(b["target"], np.float64) for b in train_batches]
  between = min(float(np.mean(np.abs(a - b)))
                for i, a in enumerate(targets) for b in targets[i + 1:] if a.shape == b.shape)
  within = min(float(np.mean(np.abs(t[i] - t[j])))
               for t in targets for i in range(len(t)) for j in range(i + 1, len(t)))
  value = min(between, within)
  ok = value > DIFFERENT
  meaning = (f"the {len(targets)} batches and their images all differ" if ok else
             "two batches (or two images of one batch) are identical: the pipeline repeats "
             "data instead of iterating over the set")
  return Result("batches_differ", _status(ok), value,
                f"smallest mean |difference| between batches {between:.3g}, between images "
                f"of a batch {within:.3g}: {meaning}")


def _extract_lineart(targets01: np.ndarray, upscale: int) -> np.ndarray:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.input_pipeline import lineart  # pylint: disable=g-import-not-at-top
  fn = tf.function(lambda image: lineart.fixed_lineart(image, upscale=upscale),
                   autograph=False)
  return np.stack([fn(tf.constant(t, tf.float32)).numpy() for t in targets01])


def check_target_aligned(train_batches: Sequence[dict], upscale: int = 2) -> Result:
  """After augmentation, each target still matches its line art.

  Line art is re-extracted from each target (`lineart.fixed_lineart`) and compared with
  the line art fed to the model by SSIM; the same is done against misaligned pairs (the
  target shifted by 4 pixels, and the next example's target). Aligned pairs must score
  clearly higher (by ALIGN_MARGIN): otherwise the augmentation moved one and not the other.
  """
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.nn import image_metrics  # pylint: disable=g-import-not-at-top
  batch = train_batches[0]
  fed = (np.asarray(batch["lineart"], np.float32) + 1.0) * 0.5
  targets = np.clip((np.asarray(batch["target"], np.float32) + 1.0) * 0.5, 0.0, 1.0)
  extracted = _extract_lineart(targets, upscale)
  ssim = lambda a, b: np.asarray(image_metrics.ssim(jnp.asarray(a), jnp.asarray(b)))
  aligned = ssim(fed, extracted)
  misaligned = np.maximum(ssim(fed, np.roll(extracted, 4, axis=2)),
                          ssim(fed, np.roll(extracted, 1, axis=0)))
  gap = float(np.mean(aligned) - np.mean(misaligned))
  share = float(np.mean(aligned > misaligned))
  ok = gap > ALIGN_MARGIN
  meaning = ("targets match their line art" if ok else
             "line art and targets do not match: an augmentation (crop, flip) applied to one "
             "and not the other, or pairs mixed up")
  if ok and share < 0.9:
    meaning += f", but {1 - share:.0%} of the images match a shifted target better"
  return Result("target_aligned", _status(ok, share < 0.9), gap,
                f"SSIM of fed line art to line art re-extracted from its target "
                f"{np.mean(aligned):.3f}, to misaligned ones {np.mean(misaligned):.3f}: "
                f"{meaning}")


def check_input_shapes(train_batches: Sequence[dict], eval_batches: Sequence[dict],
                       image_hw: tuple[int, int]) -> Result:
  """Every batch has the config's image size, 1 line-art and 3 target channels."""
  h, w = image_hw
  seen, bad = set(), []
  for split, batches in (("train", train_batches), ("validation", eval_batches)):
    for b in batches:
      for key, channels in (("lineart", 1), ("target", 3)):
        shape = tuple(np.asarray(b[key]).shape)
        seen.add(shape[1:])
        if shape[1:] != (h, w, channels):
          bad.append(f"{split} {key} {shape}")
  ok = not bad
  meaning = (f"every input is {h}x{w} (HxW) with 1 line-art and 3 colour channels" if ok else
             f"expected [B, {h}, {w}, 1|3], got {', '.join(bad[:3])}")
  return Result("input_shapes", _status(ok), float(len(seen)), meaning)


def check_finite(train_batches: Sequence[dict], eval_batches: Sequence[dict], state
                 ) -> Result:
  """No NaN or Inf in the inputs or the initial parameters and statistics."""
  import jax  # pylint: disable=g-import-not-at-top
  bad = []
  for split, batches in (("train", train_batches), ("validation", eval_batches)):
    for key in ("lineart", "target"):
      n = int(np.sum(~np.isfinite(_stack(batches, key))))
      if n:
        bad.append(f"{n} in {split} {key}")
  leaves = jax.tree_util.tree_leaves_with_path(jax.device_get(
      {"gen": state.g_params, "disc": state.d_params, "gen_stats": state.g_batch_stats,
       "disc_stats": state.d_batch_stats}))
  for path, x in leaves:
    n = int(np.sum(~np.isfinite(np.asarray(x))))
    if n:
      bad.append(f"{n} in {jax.tree_util.keystr(path, simple=True, separator='/')}")
  ok = not bad
  return Result("finite", _status(ok), float(len(bad)),
                "no NaN or Inf in inputs, targets or initial variables" if ok else
                f"non-finite values: {', '.join(bad[:4])}")


# ----------------------------------------------------------------------------- model


def expected_init_std() -> float:
  """Standard deviation of the project's kernel initializer (`layers_lib.conv_init`)."""
  import jax  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.nn import layers as layers_lib  # pylint: disable=g-import-not-at-top
  return float(np.std(np.asarray(layers_lib.conv_init(jax.random.key(0), (64, 64, 16)))))


def check_weights_init(state, expected_std: float | None = None) -> Result:
  """Kernels not all zero, with the initializer's spread (ratio of std to expected)."""
  import jax  # pylint: disable=g-import-not-at-top
  expected = expected_init_std() if expected_std is None else expected_std
  ratios = {}
  for net, params in (("gen", state.g_params), ("disc", state.d_params)):
    for path, x in jax.tree_util.tree_leaves_with_path(jax.device_get(params)):
      if getattr(path[-1], "key", None) == "kernel":
        ratios[f"{net}/{jax.tree_util.keystr(path[:-1], simple=True, separator='/')}"] = \
            float(np.std(np.asarray(x))) / expected
  if not ratios:
    return Result("weights_init", FAIL, None, "no kernels found in the parameters")
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
  return Result("weights_init", _status(not fail, warn), lo,
                f"kernel std / expected in [{lo:.3g} ({lo_name}), {hi:.3g} ({hi_name})]: "
                f"{meaning}")


@functools.lru_cache(maxsize=8)
def _jit_step(setup) -> Callable:
  import jax  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.training import state as state_lib  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.training import step as step_lib  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.training import config_check  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.runtime import seeds  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.runtime import compile as compile_lib  # pylint: disable=g-import-not-at-top
  return compile_lib.jit(functools.partial(step_lib.train_step, setup), setup.config)


def _recon_loss(setup, state, batch):
  """G's reconstruction objective (L1 and MSE with their weights, or L1 when both weights
  are 0) in training mode, without dropout randomness (fixed key), on `batch`."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.nn import hints as hints_lib  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.nn import losses  # pylint: disable=g-import-not-at-top
  lc = setup.config.loss
  lineart, target = jnp.asarray(batch["lineart"]), jnp.asarray(batch["target"])
  g_in = setup.generator_input(lineart, hints_lib.no_hints(lineart))
  fake, _ = setup.gen.apply({"params": state.g_params, "batch_stats": state.g_batch_stats},
                            g_in, train=True, mutable=["batch_stats"],
                            rngs={"dropout": jax.random.key(0)})
  l1, mse = losses.l1_loss(fake, target), losses.mse_loss(fake, target)
  if lc.l1_weight == 0 and lc.mse_weight == 0:
    return l1
  return lc.l1_weight * l1 + lc.mse_weight * mse


def check_initial_loss(setup, state, batch) -> Result:
  """The untrained generator's L1 against chance: the L1 of predicting gray (0) for every
  pixel, which is what a small random generator should be close to."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.nn import hints as hints_lib  # pylint: disable=g-import-not-at-top
  lineart, target = jnp.asarray(batch["lineart"]), jnp.asarray(batch["target"])
  fake = jax.jit(setup.generate)(state, lineart, hints_lib.no_hints(lineart))
  l1 = float(jnp.mean(jnp.abs(fake - target)))
  chance = float(jnp.mean(jnp.abs(target)))
  ratio = l1 / chance if chance > 0 else math.inf
  ok = math.isfinite(ratio) and CHANCE_RATIO_FAIL[0] <= ratio <= CHANCE_RATIO_FAIL[1]
  warn = not CHANCE_RATIO[0] <= ratio <= CHANCE_RATIO[1]
  meaning = ("the untrained model is about as good as chance, as it should be" if ok and
             not warn else "the initial loss is far from chance: saturated or biased outputs "
             "(initialisation, output layer) or a loss that does not compare like with like")
  return Result("initial_loss", _status(ok, warn), ratio,
                f"initial L1 {l1:.4f} vs {chance:.4f} for predicting gray (ratio "
                f"{ratio:.3g}): {meaning}")


def check_one_step(setup, state, batch) -> Result:
  """One real training step (D then G) on a fixed batch lowers G's reconstruction loss on
  that batch."""
  import jax  # pylint: disable=g-import-not-at-top
  loss = jax.jit(functools.partial(_recon_loss, setup))
  before = float(loss(state, batch))
  new_state, _ = _jit_step(setup)(state, batch)
  after = float(loss(new_state, batch))
  change = (after - before) / before if before else math.inf
  ok = math.isfinite(after) and after < before
  meaning = ("one gradient step lowers the loss" if ok else
             "the loss did not fall after one step on the same batch: learning rate far too "
             "high, a sign error, or updates not applied")
  return Result("one_step_lowers_loss", _status(ok), change,
                f"reconstruction loss {before:.5g} -> {after:.5g} ({change:+.2%}): {meaning}")


def check_update_ratio(setup, state, batch) -> Result:
  """The median update-to-weight ratio |dW| / |W| of one real step, per network: far above
  the rule the learning rate is too high (weights jump), far below too low."""
  import jax  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.training.diagnostics import stats as diagnostics  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.training.diagnostics import writer  # pylint: disable=g-import-not-at-top
  new_state, _ = _jit_step(setup)(state, batch)
  medians = {}
  for net, old, new in (("gen", state.g_params, new_state.g_params),
                        ("disc", state.d_params, new_state.d_params)):
    if not jax.tree_util.tree_leaves(old):
      continue
    w = jax.device_get(diagnostics.layer_norms(old))
    dw = jax.device_get(diagnostics.layer_norms(
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
  return Result("update_ratio", _status(ok, warn), worst,
                f"median |dW|/|W| of one step: {listed} (healthy {UPDATE_RATIO[0]:g} to "
                f"{UPDATE_RATIO[1]:g}): {meaning}")


def check_gradients(setup, state, batch, opts: dict[str, Any] | None = None) -> Result:
  """Every layer of G and D gets a non-zero, finite, not exploding gradient; WARN when the
  gradient RMS shrinks by more than grad_shrink_factor from output to input layer."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.training.diagnostics import stats as diagnostics  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.training.diagnostics import writer  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.nn import models  # pylint: disable=g-import-not-at-top
  opts = opts or writer.options(setup.config)
  batch = {k: jnp.asarray(batch[k]) for k in ("lineart", "target")}
  grads = jax.jit(functools.partial(diagnostics.loss_gradients, setup))(state, batch)
  h, w = setup.image_hw
  cin = models.input_channels(setup.config)
  zero, bad, shrink = [], [], []
  smallest = math.inf
  for net, g, params in (("gen", grads[0], state.g_params), ("disc", grads[1],
                                                              state.d_params)):
    if not jax.tree_util.tree_leaves(params):
      continue
    norms = {k: float(v) for k, v in jax.device_get(diagnostics.layer_norms(g)).items()}
    smallest = min(smallest, min(norms.values()))
    zero += [f"{net}/{k}" for k, v in norms.items() if v == 0.0]
    bad += [f"{net}/{k}={v:.3g}" for k, v in norms.items()
            if not math.isfinite(v) or v > opts["grad_norm_max"]]
    if net == "gen":
      order = diagnostics.call_order(setup.gen, jnp.zeros((1, h, w, cin)), train=False)
    else:
      order = diagnostics.call_order(setup.disc, jnp.zeros((1, h, w, 1)),
                                     jnp.zeros((1, h, w, 3)), train=False)
    sizes = diagnostics.layer_sizes(params)
    shrink += [m for m in diagnostics.gradient_warnings(net, norms, sizes, order, opts)
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
  return Result("gradients_reach_layers", _status(ok, bool(shrink)), smallest,
                f"smallest layer gradient norm {smallest:.3g}: {meaning}")


def check_dead_units(setup, state, batch, opts: dict[str, Any] | None = None) -> Result:
  """Share of dead units (pre-activation <= 0 for every example and position) after each
  activation, G and D in training mode on a validation batch."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.training.diagnostics import stats as diagnostics  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.training.diagnostics import writer  # pylint: disable=g-import-not-at-top
  opts = opts or writer.options(setup.config)

  def fractions(state, lineart, target):
    records, _ = diagnostics.capture(setup, state, lineart, target, train=True)
    return {k: diagnostics.dead_fraction(v) for k, v in records.items()
            if k.split("/")[-1] not in diagnostics.OUTPUT_LAYERS.values()}

  dead = jax.device_get(jax.jit(fractions)(state, jnp.asarray(batch["lineart"]),
                                           jnp.asarray(batch["target"])))
  if not dead:
    return Result("dead_units", PASS, 0.0, "no ReLU-like activation layers")
  name, worst = max(((k, float(v)) for k, v in dead.items()), key=lambda kv: kv[1])
  ok = worst <= opts["dead_max"]
  meaning = ("few or no dead units" if worst <= DEAD_WARN else
             "many units never fire: zero or bad initialisation, uncentred inputs, or a "
             "learning rate that pushed them negative")
  return Result("dead_units", _status(ok, worst > DEAD_WARN), worst,
                f"largest share of dead units {worst:.1%} in {name} (FAIL above "
                f"{opts['dead_max']:.0%}): {meaning}")


def check_frozen(setup, state, batch, freeze: Sequence[str]) -> Result:
  """After one step, the parameters under the `freeze` prefixes ("gen/...", "disc/...") are
  bit-identical and every other parameter tensor changed (none frozen by accident)."""
  import jax  # pylint: disable=g-import-not-at-top
  new_state, _ = _jit_step(setup)(state, batch)
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
  return Result("frozen_stay_frozen", _status(ok), float(len(moved_frozen) + len(stuck)),
                f"{count} parameter tensors checked: {meaning}")


def check_inference_deterministic(setup, state, batch) -> Result:
  """Inference twice gives bit-identical outputs (dropout off); with dropout configured,
  training-mode outputs differ between dropout keys (dropout on in training)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.nn import hints as hints_lib  # pylint: disable=g-import-not-at-top
  lineart = jnp.asarray(batch["lineart"])
  empty = hints_lib.no_hints(lineart)
  a = np.asarray(setup.generate(state, lineart, empty))
  b = np.asarray(setup.generate(state, lineart, empty))
  diff = float(np.max(np.abs(a - b)))
  problems = []
  if diff != 0.0:
    problems.append(f"two inference runs differ by up to {diff:.3g}: dropout (or other "
                    "randomness) is on at inference")
  dropout = float(setup.config.model.gen.dropout)
  if dropout > 0:
    g_in = setup.generator_input(lineart, empty)
    run = lambda key: np.asarray(setup.gen.apply(
        {"params": state.g_params, "batch_stats": state.g_batch_stats}, g_in, train=True,
        mutable=["batch_stats"], rngs={"dropout": jax.random.key(key)})[0])
    if np.array_equal(run(1), run(2)):
      problems.append(f"config.model.gen.dropout={dropout} but training outputs do not depend "
                      "on the dropout key: dropout is off in training")
  ok = not problems
  meaning = problems[0] if problems else (
      "inference is deterministic" + (" and dropout is active in training" if dropout > 0
                                      else " (no dropout configured)"))
  return Result("inference_deterministic", _status(ok), diff, meaning)


def check_batchnorm(setup, state, batch) -> Result:
  """BatchNorm statistics change in a training-mode pass and stay put at inference."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.nn import hints as hints_lib  # pylint: disable=g-import-not-at-top
  lineart, target = jnp.asarray(batch["lineart"]), jnp.asarray(batch["target"])
  g_in = setup.generator_input(lineart, hints_lib.no_hints(lineart))
  problems, checked = [], 0
  nets = [("gen", setup.gen, state.g_params, state.g_batch_stats, (g_in,))]
  if setup.use_gan:
    nets.append(("disc", setup.disc, state.d_params, state.d_batch_stats, (lineart, target)))
  for net, module, params, stats, args in nets:
    if not jax.tree_util.tree_leaves(stats):
      continue
    checked += 1
    for train in (True, False):
      _, new = module.apply({"params": params, "batch_stats": stats}, *args, train=train,
                            mutable=["batch_stats"], rngs={"dropout": jax.random.key(0)})
      same = [np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(
          jax.tree_util.tree_leaves(stats), jax.tree_util.tree_leaves(new["batch_stats"]))]
      if train and any(same):
        problems.append(f"{net}: {sum(same)} of {len(same)} statistics did not update "
                        "in training")
      if not train and not all(same):
        problems.append(f"{net}: statistics changed at inference")
  if not checked:
    return Result("batchnorm_updates", PASS, 0.0, "no BatchNorm in this config")
  ok = not problems
  return Result("batchnorm_updates", _status(ok), float(len(problems)),
                problems[0] if problems else "BatchNorm statistics update in training and "
                "stay fixed at inference")


def non_square_hw(setup) -> tuple[int, int]:
  """A height and width that differ and fit the networks (multiples of 2**depth)."""
  h, w = setup.image_hw
  if h != w:
    return h, w
  return h, w + 2**int(setup.config.model.gen.depth)


def check_output_shapes(setup, state) -> Result:
  """On a non-square input (H != W, so swapped axes fail), G gives [B, H, W, 3] in [-1, 1]
  in training and at inference, and D one logit per patch [B, h, w, 1] with h/w = H/W."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.nn import hints as hints_lib  # pylint: disable=g-import-not-at-top
  h, w = non_square_hw(setup)
  rng = np.random.default_rng(0)
  lineart = jnp.asarray(rng.uniform(-1, 1, (2, h, w, 1)), jnp.float32)
  target = jnp.asarray(rng.uniform(-1, 1, (2, h, w, 3)), jnp.float32)
  empty = hints_lib.no_hints(lineart)
  problems = []
  inference = setup.generate(state, lineart, empty)
  training, _ = setup.gen.apply({"params": state.g_params, "batch_stats": state.g_batch_stats},
                                setup.generator_input(lineart, empty), train=True,
                                mutable=["batch_stats"], rngs={"dropout": jax.random.key(0)})
  for mode, out in (("inference", inference), ("training", training)):
    if out.shape != (2, h, w, 3):
      problems.append(f"G {mode} output {out.shape} for input {(2, h, w, 1)}")
    elif float(jnp.max(jnp.abs(out))) > 1.0:
      problems.append(f"G {mode} output leaves [-1, 1]")
  if setup.use_gan:
    logits, _ = setup.disc.apply({"params": state.d_params, "batch_stats": state.d_batch_stats},
                                 lineart, target, train=True, mutable=["batch_stats"])
    # One logit per patch, the patch grid as long as the image on the same axis.
    if logits.ndim != 4 or logits.shape[0] != 2 or logits.shape[-1] != 1 or min(
        logits.shape[1:3]) < 1 or np.sign(logits.shape[1] - logits.shape[2]) != np.sign(h - w):
      problems.append(f"D logits {logits.shape} for a {h}x{w} input")
  ok = not problems
  return Result("non_square_shapes", _status(ok), float(len(problems)),
                problems[0] if problems else f"{h}x{w} input: G gives {h}x{w}x3 in [-1, 1] "
                "in training and at inference" + (", D a patch grid" if setup.use_gan else ""))


def check_overfit(setup, state, batch, steps: int = 200, factor: float = 5.0,
                  every: int = 10) -> Result:
  """Training on one fixed small batch (no augmentation: the same images every step)
  drives G's L1 down by `factor` within `steps` steps; otherwise the code cannot learn."""
  import jax  # pylint: disable=g-import-not-at-top
  step_fn = _jit_step(setup)
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
  return Result("overfit_tiny_subset", _status(ok), reduction,
                f"L1 {first:.4f} -> best {best:.4f} ({time.perf_counter() - t0:.0f} s): "
                f"{meaning}")


# ------------------------------------------------------------------------------- run


def first_batches(config, seed: int, num_train: int = 4, num_eval: int = 1
                  ) -> tuple[list[dict], list[dict]]:
  """`num_train` training batches and `num_eval` validation batches (valid images only)."""
  from mangacolor_jax.input_pipeline import datasets  # pylint: disable=g-import-not-at-top
  it = datasets.create_train_dataset(config, seed=seed).as_numpy_iterator()
  train = [next(it) for _ in range(num_train)]
  evals = []
  for batch in datasets.create_eval_dataset(config).as_numpy_iterator():
    valid = np.asarray(batch.pop("valid")) > 0
    batch.pop("name", None)
    evals.append({k: v[valid] for k, v in batch.items()})
    if len(evals) >= num_eval:
      break
  return train, evals


def _guard(name: str, fn: Callable[[], Result]) -> Result:
  try:
    return fn()
  except Exception as e:  # pylint: disable=broad-except
    logging.exception("check %s raised", name)
    return Result(name, FAIL, None, f"the check raised {type(e).__name__}: {e}")


def run_checks(config, *, setup=None, state=None, train_batches: Sequence[dict] | None = None,
               eval_batches: Sequence[dict] | None = None, images: int = 8,
               overfit_steps: int = 200, overfit_factor: float = 5.0,
               skip: Iterable[str] = (), echo: Callable[[str], None] | None = None
               ) -> list[Result]:
  """Runs every check; any argument left None is built from `config` as training would.

  Args:
    config: the run's ConfigDict.
    setup: a `state.Networks` (tests pass broken ones).
    state: the initial `GANState` (default: `setup.create_state(key(config.seed))`).
    train_batches, eval_batches: numpy batches (default: the config's pipelines' first).
    images: size of the fixed batch the model checks use (the first training images).
    overfit_steps, overfit_factor: budget and target of the overfitting check.
    skip: names of checks not to run.
    echo: called with each result's line as soon as it is known.

  Returns:
    The results, in order.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.training.diagnostics import stats as diagnostics  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.training.diagnostics import writer  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.training import state as state_lib  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.training import step as step_lib  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.training import config_check  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.runtime import seeds  # pylint: disable=g-import-not-at-top
  # The keys of `trainer.train_and_evaluate`: the same initial state and first batches as a
  # training run of this config (seed -1, a fresh seed there, is 0 here).
  keys = seeds.run_keys(max(int(config.seed), 0))
  init_rng, data_seed = keys.init, keys.data_seed
  setup = setup or state_lib.create_networks(config)
  if train_batches is None or eval_batches is None:
    t, e = first_batches(config, data_seed)
    train_batches = t if train_batches is None else train_batches
    eval_batches = e if eval_batches is None else eval_batches
  if state is None:
    state = jax.jit(setup.create_state)(init_rng)
  fixed = {k: np.asarray(train_batches[0][k])[:images] for k in ("lineart", "target")}
  val = {k: np.asarray(eval_batches[0][k])[:images] for k in ("lineart", "target")}
  opts = writer.options(config)
  freeze = tuple(config.model.freeze)
  upscale = int(config.data.lineart_upscale)
  checks = [
      ("input_range", lambda: check_input_range(train_batches, eval_batches)),
      ("input_centring", lambda: check_input_centring(train_batches)),
      ("batches_differ", lambda: check_batches_differ(train_batches)),
      ("target_aligned", lambda: check_target_aligned(train_batches, upscale)),
      ("input_shapes", lambda: check_input_shapes(train_batches, eval_batches,
                                                  setup.image_hw)),
      ("finite", lambda: check_finite(train_batches, eval_batches, state)),
      ("weights_init", lambda: check_weights_init(state)),
      ("initial_loss", lambda: check_initial_loss(setup, state, fixed)),
      ("one_step_lowers_loss", lambda: check_one_step(setup, state, fixed)),
      ("update_ratio", lambda: check_update_ratio(setup, state, fixed)),
      ("gradients_reach_layers", lambda: check_gradients(setup, state, fixed, opts)),
      ("dead_units", lambda: check_dead_units(setup, state, val, opts)),
      ("frozen_stay_frozen", lambda: check_frozen(setup, state, fixed, freeze)),
      ("inference_deterministic", lambda: check_inference_deterministic(setup, state,
                                                                        fixed)),
      ("batchnorm_updates", lambda: check_batchnorm(setup, state, fixed)),
      ("non_square_shapes", lambda: check_output_shapes(setup, state)),
      ("overfit_tiny_subset", lambda: check_overfit(setup, state, fixed, overfit_steps,
                                                    overfit_factor)),
  ]
  results = []
  for name, fn in checks:
    if name in skip:
      continue
    result = _guard(name, fn)
    results.append(result)
    if echo:
      echo(result.line())
  return results


def write_report(results: Sequence[Result], path: str, extra: dict | None = None) -> None:
  """The results as JSON (atomically: temp file + rename)."""
  report = dict(extra or {})
  report["checks"] = [dataclasses.asdict(r) for r in results]
  for check in report["checks"]:  # strict JSON: no NaN / Infinity literals
    if check["value"] is not None and not math.isfinite(check["value"]):
      check["value"] = str(check["value"])
  report["failed"] = [r.name for r in results if r.status == FAIL]
  report["warned"] = [r.name for r in results if r.status == WARN]
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(report, f, indent=2, default=str)
  os.replace(tmp, path)


def define_flags():
  config_flags.DEFINE_config_file("config", None, "Configuration file.", lock_config=True)
  flags.DEFINE_string("workdir", None, "Directory for doctor.json.")
  flags.DEFINE_integer("images", 8, "Images in the fixed batch of the model checks.")
  flags.DEFINE_integer("overfit_steps", 200, "Step budget of the overfitting check.")
  flags.DEFINE_float("overfit_factor", 5.0, "L1 reduction the overfitting check needs.")
  flags.DEFINE_list("skip", [], "Checks not to run.")
  flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError("Too many command-line arguments.")
  import jax  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.training import state as state_lib  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.training import step as step_lib  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.training import config_check  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.runtime import seeds  # pylint: disable=g-import-not-at-top
  config = FLAGS.config
  try:
    config_check.validate_config(config)
  except ValueError as e:
    print(f"FAIL  config                   -  {e}")
    sys.exit(2)
  os.makedirs(FLAGS.workdir, exist_ok=True)
  t0 = time.perf_counter()
  print(f"doctor: {len(jax.devices())} {jax.devices()[0].platform} device(s); model checks on "
        f"{FLAGS.images} training images", flush=True)
  results = run_checks(config, images=FLAGS.images, overfit_steps=FLAGS.overfit_steps,
                       overfit_factor=FLAGS.overfit_factor, skip=FLAGS.skip,
                       echo=lambda line: print(line, flush=True))
  path = os.path.join(FLAGS.workdir, "doctor.json")
  seconds = time.perf_counter() - t0
  write_report(results, path, {"config": config.to_dict(), "seconds": round(seconds, 1)})
  failed = [r.name for r in results if r.status == FAIL]
  warned = [r.name for r in results if r.status == WARN]
  print(f"doctor: {len(results) - len(failed) - len(warned)} PASS, {len(warned)} WARN, "
        f"{len(failed)} FAIL in {seconds:.0f} s; report {path}", flush=True)
  if failed:
    sys.exit(1)


if __name__ == "__main__":
  define_flags()
  app.run(main)
