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
       "--steps", "3", "--warmup", "1", "--input_batches", "0", *overrides],
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
  assert reused["train_page_faults_per_step"] < 0.1 * pages, reused  # fresh: > 0.5
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
