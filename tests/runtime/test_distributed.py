"""Several processes as one cluster: how a process joins, and a real two-process run."""

import os
import shutil
import socket
import subprocess
import sys

import pytest

from mangacolor_jax.infer import colorizer as colorizer_lib
from mangacolor_jax.runtime import distributed

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_the_environment_names_the_cluster_or_none():
  by_hand = {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "4",
             "JAX_PROCESS_ID": "3"}
  assert distributed.cluster_from_environment(by_hand) == {
      "coordinator_address": "10.0.0.1:1234", "num_processes": 4, "process_id": 3}
  assert distributed.cluster_from_environment({}) is None
  assert distributed.cluster_from_environment({"SLURM_NTASKS": "1", "SLURM_JOB_ID": "7"}) is None
  assert distributed.cluster_from_environment({"SLURM_NTASKS": "2"}) == {}  # JAX detects it
  assert distributed.cluster_from_environment({"MANGACOLOR_DISTRIBUTED": "1"}) == {}
  with pytest.raises(ValueError, match="JAX_NUM_PROCESSES, JAX_PROCESS_ID"):
    distributed.cluster_from_environment({"JAX_COORDINATOR_ADDRESS": "h:1"})
  with pytest.raises(ValueError, match="JAX_PROCESS_ID='one'"):
    distributed.cluster_from_environment({**by_hand, "JAX_PROCESS_ID": "one"})
  with pytest.raises(ValueError, match=r"JAX_PROCESS_ID=4 must be in \[0, JAX_NUM_PROCESSES=4\)"):
    distributed.cluster_from_environment({**by_hand, "JAX_PROCESS_ID": "4"})


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _train(workdir, steps: int, devices: int, processes: int = 1):
  """`python -m mangacolor_jax.train` on configs/tiny.py in `processes` processes of
  `devices` CPU devices each, joined by the JAX_* variables as a user would."""
  port = _free_port()
  procs = []
  for i in range(processes):
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    if processes > 1:
      env.update(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                 JAX_NUM_PROCESSES=str(processes), JAX_PROCESS_ID=str(i))
    procs.append(subprocess.Popen(
        [sys.executable, "-m", "mangacolor_jax.train", "--config", "configs/tiny.py",
         "--workdir", str(workdir), f"--config.num_train_steps={steps}",
         "--config.keep_best_checkpoints=2"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
  for p in procs:
    _, err = p.communicate(timeout=600)
    assert p.returncode == 0, err[-3000:]


def _state(workdir, step):
  return colorizer_lib.load_config_and_state(str(workdir), step)[1]


def test_two_processes_train_as_one_and_resume_on_fewer_devices(tmp_path, assert_same_state):
  """Two processes of 4 devices train, evaluate and checkpoint as one process of 8 does
  (the whole state within 1e-5), and their checkpoint resumes on one process of 4."""
  _train(tmp_path / "one", steps=4, devices=8)
  _train(tmp_path / "two", steps=2, devices=4, processes=2)
  assert_same_state(_state(tmp_path / "two", 2), _state(tmp_path / "one", 2), atol=1e-5)
  assert os.listdir(tmp_path / "two" / "samples")  # the evaluation's grids, by process 0
  shutil.copytree(tmp_path / "two", tmp_path / "resumed")
  _train(tmp_path / "resumed", steps=4, devices=4)  # a different mesh: 8 -> 4 devices
  assert_same_state(_state(tmp_path / "resumed", 4), _state(tmp_path / "one", 4), atol=1e-5)
