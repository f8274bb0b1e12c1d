"""Batches onto the mesh, with their line art made there when the config asks for it.

`config.data.lineart_on`:

* ``host`` (the default): the input pipeline makes each example's line art on the CPU.
* ``device``: the pipeline only decodes, crops, flips and rotates; each example carries
  its extractor and parameter, drawn exactly as the CPU path draws them, and `Placer`
  makes the batch's line art on the accelerator (`nn.lineart`) right after placing it.
  XDoG is the pipeline's costliest op (about 48 CPU cores' worth per H200 at 256 px); on
  the accelerator it is a few percent of the step.

The training loop and its evaluation place batches with a `Placer`; tools that read the
data on the host (inspect, the doctor, the evaluate command, the quality protocol) keep the
CPU path, which gives the same line art (tests/nn/test_lineart.py).
"""

import jax

from mangacolor_jax.nn import lineart as lineart_lib
from mangacolor_jax.runtime import compile as compile_lib
from mangacolor_jax.runtime import mesh as mesh_lib


def on_device(config) -> bool:
  """Whether the datasets should leave the line art to `Placer` (pass it as their
  `lineart_on_device`)."""
  return config.data.lineart_on == "device"


def complete(batch: dict, max_sigma: float, upscale: int) -> dict:
  """A placed device-path batch with its "lineart" made from its draw."""
  batch = dict(batch)
  kind, param = batch.pop("lineart_kind"), batch.pop("lineart_param")
  batch["lineart"] = lineart_lib.lineart(batch["target"], kind, param, max_sigma, upscale,
                                         batch.pop("lineart_weight", None),
                                         batch.pop("lineart_gamma", None))
  return batch


class Placer:
  """`placer(host_batch)`: this host's share of a global batch as global arrays split on
  "data" (`mesh.place_batch`), its line art made on the mesh on the device path.

  Args:
    config: the run's config.
    mesh: the data-parallel mesh.
    training: training batches (XDoG sigmas up to the range's top) or evaluation ones
      (the fixed XDoG): the kernels are sized as the CPU path sizes them.
  """

  def __init__(self, config, mesh, training: bool):
    self.mesh, self.complete = mesh, None
    if on_device(config):
      max_sigma = (float(config.data.xdog_sigma[1]) if training else
                   lineart_lib.EVAL_SIGMA)
      upscale = int(config.data.lineart_upscale)
      data = mesh_lib.data_sharded(mesh)
      self.complete = compile_lib.jit(
          lambda b: complete(b, max_sigma, upscale), config, in_shardings=data,
          out_shardings=data)

  def __call__(self, batch: dict) -> dict[str, jax.Array]:
    placed = mesh_lib.place_batch(batch, self.mesh)
    return placed if self.complete is None else self.complete(placed)
