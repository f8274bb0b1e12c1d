r"""Where the time of one training step goes: a jax.profiler trace summarised by XLA op.

Compiles the config's real `step.train_step` on a fixed in-memory batch, runs a few
steps under `jax.profiler.trace` (Perfetto JSON), and prints the XLA ops (convolutions,
fusions, copies, ...) that took the most time, grouped by op and by kind, with the share of
the step each takes. Also prints XLA's own cost analysis (FLOPs, bytes) of the step. No
TensorFlow needed.

  .venv/bin/python scripts/profile_step.py --config configs/pix2pix.py:128 --steps 3
  .venv/bin/python scripts/profile_step.py --config configs/pix2pix.py:128 \
      --config.model.gen.upsample=transpose --top 25 --trace_dir /tmp/trace
  .venv/bin/python scripts/profile_step.py --config configs/pix2pix.py:256 --one_core
  .venv/bin/python scripts/profile_step.py --summarise_trace trace.json.gz --steps 3 \
      --step_ms 20.3        # a trace saved on another machine (e.g. a GPU run), no JAX

On a GPU (or any "/device:" in the trace) it prints the accelerator's busy time per step
and its kernels by kind instead (convolution forward / input / weight gradients, matrix
products, reductions, concatenations, pads, copies, element-wise fusions).

With --one_core (Linux), the same compiled step is traced again with every thread of the
process pinned to one CPU, and each op family's time on all cores is set against its time
on one: a family whose speedup stays near 1.0 leaves the other cores idle while it runs.
"""

import collections
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
flags.DEFINE_string("summarise_trace", "", "Only summarise this saved perfetto_trace.json.gz "
                    "(of --steps steps, e.g. from a GPU run) instead of running a step.")
flags.DEFINE_float("step_ms", 0.0, "With --summarise_trace: the wall time per step, if known.")


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


def trace_events(trace_file: str) -> list[dict]:
  """The events of a Perfetto JSON trace (perfetto_trace.json.gz)."""
  with gzip.open(trace_file, "rt") as f:
    trace = json.load(f)
  return trace["traceEvents"] if isinstance(trace, dict) else trace


def op_times(events: list[dict]) -> tuple[dict[str, float], collections.Counter]:
  """XLA op name -> seconds summed over the trace, and how often each ran."""
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


# Accelerator kernels by what they do, first match wins: (family, kernel-name keys, hlo_op
# prefixes). Kernels launched from a CUDA graph carry the graph's hlo_op
# ("command_buffer_N"), so the kernel's own name decides first.
KERNEL_FAMILIES = (
    ("conv weight grad", ("wgrad",), ("cudnn-conv-bw-filter",)),
    ("conv input grad", ("dgrad",), ("cudnn-conv-bw-input",)),
    ("conv forward", ("fprop", "convolve"), ("cudnn-conv",)),
    ("matmul", ("gemm", "cublas", "cutlass", "nvjet"), ("cublas", "gemm", "triton_gemm")),
    ("reduce fusion", ("reduce",), ()),
    ("concatenate", ("concatenate",), ()),
    ("pad", ("pad",), ()),
    ("transpose / copy", ("transpose", "copy", "memcpy"), ("copy",)),
    ("memset", ("memset",), ()),
    ("other fusion (element-wise)", ("fusion", "convert"), ()),
)


def kernel_family(name: str, hlo_op: str = "") -> str:
  """What an accelerator kernel does, from its name and the HLO op that launched it."""
  n, op = name.lower(), hlo_op.lower()
  for fam, keys, ops in KERNEL_FAMILIES:
    if any(k in n for k in keys) or any(op.startswith(o) for o in ops):
      return fam
  return "other"


def device_kernels(events: list[dict]) -> list[tuple[float, float, str, str]]:
  """(start us, duration us, kernel name, hlo_op) of every kernel on an accelerator
  ("/device:..." processes of the trace, e.g. a GPU's streams)."""
  devices = {e["pid"] for e in events if e.get("ph") == "M" and e.get("name") ==
             "process_name" and str(e.get("args", {}).get("name", "")).startswith("/device:")}
  return [(e["ts"], e["dur"], e.get("name", ""), e.get("args", {}).get("hlo_op", ""))
          for e in events if e.get("ph") == "X" and e.get("pid") in devices and "dur" in e]


def device_summary(kernels, steps: int) -> dict:
  """Busy time (the union of kernel intervals) and time per kernel family, ms per step."""
  busy, end = 0.0, float("-inf")
  for start, dur, _, _ in sorted(kernels):
    busy += max(0.0, start + dur - max(start, end))
    end = max(end, start + dur)
  families = collections.defaultdict(float)
  for _, dur, name, op in kernels:
    families[kernel_family(name, op)] += dur
  return {"busy_ms": busy / steps / 1e3,
          "families_ms": {f: t / steps / 1e3 for f, t in sorted(
              families.items(), key=lambda kv: -kv[1])}}


def print_device_summary(events: list[dict], steps: int, step_s: float) -> bool:
  """Prints the accelerator's busy time and kernel families; False if none in the trace."""
  kernels = device_kernels(events)
  if not kernels:
    return False
  d = device_summary(kernels, steps)
  kernel_sum = sum(d["families_ms"].values())
  wall = f" of {step_s * 1e3:.2f} ms wall" if step_s else ""
  print(f"\naccelerator busy {d['busy_ms']:.2f} ms per step{wall} "
        f"({len(kernels) // steps} kernels per step); by kind of kernel:")
  for fam, ms in d["families_ms"].items():
    print(f"  {fam:30s} {ms:8.2f} ms  {100 * ms / kernel_sum:5.1f}%")
  return True


def summarise(trace_file: str, steps: int, step_s: float, top: int,
              ops: dict[str, str]) -> None:
  events = trace_events(trace_file)
  if print_device_summary(events, steps, step_s):
    return  # on an accelerator the host-side events below are dispatch, not work
  by_name, count = op_times(events)
  if not by_name:
    print("no XLA op events in the trace")
    return
  total = sum(by_name.values())
  wall = f" (wall {step_s * 1e3:.1f} ms/step)" if step_s else ""
  print(f"\nop time in trace: {total / steps * 1e3:.1f} ms/step summed over threads{wall}")
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
  if FLAGS.summarise_trace:
    summarise(FLAGS.summarise_trace, FLAGS.steps, FLAGS.step_ms / 1e3, FLAGS.top, {})
    return
  if FLAGS.config is None:
    raise app.UsageError("--config is required (or --summarise_trace)")
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.runtime import mesh as mesh_lib  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.training import state as state_lib  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.training import step as step_lib  # pylint: disable=g-import-not-at-top

  config = FLAGS.config
  mesh = mesh_lib.create_mesh()
  nets = state_lib.create_networks(config)
  h, w = nets.image_hw
  b = config.batch_size
  rng = np.random.default_rng(0)
  batch = mesh_lib.place_batch({
      "lineart": rng.uniform(-1, 1, (b, h, w, 1)).astype(np.float32),
      "target": rng.uniform(-1, 1, (b, h, w, 3)).astype(np.float32)}, mesh)
  state = jax.jit(nets.create_state, out_shardings=mesh_lib.replicated(mesh))(
      jax.random.key(0))
  step_fn = step_lib.compile_train_step(nets, mesh)
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
  many, _ = op_times(trace_events(trace_file))
  one, _ = op_times(trace_events(one_file))
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
