"""The late-fall check: validation L1 rising while training L1 falls, read from the run's
own TensorBoard scalars."""

import json
import os
import subprocess
import sys

from clu import metric_writers
import pytest

from mangacolor_jax.debug import curves


def write_run(workdir, val: dict[int, float], train: dict[int, float]):
  """Scalars as the training loop writes them (CLU's default writer)."""
  writer = metric_writers.create_default_writer(str(workdir))
  for step in sorted(set(val) | set(train)):
    values = {}
    if step in train:
      values["train_g_l1"] = train[step]
    if step in val:
      values["eval_l1"] = val[step]
    writer.write_scalars(step, values)
  writer.flush()
  writer.close()


TRAIN_FALLING = {s: 0.30 - 0.1 * s / 2000 for s in range(50, 2001, 50)}


def test_a_late_fall_fails(tmp_path):
  # The run: best at step 1000, then a full dB worse (about +12% L1) by 2000.
  val = {0: 0.60, 500: 0.26, 1000: 0.24, 1500: 0.255, 2000: 0.27}
  write_run(tmp_path, val, TRAIN_FALLING)
  status, measured, meaning = curves.check_run(str(tmp_path))
  assert status == "FAIL", meaning
  assert measured.best_step == 1000 and measured.last_step == 2000
  assert measured.val_rise == pytest.approx(0.27 / 0.24 - 1, rel=1e-5)
  assert measured.train_change < -0.1
  assert "step 1000" in meaning


def test_a_small_rise_warns_and_a_healthy_run_passes(tmp_path):
  write_run(tmp_path / "small", {500: 0.26, 1000: 0.24, 1500: 0.245, 2000: 0.248},
            TRAIN_FALLING)
  assert curves.check_run(str(tmp_path / "small"))[0] == "WARN"
  write_run(tmp_path / "healthy", {0: 0.6, 500: 0.26, 1000: 0.24, 1500: 0.235, 2000: 0.232},
            TRAIN_FALLING)
  status, measured, _ = curves.check_run(str(tmp_path / "healthy"))
  assert status == "PASS" and measured.best_step == 2000 and measured.val_rise == 0


def test_validation_rising_with_training_is_not_overfitting(tmp_path):
  # Both curves rise (divergence): another check's job, not a late fall.
  rising = {s: 0.2 + 0.1 * s / 2000 for s in range(50, 2001, 50)}
  write_run(tmp_path, {500: 0.26, 1000: 0.24, 1500: 0.27, 2000: 0.30}, rising)
  assert curves.check_run(str(tmp_path))[0] == "PASS"


def test_too_few_evaluations_and_a_folder_without_a_run(tmp_path):
  write_run(tmp_path / "short", {0: 0.6, 500: 0.3}, TRAIN_FALLING)
  status, measured, meaning = curves.check_run(str(tmp_path / "short"))
  assert status == "PASS" and measured is None and "nothing to judge" in meaning
  (tmp_path / "empty").mkdir()
  with pytest.raises(ValueError, match="eval_l1 or train_g_l1"):
    curves.check_run(str(tmp_path / "empty"))


ALL_CHECKS = ("input_range,input_centring,batches_differ,target_aligned,input_shapes,finite,"
              "weights_init,initial_loss,one_step_lowers_loss,update_ratio,"
              "gradients_reach_layers,dead_units,frozen_stay_frozen,inference_deterministic,"
              "batchnorm_updates,non_square_shapes,overfit_tiny_subset")


def run_doctor(tmp_path, run_dir):
  repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
  return subprocess.run(
      [sys.executable, "-m", "mangacolor_jax.doctor", "--config", "configs/tiny.py",
       "--workdir", str(tmp_path / "doctor"), f"--skip={ALL_CHECKS}", "--run", str(run_dir)],
      cwd=repo, env=env, capture_output=True, text=True, timeout=300)


def test_the_doctor_fails_a_run_with_a_late_fall(tmp_path):
  write_run(tmp_path / "run", {500: 0.26, 1000: 0.24, 1500: 0.255, 2000: 0.27},
            TRAIN_FALLING)
  proc = run_doctor(tmp_path, tmp_path / "run")
  assert proc.returncode == 1, proc.stdout + proc.stderr[-3000:]
  assert "FAIL  late_fall" in proc.stdout
  report = json.load(open(tmp_path / "doctor" / "doctor.json"))
  assert report["failed"] == ["late_fall"], report
  # A folder that is no training run: one line, exit 2, before any check runs.
  (tmp_path / "empty").mkdir()
  proc = run_doctor(tmp_path, tmp_path / "empty")
  # (TensorFlow's C++ start-up lines may precede it on stderr.)
  assert proc.returncode == 2, proc.stderr
  assert proc.stderr.strip().splitlines()[-1].startswith("error: --run:"), proc.stderr
  assert "Traceback" not in proc.stderr
