"""Joining several processes (hosts) into one JAX cluster, before anything else uses JAX.

Each host runs the same command. How the processes find each other:

* by hand, on any machines: `JAX_COORDINATOR_ADDRESS=host0:1234 JAX_NUM_PROCESSES=N
  JAX_PROCESS_ID=i` on process i (0 on the coordinator's host);
* under SLURM (`srun`, more than one task) or Open MPI (`mpirun`), and on Cloud TPU pods
  with `MANGACOLOR_DISTRIBUTED=1`: `jax.distributed.initialize()` reads the cluster from
  the environment itself.

Otherwise the command runs as one process over the local devices.
"""

import os

import jax

_BY_HAND = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


def cluster_from_environment(env=None) -> dict | None:
  """The arguments of `jax.distributed.initialize` the environment asks for, else None.

  Raises ValueError naming the variable when the by-hand variables are incomplete or
  not numbers.
  """
  env = os.environ if env is None else env
  given = [v for v in _BY_HAND if env.get(v)]
  if given:
    missing = [v for v in _BY_HAND if v not in given]
    if missing:
      raise ValueError(f"{given[0]} is set but {', '.join(missing)} is not: a process joins "
                       f"a cluster with all of {', '.join(_BY_HAND)}")
    args = {"coordinator_address": env["JAX_COORDINATOR_ADDRESS"]}
    for var, key in (("JAX_NUM_PROCESSES", "num_processes"), ("JAX_PROCESS_ID", "process_id")):
      try:
        args[key] = int(env[var])
      except ValueError:
        raise ValueError(f"{var}={env[var]!r} is not a whole number") from None
    if not 0 <= args["process_id"] < args["num_processes"] or args["num_processes"] < 1:
      raise ValueError(f"JAX_PROCESS_ID={args['process_id']} must be in [0, "
                       f"JAX_NUM_PROCESSES={args['num_processes']})")
    return args
  if (int(env.get("SLURM_NTASKS", "1") or 1) > 1
      or int(env.get("OMPI_COMM_WORLD_SIZE", "1") or 1) > 1
      or env.get("MANGACOLOR_DISTRIBUTED", "") == "1"):
    return {}  # JAX's own detection (SLURM, Open MPI, TPU pods)
  return None


def initialize_from_environment() -> bool:
  """Joins the cluster the environment describes; False when it describes none."""
  args = cluster_from_environment()
  if args is None:
    return False
  jax.distributed.initialize(**args)
  return True
