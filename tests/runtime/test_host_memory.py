"""On the CPU each training step reuses its scratch buffer (mangacolor_jax/host_memory.py).

Both checks run in a fresh process with one CPU device: the setting must be made before
JAX creates its CPU client, and it concerns single-device steps.
"""

import json
import os
import subprocess
import sys

import pytest

from mangacolor_jax.runtime import host_memory

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ONE_DEVICE = dict(os.environ, XLA_FLAGS="")

pytestmark = pytest.mark.skipif(host_memory._glibc() is None,  # pylint: disable=protected-access
                                reason="the allocator settings are glibc's (Linux)")


def _benchmark(*overrides):
  out = subprocess.run(
      [sys.executable, "-m", "mangacolor_jax.benchmark", "--config", "configs/default.py",
       "--steps", "6", "--warmup", "2", "--input_batches", "0", *overrides],
      cwd=REPO, env=ONE_DEVICE, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


def test_steps_reuse_their_scratch_buffer_and_compute_the_same():
  fresh = _benchmark("--config.cpu_reuse_step_memory=False")
  reused = _benchmark()
  pages = reused["temp_buffer_mb"] * 2**20 / os.sysconf("SC_PAGE_SIZE")
  # Larger than glibc's largest mmap threshold (32 MB): otherwise nothing to show.
  assert reused["temp_buffer_mb"] > 48, reused
  assert fresh["train_page_faults_per_step"] > 0.5 * pages, fresh  # mapped afresh each step
  # Reused: near 0 on an idle machine, but with other processes on the cores (the tests
  # run two at a time) 8-14% of the pages over 3 steps were seen, and 0-5% over 6; fresh
  # maps all of them every step (102% measured under the same load).
  assert reused["train_page_faults_per_step"] < 0.25 * pages, reused
  assert reused["train_losses"] == fresh["train_losses"]


@pytest.mark.parametrize("command", [
    ["mangacolor_jax.train", "--config", "configs/tiny.py", "--workdir", "{workdir}",
     "--config.num_train_steps=1", "--config.diagnostics_every_steps=0"],
    ["mangacolor_jax.tune", "lr_range", "--config", "configs/tiny.py", "--workdir",
     "{workdir}", "--steps", "6"],
], ids=["train", "tune_lr_range"])
def test_commands_set_it_up_before_jax_starts(command, tmp_path):
  command = [arg.format(workdir=tmp_path / "run") for arg in command]
  out = subprocess.run([sys.executable, "-m", *command], cwd=REPO, env=ONE_DEVICE,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "each step's scratch buffer is reused" in out.stderr, out.stderr[-3000:]
  assert "mapped afresh" not in out.stderr, out.stderr[-3000:]
