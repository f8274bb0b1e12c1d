r"""Where the time of one training step goes: a jax.profiler trace summarised by XLA op.

Compiles the config's real `trainer.train_step` on a fixed in-memory batch, runs a few
steps under `jax.profiler.trace` (Perfetto JSON), and prints the XLA ops (convolutions,
fusions, copies, ...) that took the most time, grouped by op and by kind, with the share of
the step each takes. Also prints XLA's own cost analysis (FLOPs, bytes) of the step. No
TensorFlow needed.

  .venv/bin/python scripts/profile_step.py --config configs/pix2pix.py:128 --steps 3
  .venv/bin/python scripts/profile_step.py --config configs/pix2pix.py:128 \
      --config.model.gen_upsample=transpose --top 25 --trace_dir /tmp/trace
  .venv/bin/python scripts/profile_step.py --config configs/pix2pix.py:256 --one_core

With --one_core (Linux), the same compiled step is traced again with every thread of the
process pinned to one CPU, and each op family's time on all cores is set against its time
on one: a family whose speedup stays near 1.0 leaves the other cores idle while it runs.
"""

import collections
import functools
import glob
import gzip
import json
import os
import re
import sys
import tempfile
import time

from absl import app
from absl import flags
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Configuration file.", lock_config=True)
flags.DEFINE_integer("steps", 3, "Traced training steps (after compilation and warm-up).")
flags.DEFINE_integer("top", 20, "Ops to list.")
flags.DEFINE_string("trace_dir", "", "Keep the trace here (default: a temporary folder).")
flags.DEFINE_bool("one_core", False, "Also trace with every thread pinned to one CPU and "
                  "print each op family's speedup from one core to all (Linux).")
flags.mark_flags_as_required(["config"])


def kind_of(name: str) -> str:
  """Coarse class of an XLA op/thunk name from the trace."""
  n = name.lower()
  for key in ("convolution", "conv", "dot", "reduce", "copy", "transpose", "fusion",
              "pad", "slice", "concatenate", "broadcast", "select", "scatter", "rng"):
    if key in n:
      return "convolution" if key == "conv" else key
  return "other"


def hlo_ops(hlo_text: str) -> dict[str, str]:
  """op name -> short description (result shape, window) from the compiled HLO."""
  ops = {}
  for line in hlo_text.splitlines():
    m = re.match(r"\s*(?:ROOT )?%?([\w.\-]+) = (\S+) (\w[\w-]*)\(", line)
    if not m:
      continue
    desc = f"{m.group(3)} -> {m.group(2).split('{')[0]}"
    w = re.search(r"window=\{([^}]*)\}", line)
    if w:
      desc += f" window[{w.group(1)}]"
    k = re.search(r"kind=(\w+)", line)
    if k:
      desc += f" {k.group(1)}"
    ops[m.group(1)] = desc
  return ops


def op_times(trace_file: str) -> tuple[dict[str, float], collections.Counter]:
  """XLA op name -> seconds summed over the trace, and how often each ran."""
  with gzip.open(trace_file, "rt") as f:
    trace = json.load(f)
  events = trace["traceEvents"] if isinstance(trace, dict) else trace
  by_name = collections.defaultdict(float)
  count = collections.Counter()
  for e in events:
    if e.get("ph") != "X" or "dur" not in e:
      continue
    name = e.get("name", "")
    # XLA:CPU thunks/ops; skip Python/host frames and the whole-program events.
    if name.startswith(("$", "PjitFunction", "ThunkExecutor", "TfrtCpu", "Execute")) or \
        " " in name:
      continue
    by_name[name] += e["dur"] * 1e-6
    count[name] += 1
  return by_name, count


def family(name: str) -> str:
  return re.sub(r"\.\d+$", "", name)


def summarise(trace_file: str, steps: int, step_s: float, top: int,
              ops: dict[str, str]) -> None:
  by_name, count = op_times(trace_file)
  if not by_name:
    print("no XLA op events in the trace")
    return
  total = sum(by_name.values())
  print(f"\nop time in trace: {total / steps * 1e3:.1f} ms/step summed over threads "
        f"(wall {step_s * 1e3:.1f} ms/step)")
  kinds = collections.defaultdict(float)
  for n, t in by_name.items():
    kinds[kind_of(family(n))] += t
  print("by kind:", {k: f"{100 * v / total:.1f}%" for k, v in
                     sorted(kinds.items(), key=lambda kv: -kv[1])})
  families = collections.defaultdict(float)
  for n, t in by_name.items():
    families[family(n)] += t
  print("by op family (ms per step):", {k: round(v / steps * 1e3, 1) for k, v in sorted(
      families.items(), key=lambda kv: -kv[1])[:8]})
  # Weight-shaped results: rank-4 arrays whose two leading (spatial) dims are <= 4, i.e.
  # HWIO kernels and their gradients (activations are NHWC with batch and big sides).
  kernel_like = sum(t for n, t in by_name.items() if re.search(
      r"-> f32\[[1-4],[1-4],\d+,\d+\]", ops.get(n, "")))
  print(f"ops with kernel-shaped [kh,kw,in,out] results: {kernel_like / steps * 1e3:.1f} "
        f"ms per step ({100 * kernel_like / total:.1f}%)")
  print(f"\ntop {top} ops (ms per step, share of op time):")
  for n, t in sorted(by_name.items(), key=lambda kv: -kv[1])[:top]:
    print(f"  {t / steps * 1e3:9.2f} ms  {100 * t / total:5.1f}%  x{count[n] // steps:<3d} {n}"
          f"  {ops.get(n, '')}")


def main(argv):
  del argv
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from mangacolor_jax import sharding  # pylint: disable=g-import-not-at-top
  from mangacolor_jax import trainer  # pylint: disable=g-import-not-at-top

  config = FLAGS.config
  mesh = sharding.create_mesh()
  setup = trainer.Setup(config)
  repl, data = sharding.replicated(mesh), sharding.data_sharded(mesh)
  h, w = setup.image_hw
  b = config.batch_size
  rng = np.random.default_rng(0)
  batch = sharding.place_batch({
      "lineart": rng.uniform(-1, 1, (b, h, w, 1)).astype(np.float32),
      "target": rng.uniform(-1, 1, (b, h, w, 3)).astype(np.float32)}, mesh)
  state = jax.jit(setup.create_state, out_shardings=repl)(jax.random.key(0))
  step_fn = jax.jit(functools.partial(trainer.train_step, setup),
                    in_shardings=(repl, data), out_shardings=(repl, repl), donate_argnums=0)
  compiled = step_fn.lower(state, batch).compile()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  if cost:
    print(f"XLA cost analysis: {cost.get('flops', 0) / 1e9:.1f} GFLOP/step, "
          f"{cost.get('bytes accessed', 0) / 1e9:.2f} GB accessed/step")
  for _ in range(2):
    state, metrics = compiled(state, batch)
  jax.block_until_ready(metrics)
  def traced_steps(trace_dir):
    nonlocal state, metrics
    with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
      t0 = time.perf_counter()
      for _ in range(FLAGS.steps):
        state, metrics = compiled(state, batch)
      jax.block_until_ready(metrics)
      step_s = (time.perf_counter() - t0) / FLAGS.steps
    files = glob.glob(os.path.join(trace_dir, "**", "perfetto_trace.json.gz"), recursive=True)
    return (sorted(files)[-1] if files else None), step_s

  trace_dir = FLAGS.trace_dir or tempfile.mkdtemp(prefix="mangacolor_trace_")
  trace_file, step_s = traced_steps(trace_dir)
  print(f"trace: {trace_dir}")
  if not trace_file:
    print("no perfetto trace written")
    return
  summarise(trace_file, FLAGS.steps, step_s, FLAGS.top, hlo_ops(compiled.as_text()))
  if FLAGS.one_core:
    compare_one_core(trace_file, step_s, traced_steps, FLAGS.steps, FLAGS.top)


def compare_one_core(trace_file: str, step_s: float, traced_steps, steps: int,
                     top: int) -> None:
  """Traces the same compiled step with every thread pinned to one CPU; prints speedups."""
  if not hasattr(os, "sched_setaffinity"):
    raise SystemExit("--one_core needs Linux (os.sched_setaffinity)")
  cpus = sorted(os.sched_getaffinity(0))
  for tid in os.listdir("/proc/self/task"):  # every thread, XLA's pool included
    os.sched_setaffinity(int(tid), {cpus[-1]})
  one_file, one_s = traced_steps(tempfile.mkdtemp(prefix="mangacolor_trace_1core_"))
  for tid in os.listdir("/proc/self/task"):
    os.sched_setaffinity(int(tid), set(cpus))
  many, _ = op_times(trace_file)
  one, _ = op_times(one_file)
  print(f"\none CPU against all {len(cpus)}: step {one_s * 1e3:.1f} ms against "
        f"{step_s * 1e3:.1f} ms, speedup {one_s / step_s:.2f}")
  fams = collections.defaultdict(lambda: [0.0, 0.0])
  for n in set(many) | set(one):
    fams[family(n)][0] += many.get(n, 0.0)
    fams[family(n)][1] += one.get(n, 0.0)
  print("op family: ms per step on all CPUs / on one / speedup")
  for f, (m, o) in sorted(fams.items(), key=lambda kv: -kv[1][1])[:top]:
    print(f"  {f:34s} {m / steps * 1e3:9.1f} {o / steps * 1e3:9.1f} {o / max(m, 1e-12):6.2f}")


if __name__ == "__main__":
  app.run(main)
