"""How the package compiles its functions: `jit(fun, config)`, with the CPU's choices.

XLA:CPU hands each convolution, matrix product and reduction it can to YNNPACK. For this
project's networks Eigen's convolutions are faster: the pix2pix 256x256 training step
takes 12-15% less time with YNNPACK kept for matrix products and reductions only, and the
128x128 step 4-6% less. `jit` compiles that way on the CPU;
`config.cpu_ynnpack_convolutions = True` gives XLA's default back. Off the CPU it is plain
`jax.jit`.

Every compiled function of the networks (the training and evaluation steps, inference,
the diagnostics pass, the tuner's, doctor's and benchmark's steps) goes through `jit`, so
the commands compute with the same kernels: the numbers differ in the last bits between
the two libraries.
"""

import functools
from typing import Any, Callable

from absl import logging
import jax
import jax.numpy as jnp

# XLA's option (a DebugOptions field, read per compilation) and the operations it hands to
# YNNPACK here: matrix products (with their fused neighbours) and reductions, not
# convolutions. XLA's default adds LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION.
YNN_OPTION = "xla_cpu_experimental_ynn_fusion_type"
YNN_WITHOUT_CONVOLUTIONS = "LIBRARY_FUSION_TYPE_DOT,LIBRARY_FUSION_TYPE_REDUCE"


@functools.cache
def _accepted(option: str, value: str) -> bool:
  """Whether this jaxlib's CPU compiler takes `option=value` (it may rename its enums)."""
  try:
    jax.jit(lambda x: x + 1, compiler_options={option: value}).lower(
        jnp.zeros((), jnp.float32)).compile()
    return True
  except jax.errors.JaxRuntimeError as e:
    logging.warning("this jaxlib's CPU compiler does not take %s=%s (%s); convolutions "
                    "stay with XLA's default library", option, value,
                    str(e).splitlines()[0])
    return False


def compiler_options(config) -> dict[str, Any] | None:
  """XLA options for compiling `config`'s networks on the default backend (None: defaults)."""
  if jax.default_backend() != "cpu" or config.cpu_ynnpack_convolutions:
    return None
  if not _accepted(YNN_OPTION, YNN_WITHOUT_CONVOLUTIONS):
    return None
  return {YNN_OPTION: YNN_WITHOUT_CONVOLUTIONS}


def jit(fun: Callable, config, **kwargs) -> Callable:
  """`jax.jit(fun, **kwargs)` compiled with `compiler_options(config)`."""
  return jax.jit(fun, compiler_options=compiler_options(config), **kwargs)
