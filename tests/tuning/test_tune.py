"""The tune command line: a sweep run as train processes."""

import csv
import glob
import json
import os
import subprocess
import sys

import pytest

from mangacolor_jax.training import checkpointing

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_sweep_command_runs_trials_as_train_processes(tmp_path):
  """The command line with --trials_in_parallel 2: real training runs, one process each."""
  workdir = tmp_path / "sweep"
  cmd = [sys.executable, "-m", "mangacolor_jax.tune", "sweep", "--config",
         "configs/tiny.py", "--config.num_train_steps=5", "--config.loss.gan=none",
         "--workdir", str(workdir),
         "--param", "optim.g_lr=1e-4:1e-3:log:2", "--steps", "1", "--no_extend",
         "--trials_in_parallel", "2"]
  proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  for trial in ("trial_000", "trial_001"):
    result = json.loads((workdir / trial / "result.json").read_text())
    assert result["status"] == "done" and result["final_step"] == 1
    assert "--config.num_train_steps=5" in result["command"]  # the base override...
    assert "--config.num_train_steps=1" in result["command"]  # ...then --steps wins
    assert glob.glob(str(workdir / trial / "events.out.tfevents.*"))  # TensorBoard
    with checkpointing.Checkpointer(str(workdir / trial / "checkpoints"),
                                    create=False) as ckpt:
      assert result["score"] == pytest.approx(ckpt.metrics(1)["eval_psnr"])
  assert "| trial_00" in proc.stdout
  with open(workdir / "results.csv", encoding="utf-8") as f:
    assert len(list(csv.DictReader(f))) == 2
