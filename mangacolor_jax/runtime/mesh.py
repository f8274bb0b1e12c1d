"""Data parallelism: one mesh axis "data" over every device of every host.

The state is replicated and each batch is split along its first axis; XLA inserts the
gradient all-reduce and computes BatchNorm statistics over the global batch, so the step
itself has no collectives. The same code runs on one CPU, eight GPUs or a TPU pod slice
(after `jax.distributed.initialize()` on each host).
"""

from typing import Any, Sequence

import jax
from jax.experimental import multihost_utils
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def create_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh named "data". Auto axes (not jax.make_mesh's Explicit ones): linen Dropout
  fails under Explicit axes."""
  devices = jax.devices() if devices is None else devices
  return Mesh(np.array(devices), ("data",))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def data_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P("data"))


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
  """Fails fast, before compiling, when the batch does not split evenly."""
  n = mesh.devices.size
  if batch_size % n:
    raise ValueError(
        f"config.batch_size={batch_size} is not divisible by the {n} devices of the mesh; "
        f"use a multiple of {n}")
  if batch_size % jax.process_count():
    raise ValueError(f"config.batch_size={batch_size} is not divisible by the "
                     f"{jax.process_count()} processes")


def place_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """Turns this host's share of a global batch into global arrays split on "data"."""
  sharding = data_sharded(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in batch.items()}


def fetch(tree: Any) -> Any:
  """Host copies of global arrays, whole on every process: `jax.device_get` on one
  process; on several an all-gather, since a process can read only its own devices'
  shards (every process then computes the same metrics and takes the same decisions)."""
  if jax.process_count() == 1:
    return jax.device_get(tree)
  return multihost_utils.process_allgather(tree, tiled=True)


def local_rows(x: jax.Array) -> np.ndarray:
  """This process's rows of an array split on "data" (all of it on one process): the
  outputs of the examples this host fed in `place_batch`."""
  if jax.process_count() == 1:
    return np.asarray(jax.device_get(x))
  shards = {s.index[0].start or 0: s.data for s in x.addressable_shards}
  return np.concatenate([np.asarray(shards[k]) for k in sorted(shards)])


def replicate(tree: Any, mesh: Mesh) -> Any:
  return jax.device_put(tree, replicated(mesh))
