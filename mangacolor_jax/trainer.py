"""Training and evaluation loop for the line-art colorization GAN.

`train_and_evaluate(config, workdir)` is the whole job: it validates the config, builds the
mesh, the models, the optimisers and the data, restores the latest checkpoint in `workdir`
if there is one, and runs the pure, jitted `train_step` (D update, then G update) with
periodic metrics, evaluation and checkpoints. A run restarted on the same workdir resumes
exactly: the data stream and every key are functions of the step.
"""

import functools
import json
import os
import secrets
import subprocess
import time
from typing import Any

from absl import logging
import flax
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from mangacolor_jax import checkpointing
from mangacolor_jax import fast_layers
from mangacolor_jax import hints as hints_lib
from mangacolor_jax import host_memory
from mangacolor_jax import image_metrics
from mangacolor_jax import losses
from mangacolor_jax import models
from mangacolor_jax import sharding
from mangacolor_jax import xla_cpu

SCHEDULES = ("constant", "linear_decay", "exponential", "cosine")
DTYPES = ("float32", "bfloat16")
HINT_MODES = ("none", "sparse")
# Key for the hints of evaluation: fixed, so "with hints" metrics compare across runs.
EVAL_HINTS_SEED = 1234


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
  rng: jax.Array  # typed key; per-step keys are fold_in(rng, step)


# ----------------------------------------------------------------------------- config


def _check_choice(value, choices, field):
  if value not in choices:
    raise ValueError(f"{field}={value!r} is not one of {choices}")


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the config field for values that cannot work.

  Runs before anything is compiled or read in bulk, so a typo costs seconds.
  """
  m = config.model
  _check_choice(m.norm, models.NORMS, "config.model.norm")
  _check_choice(m.disc_norm, models.NORMS, "config.model.disc_norm")
  _check_choice(m.activation, models.ACTIVATIONS, "config.model.activation")
  _check_choice(m.gen_upsample, models.UPSAMPLES, "config.model.gen_upsample")
  _check_choice(m.get("downsample", "conv"), fast_layers.DOWNSAMPLES, "config.model.downsample")
  _check_choice(config.loss.gan, losses.GANS, "config.loss.gan")
  _check_choice(config.loss.gradient_penalty, losses.PENALTIES,
                "config.loss.gradient_penalty")
  _check_choice(config.optim.schedule, SCHEDULES, "config.optim.schedule")
  _check_choice(config.dtype, DTYPES, "config.dtype")
  _check_choice(config.hints.mode, HINT_MODES, "config.hints.mode")
  for field in ("batch_size", "num_train_steps", "log_every_steps", "eval_every_steps",
                "checkpoint_every_steps", "keep_best_checkpoints"):
    if int(config[field]) <= 0:
      raise ValueError(f"config.{field}={config[field]} must be positive")
  for field in ("early_stopping_patience", "diagnostics_every_steps"):
    if int(config.get(field, 0)) < 0:
      raise ValueError(f"config.{field}={config[field]} must be >= 0 (0 turns it off)")
  for field in ("gen_features", "gen_depth", "gen_max_features", "disc_features",
                "disc_layers"):
    if int(m[field]) <= 0:
      raise ValueError(f"config.model.{field}={m[field]} must be positive")
  for prefix in m.get("freeze", ()):
    if not str(prefix).startswith(("gen/", "disc/")):
      raise ValueError(f"config.model.freeze: {prefix!r} must start with gen/ or disc/")
  if not 0.0 <= m.dropout < 1.0:
    raise ValueError(f"config.model.dropout={m.dropout} must be in [0, 1)")
  if not 0.0 <= config.hints.drop_prob <= 1.0:
    raise ValueError(f"config.hints.drop_prob={config.hints.drop_prob} must be in [0, 1]")
  if config.loss.gan == "none" and config.loss.gradient_penalty != "none":
    raise ValueError("config.loss.gradient_penalty needs a GAN loss (config.loss.gan)")
  # input_pipeline and clu import TensorFlow: imported where data is read or metrics are
  # written, so that Setup and train_step import without it (GPU benchmark machines).
  from mangacolor_jax import input_pipeline  # pylint: disable=g-import-not-at-top
  input_pipeline.validate_data_config(config)
  h, w = input_pipeline.image_hw(config)
  multiple = 2**m.gen_depth
  if h % multiple or w % multiple:
    raise ValueError(
        f"config.data.image_size={(h, w)} must be a multiple of 2**config.model.gen_depth"
        f" = {multiple} on each side")
  if config.loss.gan != "none" and min(h, w) < 2**(m.disc_layers + 1):
    raise ValueError(f"config.data.image_size={(h, w)} is too small for "
                     f"config.model.disc_layers={m.disc_layers}")


def resolve_seed(config: ml_collections.ConfigDict, restored_meta: dict | None) -> int:
  """The run's seed: the config's, the resumed run's, or a fresh one for seed == -1."""
  if config.seed >= 0:
    return int(config.seed)
  if restored_meta is not None and "seed" in restored_meta:
    return int(restored_meta["seed"])
  return secrets.randbelow(2**31 - 1)


# ------------------------------------------------------------------ models and optimisers


def create_learning_rate_fn(config, base_lr: float) -> optax.Schedule:
  """Warm-up (linear from 0) followed by the configured decay."""
  o = config.optim
  steps = max(int(config.num_train_steps) - int(o.warmup_steps), 1)
  if o.schedule == "constant":
    main = optax.constant_schedule(base_lr)
  elif o.schedule == "linear_decay":
    main = optax.linear_schedule(base_lr, 0.0, steps)
  elif o.schedule == "exponential":
    main = optax.exponential_decay(base_lr, transition_steps=int(o.decay_every),
                                   decay_rate=float(o.decay_rate), staircase=True)
  elif o.schedule == "cosine":
    main = optax.cosine_decay_schedule(base_lr, steps)
  else:
    raise ValueError(f"config.optim.schedule={o.schedule!r} is not one of {SCHEDULES}")
  if o.warmup_steps <= 0:
    return main
  warmup = optax.linear_schedule(0.0, base_lr, int(o.warmup_steps))
  return optax.join_schedules([warmup, main], [int(o.warmup_steps)])


def create_optimizer(config, base_lr: float, frozen: tuple[str, ...] = ()
                     ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """Adam with the configured schedule; `frozen` parameter-path prefixes get zero updates."""
  lr_fn = create_learning_rate_fn(config, base_lr)
  tx = optax.adam(lr_fn, b1=config.optim.b1, b2=config.optim.b2)
  if config.optim.grad_clip > 0:
    tx = optax.chain(optax.clip_by_global_norm(config.optim.grad_clip), tx)
  if frozen:  # only then: the optimiser state of runs that freeze nothing is unchanged

    def labels(params):
      def label(path, _):
        name = jax.tree_util.keystr(path, simple=True, separator="/")
        return "frozen" if any(name == f or name.startswith(f + "/") for f in frozen) \
            else "train"
      out = jax.tree_util.tree_map_with_path(label, params)
      if "frozen" not in jax.tree_util.tree_leaves(out):
        raise ValueError(f"config.model.freeze: {frozen} matches no parameter")
      return out

    tx = optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)
  return tx, lr_fn


class Setup:
  """The static parts of a run: models, optimisers and input shapes."""

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config
    self.gen, self.disc = models.create_models(config)
    freeze = tuple(config.model.get("freeze", ()))
    self.g_tx, self.g_lr_fn = create_optimizer(
        config, config.optim.g_lr, tuple(f[4:] for f in freeze if f.startswith("gen/")))
    self.d_tx, self.d_lr_fn = create_optimizer(
        config, config.optim.d_lr, tuple(f[5:] for f in freeze if f.startswith("disc/")))
    self.use_gan = config.loss.gan != "none"
    self.use_hints = config.hints.mode == "sparse"
    # input_pipeline.image_hw without importing TensorFlow (validate_config checks sizes).
    self.image_hw = (int(config.data.image_size),
                     int(config.data.get("image_width", 0) or config.data.image_size))

  def create_state(self, rng: jax.Array) -> GANState:
    """Initial state from `rng` (a pure function: use with jax.eval_shape or jit)."""
    g_rng, d_rng, train_rng = jax.random.split(rng, 3)
    h, w = self.image_hw
    lineart = jnp.zeros((1, h, w, models.input_channels(self.config)), jnp.float32)
    g_vars = self.gen.init(g_rng, lineart, train=False)
    g_params = g_vars["params"]
    if self.use_gan:
      d_vars = self.disc.init(d_rng, lineart[..., :1], jnp.zeros((1, h, w, 3)), train=False)
    else:  # the plain reconstruction baseline has no discriminator
      d_vars = {"params": {}}
    return GANState(
        step=jnp.zeros((), jnp.int32),
        g_params=g_params,
        g_batch_stats=g_vars.get("batch_stats", {}),
        g_opt_state=self.g_tx.init(g_params),
        d_params=d_vars["params"],
        d_batch_stats=d_vars.get("batch_stats", {}),
        d_opt_state=self.d_tx.init(d_vars["params"]),
        rng=train_rng)

  def generator_input(self, lineart, hint_tensor):
    if not self.use_hints:
      return lineart
    return jnp.concatenate([lineart, hint_tensor], axis=-1)

  def generate(self, state: GANState, lineart, hint_tensor):
    """Inference: batch statistics from training, dropout off."""
    g_in = self.generator_input(lineart, hint_tensor)
    return self.gen.apply({"params": state.g_params, "batch_stats": state.g_batch_stats},
                          g_in, train=False)


# ------------------------------------------------------------------------- the steps


def train_step(setup: Setup, state: GANState, batch: dict[str, jax.Array]
               ) -> tuple[GANState, dict[str, jax.Array]]:
  """One D update then one G update. Pure: all randomness from fold_in(state.rng, step)."""
  config = setup.config
  lc = config.loss
  rng = jax.random.fold_in(state.rng, state.step)
  hint_rng, dropout_rng, gp_rng = jax.random.split(rng, 3)
  lineart, target = batch["lineart"], batch["target"]
  if setup.use_hints:
    hint_tensor = hints_lib.sample_hints(hint_rng, target, config.hints.max_points,
                                         config.hints.drop_prob)
  else:
    hint_tensor = None
  g_in = setup.generator_input(lineart, hint_tensor)

  def g_forward(g_params):
    fake, new_vars = setup.gen.apply(
        {"params": g_params, "batch_stats": state.g_batch_stats}, g_in, train=True,
        mutable=["batch_stats"], rngs={"dropout": dropout_rng})
    return fake, new_vars.get("batch_stats", {})

  # G runs forward once; its backward pass is taken later through the saved VJP, so the
  # D step and the G step share one generator forward pass (as pix2pix does).
  fake, g_vjp, g_batch_stats = jax.vjp(g_forward, state.g_params, has_aux=True)
  metrics = {}

  d_params, d_batch_stats, d_opt_state = (state.d_params, state.d_batch_stats,
                                          state.d_opt_state)
  if setup.use_gan:
    def d_apply(params, stats, image):
      logits, new_vars = setup.disc.apply(
          {"params": params, "batch_stats": stats}, lineart, image, train=True,
          mutable=["batch_stats"])
      return logits, new_vars.get("batch_stats", {})

    def d_loss_fn(params):
      # Fakes and reals go through D separately so batch statistics never mix them.
      fake_logits, stats = d_apply(params, state.d_batch_stats,
                                   jax.lax.stop_gradient(fake))
      real_logits, stats = d_apply(params, stats, target)
      d_adv = losses.d_loss(real_logits, fake_logits, lc.gan)
      gp = losses.gradient_penalty(lambda x: d_apply(params, stats, x)[0], target, gp_rng,
                                   lc.gradient_penalty)
      real_acc, fake_acc = losses.discriminator_accuracy(real_logits, fake_logits, lc.gan)
      aux = {"stats": stats, "d_adv": d_adv, "d_gp": gp, "d_real_acc": real_acc,
             "d_fake_acc": fake_acc}
      return d_adv + lc.gp_weight * gp, aux

    (d_loss, d_aux), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(state.d_params)
    d_updates, d_opt_state = setup.d_tx.update(d_grads, state.d_opt_state, state.d_params)
    d_params = optax.apply_updates(state.d_params, d_updates)
    d_batch_stats = d_aux.pop("stats")
    metrics.update(d_loss=d_loss, d_lr=setup.d_lr_fn(state.step), **d_aux)

  def g_loss_fn(fake):
    terms = {"g_l1": losses.l1_loss(fake, target), "g_mse": losses.mse_loss(fake, target)}
    total = lc.l1_weight * terms["g_l1"] + lc.mse_weight * terms["g_mse"]
    if setup.use_gan:
      # D's statistics are not updated by the G step (its output is discarded).
      fake_logits, _ = setup.disc.apply(
          {"params": d_params, "batch_stats": d_batch_stats}, lineart, fake, train=True,
          mutable=["batch_stats"])
      terms["g_adv"] = losses.g_adv_loss(fake_logits, lc.gan)
      total = total + lc.gan_weight * terms["g_adv"]
    return total, terms

  (g_loss, g_terms), fake_grad = jax.value_and_grad(g_loss_fn, has_aux=True)(fake)
  (g_grads,) = g_vjp(fake_grad)
  if lc.l2_weight > 0:
    l2, l2_grads = jax.value_and_grad(losses.l2_penalty)(state.g_params)
    g_grads = jax.tree_util.tree_map(lambda g, r: g + lc.l2_weight * r, g_grads, l2_grads)
    g_terms["g_l2"] = l2
  g_updates, g_opt_state = setup.g_tx.update(g_grads, state.g_opt_state, state.g_params)
  g_params = optax.apply_updates(state.g_params, g_updates)
  metrics.update(g_loss=g_loss, lr=setup.g_lr_fn(state.step), **g_terms)

  new_state = state.replace(
      step=state.step + 1, g_params=g_params, g_batch_stats=g_batch_stats,
      g_opt_state=g_opt_state, d_params=d_params, d_batch_stats=d_batch_stats,
      d_opt_state=d_opt_state)
  return new_state, metrics


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


def eval_step(setup: Setup, state: GANState, batch: dict[str, jax.Array],
              hints_rng: jax.Array) -> tuple[dict[str, jax.Array], jax.Array]:
  """Per-example metrics without hints (and with sampled sparse hints if the model takes
  them), plus the no-hint outputs for sample grids."""
  lineart, target = batch["lineart"], batch["target"]
  empty = hints_lib.no_hints(lineart)
  fake = setup.generate(state, lineart, empty)
  metrics = quality_metrics(fake, target)
  metrics["colourfulness_target"] = image_metrics.colourfulness(image_metrics.to_unit(target))
  # The line art itself as a colour image: the trivial baseline a model must beat.
  metrics["psnr_lineart"] = image_metrics.psnr(
      image_metrics.to_unit(jnp.repeat(lineart, 3, axis=-1)), image_metrics.to_unit(target))
  if setup.use_hints:
    # Sparse hints only (no image dropped), as a user who gives some would.
    hint_tensor = hints_lib.sample_hints(hints_rng, target, setup.config.hints.max_points,
                                         0.0)
    metrics.update(quality_metrics(setup.generate(state, lineart, hint_tensor), target,
                                   "_hints"))
  return metrics, fake


# ------------------------------------------------------------------------- the loop


def all_finite(state: GANState) -> jax.Array:
  """True when every parameter and statistic is finite (checked before each save)."""
  leaves = jax.tree_util.tree_leaves((state.g_params, state.g_batch_stats, state.d_params,
                                      state.d_batch_stats))
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def git_commit() -> str:
  """The code version, recorded in checkpoints ("unknown" outside a git checkout)."""
  here = os.path.dirname(os.path.abspath(__file__))
  try:
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                            text=True, timeout=10, check=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                           cwd=here, capture_output=True, text=True, timeout=10).stdout
    return commit + ("-dirty" if dirty.strip() else "")
  except (OSError, subprocess.SubprocessError):
    return "unknown"


def flatten_config(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """Flat {"a.b": value} with scalars only, for TensorBoard hparams."""
  out = {}

  def visit(prefix, d):
    for k, v in d.items():
      key = f"{prefix}{k}"
      if isinstance(v, dict):
        visit(key + ".", v)
      elif isinstance(v, (bool, int, float, str)):
        out[key] = v
      else:
        out[key] = str(v)

  visit("", config.to_dict())
  return out


def sample_grid(lineart: np.ndarray, output: np.ndarray, target: np.ndarray,
                num: int) -> np.ndarray:
  """Rows of line art | output | target, as uint8 [rows*H, 3*W, 3]."""
  rows = []
  for i in range(min(num, lineart.shape[0])):
    row = [np.repeat(lineart[i], 3, axis=-1), output[i], target[i]]
    rows.append(np.concatenate([image_metrics.to_uint8(x) for x in row], axis=1))
  return np.concatenate(rows, axis=0)


def evaluate(setup: Setup, state: GANState, eval_ds, mesh, compiled_eval_step,
             num_samples: int = 0, on_batch=None):
  """Averages eval metrics over a finite dataset.

  `on_batch(batch, outputs, valid, names)`, if given, sees every batch with the model's
  outputs (host arrays; `valid` marks the real, non-padding examples).

  Returns:
    (metrics, images): metrics averaged over the real (non-padding) examples, prefixed
    "eval_"; images (when num_samples > 0) holds "eval_samples", the first examples, and
    "eval_worst", the examples with the largest L1 error (the series' error analysis),
    each as a uint8 grid of line art | output | target rows.
  """
  sums, count, first, worst = {}, 0.0, None, []
  for i, batch in enumerate(eval_ds.as_numpy_iterator()):
    valid = batch.pop("valid")
    names = batch.pop("name", None)
    placed = sharding.place_batch(batch, mesh)
    rng = jax.random.fold_in(jax.random.key(EVAL_HINTS_SEED), i)
    per_example, fake = compiled_eval_step(state, placed, rng)
    per_example = jax.device_get(per_example)
    for k, v in per_example.items():
      sums[k] = sums.get(k, 0.0) + float(np.sum(np.asarray(v, np.float64) * valid))
    count += float(valid.sum())
    if num_samples or on_batch is not None:
      fake = np.asarray(jax.device_get(fake))
    if on_batch is not None:
      on_batch(batch, fake, valid, names)
    if num_samples:
      rows = [(float(per_example["l1"][j]), batch["lineart"][j], fake[j], batch["target"][j])
              for j in np.nonzero(valid)[0]]
      if first is None:
        first = rows[:num_samples]
      worst = sorted(worst + rows, key=lambda r: -r[0])[:num_samples]
  metrics = {f"eval_{k}": v / max(count, 1.0) for k, v in sums.items()}
  images = {}
  for name, rows in (("eval_samples", first), ("eval_worst", worst)):
    if rows:
      images[name] = sample_grid(*(np.stack([r[c] for r in rows]) for c in (1, 2, 3)),
                                 len(rows))
  return metrics, images


def save_png(path: str, image: np.ndarray) -> None:
  """Writes a PNG atomically (temp file + rename)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  tmp = path + ".tmp"
  Image.fromarray(image).save(tmp, format="PNG")
  os.replace(tmp, path)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> GANState:
  """Trains (resuming from `workdir` if it holds checkpoints) and returns the final state."""
  from clu import metric_writers  # pylint: disable=g-import-not-at-top
  from clu import periodic_actions  # pylint: disable=g-import-not-at-top
  from mangacolor_jax import input_pipeline  # pylint: disable=g-import-not-at-top
  validate_config(config)
  reuse_step_memory = host_memory.prepare(config)  # before JAX's CPU client exists
  mesh = sharding.create_mesh()
  sharding.check_batch_size(config.batch_size, mesh)
  logging.info("JAX process %d / %d, devices: %s", jax.process_index(),
               jax.process_count(), jax.devices())

  os.makedirs(workdir, exist_ok=True)
  ckpt = checkpointing.Checkpointer(os.path.join(workdir, "checkpoints"),
                                    keep_best=config.keep_best_checkpoints,
                                    best_metric="eval_psnr", best_mode="max")
  latest = ckpt.latest_step()
  meta = ckpt.restore_meta(latest) if latest is not None else None
  # Early-stopping bookkeeping travels in the checkpoint so that a resumed run goes on
  # counting where it stopped.
  stopping = dict(best=None, best_step=0, bad_evals=0, stopped=False)
  if meta is not None:
    stopping.update(meta.get("early_stopping", {}))
  seed = resolve_seed(config, meta)
  logging.info("seed %d%s", seed, " (drawn fresh: config.seed=-1)" if config.seed < 0 else "")
  logging.info("config:\n%s", config)

  setup = Setup(config)
  root = jax.random.key(seed)
  init_rng, data_rng = jax.random.split(root)
  data_seed = int(jax.random.randint(data_rng, (), 0, 2**31 - 1))
  repl = sharding.replicated(mesh)
  abstract = jax.eval_shape(setup.create_state, init_rng)
  abstract = jax.tree_util.tree_map(
      lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=repl), abstract)
  if latest is not None:
    state, _ = ckpt.restore(latest, abstract)
    logging.info("resumed from step %d of %s", latest, workdir)
  else:
    state = jax.jit(setup.create_state, out_shardings=repl)(init_rng)
  start_step = int(jax.device_get(state.step))
  if stopping["stopped"]:
    logging.info("this run stopped early at step %d (best eval_psnr %s at step %d); "
                 "nothing to do", start_step, stopping["best"], stopping["best_step"])
    ckpt.close()
    return state
  logging.info("generator: %d parameters, discriminator: %d",
               models.count_params(state.g_params), models.count_params(state.d_params))

  run_meta = {"config": config.to_dict(), "seed": seed, "git_commit": git_commit(),
              "jax_version": jax.__version__}
  data_sharding = sharding.data_sharded(mesh)
  p_train_step = xla_cpu.jit(functools.partial(train_step, setup), config,
                             in_shardings=(repl, data_sharding), out_shardings=(repl, repl),
                             donate_argnums=0)
  p_eval_step = xla_cpu.jit(functools.partial(eval_step, setup), config,
                            in_shardings=(repl, data_sharding, repl),
                            out_shardings=(data_sharding, data_sharding))

  p_generate = xla_cpu.jit(setup.generate, config)

  pc, pi = jax.process_count(), jax.process_index()
  train_ds = input_pipeline.create_train_dataset(
      config, seed=data_seed, start_index=start_step * config.batch_size,
      process_index=pi, process_count=pc)
  eval_ds = input_pipeline.create_eval_dataset(config, process_index=pi, process_count=pc)
  # A fixed train batch for the sample grids: the same in every run with this seed.
  sample_batch = next(input_pipeline.create_train_dataset(
      config, seed=data_seed, process_index=pi, process_count=pc).as_numpy_iterator())

  writer = metric_writers.create_default_writer(workdir, just_logging=pi > 0)
  if start_step == 0:
    writer.write_hparams(flatten_config(config))
  report_progress = periodic_actions.ReportProgress(
      num_train_steps=config.num_train_steps, writer=writer)
  samples_dir = os.path.join(workdir, "samples")
  os.makedirs(samples_dir, exist_ok=True)

  def run_eval(step, state):
    metrics, images = evaluate(setup, state, eval_ds, mesh, p_eval_step,
                               config.eval.num_samples)
    writer.write_scalars(step, metrics)
    lineart = sharding.place_batch({"l": sample_batch["lineart"]}, mesh)["l"]
    train_out = p_generate(state, lineart, hints_lib.no_hints(lineart))
    images["train_samples"] = sample_grid(
        sample_batch["lineart"], np.asarray(jax.device_get(train_out)),
        sample_batch["target"], config.eval.num_samples)
    if pi == 0 and "eval_samples" in images:
      save_png(os.path.join(samples_dir, f"eval_{step:07d}.png"), images["eval_samples"])
    writer.write_images(step, {k: v[None] for k, v in images.items()})
    logging.info("eval at step %d: %s", step,
                 json.dumps({k: round(v, 4) for k, v in metrics.items()}))
    return metrics

  p_all_finite = jax.jit(all_finite)

  def check_finite(step, window, state=None):
    bad = [f"{k}={v}" for m in window for k, v in m.items() if not np.isfinite(v)]
    if state is not None and not bool(p_all_finite(state)):
      bad.append("parameters")
    if bad:
      raise FloatingPointError(
          f"non-finite {', '.join(sorted(set(bad))[:4])} by step {step}; training stopped. "
          f"The last good checkpoint (step {ckpt.latest_step()}) in {ckpt.directory} is "
          "intact. Lower config.optim.g_lr / d_lr, set config.optim.grad_clip, or check "
          "the data.")

  def early_stop(step, eval_metrics) -> bool:
    """Updates the patience count; True when training should stop."""
    value = eval_metrics["eval_psnr"]
    best = stopping["best"]
    if best is None or value > best + config.early_stopping_min_delta:
      stopping.update(best=value, best_step=step, bad_evals=0)
    else:
      stopping["bad_evals"] += 1
    if stopping["bad_evals"] >= config.early_stopping_patience:
      stopping["stopped"] = True
      logging.info("early stopping at step %d: eval_psnr has not improved for %d "
                   "evaluations (best %.4f at step %d)", step, stopping["bad_evals"],
                   stopping["best"], stopping["best_step"])
    return stopping["stopped"]

  diagnostics = None
  # Built only when some step of this run is a diagnostic one (nothing compiles otherwise).
  if 0 < config.get("diagnostics_every_steps", 0) <= config.num_train_steps:
    from mangacolor_jax import diagnostics as diagnostics_lib  # pylint: disable=g-import-not-at-top
    probe = next(eval_ds.as_numpy_iterator())
    probe.pop("name", None)
    probe.pop("valid", None)
    diagnostics = diagnostics_lib.Diagnostics(setup, mesh, writer,
                                              sharding.place_batch(probe, mesh),
                                              workdir=workdir)

  if start_step == 0:
    run_eval(0, state)
  train_metrics = []
  train_iter = train_ds.as_numpy_iterator()
  try:
    for step in range(start_step + 1, config.num_train_steps + 1):
      batch = sharding.place_batch(next(train_iter), mesh)
      diagnose = diagnostics is not None and step % config.diagnostics_every_steps == 0
      before = diagnostics.snapshot(state) if diagnose else None
      with jax.profiler.StepTraceAnnotation("train", step_num=step):
        state, metrics = p_train_step(state, batch)
      if step == start_step + 1:  # compiled: its heap (~0.5 GB at 256x256) back to the OS
        host_memory.after_compiling(reuse_step_memory)
      if diagnose:
        diagnostics.write(step, before, state, batch)
      train_metrics.append(metrics)
      report_progress(step)

      is_last = step == config.num_train_steps
      if step % config.log_every_steps == 0 or is_last:
        window = jax.device_get(train_metrics)
        check_finite(step, window)
        summary = {f"train_{k}": float(np.mean([m[k] for m in window]))
                   for k in window[0]}
        writer.write_scalars(step, summary)
        train_metrics = []
      eval_metrics, stop = None, False
      if step % config.eval_every_steps == 0 or is_last:
        eval_metrics = run_eval(step, state)
        stop = config.early_stopping_patience > 0 and early_stop(step, eval_metrics)
      if step % config.checkpoint_every_steps == 0 or is_last or stop:
        check_finite(step, jax.device_get(train_metrics), state)
        ckpt.save(step, state, metrics=eval_metrics,
                  meta=dict(run_meta, step=step, early_stopping=dict(stopping)))
      if stop:
        break
  finally:
    # On any exit, an error included, let a checkpoint being written finish.
    writer.flush()
    ckpt.wait_until_finished()
    ckpt.close()
  return state
