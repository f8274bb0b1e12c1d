r"""Tuning commands: a learning-rate range test and jittered log-grid sweeps.

  python -m mangacolor_jax.tune lr_range --config CONFIG --workdir DIR \
      [--min 1e-7 --max 1 --steps 100]
  python -m mangacolor_jax.tune sweep --config CONFIG --workdir DIR \
      --param optim.g_lr=1e-5:1e-2:log:4 --param loss.l1_weight=1:1000:log:4 \
      [--jitter 0.3] [--trials_in_parallel K] [--metric eval_psnr] [--steps N] \
      [--refine] [--no_extend]

Any `--config.x=y` override applies to every ramp and trial, as in `train`. `--workdir`
must be a new or empty folder, or one that tune made (its marker, `.mangacolor_jax.json`).

lr_range raises the learning rate geometrically from --min to --max over --steps short
training steps (the real `trainer.train_step` on the real data), smooths the loss with a
bias-corrected moving average, stops once the smoothed loss exceeds --diverge_factor times
its minimum (or is not finite), smooths the curve again without lag (forwards and
backwards) and suggests a tenth of the rate at the minimum (the "minimum / 10" rule of the
range test; the steepest-descent rate is reported as well). For a GAN each network gets its
own ramp. First g_lr, with D training at the config's d_lr, watching the generator's L1
term (its adversarial term need not fall as the generator improves). Then d_lr, watching
the discriminator's loss, with the generator held still (--disc_ramp_g_lr=0): while G
learns, D's loss rises as the fakes improve whatever D's rate, which the test would read
as divergence; against a fixed G, D's task is an ordinary classification whose loss only
its own rate moves (on the faces the two readings differed by 2x: minimum at 2.5e-5 with
G learning at 2e-4, 5.7e-5 with G still). D's loss says how fast D can learn, not how
fast it should in a GAN: read its suggestion as a lower bound and the rate where it
diverged as the upper one. Writes
DIR/lr_range.json, DIR/lr_range.png and the curves to TensorBoard in DIR (x axis: ramp
step, which is log10(lr) up to a shift and scale).

sweep runs one normal training run per point of a grid, on a log (or linear) scale, over
one or more config fields, each point moved at random by up to --jitter grid steps (seeded
by --seed, so the same command gives the same points). Trial k trains in DIR/trial_k (point
TensorBoard at DIR to compare them) and, once finished, writes DIR/trial_k/result.json
atomically: a rerun of the same command skips finished trials and resumes unfinished ones
from their checkpoints. A trial's score is --metric at its best checkpoint (the one
`colorize` / `evaluate` use by default). When the best point lies on an edge of the grid,
the grid is extended one step past that edge around it and those points are run
(--no_extend turns this off; at most --max_extensions times); --refine then runs a grid
of half the spacing around the best point. Writes DIR/results.csv, DIR/results.md (the
ranked table) and DIR/sweep.png (the metric against each parameter; for two parameters
also a heat map over the grid).

--trials_in_parallel K runs K trials at once, each as its own
`python -m mangacolor_jax.train` process: useful on a machine with several accelerators or
spare cores. On a 2-core CPU keep K=1 (the default, trials run in this process): XLA
already uses every core for one trial, and K > 1 only adds contention and memory.
"""

import concurrent.futures
import csv
import dataclasses
import functools
import io
import itertools
import json
import math
import os
import subprocess
import sys
import time
from typing import Any, Callable, Sequence

from absl import app
from absl import flags
from absl import logging

from mangacolor_jax.utils import files

FLAGS = flags.FLAGS
COMMAND = "tune"
COMMANDS = ("lr_range", "sweep")
RESULT_FILE = "result.json"
SPEC_FILE = "sweep_spec.json"


def define_flags():
  """Flags of the command line (defined only when run as a command)."""
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  config_flags.DEFINE_config_file("config", None, "Training configuration file.",
                                  lock_config=True)
  flags.DEFINE_string("workdir", None, "Directory for everything the command writes.")
  # lr_range
  flags.DEFINE_float("min", 1e-7, "lr_range: first learning rate of the ramp.")
  flags.DEFINE_float("max", 1.0, "lr_range: last learning rate of the ramp.")
  flags.DEFINE_integer("steps", None, "lr_range: steps per ramp (default 100). sweep: "
                       "config.num_train_steps of every trial (default: the config's).")
  flags.DEFINE_float("smoothing", 0.9, "lr_range: moving-average factor of the loss.")
  flags.DEFINE_float("disc_ramp_g_lr", 0.0, "lr_range: g_lr during the d_lr ramp (0: G "
                     "held still, so that D's loss reflects D's rate alone).")
  flags.DEFINE_float("diverge_factor", 4.0, "lr_range: stop once the smoothed loss exceeds "
                     "this times its minimum.")
  # sweep
  flags.DEFINE_multi_string("param", [], "sweep: FIELD=LO:HI:log|lin:N, e.g. "
                            "optim.g_lr=1e-5:1e-2:log:4 (repeat for several fields).")
  flags.DEFINE_float("jitter", 0.3, "sweep: each point moves by up to this many grid "
                     "steps (uniformly, seeded).")
  flags.DEFINE_integer("seed", 0, "sweep: seed of the jitter.")
  flags.DEFINE_integer("trials_in_parallel", 1, "sweep: trials run at once (K > 1: one "
                       "train process each; keep 1 on a 2-core CPU).")
  flags.DEFINE_string("metric", "eval_psnr", "sweep: validation metric ranking trials.")
  flags.DEFINE_enum("mode", "auto", ["auto", "max", "min"], "sweep: whether a higher "
                    "metric is better (auto: min for l1/lab/loss/mse metrics).")
  flags.DEFINE_bool("no_extend", False, "sweep: do not extend the grid past an edge that "
                    "holds the best point.")
  flags.DEFINE_integer("max_extensions", 2, "sweep: edge extensions at most.")
  flags.DEFINE_bool("refine", False, "sweep: then run a finer grid around the best point.")
  flags.DEFINE_integer("refine_points", 3, "sweep: points per field of the refined grid.")
  flags.mark_flags_as_required(["config", "workdir"])


# ------------------------------------------------------------------------------ helpers


def write_atomic(path: str, text: str) -> None:
  """Writes text to path through a temp file and a rename: readers never see half."""
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w", encoding="utf-8") as f:
    f.write(text)
  os.replace(tmp, path)


def write_json(path: str, obj: Any) -> None:
  write_atomic(path, json.dumps(obj, indent=1, sort_keys=False) + "\n")


def _pyplot():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")  # files only: no display on training machines
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def _save_figure(fig, path: str) -> None:
  fig.tight_layout()
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
  _pyplot().close(fig)
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "wb") as f:
    f.write(buf.getvalue())
  os.replace(tmp, path)


def set_field(config, name: str, value) -> Any:
  """Sets the dotted config field `name`, keeping its type (ints are rounded).

  Returns the value set. Raises ValueError naming the field when it does not exist or is
  not numeric.
  """
  node = config
  *path, leaf = name.split(".")
  try:
    for part in path:
      node = node[part]
    old = node[leaf]
  except (KeyError, AttributeError, TypeError) as e:
    raise ValueError(f"config.{name} does not exist in this config") from e
  if isinstance(old, bool) or not isinstance(old, (int, float)):
    raise ValueError(f"config.{name}={old!r} is not a number: only numeric fields sweep")
  value = int(round(value)) if isinstance(old, int) else float(value)
  node[leaf] = value
  return value


def _round_sig(x: float, digits: int = 3) -> float:
  return float(f"{x:.{digits}g}")


# -------------------------------------------------------------------------- lr range


def geometric_lrs(lr_min: float, lr_max: float, steps: int):
  """`steps` rates from lr_min to lr_max, equally spaced on a log scale."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  if not 0 < lr_min < lr_max:
    raise ValueError(f"need 0 < --min < --max, got {lr_min}, {lr_max}")
  if steps < 2:
    raise ValueError(f"--steps={steps} must be at least 2")
  return np.geomspace(lr_min, lr_max, steps)


def smooth(values: Sequence[float], beta: float):
  """Bias-corrected exponential moving average (as in the range test's papers)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  out, avg = [], 0.0
  for t, v in enumerate(values):
    avg = beta * avg + (1.0 - beta) * float(v)
    out.append(avg / (1.0 - beta**(t + 1)))
  return np.asarray(out)


def smooth_centred(values: Sequence[float], beta: float):
  """The moving average run forwards then backwards: no lag, so the curve's minimum sits
  at the rate that produced it (a forward average alone moves it to higher rates)."""
  return smooth(smooth(values, beta)[::-1], beta)[::-1]


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
  import numpy as np  # pylint: disable=g-import-not-at-top
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
  return {"suggested_lr": _round_sig(max(lrs[i_min] / 10.0, lrs[0])),
          "min_loss_lr": float(lrs[i_min]),
          "steepest_lr": float(lrs[i_steep])}


def run_steps(config, g_lr_fn: Callable, d_lr_fn: Callable, steps: int, *,
              seed: int | None = None,
              stop: Callable[[list[dict[str, float]]], bool] | None = None
              ) -> list[dict[str, float]]:
  """Trains from scratch for `steps` steps with the given learning-rate schedules.

  The trainer's step, mesh and input pipeline; nothing is written. Returns each step's
  metrics (floats); `stop(history)`, called after every step, ends the run early.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.runtime import host_memory  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.input_pipeline import datasets  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.runtime import mesh as sharding  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.training import config_check  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.training import loop  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.training import state as state_lib  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.training import step as step_lib  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.runtime import seeds  # pylint: disable=g-import-not-at-top
  
  config_check.validate_config(config)
  reuse_step_memory = host_memory.prepare(config)  # as the trainer does
  mesh = sharding.create_mesh()
  sharding.check_batch_size(config.batch_size, mesh)
  seed = seeds.resolve_seed(config, None) if seed is None else seed
  # The trainer's own optimisers (clipping, betas, frozen parameters...) at a constant rate
  # of 1, followed by a scale of lr_fn(step): Adam at rate lr_fn(step), without copying
  # how the trainer builds its optimisers.
  unit = config.copy_and_resolve_references()
  unit.optim.update(schedule="constant", warmup_steps=0, g_lr=1.0, d_lr=1.0)
  nets = state_lib.create_networks(unit)
  nets = dataclasses.replace(
      nets, g_tx=optax.chain(nets.g_tx, optax.scale_by_schedule(g_lr_fn)),
      d_tx=optax.chain(nets.d_tx, optax.scale_by_schedule(d_lr_fn)), g_lr_fn=g_lr_fn,
      d_lr_fn=d_lr_fn)
  keys = seeds.run_keys(seed)
  data_seed = keys.data_seed
  state = jax.jit(nets.create_state, out_shardings=sharding.replicated(mesh))(keys.init)
  step_fn = step_lib.compile_train_step(nets, mesh)
  batches = datasets.create_train_dataset(
      config, seed=data_seed, process_index=jax.process_index(),
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


def lr_range(config, workdir: str, lr_min: float = 1e-7, lr_max: float = 1.0,
             steps: int = 100, smoothing: float = 0.9, diverge_factor: float = 4.0,
             disc_ramp_g_lr: float = 0.0) -> dict[str, Any]:
  """Runs the range test (one ramp per network) and writes JSON, PNG and TensorBoard.

  Returns the JSON written to workdir/lr_range.json.
  """
  from clu import metric_writers  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.runtime import host_memory  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.training import config_check  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.training import loop  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.training import state as state_lib  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.training import step as step_lib  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.runtime import seeds  # pylint: disable=g-import-not-at-top

  files.claim_folder(workdir, COMMAND, "--workdir")
  host_memory.prepare(config)  # before jax.process_index() starts JAX
  lrs = geometric_lrs(lr_min, lr_max, steps)
  seed = seeds.resolve_seed(config, None)
  o = config.optim
  ramps = [("gen", "optim.g_lr", "g_l1")]
  if config.loss.gan != "none":
    ramps.append(("disc", "optim.d_lr", "d_loss"))
  # TensorBoard only: the default writer would also log every point of every curve.
  writer = (metric_writers.SummaryWriter(workdir) if jax.process_index() == 0 else
            metric_writers.MultiWriter([]))
  ramp_fn = lambda count: lr_min * (lr_max / lr_min)**(count / (steps - 1))  # pylint: disable=unnecessary-lambda-assignment
  result = {"lr_min": lr_min, "lr_max": lr_max, "steps": steps, "smoothing": smoothing,
            "diverge_factor": diverge_factor, "seed": seed, "networks": {}}
  for network, field, loss_key in ramps:
    fixed = float(o.d_lr if network == "gen" else disc_ramp_g_lr)
    const = lambda count, v=fixed: v + 0.0 * count  # pylint: disable=unnecessary-lambda-assignment
    g_fn, d_fn = (ramp_fn, const) if network == "gen" else (const, ramp_fn)

    def stop(history, loss_key=loss_key):
      raw = [h[loss_key] for h in history]
      return len(raw) > 5 and diverged(raw, smooth(raw, smoothing), diverge_factor)

    logging.info("lr_range: ramping %s from %g to %g over %d steps (%s fixed at %g)",
                 field, lr_min, lr_max, steps,
                 "optim.d_lr" if network == "gen" else "optim.g_lr", fixed)
    history = run_steps(config, g_fn, d_fn, steps, seed=seed, stop=stop)
    raw = [h[loss_key] for h in history]
    smoothed = smooth_centred(raw, smoothing)
    used = lrs[:len(raw)]
    suggestion = suggest_lr(used, smoothed)
    stopped = len(raw) < steps or not math.isfinite(raw[-1])
    for i, (lr, r, s) in enumerate(zip(used, raw, smoothed)):
      writer.write_scalars(i, {f"lr_range_{network}/lr": float(lr),
                               f"lr_range_{network}/log10_lr": float(np.log10(lr)),
                               f"lr_range_{network}/{loss_key}": r,
                               f"lr_range_{network}/{loss_key}_smoothed": float(s)})
    result["networks"][network] = {
        "field": field, "loss": loss_key, "other_lr": fixed, **suggestion,
        "diverged_at_lr": float(used[-1]) if stopped else None,
        # JSON has no NaN: a non-finite loss (the divergence) is written as null.
        "curve": {"lr": [float(x) for x in used], "loss": [_finite_or_none(x) for x in raw],
                  "smoothed": [_finite_or_none(x) for x in smoothed]}}
    logging.info("lr_range %s: suggested %s=%g (minimum at %g, steepest at %g)%s", network,
                 field, suggestion["suggested_lr"], suggestion["min_loss_lr"],
                 suggestion["steepest_lr"],
                 f", diverged at {used[-1]:g}" if stopped else ", did not diverge")
  writer.flush()
  result["suggested"] = {v["field"]: v["suggested_lr"] for v in result["networks"].values()}
  result["overrides"] = " ".join(f"--config.{k}={v}" for k, v in result["suggested"].items())
  write_json(os.path.join(workdir, "lr_range.json"), result)
  plot_lr_range(result, os.path.join(workdir, "lr_range.png"))
  return result


def _finite_or_none(x: float) -> float | None:
  return float(x) if math.isfinite(x) else None


def plot_lr_range(result: dict, path: str) -> None:
  """Loss against learning rate (log axis), one panel per network."""
  plt = _pyplot()
  nets = result["networks"]
  fig, axes = plt.subplots(1, len(nets), figsize=(5.5 * len(nets), 4), squeeze=False)
  for ax, (network, r) in zip(axes[0], nets.items()):
    c = {k: [math.nan if v is None else v for v in vs] for k, vs in r["curve"].items()}
    ax.plot(c["lr"], c["loss"], color="0.75", lw=1, label=f"{r['loss']} (per step)")
    ax.plot(c["lr"], c["smoothed"], color="C0", lw=2, label="smoothed")
    ax.axvline(r["suggested_lr"], color="C2", ls="--",
               label=f"suggested {r['suggested_lr']:.3g}")
    ax.axvline(r["min_loss_lr"], color="C1", ls=":", label=f"minimum {r['min_loss_lr']:.3g}")
    if r["diverged_at_lr"]:
      ax.axvline(r["diverged_at_lr"], color="C3", ls="-.",
                 label=f"diverged {r['diverged_at_lr']:.3g}")
    ax.set_xscale("log")
    ax.set_xlabel(f"{r['field']} (other rate {r['other_lr']:.3g})")
    ax.set_ylabel(r["loss"])
    ax.set_title(f"learning-rate range test: {network}")
    finite = [v for v in c["smoothed"] if math.isfinite(v)]
    if finite:  # the divergence spike would flatten the interesting part
      lo, hi = min(finite), max(finite[:max(2, len(finite) * 9 // 10)])
      ax.set_ylim(lo - 0.05 * (hi - lo + 1e-9), hi + 0.3 * (hi - lo + 1e-9))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
  _save_figure(fig, path)


# ----------------------------------------------------------------------------- sweep


@dataclasses.dataclass(frozen=True)
class Param:
  """One swept config field: `num` points from `lo` to `hi` on a log or linear scale."""
  name: str
  lo: float
  hi: float
  scale: str
  num: int

  @property
  def log(self) -> bool:
    return self.scale == "log"

  def to_axis(self, value: float) -> float:
    return math.log10(value) if self.log else value

  def from_axis(self, u: float) -> float:
    return 10.0**u if self.log else u

  @property
  def spacing(self) -> float:
    """Grid step on the axis (log10 units for a log scale)."""
    if self.num < 2:
      return 0.0
    return (self.to_axis(self.hi) - self.to_axis(self.lo)) / (self.num - 1)


def parse_param(spec: str) -> Param:
  """Parses FIELD=LO:HI:log|lin:N."""
  try:
    name, rng = spec.split("=", 1)
    lo, hi, scale, num = rng.split(":")
    param = Param(name.strip().removeprefix("config."), float(lo), float(hi),
                  scale.strip(), int(num))
  except ValueError as e:
    raise ValueError(f"--param {spec!r} must look like FIELD=LO:HI:log|lin:N, e.g. "
                     "optim.g_lr=1e-5:1e-2:log:4") from e
  if param.scale not in ("log", "lin"):
    raise ValueError(f"--param {spec!r}: scale must be log or lin")
  if param.num < 1 or param.hi < param.lo:
    raise ValueError(f"--param {spec!r}: need N >= 1 and LO <= HI")
  if param.log and param.lo <= 0:
    raise ValueError(f"--param {spec!r}: a log scale needs LO > 0")
  return param


@dataclasses.dataclass(frozen=True)
class Point:
  """A node of the sweep's lattice: level 0 is the grid (its indices may step past the
  edges when the grid is extended), level 1 the refined grid around `center`."""
  level: int
  index: tuple[int, ...]
  center: tuple[float, ...] | None = None  # level 1: axis coordinates it is centred on


def nominal_axis(params: Sequence[Param], point: Point, refine_points: int = 3
                 ) -> list[float]:
  """Unjittered axis coordinates of a lattice point."""
  if point.level == 0:
    return [p.to_axis(p.lo) + i * p.spacing for p, i in zip(params, point.index)]
  fine = [p.spacing / (refine_points - 1) for p in params]
  half = (refine_points - 1) / 2
  return [c + (i - half) * f for c, i, f in zip(point.center, point.index, fine)]


def point_values(params: Sequence[Param], point: Point, jitter: float, seed: int,
                 refine_points: int = 3) -> dict[str, float]:
  """The jittered config values of a lattice point (deterministic in seed and point).

  Each coordinate moves by up to `jitter` of its grid step, uniformly; the generator is
  keyed by the point itself, so a point's values do not depend on which other points the
  sweep runs, or in what order. Values keep 3 significant digits.
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  key = [int(seed), point.level] + [10_000 + i for i in point.index]
  u = np.random.default_rng(key).uniform(-1.0, 1.0, size=len(params))
  axis = nominal_axis(params, point, refine_points)
  scale = 1.0 if point.level == 0 else 1.0 / (refine_points - 1)
  return {p.name: _round_sig(p.from_axis(a + jitter * scale * p.spacing * du))
          for p, a, du in zip(params, axis, u)}


def grid_points(params: Sequence[Param]) -> list[Point]:
  return [Point(0, idx) for idx in itertools.product(*(range(p.num) for p in params))]


def extension_points(params: Sequence[Param], best: Point, planned: Sequence[Point]
                     ) -> list[Point]:
  """Points one grid step past each edge the best point lies on, around it.

  For a field whose best index is the lowest (highest) planned one, the candidates take
  the next index below (above); every other field takes the best index and its planned
  neighbours. Returns the candidates not yet planned (none: the best is inside).
  """
  level0 = [p.index for p in planned if p.level == 0]
  choices, on_edge = [], False
  for k, param in enumerate(params):
    used = sorted({idx[k] for idx in level0})
    i = best.index[k]
    near = [j for j in (i - 1, i, i + 1) if used[0] <= j <= used[-1]]
    if param.num > 1 and i == used[0]:
      near.append(i - 1)
      on_edge = True
    if param.num > 1 and i == used[-1]:
      near.append(i + 1)
      on_edge = True
    choices.append(sorted(set(near)))
  if not on_edge:
    return []
  known = set(level0)
  return [Point(0, idx) for idx in itertools.product(*choices) if idx not in known]


def refine_grid(params: Sequence[Param], best: Point, refine_points: int) -> list[Point]:
  """A grid of `refine_points` per field over +-half a grid step around the best point,
  without its centre (the best point itself)."""
  if refine_points < 2:
    raise ValueError(f"--refine_points={refine_points} must be at least 2")
  center = tuple(nominal_axis(params, best))
  mid = (refine_points - 1) / 2
  return [Point(1, idx, center)
          for idx in itertools.product(*(range(refine_points) for _ in params))
          if not all(i == mid for i in idx)]


def metric_mode(metric: str, mode: str = "auto") -> str:
  if mode != "auto":
    return mode
  lower = ("l1", "lab", "loss", "mse", "fid")
  return "min" if any(s in metric for s in lower) else "max"


def collect_trial_metrics(trial_dir: str) -> dict[str, Any]:
  """Eval metrics of a trial's best checkpoint (by eval PSNR, as colorize picks it)."""
  from mangacolor_jax.training import checkpointing  # pylint: disable=g-import-not-at-top
  with checkpointing.Checkpointer(os.path.join(trial_dir, "checkpoints"),
                                  create=False) as ckpt:
    best, latest = ckpt.best_step(), ckpt.latest_step()
    metrics = (ckpt.metrics(best) or {}) if best is not None else {}
  return {"best_step": best, "final_step": latest, "metrics": metrics}


class Sweep:
  """Plans, runs (resumably), ranks and reports the trials of one sweep workdir.

  Args:
    config: the base config (the command's config with its overrides).
    workdir: the sweep's directory; trial k trains in workdir/trial_k.
    params: the swept fields.
    jitter, seed: see `point_values`.
    metric, mode: the ranking metric and whether higher ("max") is better.
    steps: num_train_steps of every trial (None: the config's).
    parallel: trials at once; > 1 runs `python -m mangacolor_jax.train` processes and
      needs `config_file` and `config_args` (the command's --config.* overrides).
    runner: (config, trial_dir) -> None; trains one trial in this process (default
      `trainer.train_and_evaluate`; tests pass a stand-in).
  """

  def __init__(self, config, workdir: str, params: Sequence[Param], *, jitter: float = 0.3,
               seed: int = 0, metric: str = "eval_psnr", mode: str = "auto",
               steps: int | None = None, refine_points: int = 3, parallel: int = 1,
               config_file: str | None = None, config_args: Sequence[str] = (),
               runner: Callable[[Any, str], Any] | None = None):
    if not params:
      raise ValueError("a sweep needs at least one --param")
    if len({p.name for p in params}) != len(params):
      raise ValueError("each --param field may appear once")
    if jitter < 0 or jitter >= 0.5:
      raise ValueError(f"--jitter={jitter} must be in [0, 0.5): points must not swap order")
    if parallel < 1:
      raise ValueError(f"--trials_in_parallel={parallel} must be >= 1")
    if parallel > 1 and not config_file:
      raise ValueError("--trials_in_parallel > 1 needs the config file path")
    self.config, self.workdir, self.params = config, workdir, list(params)
    self.jitter, self.seed, self.metric = jitter, seed, metric
    self.mode = metric_mode(metric, mode)
    self.steps, self.refine_points, self.parallel = steps, refine_points, parallel
    self.config_file, self.config_args = config_file, list(config_args)
    self.runner = runner
    self.planned: list[Point] = []
    self.results: dict[Point, dict] = {}
    # Every field must exist and be numeric before anything trains.
    probe = config.copy_and_resolve_references()
    for p in self.params:
      set_field(probe, p.name, p.from_axis(p.to_axis(p.lo)))
    files.claim_folder(workdir, COMMAND, "--workdir")
    self._check_spec()

  # -- bookkeeping

  def _check_spec(self) -> None:
    """A workdir belongs to one sweep: a changed spec would mislabel finished trials."""
    spec = {"params": [dataclasses.asdict(p) for p in self.params], "jitter": self.jitter,
            "seed": self.seed, "steps": self.steps, "refine_points": self.refine_points,
            "config": self.config.to_dict()}
    spec = json.loads(json.dumps(spec, default=str))
    path = os.path.join(self.workdir, SPEC_FILE)
    if not os.path.exists(path):
      write_json(path, spec)
      return
    with open(path, encoding="utf-8") as f:
      old = json.load(f)
    changed = [k for k in spec if k != "config" and old.get(k) != spec[k]]
    old_cfg, new_cfg = _flatten(old.get("config", {})), _flatten(spec["config"])
    changed += [f"config.{k}" for k in sorted(old_cfg)
                if k in new_cfg and old_cfg[k] != new_cfg[k]]
    if changed:
      raise ValueError(f"{self.workdir} holds a sweep with other settings ({changed}); "
                       "use a new --workdir, or the same command as before to resume")
    # Fields that the code gained (or lost) since the sweep began: their defaults are
    # meant to keep old behaviour, so finished trials still compare.
    moved = sorted(set(old_cfg) ^ set(new_cfg))
    if moved:
      logging.warning("config fields added or removed since this sweep began: %s", moved)

  def trial_name(self, point: Point) -> str:
    return f"trial_{self.planned.index(point):03d}"

  def values(self, point: Point) -> dict[str, float]:
    return point_values(self.params, point, self.jitter, self.seed, self.refine_points)

  def overrides(self, point: Point) -> dict[str, Any]:
    """Config fields a trial sets: the point's values and the trial length."""
    out = dict(self.values(point))
    if self.steps:
      out["num_train_steps"] = int(self.steps)
    return out

  def trial_config(self, point: Point):
    config = self.config.copy_and_resolve_references()
    for name, value in self.overrides(point).items():
      set_field(config, name, value)
    return config

  def train_command(self, point: Point, trial_dir: str) -> list[str]:
    """The `train` command line of a trial (also recorded in its result)."""
    args = [f"--config.{k}={v!r}" for k, v in self.overrides(point).items()]
    return [sys.executable, "-m", "mangacolor_jax.train",
            "--config", self.config_file or "CONFIG", *self.config_args, *args,
            "--workdir", trial_dir]

  def stage(self, point: Point) -> str:
    if point.level == 1:
      return "refine"
    inside = all(0 <= i < p.num for p, i in zip(self.params, point.index))
    return "grid" if inside else "extension"

  def best(self, points: Sequence[Point] | None = None) -> Point | None:
    scored = [(r["score"], p) for p, r in self.results.items()
              if (points is None or p in points) and r["score"] is not None
              and math.isfinite(r["score"])]
    if not scored:
      return None
    pick = max if self.mode == "max" else min
    return pick(scored, key=lambda t: t[0])[1]

  # -- running

  def _load(self, point: Point) -> dict | None:
    path = os.path.join(self.workdir, self.trial_name(point), RESULT_FILE)
    if not os.path.exists(path):
      return None
    with open(path, encoding="utf-8") as f:
      result = json.load(f)
    if result["values"] != self.values(point) or result["level"] != point.level or tuple(
        result["index"]) != point.index:
      raise ValueError(f"{path} holds another point ({result['values']}) than this sweep "
                       f"plans there ({self.values(point)}); use a new --workdir")
    return result

  def _finish(self, point: Point, status: str, wall_s: float, error: str = "") -> dict:
    name = self.trial_name(point)
    trial_dir = os.path.join(self.workdir, name)
    os.makedirs(trial_dir, exist_ok=True)
    collected = {"best_step": None, "final_step": None, "metrics": {}}
    if os.path.isdir(os.path.join(trial_dir, "checkpoints")):
      collected = collect_trial_metrics(trial_dir)
    score = collected["metrics"].get(self.metric) if status == "done" else None
    if status == "done" and score is None:
      raise ValueError(f"{name} finished without a {self.metric!r} eval metric; have "
                       f"{sorted(collected['metrics'])}")
    result = {"trial": name, "stage": self.stage(point), "level": point.level,
              "index": list(point.index),
              "values": self.values(point), "status": status, "metric": self.metric,
              "score": score, **collected, "wall_s": round(wall_s, 1),
              "command": " ".join(self.train_command(point, trial_dir)), "error": error}
    write_json(os.path.join(trial_dir, RESULT_FILE), result)
    return result

  def _run_in_process(self, point: Point) -> dict:
    from mangacolor_jax.training import config_check  # pylint: disable=g-import-not-at-top
    from mangacolor_jax.training import loop  # pylint: disable=g-import-not-at-top
    from mangacolor_jax.training import state as state_lib  # pylint: disable=g-import-not-at-top
    from mangacolor_jax.training import step as step_lib  # pylint: disable=g-import-not-at-top
    from mangacolor_jax.runtime import seeds  # pylint: disable=g-import-not-at-top
    runner = self.runner or loop.train_and_evaluate
    trial_dir = os.path.join(self.workdir, self.trial_name(point))
    start = time.time()
    try:
      runner(self.trial_config(point), trial_dir)
    except FloatingPointError as e:  # diverged: a result, not a crash
      return self._finish(point, "diverged", time.time() - start, str(e))
    except ValueError as e:  # a value the trainer refuses (e.g. past a field's range)
      if os.path.isdir(os.path.join(trial_dir, "checkpoints")):
        raise
      return self._finish(point, "invalid", time.time() - start, str(e))
    return self._finish(point, "done", time.time() - start)

  def _run_subprocess(self, point: Point) -> dict:
    trial_dir = os.path.join(self.workdir, self.trial_name(point))
    os.makedirs(trial_dir, exist_ok=True)
    env = dict(os.environ)
    # K processes share one accelerator: no process may grab most of its memory.
    env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    start = time.time()
    log_path = os.path.join(trial_dir, "train.log")
    with open(log_path, "ab") as log:
      proc = subprocess.run(self.train_command(point, trial_dir), stdout=log,
                            stderr=subprocess.STDOUT, env=env, check=False)
    if proc.returncode == 0:
      return self._finish(point, "done", time.time() - start)
    with open(log_path, "rb") as f:
      tail = f.read()[-2000:].decode("utf-8", "replace")
    if "FloatingPointError" in tail:
      return self._finish(point, "diverged", time.time() - start, tail[-500:])
    # Anything else (killed, out of memory, a bug) is not a result: a rerun retries it.
    raise RuntimeError(f"{self.trial_name(point)} failed (exit {proc.returncode}); see "
                       f"{log_path}:\n{tail}")

  def run_points(self, points: Sequence[Point], stage: str) -> None:
    """Plans `points` and runs those without a finished result."""
    for p in points:
      if p not in self.planned:
        self.planned.append(p)
    todo = []
    for p in points:
      result = self._load(p)
      if result is None:
        todo.append(p)
      else:
        self.results[p] = result
    logging.info("sweep %s: %d points, %d finished before, %d to run", stage, len(points),
                 len(points) - len(todo), len(todo))

    def run(p):
      logging.info("sweep: %s %s", self.trial_name(p), self.overrides(p))
      if self.parallel > 1:
        return self._run_subprocess(p)
      return self._run_in_process(p)

    if self.parallel > 1:
      errors = []
      with concurrent.futures.ThreadPoolExecutor(self.parallel) as pool:
        futures = {pool.submit(run, p): p for p in todo}
        for future in concurrent.futures.as_completed(futures):
          try:
            self.results[futures[future]] = future.result()
          except RuntimeError as e:
            errors.append(str(e))
      if errors:
        raise RuntimeError("\n\n".join(errors))
    else:
      for p in todo:
        self.results[p] = run(p)
        self.write_reports(plot=False)  # tables as trials finish; the plot per stage
    self.write_reports()

  def run(self, extend: bool = True, max_extensions: int = 2, refine: bool = False
          ) -> list[dict]:
    """Grid, edge extensions, optional refinement; returns the ranked results."""
    self.run_points(grid_points(self.params), "grid")
    for round_ in range(max_extensions if extend else 0):
      best = self.best([p for p in self.planned if p.level == 0])
      if best is None:
        break
      new = extension_points(self.params, best, self.planned)
      if not new:
        break
      logging.info("sweep: the best point %s lies on the grid's edge: extending",
                   self.values(best))
      self.run_points(new, f"extension {round_ + 1}")
    if refine:
      best = self.best([p for p in self.planned if p.level == 0])
      if best is not None:
        self.run_points(refine_grid(self.params, best, self.refine_points), "refine")
    return self.ranked()

  # -- reporting

  def ranked(self) -> list[dict]:
    done = [r for p, r in self.results.items() if p in self.planned]
    good = [r for r in done if r["score"] is not None and math.isfinite(r["score"])]
    good.sort(key=lambda r: r["score"], reverse=self.mode == "max")
    rest = sorted((r for r in done if r not in good), key=lambda r: r["trial"])
    return good + rest

  def write_reports(self, plot: bool = True) -> None:
    ranked = self.ranked()
    if not ranked:
      return
    extra = sorted({k for r in ranked for k in r["metrics"] if k != self.metric})
    columns = (["rank", "trial", "stage"] + [p.name for p in self.params] +
               [self.metric, "best_step", "final_step", "status", "wall_s"] + extra)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(columns)
    for rank, r in enumerate(ranked, 1):
      w.writerow([rank, r["trial"], _stage(r)] + [r["values"][p.name] for p in self.params]
                 + [r["score"], r["best_step"], r["final_step"], r["status"], r["wall_s"]]
                 + [r["metrics"].get(k) for k in extra])
    write_atomic(os.path.join(self.workdir, "results.csv"), buf.getvalue())
    write_atomic(os.path.join(self.workdir, "results.md"), self.markdown(ranked))
    if not plot:
      return
    try:
      plot_sweep(self.params, ranked, self.metric, self.mode,
                 os.path.join(self.workdir, "sweep.png"))
    except Exception as e:  # pylint: disable=broad-except
      logging.warning("sweep plot failed: %s", e)  # a plot never costs the results

  def markdown(self, ranked: Sequence[dict]) -> str:
    steps = self.steps or self.config.num_train_steps
    lines = [f"Sweep of {', '.join(p.name for p in self.params)}: {len(ranked)} trials of "
             f"{steps} training steps each (config.num_train_steps), ranked by {self.metric}"
             f" ({'higher' if self.mode == 'max' else 'lower'} is better) at each trial's "
             f"best checkpoint; jitter {self.jitter} grid steps, seed {self.seed}.", ""]
    best = next((r for r in ranked if r["score"] is not None), None)
    if best:
      lines += [f"Best: {best['trial']} with "
                + " ".join(f"--config.{k}={v}" for k, v in best["values"].items())
                + f" ({self.metric} {best['score']:.4f}).", ""]
    header = (["rank", "trial", "stage"] + [p.name for p in self.params]
              + [self.metric, "best step", "status", "minutes"])
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + " --- |" * len(header))
    for rank, r in enumerate(ranked, 1):
      score = "" if r["score"] is None else f"{r['score']:.4f}"
      cells = ([str(rank), r["trial"], _stage(r)]
               + [f"{r['values'][p.name]:g}" for p in self.params]  # already 3 digits
               + [score, str(r["best_step"]), r["status"], f"{r['wall_s'] / 60:.1f}"])
      lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def _stage(result: dict) -> str:
  return result["stage"]


def plot_sweep(params: Sequence[Param], ranked: Sequence[dict], metric: str, mode: str,
               path: str) -> None:
  """The metric against each parameter; for two, also a heat map over the grid."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  plt = _pyplot()
  scored = [r for r in ranked if r["score"] is not None and math.isfinite(r["score"])]
  panels = len(params) + (1 if len(params) == 2 else 0)
  fig, axes = plt.subplots(1, panels, figsize=(4.8 * panels, 4), squeeze=False)
  axes = axes[0]
  best = scored[0] if scored else None
  colours = {"grid": "C0", "extension": "C1", "refine": "C2"}
  for ax, p in zip(axes, params):
    for stage, colour in colours.items():
      xs = [r["values"][p.name] for r in scored if _stage(r) == stage]
      ys = [r["score"] for r in scored if _stage(r) == stage]
      if xs:
        ax.scatter(xs, ys, color=colour, label=stage, s=30)
    if best:
      ax.scatter([best["values"][p.name]], [best["score"]], marker="*", s=200,
                 color="gold", edgecolor="k", zorder=3, label="best")
    if p.log:
      ax.set_xscale("log")
    ax.set_xlabel(p.name)
    ax.set_ylabel(metric)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
  if len(params) == 2:
    ax = axes[-1]
    cells = [r for r in ranked if r["level"] == 0]
    i0 = sorted({r["index"][0] for r in cells})
    i1 = sorted({r["index"][1] for r in cells})
    grid = np.full((len(i1), len(i0)), np.nan)
    for r in cells:
      if r["score"] is not None and math.isfinite(r["score"]):
        grid[i1.index(r["index"][1]), i0.index(r["index"][0])] = r["score"]
    cmap = "viridis" if mode == "max" else "viridis_r"
    im = ax.imshow(grid, origin="lower", cmap=cmap, aspect="auto")
    for r in cells:
      x, y = i0.index(r["index"][0]), i1.index(r["index"][1])
      text = r["status"] if r["score"] is None else f"{r['score']:.2f}"
      # viridis is bright at its top end (the low end for viridis_r): dark text there.
      level = None if r["score"] is None else float(im.norm(r["score"]))
      bright = level is not None and (level > 0.6 if mode == "max" else level < 0.4)
      ax.text(x, y, text, ha="center", va="center", fontsize=8,
              color="k" if bright else "w")

    def tick(param, i):
      return f"{_round_sig(param.from_axis(param.to_axis(param.lo) + i * param.spacing)):g}"
    ax.set_xticks(range(len(i0)), [tick(params[0], i) for i in i0])
    ax.set_yticks(range(len(i1)), [tick(params[1], i) for i in i1])
    ax.set_xlabel(f"{params[0].name} (grid node; each trial jittered)")
    ax.set_ylabel(params[1].name)
    ax.set_title(f"{metric} over the grid")
    fig.colorbar(im, ax=ax, label=metric)
  _save_figure(fig, path)


# ---------------------------------------------------------------------- command line


def config_args_from_argv(argv: Sequence[str]) -> list[str]:
  """The --config.FIELD overrides of a command line, as `--config.FIELD=VALUE` strings."""
  out, i = [], 0
  while i < len(argv):
    arg = argv[i]
    if arg.startswith("--config.") and "=" not in arg and i + 1 < len(argv):
      out.append(f"{arg}={argv[i + 1]}")
      i += 1
    elif arg.startswith("--config."):
      out.append(arg)
    i += 1
  return out


def main(argv):
  if len(argv) != 2 or argv[1] not in COMMANDS:
    raise app.UsageError(f"give one command: {' | '.join(COMMANDS)}")
  config = FLAGS.config
  if argv[1] == "lr_range":
    try:
      result = lr_range(config, FLAGS.workdir, FLAGS.min, FLAGS.max, FLAGS.steps or 100,
                        FLAGS.smoothing, FLAGS.diverge_factor, FLAGS.disc_ramp_g_lr)
    except files.OutputError as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(2)
    summary = {k: {f: v[f] for f in ("suggested_lr", "min_loss_lr", "steepest_lr",
                                     "diverged_at_lr")}
               for k, v in result["networks"].items()}
    print(json.dumps({"suggested": result["suggested"], "overrides": result["overrides"],
                      "networks": summary}, indent=1))
    return
  try:
    params = [parse_param(s) for s in FLAGS.param]
    sweep = Sweep(config, FLAGS.workdir, params, jitter=FLAGS.jitter, seed=FLAGS.seed,
                  metric=FLAGS.metric, mode=FLAGS.mode, steps=FLAGS.steps,
                  refine_points=FLAGS.refine_points, parallel=FLAGS.trials_in_parallel,
                  config_file=FLAGS["config"].config_filename,
                  config_args=config_args_from_argv(sys.argv[1:]))
  except files.OutputError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  ranked = sweep.run(extend=not FLAGS.no_extend, max_extensions=FLAGS.max_extensions,
                     refine=FLAGS.refine)
  print(sweep.markdown(ranked))
  print(f"wrote {os.path.join(FLAGS.workdir, 'results.csv')}, results.md and sweep.png")


if __name__ == "__main__":
  define_flags()
  app.run(main)
