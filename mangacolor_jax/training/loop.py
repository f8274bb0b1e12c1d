"""The training loop: `train_and_evaluate(config, workdir)` is the whole job.

It validates the config, builds the mesh, the networks and the data, restores the latest
checkpoint in `workdir` if there is one, and runs the compiled `step.train_step` with
periodic metrics, evaluation, diagnostics and checkpoints. A run restarted on the same
workdir resumes exactly: the data stream and every key are functions of the step.
"""

import dataclasses
import json
import os
import time

from absl import logging
from clu import metric_writers
from clu import periodic_actions
import jax
import ml_collections
import numpy as np

from mangacolor_jax.input_pipeline import datasets
from mangacolor_jax.input_pipeline import sources
from mangacolor_jax.nn import hints as hints_lib
from mangacolor_jax.nn import models
from mangacolor_jax.runtime import compile as compile_lib
from mangacolor_jax.runtime import host_memory
from mangacolor_jax.runtime import mesh as mesh_lib
from mangacolor_jax.runtime import seeds
from mangacolor_jax.training import checkpointing
from mangacolor_jax.training import config_check
from mangacolor_jax.training import evaluation
from mangacolor_jax.training import inputs
from mangacolor_jax.training import model_card
from mangacolor_jax.training import state as state_lib
from mangacolor_jax.training import step as step_lib
from mangacolor_jax.training.diagnostics import writer as diagnostics_lib
from mangacolor_jax.utils import files
from mangacolor_jax.utils import images
from mangacolor_jax.utils import provenance


@dataclasses.dataclass
class EarlyStopping:
  """Patience on eval PSNR. Its record travels in the checkpoints, so that a resumed run
  goes on counting where it stopped."""
  patience: int
  min_delta: float
  best: float | None = None
  best_step: int = 0
  bad_evals: int = 0
  stopped: bool = False

  def update(self, step: int, value: float) -> bool:
    """Counts one evaluation; True when training should stop."""
    if self.best is None or value > self.best + self.min_delta:
      self.best, self.best_step, self.bad_evals = value, step, 0
    else:
      self.bad_evals += 1
    if self.bad_evals >= self.patience:
      self.stopped = True
      logging.info("early stopping at step %d: eval_psnr has not improved for %d "
                   "evaluations (best %.4f at step %d)", step, self.bad_evals, self.best,
                   self.best_step)
    return self.stopped

  def record(self) -> dict:
    return {"best": self.best, "best_step": self.best_step, "bad_evals": self.bad_evals,
            "stopped": self.stopped}


class Evaluator:
  """A run's evaluation at a step: metrics and sample grids (a fixed validation batch, the
  worst validation examples, a fixed training batch) to the writer, the validation samples
  to WORKDIR/samples."""

  def __init__(self, nets: state_lib.Networks, mesh, writer, workdir: str, data_seed: int):
    config = nets.config
    pi, pc = jax.process_index(), jax.process_count()
    self.nets, self.mesh, self.writer, self.is_chief = nets, mesh, writer, pi == 0
    on_device = inputs.on_device(config)
    self.eval_ds = datasets.create_eval_dataset(config, process_index=pi, process_count=pc,
                                                lineart_on_device=on_device)
    self.place_eval = inputs.Placer(config, mesh, training=False)
    self.place_train = inputs.Placer(config, mesh, training=True)
    # A fixed train batch for the sample grids: the same in every run with this seed.
    self.sample_batch = next(datasets.create_train_dataset(
        config, seed=data_seed, process_index=pi, process_count=pc,
        lineart_on_device=on_device).as_numpy_iterator())
    # Fixed training batches on which G's BatchNorm statistics are measured under the
    # averaged weights before each evaluation and checkpoint (`step.with_average_stats`).
    self.stats_ds = self.measure_stats = None
    if step_lib.measures_average_stats(config):
      self.stats_ds = datasets.create_train_dataset(
          config, seed=data_seed, process_index=pi, process_count=pc,
          lineart_on_device=on_device).take(config.model.ema_bn_batches)
      self.measure_stats = step_lib.compile_average_batch_stats(nets, mesh)
    self.eval_step = step_lib.compile_eval_step(nets, mesh)
    self.generate = compile_lib.jit(nets.generate, config)
    self.samples_dir = os.path.join(workdir, "samples")
    os.makedirs(self.samples_dir, exist_ok=True)

  def __call__(self, step: int, state: state_lib.GANState) -> dict[str, float]:
    num_samples = self.nets.config.eval.num_samples
    metrics, grids = evaluation.evaluate_dataset(state, self.eval_ds, self.mesh,
                                                 self.eval_step, num_samples,
                                                 place=self.place_eval)
    self.writer.write_scalars(step, metrics)
    placed = self.place_train(self.sample_batch)
    train_out = self.generate(state, placed["lineart"], hints_lib.no_hints(placed["lineart"]))
    batch, train_out = mesh_lib.fetch((placed, train_out))
    grids["train_samples"] = images.sample_grid(
        batch["lineart"], np.asarray(train_out), batch["target"], num_samples)
    if self.is_chief and "eval_samples" in grids:
      files.save_image(os.path.join(self.samples_dir, f"eval_{step:07d}.png"),
                       grids["eval_samples"])
    self.writer.write_images(step, {k: v[None] for k, v in grids.items()})
    logging.info("eval at step %d: %s", step,
                 json.dumps({k: round(v, 4) for k, v in metrics.items()}))
    return metrics

  def with_average_stats(self, state: state_lib.GANState) -> state_lib.GANState:
    """`state` with G's BatchNorm statistics measured under its averaged weights (itself
    when the run measures none)."""
    if self.stats_ds is None:
      return state
    batches = (self.place_train(b) for b in self.stats_ds.as_numpy_iterator())
    return mesh_lib.replicate(
        step_lib.with_average_stats(self.measure_stats, state, batches), self.mesh)

  def probe_batch(self) -> dict[str, jax.Array]:
    """The first validation batch, placed on the mesh (the diagnostics' fixed batch)."""
    probe = next(self.eval_ds.as_numpy_iterator())
    probe.pop("name", None)
    probe.pop("valid", None)
    return self.place_eval(probe)


def check_finite(step: int, window, ckpt, state=None, all_finite=None) -> None:
  """Raises FloatingPointError when a logged metric (or, with `state`, a parameter) is not
  finite, saying that the last good checkpoint is intact."""
  bad = [f"{k}={v}" for m in window for k, v in m.items() if not np.isfinite(v)]
  if state is not None and not bool(all_finite(state)):
    bad.append("parameters")
  if bad:
    raise FloatingPointError(
        f"non-finite {', '.join(sorted(set(bad))[:4])} by step {step}; training stopped. "
        f"The last good checkpoint (step {ckpt.latest_step()}) in {ckpt.directory} is "
        "intact. Lower config.optim.g_lr / d_lr, set config.optim.grad_clip, or check "
        "the data.")


def restore_or_init(nets: state_lib.Networks, ckpt, mesh, init_rng, latest: int | None,
                    workdir: str) -> state_lib.GANState:
  """The state of checkpoint `latest` (None: the initial state), replicated on `mesh`."""
  repl = mesh_lib.replicated(mesh)
  if latest is None:
    return jax.jit(nets.create_state, out_shardings=repl)(init_rng)
  abstract = jax.eval_shape(nets.create_state, init_rng)
  abstract = jax.tree_util.tree_map(
      lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=repl), abstract)
  state, _ = ckpt.restore(latest, abstract)
  logging.info("resumed from step %d of %s", latest, workdir)
  return state


def check_devices(config: ml_collections.ConfigDict):
  """Sets up the host and the mesh over every device of every process: (whether each
  step reuses its host memory, the mesh). Raises ValueError when config.batch_size does
  not split over them."""
  reuse_step_memory = host_memory.prepare(config)  # before JAX's CPU client exists
  mesh = mesh_lib.create_mesh()
  mesh_lib.check_batch_size(config.batch_size, mesh)
  return reuse_step_memory, mesh


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str) -> state_lib.GANState:
  """Trains (resuming from `workdir` if it holds checkpoints) and returns the final state."""
  config_check.validate_config(config)
  reuse_step_memory, mesh = check_devices(config)
  logging.info("JAX process %d / %d, devices: %s", jax.process_index(),
               jax.process_count(), jax.devices())
  os.makedirs(workdir, exist_ok=True)
  ckpt = checkpointing.Checkpointer(os.path.join(workdir, "checkpoints"),
                                    keep_best=config.keep_best_checkpoints,
                                    best_metric="eval_psnr", best_mode="max")
  latest = ckpt.latest_step()
  meta = ckpt.restore_meta(latest) if latest is not None else {}
  stopping = EarlyStopping(config.early_stopping_patience, config.early_stopping_min_delta,
                           **meta.get("early_stopping", {}))
  seed = seeds.resolve_seed(config, meta or None)
  logging.info("seed %d%s", seed, " (drawn fresh: config.seed=-1)" if config.seed < 0 else "")
  logging.info("config:\n%s", config)
  nets = state_lib.create_networks(config)
  keys = seeds.run_keys(seed)
  state = restore_or_init(nets, ckpt, mesh, keys.init, latest, workdir)
  if stopping.stopped:
    logging.info("this run stopped early at step %d (best eval_psnr %s at step %d); "
                 "nothing to do", int(jax.device_get(state.step)), stopping.best,
                 stopping.best_step)
    ckpt.close()
    return state
  logging.info("generator: %d parameters, discriminator: %d",
               models.count_params(state.g_params), models.count_params(state.d_params))
  run_meta = {"config": config.to_dict(), "seed": seed,
              "git_commit": provenance.git_commit(), "jax_version": jax.__version__}
  loop = Loop(nets, mesh, ckpt, workdir, keys.data_seed, stopping, run_meta,
              start_step=int(jax.device_get(state.step)))
  loop.best_psnr = meta.get("best_eval_psnr")
  try:
    return loop.run(state, reuse_step_memory)
  finally:
    # On any exit, an error included, let a checkpoint being written finish.
    loop.writer.flush()
    ckpt.wait_until_finished()
    ckpt.close()


class Loop:
  """The steps of one run, from a (restored or initial) state to the last step."""

  def __init__(self, nets: state_lib.Networks, mesh, ckpt, workdir: str, data_seed: int,
               stopping: EarlyStopping, run_meta: dict, start_step: int):
    config = nets.config
    self.config, self.mesh, self.ckpt = config, mesh, ckpt
    self.stopping, self.run_meta, self.start_step = stopping, run_meta, start_step
    self.workdir, self.best_psnr, self.started = workdir, None, time.monotonic()
    self._split_sizes = None
    # Example g of the run is a function of g alone: resuming at a step is arithmetic.
    self.train_iter = datasets.create_train_dataset(
        config, seed=data_seed, start_index=start_step * config.batch_size,
        process_index=jax.process_index(), process_count=jax.process_count(),
        lineart_on_device=inputs.on_device(config)).as_numpy_iterator()
    self.train_step = step_lib.compile_train_step(nets, mesh)
    self.all_finite = jax.jit(state_lib.all_finite)
    self.writer = metric_writers.create_default_writer(
        workdir, just_logging=jax.process_index() > 0)
    self.evaluate = Evaluator(nets, mesh, self.writer, workdir, data_seed)
    self.place = self.evaluate.place_train
    self.diagnostics = None
    # Built only when some step of this run is a diagnostic one (nothing compiles otherwise).
    if 0 < config.diagnostics_every_steps <= config.num_train_steps:
      self.diagnostics = diagnostics_lib.Diagnostics(
          nets, mesh, self.writer, self.evaluate.probe_batch(), workdir=workdir)

  def run(self, state: state_lib.GANState, reuse_step_memory: bool) -> state_lib.GANState:
    config, start_step = self.config, self.start_step
    if start_step == 0:
      self.writer.write_hparams(provenance.flatten_config(config))
      state = self.evaluate.with_average_stats(state)
      self.evaluate(0, state)
    report_progress = periodic_actions.ReportProgress(
        num_train_steps=config.num_train_steps, writer=self.writer)
    window = []
    for step in range(start_step + 1, config.num_train_steps + 1):
      batch = self.place(next(self.train_iter))
      diagnose = (self.diagnostics is not None and
                  step % config.diagnostics_every_steps == 0)
      before = self.diagnostics.snapshot(state) if diagnose else None
      with jax.profiler.StepTraceAnnotation("train", step_num=step):
        state, metrics = self.train_step(state, batch)
      if step == start_step + 1:  # compiled: its heap (~0.5 GB at 256x256) back to the OS
        host_memory.after_compiling(reuse_step_memory)
      if diagnose:
        self.diagnostics.write(step, before, state, batch)
      window.append(metrics)
      report_progress(step)
      state, window, stop = self.after_step(step, state, window)
      if stop:
        break
    return state

  def after_step(self, step: int, state: state_lib.GANState, window: list
                 ) -> tuple[state_lib.GANState, list, bool]:
    """Logs, evaluates and checkpoints as the config asks; returns the state (with G's
    statistics measured under the averaged weights where it was evaluated or saved), the
    metrics not yet logged and whether early stopping ends the run."""
    config = self.config
    is_last = step == config.num_train_steps
    if (step % config.eval_every_steps == 0 or step % config.checkpoint_every_steps == 0 or
        is_last):
      # Training normalizes by each batch's own statistics and never reads these.
      state = self.evaluate.with_average_stats(state)
    if step % config.log_every_steps == 0 or is_last:
      logged = jax.device_get(window)
      check_finite(step, logged, self.ckpt)
      self.writer.write_scalars(step, {f"train_{k}": float(np.mean([m[k] for m in logged]))
                                       for k in logged[0]})
      window = []
    eval_metrics, stop = None, False
    if step % config.eval_every_steps == 0 or is_last:
      eval_metrics = self.evaluate(step, state)
      stop = (config.early_stopping_patience > 0 and
              self.stopping.update(step, eval_metrics["eval_psnr"]))
    if step % config.checkpoint_every_steps == 0 or is_last or stop:
      check_finite(step, jax.device_get(window), self.ckpt, state, self.all_finite)
      best = eval_metrics is not None and (self.best_psnr is None or
                                           eval_metrics["eval_psnr"] > self.best_psnr)
      if best:
        self.best_psnr = eval_metrics["eval_psnr"]
      self.ckpt.save(step, state, metrics=eval_metrics,
                     meta=dict(self.run_meta, step=step, best_eval_psnr=self.best_psnr,
                               early_stopping=self.stopping.record()))
      if best and jax.process_index() == 0:
        model_card.write(self.workdir, config, step, eval_metrics, self.split_sizes(),
                         time.monotonic() - self.started, self.run_meta["git_commit"])
    return state, window, stop

  def split_sizes(self) -> dict[str, int]:
    """Images per split, for the model card (a TFDS data set's report has them)."""
    if self._split_sizes is None:
      splits = {"train": "train", "validation": "val"}
      if self.config.data.source == "folder" and self.config.data.test_fraction > 0:
        splits["test"] = "test"
      self._split_sizes = ({} if self.config.data.source == "tfds" else
                           {k: sources.create_source(self.config, v).size
                            for k, v in splits.items()})
    return self._split_sizes
