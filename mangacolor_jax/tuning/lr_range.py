"""The learning-rate range test: one geometric ramp per network, smoothed, and suggested.

`lr_range` ramps g_lr (D at the config's d_lr), then, for a GAN, d_lr (G at
`disc_ramp_g_lr`), each with `run_steps`: the trainer's own step, mesh and input pipeline
on the real data, from scratch. The curves go to workdir/lr_range.json, lr_range.png and
TensorBoard.
"""

import dataclasses
import math
import os
import time
from typing import Any, Callable, Sequence

from absl import logging
from clu import metric_writers
import jax
import numpy as np
import optax

from mangacolor_jax.input_pipeline import datasets
from mangacolor_jax.runtime import host_memory
from mangacolor_jax.runtime import mesh as sharding
from mangacolor_jax.runtime import seeds
from mangacolor_jax.training import config_check
from mangacolor_jax.training import state as state_lib
from mangacolor_jax.training import step as step_lib
from mangacolor_jax.tuning import outputs
from mangacolor_jax.tuning import plots
from mangacolor_jax.utils import files


@dataclasses.dataclass(frozen=True)
class RangeTest:
  """The settings of one range test (see `lr_range`)."""
  lr_min: float = 1e-7
  lr_max: float = 1.0
  steps: int = 100
  smoothing: float = 0.9
  diverge_factor: float = 4.0
  disc_ramp_g_lr: float = 0.0


@dataclasses.dataclass(frozen=True)
class Ramp:
  """One network's ramp: the field it raises, the loss it watches, the other's rate."""
  network: str  # "gen" or "disc"
  field: str
  loss_key: str
  other_lr: float


def geometric_lrs(lr_min: float, lr_max: float, steps: int):
  """`steps` rates from lr_min to lr_max, equally spaced on a log scale."""
  if not 0 < lr_min < lr_max:
    raise ValueError(f"need 0 < --min < --max, got {lr_min}, {lr_max}")
  if steps < 2:
    raise ValueError(f"--steps={steps} must be at least 2")
  return np.geomspace(lr_min, lr_max, steps)


def smooth(values: Sequence[float], beta: float):
  """Bias-corrected exponential moving average (as in the range test's papers)."""
  out, avg = [], 0.0
  for t, v in enumerate(values):
    avg = beta * avg + (1.0 - beta) * float(v)
    out.append(avg / (1.0 - beta**(t + 1)))
  return np.asarray(out)


def smooth_centred(values: Sequence[float], beta: float):
  """The moving average run forwards then backwards: no lag, so the curve's minimum sits
  at the rate that produced it (a forward average alone moves it to higher rates)."""
  return smooth(smooth(values, beta)[::-1], beta)[::-1]


# A raw loss this many times its best so far has left the falling part of the curve. A
# bounded loss (L1 of a tanh output: at most 2) may never reach the divergence factor, and
# at a wrecking rate it settles on a plateau the smoothed curve can mistake for a minimum.
RISE_FACTOR = 2.0


def before_rise(raw: Sequence[float], factor: float = RISE_FACTOR) -> int:
  """The number of leading losses before the first one above `factor` times the best
  before it (all of them when none is)."""
  best = math.inf
  for i, v in enumerate(raw):
    if not math.isfinite(v) or v > factor * best:
      return max(i, 2)
    best = min(best, v)
  return len(raw)


def diverged(raw: Sequence[float], smoothed: Sequence[float], factor: float) -> bool:
  """True when the last loss is not finite or the smoothed loss left its minimum far."""
  last = smoothed[-1]
  return not (math.isfinite(raw[-1]) and math.isfinite(last)) or last > factor * min(
      smoothed)


def suggest_lr(lrs: Sequence[float], smoothed: Sequence[float]) -> dict[str, float]:
  """The range test's suggestions from a (possibly truncated) smoothed curve.

  Returns:
    suggested_lr: a tenth of the rate at the smoothed minimum: still on the falling part
      of the curve, far enough from the divergence the minimum announces;
    min_loss_lr: the rate at the minimum;
    steepest_lr: the rate where the loss fell fastest (per decade), before the minimum.
  """
  lrs, smoothed = np.asarray(lrs, np.float64), np.asarray(smoothed, np.float64)
  finite = np.isfinite(smoothed)
  lrs, smoothed = lrs[finite], smoothed[finite]
  if lrs.size < 2:
    raise ValueError("the loss was not finite from the start: lower --min")
  i_min = int(np.argmin(smoothed))
  if i_min >= 2:
    slope = np.gradient(smoothed[:i_min + 1], np.log10(lrs[:i_min + 1]))
    i_steep = int(np.argmin(slope))
  else:
    i_steep = 0
  return {"suggested_lr": outputs.round_sig(max(lrs[i_min] / 10.0, lrs[0])),
          "min_loss_lr": float(lrs[i_min]),
          "steepest_lr": float(lrs[i_steep])}


def scheduled_networks(config, g_lr_fn: Callable, d_lr_fn: Callable
                       ) -> state_lib.Networks:
  """The config's networks, with each optimiser's rate following its schedule.

  The trainer's own optimisers (clipping, betas, frozen parameters...) at a constant rate
  of 1, followed by a scale of lr_fn(step): Adam at rate lr_fn(step), without copying
  how the trainer builds its optimisers.
  """
  unit = config.copy_and_resolve_references()
  unit.optim.update(schedule="constant", warmup_steps=0, g_lr=1.0, d_lr=1.0)
  nets = state_lib.create_networks(unit)
  return dataclasses.replace(
      nets, g_tx=optax.chain(nets.g_tx, optax.scale_by_schedule(g_lr_fn)),
      d_tx=optax.chain(nets.d_tx, optax.scale_by_schedule(d_lr_fn)), g_lr_fn=g_lr_fn,
      d_lr_fn=d_lr_fn)


def run_steps(config, g_lr_fn: Callable, d_lr_fn: Callable, steps: int, *,
              seed: int | None = None,
              stop: Callable[[list[dict[str, float]]], bool] | None = None
              ) -> list[dict[str, float]]:
  """Trains from scratch for `steps` steps with the given learning-rate schedules.

  The trainer's step, mesh and input pipeline; nothing is written. Returns each step's
  metrics (floats); `stop(history)`, called after every step, ends the run early.
  """
  config_check.validate_config(config)
  reuse_step_memory = host_memory.prepare(config)  # as the trainer does
  mesh = sharding.create_mesh()
  sharding.check_batch_size(config.batch_size, mesh)
  seed = seeds.resolve_seed(config, None) if seed is None else seed
  nets = scheduled_networks(config, g_lr_fn, d_lr_fn)
  keys = seeds.run_keys(seed)
  state = jax.jit(nets.create_state, out_shardings=sharding.replicated(mesh))(keys.init)
  step_fn = step_lib.compile_train_step(nets, mesh)
  batches = datasets.create_train_dataset(
      config, seed=keys.data_seed, process_index=jax.process_index(),
      process_count=jax.process_count()).as_numpy_iterator()
  history, start = [], time.time()
  for i in range(steps):
    state, metrics = step_fn(state, sharding.place_batch(next(batches), mesh))
    if i == 0:  # compiled
      host_memory.after_compiling(reuse_step_memory)
    history.append({k: float(v) for k, v in jax.device_get(metrics).items()})
    if (i + 1) % 20 == 0:
      logging.info("step %d / %d (%.1f s)", i + 1, steps, time.time() - start)
    if stop is not None and stop(history):
      break
  return history


def check_inputs(config, workdir: str) -> None:
  """Raises ValueError naming the config field, or `files.OutputError` for a --workdir
  that is not the tuner's, before any ramp starts."""
  config_check.validate_config(config)
  files.claim_folder(workdir, outputs.COMMAND, "--workdir")


def lr_range(config, workdir: str, lr_min: float = 1e-7, lr_max: float = 1.0,
             steps: int = 100, smoothing: float = 0.9, diverge_factor: float = 4.0,
             disc_ramp_g_lr: float = 0.0) -> dict[str, Any]:
  """Runs the range test (one ramp per network) and writes JSON, PNG and TensorBoard.

  Returns the JSON written to workdir/lr_range.json.
  """
  test = RangeTest(lr_min, lr_max, steps, smoothing, diverge_factor, disc_ramp_g_lr)
  check_inputs(config, workdir)
  host_memory.prepare(config)  # before jax.process_index() starts JAX
  lrs = geometric_lrs(lr_min, lr_max, steps)
  seed = seeds.resolve_seed(config, None)
  ramps = [Ramp("gen", "optim.g_lr", "g_l1", float(config.optim.d_lr))]
  if config.loss.gan != "none":
    ramps.append(Ramp("disc", "optim.d_lr", "d_loss", float(disc_ramp_g_lr)))
  # TensorBoard only: the default writer would also log every point of every curve.
  writer = (metric_writers.SummaryWriter(workdir) if jax.process_index() == 0 else
            metric_writers.MultiWriter([]))
  result = {"lr_min": lr_min, "lr_max": lr_max, "steps": steps, "smoothing": smoothing,
            "diverge_factor": diverge_factor, "seed": seed, "networks": {}}
  for ramp in ramps:
    result["networks"][ramp.network] = _run_ramp(config, test, ramp, lrs, seed, writer)
  writer.flush()
  result["suggested"] = {v["field"]: v["suggested_lr"] for v in result["networks"].values()}
  result["overrides"] = " ".join(f"--config.{k}={v}" for k, v in result["suggested"].items())
  outputs.write_json(os.path.join(workdir, "lr_range.json"), result)
  plots.plot_lr_range(result, os.path.join(workdir, "lr_range.png"))
  return result


def _run_ramp(config, test: RangeTest, ramp: Ramp, lrs, seed: int, writer
              ) -> dict[str, Any]:
  """Ramps one network's rate until the end or divergence; returns its lr_range.json
  entry (and writes its curves to `writer`)."""
  lr_min, lr_max, steps = test.lr_min, test.lr_max, test.steps

  def ramp_fn(count):
    return lr_min * (lr_max / lr_min)**(count / (steps - 1))

  def const(count, v=ramp.other_lr):
    return v + 0.0 * count

  g_fn, d_fn = (ramp_fn, const) if ramp.network == "gen" else (const, ramp_fn)

  def stop(history):
    raw = [h[ramp.loss_key] for h in history]
    return len(raw) > 5 and diverged(raw, smooth(raw, test.smoothing), test.diverge_factor)

  logging.info("lr_range: ramping %s from %g to %g over %d steps (%s fixed at %g)",
               ramp.field, test.lr_min, test.lr_max, test.steps,
               "optim.d_lr" if ramp.network == "gen" else "optim.g_lr", ramp.other_lr)
  history = run_steps(config, g_fn, d_fn, test.steps, seed=seed, stop=stop)
  raw = [h[ramp.loss_key] for h in history]
  smoothed = smooth_centred(raw, test.smoothing)
  used = lrs[:len(raw)]
  rising = before_rise(raw)
  suggestion = suggest_lr(used[:rising], smoothed[:rising])
  stopped = len(raw) < test.steps or not math.isfinite(raw[-1])
  prefix = f"lr_range_{ramp.network}/"
  for i, (lr, r, s) in enumerate(zip(used, raw, smoothed)):
    writer.write_scalars(i, {f"{prefix}lr": float(lr),
                             f"{prefix}log10_lr": float(np.log10(lr)),
                             f"{prefix}{ramp.loss_key}": r,
                             f"{prefix}{ramp.loss_key}_smoothed": float(s)})
  logging.info("lr_range %s: suggested %s=%g (minimum at %g, steepest at %g)%s",
               ramp.network, ramp.field, suggestion["suggested_lr"],
               suggestion["min_loss_lr"], suggestion["steepest_lr"],
               f", diverged at {used[-1]:g}" if stopped else ", did not diverge")
  return {
      "field": ramp.field, "loss": ramp.loss_key, "other_lr": ramp.other_lr, **suggestion,
      "diverged_at_lr": float(used[-1]) if stopped else None,
      # JSON has no NaN: a non-finite loss (the divergence) is written as null.
      "curve": {"lr": [float(x) for x in used],
                "loss": [outputs.finite_or_none(x) for x in raw],
                "smoothed": [outputs.finite_or_none(x) for x in smoothed]}}
