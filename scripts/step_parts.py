r"""The pix2pix training step split into its parts, timed alone, JAX or the PyTorch peer.

Times each part of one step as the step uses it, with wall and process CPU time, so the
two frameworks can be compared part by part rather than only as a whole:

  G fwd             generator forward (train mode)
  G fwd+bwd         generator forward + gradients of its parameters (L1 loss)
  D fwd+bwd params  discriminator forward + gradients of its parameters (the D step does
                    this twice: fakes and reals)
  D fwd+bwd input   discriminator forward + gradient of its image input only (the G step)
  Adam G            one Adam update of the generator's parameters

  .venv/bin/python scripts/step_parts.py --size 256
  /tmp/torchvenv/bin/python scripts/step_parts.py --size 256 --framework torch \
      --peer ../shared/bench/torch_pix2pix.py

Prints one line per part: min and median wall ms, and CPU ms per call (all threads).
"""

import os
import resource
import statistics
import sys
import time

from absl import app
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_integer("size", 256, "Image side in pixels (configs/pix2pix.py:SIZE).")
flags.DEFINE_integer("batch", 4, "Batch size.")
flags.DEFINE_integer("reps", 5, "Timed calls per part, after two warm-up calls.")
flags.DEFINE_enum("framework", "jax", ["jax", "torch"], "Whose step to time.")
flags.DEFINE_string("peer", os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    "shared", "bench", "torch_pix2pix.py"), "the peer's torch_pix2pix.py (torch)")


def cpu_s() -> float:
  r = resource.getrusage(resource.RUSAGE_SELF)
  return r.ru_utime + r.ru_stime


def timeit(fn, reps: int) -> tuple[float, float, float]:
  """(min wall, median wall, CPU per call) in ms, after two warm-up calls."""
  fn()
  fn()
  walls = []
  c0 = cpu_s()
  for _ in range(reps):
    t0 = time.perf_counter()
    fn()
    walls.append(time.perf_counter() - t0)
  cpu = (cpu_s() - c0) / reps
  return 1e3 * min(walls), 1e3 * statistics.median(walls), 1e3 * cpu


def report(name, t):
  print(f"{name:18s} wall {t[0]:8.1f} / {t[1]:8.1f} ms (min / median)  CPU {t[2]:8.1f} ms "
        f"({t[2] / t[1]:.2f} cores)", flush=True)


def run_jax(args):
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  from configs import pix2pix  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.runtime import compile as compile_lib  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.training import state as state_lib  # pylint: disable=g-import-not-at-top

  config = pix2pix.get_config(str(args.size))
  config.batch_size = args.batch
  nets = state_lib.create_networks(config)
  state = jax.jit(nets.create_state)(jax.random.key(0))
  rng = np.random.default_rng(0)
  shape = (args.batch, args.size, args.size)
  lineart = jnp.asarray(rng.uniform(-1, 1, shape + (1,)), jnp.float32)
  target = jnp.asarray(rng.uniform(-1, 1, shape + (3,)), jnp.float32)
  g_in = nets.generator_input(lineart, None)
  g_vars = {"batch_stats": state.g_batch_stats}
  d_vars = {"batch_stats": state.d_batch_stats}

  def g_fwd(p):
    return nets.gen.apply({**g_vars, "params": p}, g_in, train=True,
                           mutable=["batch_stats"], rngs={"dropout": jax.random.key(1)})[0]

  def d_out(p, image):
    return nets.disc.apply({**d_vars, "params": p}, lineart, image, train=True,
                            mutable=["batch_stats"])[0]

  g_grad = jax.grad(lambda p: jnp.mean(jnp.abs(g_fwd(p) - target)))
  d_grad = jax.grad(lambda p: jnp.mean(d_out(p, target)))
  d_input_grad = jax.grad(lambda x: jnp.mean(d_out(state.d_params, x)))

  def adam(p, g, opt_state):
    updates, opt_state = nets.g_tx.update(g, opt_state, p)
    return optax.apply_updates(p, updates), opt_state

  grads = jax.jit(g_grad)(state.g_params)
  parts = [("G fwd", g_fwd, (state.g_params,)), ("G fwd+bwd", g_grad, (state.g_params,)),
           ("D fwd+bwd params", d_grad, (state.d_params,)),
           ("D fwd+bwd input", d_input_grad, (target,)),
           ("Adam G", adam, (state.g_params, grads, state.g_opt_state))]
  for name, fn, fn_args in parts:
    compiled = compile_lib.jit(fn, config).lower(*fn_args).compile()
    report(name, timeit(lambda c=compiled, a=fn_args: jax.block_until_ready(c(*a)),
                        args.reps))


def run_torch(args):
  import torch  # pylint: disable=g-import-not-at-top
  import torch.nn.functional as F  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, os.path.dirname(os.path.abspath(args.peer)))
  import torch_pix2pix  # pylint: disable=g-import-not-at-top

  trainer = torch_pix2pix.Pix2PixTrainer(size=args.size, batch=args.batch)
  G, D = trainer.G, trainer.D
  real_a, real_b = trainer.data[0]

  def g_fwd():
    G(real_a)  # with autograd recording, as in the step

  def g_fwd_bwd():
    G.zero_grad(set_to_none=True)
    F.l1_loss(G(real_a), real_b).backward()

  def d_fwd_bwd_params():
    D.zero_grad(set_to_none=True)
    D(torch.cat((real_a, real_b), 1)).mean().backward()

  def d_fwd_bwd_input():
    image = real_b.clone().requires_grad_(True)
    D(torch.cat((real_a, image), 1)).mean().backward()

  g_fwd_bwd()  # gradients for Adam

  parts = [("G fwd", g_fwd), ("G fwd+bwd", g_fwd_bwd),
           ("D fwd+bwd params", d_fwd_bwd_params)]
  for name, fn in parts:
    report(name, timeit(fn, args.reps))
  trainer._set_requires_grad(D, False)  # pylint: disable=protected-access
  report("D fwd+bwd input", timeit(d_fwd_bwd_input, args.reps))
  trainer._set_requires_grad(D, True)  # pylint: disable=protected-access
  report("Adam G", timeit(trainer.opt_G.step, args.reps))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError("Too many command-line arguments.")
  (run_jax if FLAGS.framework == "jax" else run_torch)(FLAGS)


if __name__ == "__main__":
  app.run(main)
