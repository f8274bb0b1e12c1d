"""Speed and memory of a config's training step, inference and input pipeline.

`benchmark(config)` is what `python -m mangacolor_jax.benchmark` prints; `TrainBench` is
the timed step on its own, and `apply_overrides` a variant's config overrides
(scripts/bench_vs_torch.py and scripts/gpu_check.py use both).
Nothing here imports TensorFlow unless the input pipeline is timed, so it also runs where
TensorFlow is not installed. Speed targets live here, never in tests.
"""

import math
import os
import resource
import statistics
import time

import jax
import numpy as np

from mangacolor_jax.input_pipeline import config_check as data_check
from mangacolor_jax.nn import hints as hints_lib
from mangacolor_jax.nn import models
from mangacolor_jax.runtime import compile as compile_lib
from mangacolor_jax.runtime import host_memory
from mangacolor_jax.runtime import mesh as mesh_lib
from mangacolor_jax.training import config_check
from mangacolor_jax.training import inputs
from mangacolor_jax.training import state as state_lib
from mangacolor_jax.training import step as step_lib


def peak_host_memory_mb() -> float:
  # ru_maxrss is in KiB on Linux.
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def step_stats(step_s: list[float]) -> dict:
  """min / median / max of per-step seconds, in ms."""
  return {"step_ms_min": round(1000 * min(step_s), 2),
          "step_ms_median": round(1000 * statistics.median(step_s), 2),
          "step_ms_max": round(1000 * max(step_s), 2)}


def apply_overrides(config, overrides: str):
  """"a.b=1,c=x" onto a ConfigDict, each value cast to the type of the field it replaces
  (the variants of scripts/bench_vs_torch.py and scripts/gpu_check.py)."""
  for item in filter(None, overrides.split(",")):
    key, value = item.split("=", 1)
    *parents, leaf = key.split(".")
    node = config
    for p in parents:
      node = node[p]
    old = node[leaf]
    if isinstance(old, bool):
      value = value.lower() in ("1", "true", "yes")
    elif isinstance(old, (int, float)):
      value = type(old)(value)
    node[leaf] = value


class TrainBench:
  """The config's real training step, compiled once, on a fixed synthetic batch.

  Attributes:
    compile_s: seconds to lower and compile the step.
    nets, state, batch, mesh: for further measurements (inference) on the same state.
  """

  def __init__(self, config, seed: int = 0):
    self.config = config
    # What the trainer does (host_memory): before JAX's CPU client exists.
    reuse_step_memory = host_memory.prepare(config)
    self.mesh = mesh_lib.create_mesh()
    mesh_lib.check_batch_size(config.batch_size, self.mesh)
    self.nets = state_lib.create_networks(config)
    h, w = self.nets.image_hw
    b = config.batch_size
    rng = np.random.default_rng(seed)
    self.batch = mesh_lib.place_batch({
        "lineart": rng.uniform(-1, 1, (b, h, w, 1)).astype(np.float32),
        "target": rng.uniform(-1, 1, (b, h, w, 3)).astype(np.float32)}, self.mesh)
    self.state = jax.jit(self.nets.create_state, out_shardings=mesh_lib.replicated(
        self.mesh))(jax.random.key(seed))
    step_fn = step_lib.compile_train_step(self.nets, self.mesh)
    t0 = time.perf_counter()
    self.compiled = step_fn.lower(self.state, self.batch).compile()
    self.compile_s = time.perf_counter() - t0
    # XLA's compile-time heap (about 0.5 GB at 256x256) back to the OS, as in the trainer.
    host_memory.after_compiling(reuse_step_memory)
    self.metrics = None

  def run(self, steps: int, per_step: bool = True) -> list[float]:
    """Runs `steps` steps; returns each one's seconds (per_step) or [total seconds].

    Per-step times block on every step; without, the steps are dispatched back to back
    (what a training loop does on an accelerator) and only the total is timed.
    """
    times = []
    t0 = time.perf_counter()
    for _ in range(steps):
      self.state, self.metrics = self.compiled(self.state, self.batch)
      if per_step:
        jax.block_until_ready(self.metrics)
        t1 = time.perf_counter()
        times.append(t1 - t0)
        t0 = t1
    if not per_step:
      jax.block_until_ready((self.state, self.metrics))
      times.append(time.perf_counter() - t0)
    return times

  def check_finite(self) -> dict:
    """Loss values of the last step; raises if any is not finite."""
    losses = {k: float(v) for k, v in jax.device_get(self.metrics).items()
              if k in ("d_loss", "g_loss", "g_l1", "g_adv")}
    if not all(math.isfinite(v) for v in losses.values()):
      raise FloatingPointError(f"non-finite losses {losses}")
    return losses

  def temp_bytes(self) -> int:
    """Bytes of the compiled step's temporary buffer (its intermediate values; 0 if unknown)."""
    memory = self.compiled.memory_analysis()
    return int(getattr(memory, "temp_size_in_bytes", 0) or 0)

  def flops_per_step(self) -> float:
    """XLA's count of floating-point operations of one compiled step (0 if unknown)."""
    cost = self.compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float((cost or {}).get("flops", 0.0))


def device_lineart_cost(config, mesh, hw: tuple[int, int], steps: int) -> dict:
  """Time and XLA FLOPs of making a training batch's line art on the device
  (`inputs.complete`, config.data.lineart_on = "device"), whatever the config's place."""
  b, (h, w) = config.batch_size, hw
  rng = np.random.default_rng(0)
  lo, hi = (float(v) for v in config.data.xdog_sigma)
  batch = mesh_lib.place_batch({
      "target": rng.uniform(-1, 1, (b, h, w, 3)).astype(np.float32),
      "lineart_kind": (np.arange(b) % 2).astype(np.int32),
      "lineart_param": rng.uniform(lo, hi, (b,)).astype(np.float32)}, mesh)
  data = mesh_lib.data_sharded(mesh)
  fn = compile_lib.jit(lambda x: inputs.complete(x, hi, int(config.data.lineart_upscale)),
                       config, in_shardings=data, out_shardings=data)
  compiled = fn.lower(batch).compile()
  jax.block_until_ready(compiled(batch))
  t0 = time.perf_counter()
  for _ in range(steps):
    out = compiled(batch)
  jax.block_until_ready(out)
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return {"ms": 1000 * (time.perf_counter() - t0) / steps,
          "gflop": float((cost or {}).get("flops", 0.0)) / 1e9}


def input_rate(config, input_batches: int) -> dict:
  """Images/s of the config's training input pipeline (line art included on the host
  path, left to the device on the device path), in total and per CPU core."""
  # TensorFlow only when the input pipeline is timed: the rest runs without it.
  from mangacolor_jax.input_pipeline import datasets  # pylint: disable=g-import-not-at-top
  ds = datasets.create_train_dataset(config, seed=0,
                                     lineart_on_device=inputs.on_device(config))
  it = ds.as_numpy_iterator()
  next(it)  # start-up (file listing, first decode) is not throughput
  t0 = time.perf_counter()
  for _ in range(input_batches):
    next(it)
  rate = input_batches * (config.batch_size // jax.process_count()) / (
      time.perf_counter() - t0)
  cores = len(os.sched_getaffinity(0))
  return {"input_images_per_sec": round(rate, 1),
          "input_images_per_sec_per_core": round(rate / cores, 1), "input_cores": cores}


def benchmark(config, steps: int = 20, warmup: int = 2, input_batches: int = 20) -> dict:
  """Measures the config's training step, generator inference and input pipeline; with
  steps = 0 the input pipeline alone (its peak host memory is then the pipeline's)."""
  config_check.validate_config(config)
  if steps > 0:
    result = step_and_inference(config, steps, warmup)
  else:
    result = {"config_batch_size": config.batch_size, "lineart_on": config.data.lineart_on,
              "image_size": list(data_check.image_hw(config))}
  if input_batches > 0:
    result.update(input_rate(config, input_batches))
  result["peak_host_memory_mb"] = round(peak_host_memory_mb(), 1)
  return result


def step_and_inference(config, steps: int, warmup: int) -> dict:
  """The training step's time, memory and cost, and the generator's inference rate."""
  bench = TrainBench(config)
  b = config.batch_size
  h, w = bench.nets.image_hw
  bench.run(warmup)
  cpu0, faults0 = time.process_time(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  step_s = bench.run(steps)
  cpu_s = time.process_time() - cpu0
  faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0
  losses = bench.check_finite()
  train_s = sum(step_s)
  state, batch = bench.state, bench.batch

  gen_fn = compile_lib.jit(bench.nets.generate, config)
  empty = hints_lib.no_hints(batch["lineart"])
  jax.block_until_ready(gen_fn(state, batch["lineart"], empty))
  t0 = time.perf_counter()
  for _ in range(steps):
    out = gen_fn(state, batch["lineart"], empty)
  jax.block_until_ready(out)
  infer_s = time.perf_counter() - t0

  lineart = device_lineart_cost(config, bench.mesh, (h, w), steps)
  return {
      "config_batch_size": b,
      "lineart_on": config.data.lineart_on,
      "image_size": [h, w],
      "dtype": config.dtype,
      "train_images_per_sec": round(b * steps / train_s, 3),
      "train_step_ms": round(1000 * train_s / steps, 2),
      **step_stats(step_s),
      "train_cpu_ms_per_step": round(1000 * cpu_s / steps, 1),
      # Pages the OS mapped afresh per step: near 0 when the step's scratch buffer is reused
      # (config.cpu_reuse_step_memory), about temp_buffer_mb / 4 KiB when it is not.
      "train_page_faults_per_step": round(faults / steps),
      "temp_buffer_mb": round(bench.temp_bytes() / 2**20, 1),
      "train_losses": losses,
      "inference_images_per_sec": round(b * steps / infer_s, 3),
      # Line art made on the device (config.data.lineart_on = "device"), per training batch.
      "device_lineart_ms": round(lineart["ms"], 2),
      "device_lineart_share_of_step": round(lineart["ms"] / (1000 * train_s / steps), 4),
      "device_lineart_gflop": round(lineart["gflop"], 3),
      "compile_seconds": round(bench.compile_s, 2),
      "xla_gflop_per_step": round(bench.flops_per_step() / 1e9, 2),
      "g_params": models.count_params(state.g_params),
      "d_params": models.count_params(state.d_params),
      "device_kind": jax.devices()[0].device_kind,
      "device_count": jax.device_count(),
      "process_count": jax.process_count(),
  }
