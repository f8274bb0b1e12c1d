"""End-to-end training: runs, reproducibility, sharding equivalence, resume, failures."""

import functools
import glob
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mangacolor_jax.training import checkpointing
from mangacolor_jax.input_pipeline import datasets
from mangacolor_jax.debug import curves
from mangacolor_jax.training import loop
from mangacolor_jax.runtime import mesh as mesh_lib
from mangacolor_jax.training import state as state_lib
from mangacolor_jax.training import step as step_lib


def tensorboard_tags(workdir):
  """Scalar and image tags written to the workdir's event files."""
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
  tags = set()
  for path in glob.glob(os.path.join(workdir, "events.out.tfevents.*")):
    acc = event_accumulator.EventAccumulator(path, size_guidance={"tensors": 0})
    acc.Reload()
    tags |= set(acc.Tags()["tensors"]) | set(acc.Tags()["images"])
  return tags


def scalar_values(workdir, tag):
  """{step: value} of one scalar tag in the workdir's event files."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
  out = {}
  for path in glob.glob(os.path.join(workdir, "events.out.tfevents.*")):
    acc = event_accumulator.EventAccumulator(path, size_guidance={"tensors": 0})
    acc.Reload()
    if tag in acc.Tags()["tensors"]:
      for event in acc.Tensors(tag):
        out[event.step] = float(tf.make_ndarray(event.tensor_proto))
  return out


def params_of(state):
  return jax.tree_util.tree_leaves(jax.device_get((state.g_params, state.d_params,
                                                   state.g_batch_stats)))


def test_tiny_end_to_end_synthetic(tiny_config, tmp_path):
  state = loop.train_and_evaluate(tiny_config, str(tmp_path))
  assert int(state.step) == 2
  ckpt = checkpointing.Checkpointer(str(tmp_path / "checkpoints"), create=False)
  assert ckpt.latest_step() == 2
  meta = ckpt.restore_meta("latest")
  assert meta["config"]["data"]["image_width"] == 48 and meta["seed"] == 0
  assert meta["git_commit"]
  tags = tensorboard_tags(str(tmp_path))
  for tag in ("train_d_loss", "train_g_loss", "train_g_adv", "train_g_l1",
              "train_d_real_acc", "train_d_fake_acc", "train_lr", "eval_psnr", "eval_ssim",
              "eval_lab_l1", "train_samples", "eval_samples"):
    assert tag in tags, f"{tag} missing from TensorBoard; have {sorted(tags)}"
  assert glob.glob(str(tmp_path / "samples" / "eval_*.png"))
  # The doctor's late-fall check reads this run's own scalars (too short to judge).
  status, measured, _ = curves.check_run(str(tmp_path))
  assert status == "PASS" and measured is None


def test_tiny_end_to_end_folder_with_hints(tiny_config, ci_faces, tmp_path):
  tiny_config.data.source = "folder"
  tiny_config.data.image_dir = str(ci_faces)
  tiny_config.hints.mode = "sparse"
  state = loop.train_and_evaluate(tiny_config, str(tmp_path))
  assert int(state.step) == 2
  assert "eval_psnr_hints" in tensorboard_tags(str(tmp_path))


def _run_steps(config, mesh, num_steps, seed=0):
  setup = state_lib.create_networks(config)
  repl = mesh_lib.replicated(mesh)
  state = jax.jit(setup.create_state, out_shardings=repl)(jax.random.key(seed))
  step = jax.jit(functools.partial(step_lib.train_step, setup),
                 in_shardings=(repl, mesh_lib.data_sharded(mesh)),
                 out_shardings=(repl, repl))
  it = datasets.create_train_dataset(config, seed=seed).as_numpy_iterator()
  losses = []
  for _ in range(num_steps):
    state, metrics = step(state, mesh_lib.place_batch(next(it), mesh))
    losses.append(float(metrics["g_loss"]))
  return state, losses


def test_same_seed_is_bit_identical_and_seed_matters(tiny_config, assert_same_state):
  tiny_config.hints.mode = "sparse"
  tiny_config.model.gen.dropout = 0.5  # dropout and hints both draw from the state's key
  mesh = mesh_lib.create_mesh()
  a, losses_a = _run_steps(tiny_config, mesh, 3)
  b, losses_b = _run_steps(tiny_config, mesh, 3)
  assert losses_a == losses_b
  assert_same_state(a, b)
  _, losses_c = _run_steps(tiny_config, mesh, 3, seed=1)
  assert losses_c != losses_a


def test_eight_devices_match_one(tiny_config):
  assert jax.device_count() == 8, "conftest sets 8 fake devices"
  eight, losses8 = _run_steps(tiny_config, mesh_lib.create_mesh(), 2)
  one, losses1 = _run_steps(tiny_config, mesh_lib.create_mesh(jax.devices()[:1]), 2)
  np.testing.assert_allclose(losses8, losses1, rtol=1e-5)
  for x, y in zip(params_of(eight), params_of(one)):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


class Crash(Exception):
  pass


def crash_after_two_steps(config, workdir, monkeypatch):
  """Trains in `workdir` and crashes (like a kill) after the checkpoint at step 2, while
  step 3 is running."""
  real_create = datasets.create_train_dataset
  calls = {"n": 0}

  def crash_on_third(cfg, *, seed, start_index=0, **kw):
    ds = real_create(cfg, seed=seed, start_index=start_index, **kw)
    calls["n"] += 1
    if calls["n"] == 1:  # the training stream of the first run: dies after 2 batches
      return _StopAfter(ds, 2)
    return ds

  monkeypatch.setattr(datasets, "create_train_dataset", crash_on_third)
  with pytest.raises(Crash):
    loop.train_and_evaluate(config, workdir)
  monkeypatch.setattr(datasets, "create_train_dataset", real_create)


def test_crash_and_resume_matches_uninterrupted(tiny_config, tmp_path, monkeypatch,
                                                assert_same_state):
  tiny_config.num_train_steps = 4
  tiny_config.eval_every_steps = 100
  reference = loop.train_and_evaluate(tiny_config, str(tmp_path / "straight"))

  crash_after_two_steps(tiny_config, str(tmp_path / "resumed"), monkeypatch)
  assert checkpointing.Checkpointer(str(tmp_path / "resumed" / "checkpoints"),
                                    create=False).latest_step() == 2
  resumed = loop.train_and_evaluate(tiny_config, str(tmp_path / "resumed"))
  assert int(resumed.step) == 4
  assert_same_state(reference, resumed)


def test_with_measured_statistics_crash_and_resume_matches_uninterrupted(
    tiny_config, tmp_path, monkeypatch, assert_same_state):
  """With an average, G's BatchNorm statistics are measured under it at each checkpoint
  (`model.ema_bn_batches`): a resumed run still ends in the uninterrupted run's state."""
  tiny_config.num_train_steps = 4
  tiny_config.eval_every_steps = 100
  tiny_config.model.ema_decay = 0.9
  tiny_config.model.ema_bn_batches = 2
  reference = loop.train_and_evaluate(tiny_config, str(tmp_path / "straight"))
  crash_after_two_steps(tiny_config, str(tmp_path / "resumed"), monkeypatch)
  resumed = loop.train_and_evaluate(tiny_config, str(tmp_path / "resumed"))
  assert int(resumed.step) == 4
  assert_same_state(reference, resumed)


def test_line_art_on_the_device_trains_and_resumes_exactly(tiny_config, tmp_path,
                                                            monkeypatch, assert_same_state):
  """config.data.lineart_on = "device": the pipeline leaves the line art to the mesh, and
  a run killed after its step-2 checkpoint resumes to the uninterrupted run's state."""
  tiny_config.num_train_steps = 4
  tiny_config.eval_every_steps = 2
  tiny_config.data.lineart_on = "device"
  reference = loop.train_and_evaluate(tiny_config, str(tmp_path / "straight"))
  assert 0.0 < scalar_values(str(tmp_path / "straight"), "eval_psnr")[4] < 60.0
  crash_after_two_steps(tiny_config, str(tmp_path / "resumed"), monkeypatch)
  resumed = loop.train_and_evaluate(tiny_config, str(tmp_path / "resumed"))
  assert int(resumed.step) == 4
  assert_same_state(reference, resumed)


def _kill_and_resume_matches_a_straight_run(config, tmp_path, monkeypatch, assert_same_state):
  """4 steps straight, and 4 steps killed after the step-2 checkpoint then resumed: the
  same final state."""
  config.num_train_steps = 4
  config.eval_every_steps = 2
  reference = loop.train_and_evaluate(config, str(tmp_path / "straight"))
  crash_after_two_steps(config, str(tmp_path / "resumed"), monkeypatch)
  resumed = loop.train_and_evaluate(config, str(tmp_path / "resumed"))
  assert int(resumed.step) == 4
  assert_same_state(reference, resumed)


def test_training_from_disk_records_resumes_exactly(tiny_config, tmp_path, monkeypatch,
                                                    assert_same_state):
  """config.data.source = "tfds" read record by record from disk (the default): a run
  killed after its step-2 checkpoint resumes to the uninterrupted run's state."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.data import preparer  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.input_pipeline import synthetic  # pylint: disable=g-import-not-at-top
  pictures = tmp_path / "pictures"
  pictures.mkdir()
  for i in range(24):
    Image.fromarray(synthetic.render(7, i, 32, 32)).save(pictures / f"c{i:02d}.png")
  preparer.prepare(str(pictures), str(tmp_path / "prepared"), split="70/30/0")
  tiny_config.data.source = "tfds"
  tiny_config.data.tfds_dir = str(tmp_path / "prepared")
  assert not tiny_config.data.tfds_in_memory
  _kill_and_resume_matches_a_straight_run(tiny_config, tmp_path, monkeypatch,
                                          assert_same_state)


def test_resume_is_exact_over_a_folder_with_files_that_do_not_decode(
    tiny_config, ci_faces, tmp_path, monkeypatch, assert_same_state):
  # Files that look like images but are not (a truncated download, an HTML error page),
  # spread through the sorted list: dropping one mid-stream would shift every later example.
  for name in ("0_broken.png", "5_page.jpg", "a_truncated.png"):
    (ci_faces / name).write_bytes(b"<html>not an image</html>")
  tiny_config.data.source = "folder"
  tiny_config.data.image_dir = str(ci_faces)
  tiny_config.data.val_fraction = 0.1
  _kill_and_resume_matches_a_straight_run(tiny_config, tmp_path, monkeypatch,
                                          assert_same_state)


class _StopAfter:
  """A dataset stand-in whose iterator raises Crash after `n` batches."""

  def __init__(self, ds, n):
    self.ds, self.n = ds, n

  def as_numpy_iterator(self):
    for i, batch in enumerate(self.ds.as_numpy_iterator()):
      if i == self.n:
        raise Crash()
      yield batch


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tiny_config, tmp_path):
  loop.train_and_evaluate(tiny_config, str(tmp_path))
  tiny_config.num_train_steps = 4
  tiny_config.optim.g_lr = float("inf")
  with pytest.raises(FloatingPointError, match="non-finite"):
    loop.train_and_evaluate(tiny_config, str(tmp_path))
  ckpt = checkpointing.Checkpointer(str(tmp_path / "checkpoints"), create=False)
  assert ckpt.latest_step() == 2
  setup = state_lib.create_networks(tiny_config)
  abstract = jax.eval_shape(setup.create_state, jax.random.key(0))
  state, _ = ckpt.restore("latest", abstract)
  assert all(np.all(np.isfinite(x)) for x in params_of(state))


@pytest.mark.parametrize("field, value, message", [
    ("model.gen.norm", "group", "config.model.gen.norm"),
    ("model.downsample", "pool", "config.model.downsample"),
    ("batch_size", 12, "not divisible by the 8 devices"),
    ("data.image_size", 36, "multiple of 2\\*\\*config.model.gen.depth"),
    ("loss.gan", "wgan", "config.loss.gan"),
    ("optim.schedule", "step", "config.optim.schedule"),
    ("data.source", "folder", "config.data.image_dir"),
])
def test_bad_config_fails_fast_with_field_name(tiny_config, tmp_path, field, value,
                                               message):
  node = tiny_config
  *path, last = field.split(".")
  for p in path:
    node = node[p]
  node[last] = value
  with pytest.raises(ValueError, match=message):
    loop.train_and_evaluate(tiny_config, str(tmp_path))
  assert not os.path.exists(tmp_path / "checkpoints" / "2")


def test_folder_without_readable_image_fails_fast(tiny_config, tmp_path):
  folder = tmp_path / "bad"
  folder.mkdir()
  (folder / "a.png").write_text("not an image")
  tiny_config.data.source = "folder"
  tiny_config.data.image_dir = str(folder)
  with pytest.raises(ValueError, match=str(folder)):
    loop.train_and_evaluate(tiny_config, str(tmp_path / "run"))


def test_early_stopping_stops_records_and_stays_stopped(tiny_config, tmp_path):
  tiny_config.num_train_steps = 8
  tiny_config.eval_every_steps = 1
  tiny_config.checkpoint_every_steps = 100
  tiny_config.early_stopping_patience = 2
  tiny_config.early_stopping_min_delta = 1000.0  # no eval can improve on the first enough
  state = loop.train_and_evaluate(tiny_config, str(tmp_path))
  # Step 1 sets the best; steps 2 and 3 fail to beat it by min_delta: stop at 3.
  assert int(state.step) == 3
  ckpt = checkpointing.Checkpointer(str(tmp_path / "checkpoints"), create=False)
  meta = ckpt.restore_meta("latest")
  assert ckpt.latest_step() == 3
  assert meta["early_stopping"]["stopped"] and meta["early_stopping"]["best_step"] == 1
  # Restarting on the workdir does not train past the stop.
  assert int(loop.train_and_evaluate(tiny_config, str(tmp_path)).step) == 3


def test_keeps_latest_and_best_k_checkpoints(tiny_config, tmp_path):
  tiny_config.num_train_steps = 4
  tiny_config.eval_every_steps = 1
  tiny_config.checkpoint_every_steps = 1
  tiny_config.keep_best_checkpoints = 2
  loop.train_and_evaluate(tiny_config, str(tmp_path))
  ckpt = checkpointing.Checkpointer(str(tmp_path / "checkpoints"), create=False)
  psnr = {s: v for s, v in scalar_values(str(tmp_path), "eval_psnr").items() if s > 0}
  assert sorted(psnr) == [1, 2, 3, 4]
  best_two = sorted(psnr, key=lambda s: -psnr[s])[:2]
  assert set(ckpt.all_steps()) == {4} | set(best_two)
  assert ckpt.best_step() == best_two[0]


def test_kill_9_and_resume_matches_uninterrupted(tiny_config, tmp_path, assert_same_state):
  """A real SIGKILL of the training process, then a resume on the same workdir."""
  import signal  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  import time  # pylint: disable=g-import-not-at-top
  steps, every = 30, 2
  tiny_config.num_train_steps = steps
  tiny_config.checkpoint_every_steps = every
  tiny_config.eval_every_steps = 1000
  workdir = tmp_path / "killed"
  repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  proc = subprocess.Popen(
      [sys.executable, "-m", "mangacolor_jax.train", "--config", "configs/tiny.py",
       "--workdir", str(workdir), f"--config.num_train_steps={steps}",
       f"--config.checkpoint_every_steps={every}", "--config.eval_every_steps=1000"],
      cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    deadline = time.time() + 240
    while not (workdir / "checkpoints" / "4").exists():
      assert proc.poll() is None, "training ended before it could be killed"
      assert time.time() < deadline, "no checkpoint appeared in time"
      time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
  finally:
    proc.wait()
  latest = checkpointing.Checkpointer(str(workdir / "checkpoints"), create=False).latest_step()
  assert latest is not None and latest < steps, "the kill must interrupt training"
  resumed = loop.train_and_evaluate(tiny_config, str(workdir))
  straight = loop.train_and_evaluate(tiny_config, str(tmp_path / "straight"))
  assert int(resumed.step) == int(straight.step) == steps
  assert_same_state(straight, resumed)
