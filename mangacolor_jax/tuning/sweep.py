"""A sweep: plans its lattice, runs each trial (resumably), ranks and reports them.

Trial k trains in workdir/trial_k and, once finished, writes workdir/trial_k/result.json;
a rerun of the same sweep loads those and runs only the rest (unfinished trials resume
from their checkpoints). The workdir's sweep_spec.json keeps the sweep's settings.
"""

import concurrent.futures
import dataclasses
import json
import math
import os
import subprocess
import sys
import time
from typing import Any, Callable, Sequence

from absl import logging

from mangacolor_jax.training import checkpointing
from mangacolor_jax.training import loop
from mangacolor_jax.tuning import grid
from mangacolor_jax.tuning import outputs
from mangacolor_jax.tuning import overrides as overrides_lib
from mangacolor_jax.tuning import plots
from mangacolor_jax.tuning import reports
from mangacolor_jax.tuning import sweep_spec
from mangacolor_jax.utils import files

RESULT_FILE = "result.json"


def collect_trial_metrics(trial_dir: str) -> dict[str, Any]:
  """Eval metrics of a trial's best checkpoint (by eval PSNR, as colorize picks it)."""
  with checkpointing.Checkpointer(os.path.join(trial_dir, "checkpoints"),
                                  create=False) as ckpt:
    best, latest = ckpt.best_step(), ckpt.latest_step()
    metrics = (ckpt.metrics(best) or {}) if best is not None else {}
  return {"best_step": best, "final_step": latest, "metrics": metrics}


@dataclasses.dataclass(frozen=True)
class Options:
  """The settings of a sweep (the sweep command's flags).

  Attributes:
    jitter, seed: see `grid.point_values`.
    metric, mode: the ranking metric and whether higher ("max") is better.
    steps: num_train_steps of every trial (None: the config's).
    refine_points: points per field of the refined grid.
    parallel: trials at once; > 1 runs `python -m mangacolor_jax.train` processes and
      needs `config_file` and `config_args` (the command's --config.* overrides).
  """
  jitter: float = 0.3
  seed: int = 0
  metric: str = "eval_psnr"
  mode: str = "auto"
  steps: int | None = None
  refine_points: int = 3
  parallel: int = 1
  config_file: str | None = None
  config_args: Sequence[str] = ()


def _check_settings(params: Sequence[grid.Param], opts: Options) -> None:
  """Refuses swept fields and settings no sweep can run, before anything is written."""
  if not params:
    raise ValueError("a sweep needs at least one --param")
  if len({p.name for p in params}) != len(params):
    raise ValueError("each --param field may appear once")
  if opts.jitter < 0 or opts.jitter >= 0.5:
    raise ValueError(f"--jitter={opts.jitter} must be in [0, 0.5): points must not swap "
                     "order")
  if opts.parallel < 1:
    raise ValueError(f"--trials_in_parallel={opts.parallel} must be >= 1")
  if opts.parallel > 1 and not opts.config_file:
    raise ValueError("--trials_in_parallel > 1 needs the config file path")


class Sweep:
  """Plans, runs (resumably), ranks and reports the trials of one sweep workdir.

  Args:
    config: the base config (the command's config with its overrides).
    workdir: the sweep's directory; trial k trains in workdir/trial_k.
    params: the swept fields.
    opts: the sweep's settings (`Options`).
    runner: (config, trial_dir) -> None; trains one trial in this process (default
      `loop.train_and_evaluate`; tests pass a stand-in).
  """

  def __init__(self, config, workdir: str, params: Sequence[grid.Param],
               opts: Options = Options(), *,
               runner: Callable[[Any, str], Any] | None = None):
    _check_settings(params, opts)
    self.config, self.workdir, self.params = config, workdir, list(params)
    self.jitter, self.seed, self.metric = opts.jitter, opts.seed, opts.metric
    self.mode = reports.metric_mode(opts.metric, opts.mode)
    self.steps, self.refine_points = opts.steps, opts.refine_points
    self.parallel = opts.parallel
    self.config_file, self.config_args = opts.config_file, list(opts.config_args)
    self.runner = runner
    self.planned: list[grid.Point] = []
    self.results: dict[grid.Point, dict] = {}
    # Every field must exist and be numeric before anything trains.
    probe = config.copy_and_resolve_references()
    for p in self.params:
      overrides_lib.set_field(probe, p.name, p.from_axis(p.to_axis(p.lo)))
    files.claim_folder(workdir, outputs.COMMAND, "--workdir")
    self._check_spec()

  # -- bookkeeping

  def _check_spec(self) -> None:
    """A workdir belongs to one sweep: a changed spec would mislabel finished trials."""
    spec = {"params": [dataclasses.asdict(p) for p in self.params], "jitter": self.jitter,
            "seed": self.seed, "steps": self.steps, "refine_points": self.refine_points,
            "config": self.config.to_dict()}
    sweep_spec.check_or_write(self.workdir, json.loads(json.dumps(spec, default=str)))

  def trial_name(self, point: grid.Point) -> str:
    return f"trial_{self.planned.index(point):03d}"

  def values(self, point: grid.Point) -> dict[str, float]:
    return grid.point_values(self.params, point, self.jitter, self.seed,
                             self.refine_points)

  def overrides(self, point: grid.Point) -> dict[str, Any]:
    """Config fields a trial sets: the point's values and the trial length."""
    out = dict(self.values(point))
    if self.steps:
      out["num_train_steps"] = int(self.steps)
    return out

  def trial_config(self, point: grid.Point):
    config = self.config.copy_and_resolve_references()
    for name, value in self.overrides(point).items():
      overrides_lib.set_field(config, name, value)
    return config

  def train_command(self, point: grid.Point, trial_dir: str) -> list[str]:
    """The `train` command line of a trial (also recorded in its result)."""
    args = [f"--config.{k}={v!r}" for k, v in self.overrides(point).items()]
    return [sys.executable, "-m", "mangacolor_jax.train",
            "--config", self.config_file or "CONFIG", *self.config_args, *args,
            "--workdir", trial_dir]

  def stage(self, point: grid.Point) -> str:
    if point.level == 1:
      return "refine"
    inside = all(0 <= i < p.num for p, i in zip(self.params, point.index))
    return "grid" if inside else "extension"

  def best(self, points: Sequence[grid.Point] | None = None) -> grid.Point | None:
    scored = [(r["score"], p) for p, r in self.results.items()
              if (points is None or p in points) and r["score"] is not None
              and math.isfinite(r["score"])]
    if not scored:
      return None
    pick = max if self.mode == "max" else min
    return pick(scored, key=lambda t: t[0])[1]

  # -- running

  def _load(self, point: grid.Point) -> dict | None:
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

  def _finish(self, point: grid.Point, status: str, wall_s: float, error: str = ""
              ) -> dict:
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
    outputs.write_json(os.path.join(trial_dir, RESULT_FILE), result)
    return result

  def _run_in_process(self, point: grid.Point) -> dict:
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

  def _run_subprocess(self, point: grid.Point) -> dict:
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

  def _run_one(self, point: grid.Point) -> dict:
    logging.info("sweep: %s %s", self.trial_name(point), self.overrides(point))
    if self.parallel > 1:
      return self._run_subprocess(point)
    return self._run_in_process(point)

  def _run_parallel(self, todo: Sequence[grid.Point]) -> None:
    """Runs `todo` as `parallel` train processes at once; raises the failures at the end."""
    errors = []
    with concurrent.futures.ThreadPoolExecutor(self.parallel) as pool:
      futures = {pool.submit(self._run_one, p): p for p in todo}
      for future in concurrent.futures.as_completed(futures):
        try:
          self.results[futures[future]] = future.result()
        except RuntimeError as e:
          errors.append(str(e))
    if errors:
      raise RuntimeError("\n\n".join(errors))

  def run_points(self, points: Sequence[grid.Point], stage: str) -> None:
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
    if self.parallel > 1:
      self._run_parallel(todo)
    else:
      for p in todo:
        self.results[p] = self._run_one(p)
        self.write_reports(plot=False)  # tables as trials finish; the plot per stage
    self.write_reports()

  def run(self, extend: bool = True, max_extensions: int = 2, refine: bool = False
          ) -> list[dict]:
    """Grid, edge extensions, optional refinement; returns the ranked results."""
    self.run_points(grid.grid_points(self.params), "grid")
    for round_ in range(max_extensions if extend else 0):
      best = self.best([p for p in self.planned if p.level == 0])
      if best is None:
        break
      new = grid.extension_points(self.params, best, self.planned)
      if not new:
        break
      logging.info("sweep: the best point %s lies on the grid's edge: extending",
                   self.values(best))
      self.run_points(new, f"extension {round_ + 1}")
    if refine:
      best = self.best([p for p in self.planned if p.level == 0])
      if best is not None:
        self.run_points(grid.refine_grid(self.params, best, self.refine_points), "refine")
    return self.ranked()

  # -- reporting

  def ranked(self) -> list[dict]:
    """The planned trials' results: scored ones best first, then the rest by name."""
    done = [r for p, r in self.results.items() if p in self.planned]
    good = [r for r in done if r["score"] is not None and math.isfinite(r["score"])]
    good.sort(key=lambda r: r["score"], reverse=self.mode == "max")
    rest = sorted((r for r in done if r not in good), key=lambda r: r["trial"])
    return good + rest

  def write_reports(self, plot: bool = True) -> None:
    """Writes results.csv and results.md, and with `plot` sweep.png, from the results."""
    ranked = self.ranked()
    if not ranked:
      return
    files.write_text(os.path.join(self.workdir, "results.csv"),
                     reports.results_csv(self.params, self.metric, ranked))
    files.write_text(os.path.join(self.workdir, "results.md"), self.markdown(ranked))
    if not plot:
      return
    try:
      plots.plot_sweep(self.params, ranked, self.metric, self.mode,
                       os.path.join(self.workdir, "sweep.png"))
    except Exception as e:  # pylint: disable=broad-except
      logging.warning("sweep plot failed: %s", e)  # a plot never costs the results

  def markdown(self, ranked: Sequence[dict]) -> str:
    """results.md: what was swept and how it ranks, the best trial, the ranked table."""
    steps = self.steps or self.config.num_train_steps
    lines = [f"Sweep of {', '.join(p.name for p in self.params)}: {len(ranked)} trials of "
             f"{steps} training steps each (config.num_train_steps), ranked by {self.metric}"
             f" ({'higher' if self.mode == 'max' else 'lower'} is better) at each trial's "
             f"best checkpoint; jitter {self.jitter} grid steps, seed {self.seed}.", ""]
    lines += reports.best_lines(self.metric, ranked)
    lines += reports.markdown_table(self.params, self.metric, ranked)
    return "\n".join(lines) + "\n"
