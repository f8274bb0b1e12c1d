r"""Per-layer timing of the pix2pix convolutions, forward and forward+backward, JAX or torch.

Times every convolution of the pix2pix U-Net and PatchGAN at one size and batch as the
training step uses it (forward; forward + gradients of input and kernel), under XLA (each
layer jitted alone) or PyTorch, so the two can be compared layer by layer. For the decoder
it also times the other ways of writing a 2x upsampling convolution that models.py offers.

  .venv/bin/python scripts/layer_timing.py --size 128 --batch 4
  /tmp/torchvenv/bin/python scripts/layer_timing.py --size 128 --batch 4 --framework torch

Prints one line per layer: name, shape, forward ms, forward+backward ms, GFLOP/s.
"""

import math
import sys
import time

from absl import app
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_integer("size", 128, "Image side in pixels of the pix2pix networks timed.")
flags.DEFINE_integer("batch", 4, "Batch size.")
flags.DEFINE_integer("reps", 5, "Timed calls per layer, at least (and at least 0.3 s); "
                     "the minimum is kept.")
flags.DEFINE_enum("framework", "jax", ["jax", "torch"], "Whose layers to time.")
flags.DEFINE_string("dtype", "float32", "Compute dtype of the JAX layers.")
flags.DEFINE_bool("ynnpack_convolutions", False,
                  "CPU: convolutions by YNNPACK (XLA's default) instead of Eigen")
flags.DEFINE_string("upsample", "transpose,phase,resize,subpixel",
                    "comma-separated resampling.Upsample kinds to time (JAX)")
flags.DEFINE_string("downsample", "conv,auto,space_to_depth",
                    "resampling.Downsample kinds to time (JAX): conv, space_to_depth, auto")


def layers(size, ngf=64, ndf=64):
  """(name, kind, c_in, c_out, input side, stride) of every conv of one pix2pix step."""
  depth = int(round(math.log2(size)))
  widths = [ngf * min(2**i, 8) for i in range(depth)]
  out = []
  c, s = 1, size
  for i, w in enumerate(widths):
    out.append((f"enc{i}", "down", c, w, s, 2))
    c, s = w, s // 2
  for i in reversed(range(depth)):
    c_in = widths[i] if i == depth - 1 else 2 * widths[i]
    c_out = 3 if i == 0 else widths[i - 1]
    out.append((f"dec{i}", "up", c_in, c_out, size >> (i + 1), 2))
  c, s = 4, size
  out.append(("disc0", "down", 4, ndf, s, 2))
  c, s = ndf, s // 2
  for k in range(1, 4):
    w = ndf * min(2**k, 8)
    stride = 2 if k < 3 else 1
    out.append((f"disc{k}", "down" if stride == 2 else "same", c, w, s, stride))
    c, s = w, (s // 2 if stride == 2 else s - 1)
  out.append(("disc_logits", "same", c, 1, s, 1))
  return out


def conv_flops(kind, b, c_in, c_out, s, stride):
  """Multiply-adds x 2 of the forward pass (4x4 kernel)."""
  if kind == "up":
    return 2 * b * (s * s) * 16 * c_in * c_out  # 4 taps per output pixel, 4 outputs/input
  o = s // 2 if kind == "down" else s - 1
  return 2 * b * o * o * 16 * c_in * c_out


def timeit(fn, reps, min_s=0.3):
  """Minimum over repetitions: the machines are shared, the minimum is the least noisy."""
  fn()
  fn()
  times = []
  t_end = time.perf_counter() + min_s
  while len(times) < reps or time.perf_counter() < t_end:
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
    if len(times) >= 200:
      break
  return min(times)


def report(total, layer, batch, vname, t_f, t_b):
  """Prints one layer's line and adds its fwd+bwd seconds to total[vname]."""
  name, kind, c_in, c_out, s, stride = layer
  fl = conv_flops(kind, batch, c_in, c_out, s, stride)
  total[vname] = total.get(vname, 0.0) + t_b
  print(f"{name:12s} {vname:9s} {c_in:5d}->{c_out:<4d} @{s:<4d} s{stride} "
        f"fwd {1e3 * t_f:8.2f} ms  fwd+bwd {1e3 * t_b:8.2f} ms  "
        f"{3 * fl / t_b / 1e9:7.1f} GFLOP/s", flush=True)


def run_jax(args):
  import functools  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, ".")
  from mangacolor_jax.runtime import compile as compile_lib  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.nn import models  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.nn import resampling  # pylint: disable=g-import-not-at-top
  from configs import default  # pylint: disable=g-import-not-at-top

  config = default.get_config()  # compiled as the project compiles (mangacolor_jax.runtime.compile)
  config.cpu_ynnpack_convolutions = args.ynnpack_convolutions

  dtype = jnp.dtype(args.dtype)
  rng = np.random.default_rng(0)
  upsamples = args.upsample.split(",")
  total = {}
  for name, kind, c_in, c_out, s, stride in layers(args.size):
    b = args.batch
    x = jnp.asarray(rng.standard_normal((b, s, s, c_in)), jnp.float32)
    variants = []
    if kind == "up":
      for up in upsamples:
        variants.append((up, resampling.Upsample(c_out, up, dtype=dtype)))
    elif kind == "down":
      for down in args.downsample.split(","):
        variants.append((down[:6], resampling.Downsample(c_out, down, dtype=dtype)))
    else:
      variants.append(("conv", models.nn.Conv(c_out, (4, 4), padding=((1, 1), (1, 1)),
                                              dtype=dtype)))
    for vname, module in variants:
      params = module.init(jax.random.key(0), x)
      fwd = compile_lib.jit(lambda p, x, m=module: m.apply(p, x), config)

      def loss(p, x, m=module):
        return jnp.sum(m.apply(p, x).astype(jnp.float32))

      grad = compile_lib.jit(jax.grad(loss, argnums=(0, 1)), config)
      t_f = timeit(lambda: jax.block_until_ready(fwd(params, x)), args.reps)
      t_b = timeit(lambda: jax.block_until_ready(grad(params, x)), args.reps)
      report(total, (name, kind, c_in, c_out, s, stride), b, vname, t_f, t_b)
  print("sum fwd+bwd ms:", {k: round(1e3 * v, 1) for k, v in total.items()})


def run_torch(args):
  import torch  # pylint: disable=g-import-not-at-top
  import torch.nn as tnn  # pylint: disable=g-import-not-at-top
  total = {}
  for name, kind, c_in, c_out, s, stride in layers(args.size):
    b = args.batch
    x = torch.randn(b, c_in, s, s, requires_grad=True)
    if kind == "up":
      m = tnn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False)
      vname = "transpose"
    else:
      m = tnn.Conv2d(c_in, c_out, 4, stride, 1, bias=False)
      vname = "conv"

    def fwd():
      with torch.no_grad():
        m(x)

    def fb():
      m.zero_grad(set_to_none=True)
      x.grad = None
      m(x).sum().backward()

    t_f, t_b = timeit(fwd, args.reps), timeit(fb, args.reps)
    report(total, (name, kind, c_in, c_out, s, stride), b, vname, t_f, t_b)
  print("sum fwd+bwd ms:", {k: round(1e3 * v, 1) for k, v in total.items()})


def main(argv):
  if len(argv) > 1:
    raise app.UsageError("Too many command-line arguments.")
  (run_jax if FLAGS.framework == "jax" else run_torch)(FLAGS)


if __name__ == "__main__":
  app.run(main)
