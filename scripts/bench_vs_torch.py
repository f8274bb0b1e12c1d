r"""This project's pix2pix training step against the PyTorch peer's, alternating, in one run.

Starts one worker process per side (the project in its virtual environment, the peer
../shared/bench/torch_pix2pix.py in PyTorch's), lets each compile / warm up, then asks
them in turn, A B B A ..., for a few timed steps each, so that both see the same machine
load (these machines are shared: compare ratios from one run, never absolute times from
different runs). Only one side runs at a time. Prints per side the min / median / max of
the step time and images/s, the ratio project / peer (from the medians, and from the
totals), each worker's peak resident memory, and one JSON line.

  bash scripts/bench_vs_torch.sh 256                      # wraps this with the paths
  .venv/bin/python scripts/bench_vs_torch.py --size 128 --batch 4 --rounds 6 \
      --torch_python /tmp/torchvenv/bin/python \
      --variant "transpose:model.gen.upsample=transpose,model.downsample=conv"

Each --variant NAME:KEY=VALUE,... adds another project worker with config overrides (the
default variant, "project", is configs/pix2pix.py as it is).
"""

import json
import os
import resource
import statistics
import subprocess
import sys
import time

from absl import app
from absl import flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_PEER = os.path.join(os.path.dirname(REPO), "shared", "bench", "torch_pix2pix.py")

FLAGS = flags.FLAGS
flags.DEFINE_integer("size", 256, "Image side in pixels (configs/pix2pix.py:SIZE).")
flags.DEFINE_integer("batch", 4, "Batch size of both sides.")
flags.DEFINE_integer("rounds", 6, "A/B turns per side")
flags.DEFINE_integer("steps_per_round", 2, "Timed steps per side in each turn.")
flags.DEFINE_integer("warmup", 2, "Untimed steps of each worker before the turns.")
flags.DEFINE_integer("threads", 0, "torch.set_num_threads (0: torch's)")
flags.DEFINE_string("jax_python", os.path.join(REPO, ".venv", "bin", "python"),
                    "Python of the project's workers.")
flags.DEFINE_string("torch_python", "/tmp/torchvenv/bin/python", "Python of the peer's "
                    "worker (with torch and absl-py).")
flags.DEFINE_string("peer", DEFAULT_PEER, "The peer's torch_pix2pix.py.")
flags.DEFINE_multi_string("variant", [], "NAME:KEY=VALUE,... a project worker with config "
                          "overrides")
flags.DEFINE_bool("no_default_variant", False, "only the --variant workers (and the peer)")
flags.DEFINE_enum("worker", None, ["jax", "torch"], "Internal: run as this side's worker.")
flags.DEFINE_string("overrides", "", "Internal: the jax worker's config overrides.")


# ----------------------------------------------------------------------------- workers


def jax_worker(args):
  sys.path.insert(0, REPO)
  from configs import pix2pix  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.nn import models  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.perf import timing  # pylint: disable=g-import-not-at-top
  config = pix2pix.get_config(str(args.size))
  config.batch_size = args.batch
  timing.apply_overrides(config, args.overrides)
  bench = timing.TrainBench(config)
  bench.run(args.warmup)
  info = {"compile_s": round(bench.compile_s, 1),
          "params": models.count_params(bench.state.g_params)
                    + models.count_params(bench.state.d_params),
          "warmup_steps": args.warmup}
  return bench.run, bench.check_finite, info


def torch_worker(args):
  import torch  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, os.path.dirname(os.path.abspath(args.peer)))
  import torch_pix2pix as tp  # pylint: disable=g-import-not-at-top
  if args.threads:
    torch.set_num_threads(args.threads)
  tr = tp.Pix2PixTrainer(size=args.size, batch=args.batch, device="cpu")
  for _ in range(args.warmup):
    tr.step()

  def run(steps):
    times = []
    for _ in range(steps):
      t0 = time.perf_counter()
      tr.step()
      times.append(time.perf_counter() - t0)
    return times

  def check():
    losses = tr.losses()
    if not all(v == v and abs(v) != float("inf") for v in losses):
      raise FloatingPointError(f"non-finite losses {losses}")
    return dict(zip(("d_loss", "g_adv", "g_l1_x100"), losses))

  info = {"params": tr.params_G + tr.params_D, "threads": torch.get_num_threads(),
          "torch": torch.__version__, "warmup_steps": args.warmup}
  return run, check, info


def worker_main(args):
  """Line protocol on stdin/stdout: 'run N' -> JSON step times; 'quit' -> JSON summary."""
  out = sys.stdout
  sys.stdout = sys.stderr  # library chatter must not break the protocol
  run, check, info = (jax_worker if args.worker == "jax" else torch_worker)(args)
  print(json.dumps({"ready": info}), file=out, flush=True)
  for line in sys.stdin:
    cmd = line.split()
    if cmd and cmd[0] == "run":
      cpu0 = time.process_time()
      times = run(int(cmd[1]))
      print(json.dumps({"times": times, "cpu_s": time.process_time() - cpu0}), file=out,
            flush=True)
    else:
      print(json.dumps({"losses": check(), "peak_rss_mb": resource.getrusage(
          resource.RUSAGE_SELF).ru_maxrss / 1024.0}), file=out, flush=True)
      return


# ------------------------------------------------------------------------ orchestrator


class Worker:

  def __init__(self, name, cmd):
    self.name = name
    self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL if not os.environ.get(
                                     "BENCH_VERBOSE") else None, text=True, cwd=REPO)
    self.times, self.cpu_s, self.info, self.final = [], 0.0, None, None

  def read(self):
    line = self.proc.stdout.readline()
    if not line:
      raise RuntimeError(f"worker {self.name} exited (rc {self.proc.wait()}); rerun with "
                         "BENCH_VERBOSE=1 to see its output")
    return json.loads(line)

  def ask(self, text):
    self.proc.stdin.write(text + "\n")
    self.proc.stdin.flush()
    return self.read()


def summary(times, batch):
  med = statistics.median(times)
  return {"steps": len(times), "step_ms_min": 1000 * min(times), "step_ms_median": 1000 * med,
          "step_ms_max": 1000 * max(times), "images_per_sec_median": batch / med,
          "images_per_sec_best": batch / min(times), "images_per_sec_worst": batch / max(times),
          "images_per_sec_total": batch * len(times) / sum(times)}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError("Too many command-line arguments.")
  if FLAGS.worker:
    worker_main(FLAGS)
    return

  me = os.path.abspath(__file__)
  common = ["--size", str(FLAGS.size), "--batch", str(FLAGS.batch), "--warmup",
            str(FLAGS.warmup), "--threads", str(FLAGS.threads), "--peer", FLAGS.peer]
  variants = ([] if FLAGS.no_default_variant else [("project", "")]) + [
      tuple(v.split(":", 1)) if ":" in v else (v, "") for v in FLAGS.variant]
  print(f"size {FLAGS.size} batch {FLAGS.batch}: {FLAGS.rounds} rounds x "
        f"{FLAGS.steps_per_round} steps per side, alternating; peer {FLAGS.peer}", flush=True)
  workers = []
  t0 = time.time()
  # Started one after the other, so that compilation and warm-up do not overlap.
  for name, overrides in variants:
    w = Worker(name, [FLAGS.jax_python, me, "--worker", "jax", "--overrides", overrides]
               + common)
    w.info = w.read()["ready"]
    print(f"  {name} ready after {time.time() - t0:.0f} s: {w.info}"
          + (f"  [{overrides}]" if overrides else ""), flush=True)
    workers.append(w)
  peer = Worker("torch", [FLAGS.torch_python, me, "--worker", "torch"] + common)
  peer.info = peer.read()["ready"]
  print(f"  torch ready after {time.time() - t0:.0f} s: {peer.info}", flush=True)
  workers.append(peer)

  for r in range(FLAGS.rounds):
    order = workers if r % 2 == 0 else workers[::-1]  # A B B A: drift cancels
    for w in order:
      reply = w.ask(f"run {FLAGS.steps_per_round}")
      w.times += reply["times"]
      w.cpu_s += reply["cpu_s"]
    line = "  ".join(f"{w.name} {1000 * statistics.median(w.times):.0f}" for w in workers)
    print(f"  round {r + 1}/{FLAGS.rounds} median step ms so far: {line}  "
          f"(load {os.getloadavg()[0]:.1f})", flush=True)
  for w in workers:
    w.final = w.ask("quit")
    w.proc.wait(timeout=60)

  print(f"\n{'side':14s} {'step ms min/median/max':>26s} {'img/s median (best-worst)':>28s}"
        f" {'cpu ms/step':>11s} {'peak RSS MB':>11s} {'params':>10s}")
  result = {"size": FLAGS.size, "batch": FLAGS.batch, "rounds": FLAGS.rounds,
            "steps_per_round": FLAGS.steps_per_round, "sides": {}}
  for w in workers:
    s = summary(w.times, FLAGS.batch)
    s.update(cpu_ms_per_step=1000 * w.cpu_s / len(w.times), peak_rss_mb=w.final["peak_rss_mb"],
             params=w.info["params"], losses=w.final["losses"])
    result["sides"][w.name] = s
    print(f"{w.name:14s} {s['step_ms_min']:8.0f} /{s['step_ms_median']:7.0f} /"
          f"{s['step_ms_max']:7.0f} {s['images_per_sec_median']:12.3f} "
          f"({s['images_per_sec_best']:.3f}-{s['images_per_sec_worst']:.3f}) "
          f"{s['cpu_ms_per_step']:11.0f} {s['peak_rss_mb']:11.0f} {s['params']:>10d}")
  peer_s = result["sides"]["torch"]
  for w in workers[:-1]:
    s = result["sides"][w.name]
    ratio = s["images_per_sec_median"] / peer_s["images_per_sec_median"]
    ratio_total = s["images_per_sec_total"] / peer_s["images_per_sec_total"]
    ratio_best = s["images_per_sec_best"] / peer_s["images_per_sec_best"]
    s.update(ratio_median=ratio, ratio_total=ratio_total, ratio_best=ratio_best)
    print(f"RATIO {w.name} / torch at {FLAGS.size}x{FLAGS.size} batch {FLAGS.batch}: "
          f"{ratio:.2f}x (medians), {ratio_total:.2f}x (totals), {ratio_best:.2f}x (best "
          f"steps); memory {s['peak_rss_mb'] / peer_s['peak_rss_mb']:.2f}x the peer's")
  print(json.dumps(result))


if __name__ == "__main__":
  app.run(main)
