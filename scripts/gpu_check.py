r"""GPU check: the project's pix2pix training step against the PyTorch peer's, one table.

For a GPU machine with no network and no TensorFlow (jax, flax, optax, orbax and torch
installed; ml_collections carried, see scripts/gpu_check.sh). Synthetic in-memory batches
at 256x256, fp32 and bf16, batch 16 and 64, the project first (its real `train_step`,
each program compiled and then timed alone, bf16 first), then the peer
(../shared/bench/torch_pix2pix.py: bf16 + torch.compile at the largest batch, its best
configuration, then eager with channels_last), each side in its own process so that the two
never share the GPU. Prints a table with images/s, ms/step and TFLOP/s counting the
peer's convolution FLOPs per image per step (the project's layers do the same
multiply-adds), the share of 790 TFLOP/s, and the ratio of the project's best to the
peer's best. Within about 4 minutes on an H100/H200 (--budget_s).

  python3 scripts/gpu_check.py --out $OUT                     # the GPU run
  .venv/bin/python scripts/gpu_check.py --size 64 --batches 2,4 --tiny \
      --torch_python /tmp/torchvenv/bin/python                # rehearsal on a CPU

Variants of the project timed (config overrides of configs/pix2pix.py):
  native   ConvTranspose + strided Conv, what cuDNN runs natively
  phase    configs/pix2pix.py as it is: phase upsampling (the same function as
           ConvTranspose) and auto downsampling (off the CPU, the strided Conv)
  phase_s2d  phase upsampling with space-to-depth downsampling
  phase_r49  `phase` with the GPU layer forms of rows 51-52 turned off (module settings,
           conv_forms.NAME=VALUE, as well as config overrides)
Each row records how the compiled step runs its convolutions (`convs`: cuDNN targets).
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

from absl import app
from absl import flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEAK = 790e12  # bf16 dense matrix product measured on this workplace's H100/H200
VARIANTS = {
    "native": "model.gen.upsample=transpose,model.downsample=conv",
    "phase": "model.gen.upsample=phase,model.downsample=auto",
    "phase_s2d": "model.gen.upsample=phase,model.downsample=space_to_depth",
    # The GPU layers before the backward-data upsampling and narrow-layer forms (conv_forms
    # GPU_ settings off):
    "phase_r49": "model.gen.upsample=phase,model.downsample=auto,"
                 "conv_forms.GPU_DGRAD_UPSAMPLING=False,conv_forms.GPU_S2D_MAX_CHANNELS=0,"
                 "conv_forms.GPU_PAD_OUTPUT_CHANNELS=0",
}

FLAGS = flags.FLAGS
flags.DEFINE_enum("part", "all", ["all", "jax", "torch"], "Which part to run: both, each "
                  "in its own process (all), or one in this process.")
flags.DEFINE_integer("size", 256, "Image side in pixels (configs/pix2pix.py:SIZE).")
flags.DEFINE_string("batches", "16,64", "Comma-separated batch sizes, the largest last.")
# `native` lost to `phase` by 1.45x on an H200 (docs/performance.md row 38): left out of
# the default list so that the full grid fits the time budget.
flags.DEFINE_string("variants", "phase", "all at the first dtype and the largest batch, then "
                    "the first at every dtype and batch")
flags.DEFINE_string("dtypes", "bfloat16,float32", "in the order they run")
flags.DEFINE_float("min_s", 1.5, "seconds per timed measurement")
flags.DEFINE_integer("warmup", 30, "untimed steps after compiling (torch.compile needs "
                     "more: after 3 its row read 22% low, once after 10 too; "
                     "docs/performance.md rows 45 and 53)")
flags.DEFINE_float("budget_s", 0, "per part (0: 140 project, 100 peer)")
flags.DEFINE_bool("tiny", False, "CPU rehearsal: no torch.compile")
flags.DEFINE_string("peer", os.path.join(os.path.dirname(REPO), "shared", "bench",
                                         "torch_pix2pix.py"), "The peer's torch_pix2pix.py.")
flags.DEFINE_string("jax_python", sys.executable, "Python of the project's part.")
flags.DEFINE_string("torch_python", sys.executable, "Python of the peer's part (with torch "
                    "and absl-py).")
flags.DEFINE_string("out", os.environ.get("OUT", "/tmp/gpu_check"), "Folder of the JSON "
                    "rows (gpu_PART.json) and the table (gpu_table.txt).")


def conv_kinds(hlo_text: str) -> dict:
  """How the compiled step runs its convolutions: library calls by target (on a GPU,
  cuDNN's forward / backward-input / backward-filter) and XLA's own convolutions."""
  kinds = {}
  for target in re.findall(r'custom_call_target="([^"]*conv[^"]*)"', hlo_text):
    kinds[target] = kinds.get(target, 0) + 1
  kinds["xla_convolution"] = len(re.findall(r"= \S+ convolution\(", hlo_text))
  return kinds


class Timeout(BaseException):
  pass


def _alarm(signum, frame):
  raise Timeout("time budget exceeded")


def save(args, part, rows):
  """Rows so far, rewritten after each one: a part stopped at its limit still reports."""
  with open(os.path.join(args.out, f"gpu_{part}.json"), "w") as f:
    json.dump(rows, f, indent=1)


def timed(run, batch, min_s, warmup=3, max_steps=2000):
  """images/s of `run(n)` (n steps, blocking at the end): warm up, calibrate, then >= min_s."""
  run(warmup)
  t0 = time.perf_counter()
  run(5)
  per = (time.perf_counter() - t0) / 5
  n = int(max(5, min(max_steps, min_s / max(per, 1e-6))))
  t0 = time.perf_counter()
  run(n)
  dt = time.perf_counter() - t0
  return {"ips": batch * n / dt, "ms": 1000 * dt / n, "steps": n}


# ------------------------------------------------------------------------------ project


def part_jax(args):
  sys.path.insert(0, REPO)
  import jax  # pylint: disable=g-import-not-at-top
  from configs import pix2pix  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.nn import conv_forms  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.perf import timing  # pylint: disable=g-import-not-at-top
  defaults = {n: getattr(conv_forms, n) for n in dir(conv_forms) if n.startswith("GPU_")}
  t_start = time.time()
  print(f"jax {jax.__version__} devices {jax.devices()} (tensorflow imported: "
        f"{'tensorflow' in sys.modules})", flush=True)
  batches = [int(b) for b in args.batches.split(",")]
  variants = args.variants.split(",")
  dtypes = args.dtypes.split(",")
  # Every variant at the first dtype and the largest batch first (the comparison that
  # decides the layers), then the first variant at the other dtypes and batches.
  jobs = [(v, dtypes[0], batches[-1]) for v in variants]
  jobs += [(variants[0], d, b) for d in dtypes for b in batches[::-1]
           if (d, b) != (dtypes[0], batches[-1])]

  def build(job):
    variant, dtype, batch = job
    config = pix2pix.get_config(str(args.size))
    config.batch_size, config.dtype = batch, dtype
    items = VARIANTS[variant].split(",")
    for name, value in defaults.items():
      setattr(conv_forms, name, value)
    for item in items:
      if item.startswith("conv_forms."):
        name, value = item[len("conv_forms."):].split("=")
        setattr(conv_forms, name, type(defaults[name])(value))
    timing.apply_overrides(config, ",".join(i for i in items if not i.startswith("conv_forms.")))
    t0 = time.time()
    bench = timing.TrainBench(config)
    return job, bench, time.time() - t0

  rows = []
  # One program at a time, compiled then timed at once, most important first, each row
  # saved as soon as it is measured: a GPU compile with cuDNN autotuning can take a minute
  # (three compiled side by side in threads took over 140 s on an H200).
  for job in jobs:
    if time.time() - t_start > args.budget_s:
      rows.append({"side": "project", "variant": job[0], "dtype": job[1], "batch": job[2],
                   "note": "skipped: time budget"})
      continue
    try:
      (variant, dtype, batch), bench, build_s = build(job)
    except Exception as e:  # pylint: disable=broad-except
      rows.append({"side": "project", "variant": job[0], "dtype": job[1], "batch": job[2],
                   "note": f"FAILED {type(e).__name__}: {str(e)[:200]}"})
      save(args, "jax", rows)
      continue
    row = {"side": "project", "variant": variant, "dtype": dtype, "batch": batch,
           "compile_s": round(build_s, 1)}
    try:
      row.update(timed(lambda n, b=bench: b.run(n, per_step=False), batch, args.min_s,
                       args.warmup))
      row["xla_gflop_per_image"] = bench.flops_per_step() / batch / 1e9
      row["convs"] = conv_kinds(bench.compiled.as_text())
      row["losses"] = bench.check_finite()
    except Exception as e:  # pylint: disable=broad-except
      row["note"] = f"FAILED {type(e).__name__}: {str(e)[:200]}"
    rows.append(row)
    save(args, "jax", rows)
    print(f"[{time.time() - t_start:5.0f}s] {json.dumps(row)}", flush=True)
    del bench
  return rows


# --------------------------------------------------------------------------------- peer


def part_torch(args):
  import torch  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, os.path.dirname(os.path.abspath(args.peer)))
  import torch_pix2pix as tp  # pylint: disable=g-import-not-at-top
  t_start = time.time()
  dev = "cuda" if torch.cuda.is_available() else "cpu"
  if dev == "cuda":
    torch.backends.cudnn.benchmark = True
    print(f"torch {torch.__version__} {torch.cuda.get_device_name(0)}", flush=True)
  batches = [int(b) for b in args.batches.split(",")]
  jobs = [(d, b, False) for d in args.dtypes.split(",") for b in batches[::-1]]
  jobs = [({"bfloat16": "bf16", "float32": "fp32"}[d], b, c) for d, b, c in jobs]
  if not args.tiny:  # the peer's best (bf16 + channels_last + compile) first: the target
    jobs.insert(0, ("bf16" if "bfloat16" in args.dtypes else "fp32", batches[-1], True))
  rows = []
  signal.signal(signal.SIGALRM, _alarm)
  signal.alarm(int(args.budget_s))
  try:
    for dtype, batch, comp in jobs:
      row = {"side": "peer", "variant": "compile" if comp else "eager", "dtype": dtype,
             "batch": batch}
      t0 = time.time()
      try:
        tr = tp.Pix2PixTrainer(size=args.size, batch=batch, device=dev, channels_last=True,
                               amp="bf16" if dtype == "bf16" else None, compile=comp)

        def run(n, tr=tr):
          for _ in range(n):
            tr.step()
          tr.sync()
        row.update(timed(run, batch, args.min_s, args.warmup))
        row["losses"] = tr.losses()
        del tr
      except Timeout:
        raise
      except Exception as e:  # pylint: disable=broad-except
        row["note"] = f"FAILED {type(e).__name__}: {str(e)[:200]}"
      row["wall_s"] = round(time.time() - t0, 1)
      rows.append(row)
      save(args, "torch", rows)
      print(f"[{time.time() - t_start:5.0f}s] {json.dumps(row)}", flush=True)
      if dev == "cuda":
        torch.cuda.empty_cache()
  except Timeout:
    print("peer part: time budget exceeded; reporting what finished", flush=True)
  finally:
    signal.alarm(0)
  try:
    fl = tp.count_flops(args.size, 1, device="meta")
    rows.append({"side": "flops", "conv_flop_per_image": fl["step_per_image"],
                 "params": fl["params_G"] + fl["params_D"]})
  except Exception as e:  # pylint: disable=broad-except
    print(f"flop count failed: {e}", flush=True)
  return rows


# ------------------------------------------------------------------------------- table


def table(rows, size):
  flop = next((r["conv_flop_per_image"] for r in rows if r.get("side") == "flops"), 86.4e9)
  lines = [f"pix2pix training step, {size}x{size}, synthetic batches; TFLOP/s = img/s x "
           f"{flop / 1e9:.1f} GFLOP (the peer's conv FLOPs per image per step; the project's "
           "layers do the same multiply-adds); %peak of 790 TFLOP/s",
           f"{'side':8s} {'variant':9s} {'dtype':9s} {'batch':>5s} {'img/s':>9s} "
           f"{'ms/step':>8s} {'TFLOP/s':>8s} {'%peak':>6s} {'XLA GF/img':>10s}  note"]
  best = {}
  for r in rows:
    if r.get("side") not in ("project", "peer"):
      continue
    if "ips" in r:
      tf = r["ips"] * flop / 1e12
      best[r["side"]] = max(best.get(r["side"], (0, None)), (r["ips"], r), key=lambda t: t[0])
      xla = f"{r['xla_gflop_per_image']:.1f}" if "xla_gflop_per_image" in r else "-"
      lines.append(f"{r['side']:8s} {r['variant']:9s} {r['dtype']:9s} {r['batch']:5d} "
                   f"{r['ips']:9.1f} {r['ms']:8.2f} {tf:8.1f} {100 * tf * 1e12 / PEAK:5.1f}% "
                   f"{xla:>10s}  {r.get('note', '')}")
    else:
      lines.append(f"{r['side']:8s} {r['variant']:9s} {r['dtype']:9s} {r['batch']:5d} "
                   f"{'-':>9s} {'-':>8s} {'-':>8s} {'-':>6s} {'-':>10s}  {r.get('note', '')}")
  if "project" in best and "peer" in best:
    (pi, pr), (qi, qr) = best["project"], best["peer"]
    lines.append(f"best project {pi:.1f} img/s ({pr['variant']} {pr['dtype']} b{pr['batch']}) "
                 f"/ best peer {qi:.1f} img/s ({qr['variant']} {qr['dtype']} b{qr['batch']})"
                 f" = {pi / qi:.2f}x; project at {100 * pi * flop / PEAK:.1f}% of 790 TFLOP/s")
    same = [r for r in rows if r.get("side") == "project" and "ips" in r
            and r["batch"] == qr["batch"]]
    if same and pr["batch"] != qr["batch"]:
      sr = max(same, key=lambda r: r["ips"])
      lines.append(f"at the peer's best batch ({qr['batch']}): project {sr['ips']:.1f} img/s "
                   f"({sr['variant']} {sr['dtype']}) = {sr['ips'] / qi:.2f}x")
  lines.append("XLA GF/img: XLA's own cost analysis, which leaves out library calls "
               "(cuDNN convolutions on a GPU)")
  return "\n".join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError("Too many command-line arguments.")
  os.makedirs(FLAGS.out, exist_ok=True)
  if FLAGS.part != "all":
    save(FLAGS, FLAGS.part, (part_jax if FLAGS.part == "jax" else part_torch)(FLAGS))
    return

  rows = []
  t0 = time.time()
  for part, python, budget in (("jax", FLAGS.jax_python, FLAGS.budget_s or 140),
                               ("torch", FLAGS.torch_python, FLAGS.budget_s or 100)):
    cmd = [python, os.path.abspath(__file__), "--part", part, "--size", str(FLAGS.size),
           "--batches", FLAGS.batches, "--variants", FLAGS.variants, "--dtypes", FLAGS.dtypes,
           "--min_s", str(FLAGS.min_s), "--warmup", str(FLAGS.warmup), "--budget_s",
           str(budget), "--peer", FLAGS.peer, "--out", FLAGS.out] + (
               ["--tiny"] if FLAGS.tiny else [])
    print(f"[{time.time() - t0:5.0f}s] {part} part (budget {budget:.0f} s)", flush=True)
    try:
      subprocess.run(cmd, timeout=budget + 40, check=False)
    except subprocess.TimeoutExpired:
      print(f"{part} part killed after {budget + 40:.0f} s", flush=True)
    path = os.path.join(FLAGS.out, f"gpu_{part}.json")
    if os.path.exists(path) and os.path.getmtime(path) < t0:
      os.remove(path)  # an earlier run's
    if os.path.exists(path):
      with open(path) as f:
        rows += json.load(f)
  text = table(rows, FLAGS.size)
  print("\n" + text)
  with open(os.path.join(FLAGS.out, "gpu_table.txt"), "w") as f:
    f.write(text + "\n")
  print(f"[{time.time() - t0:5.0f}s] done")


if __name__ == "__main__":
  app.run(main)
