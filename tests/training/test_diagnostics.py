"""TensorBoard diagnostics: every panel is written, gradients are the step's, warnings fire
on planted faults, receptive fields and image grids are right."""

import dataclasses
import functools
import glob
import os

from clu import metric_writers
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mangacolor_jax.input_pipeline import datasets
from mangacolor_jax.training.diagnostics import panels
from mangacolor_jax.training.diagnostics import stats
from mangacolor_jax.training.diagnostics import writer
from mangacolor_jax.training import loop
from mangacolor_jax.runtime import mesh as mesh_lib
from mangacolor_jax.training import state as state_lib
from mangacolor_jax.training import step as step_lib


def tiny():
  from configs import tiny as tiny_lib  # pylint: disable=g-import-not-at-top
  config = tiny_lib.get_config()
  config.diagnostics_every_steps = 1
  return config


def event_tags(directory):
  """{tag: plugin name} of the event files directly in `directory`."""
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
  tags = {}
  for path in glob.glob(os.path.join(directory, "events.out.tfevents.*")):
    acc = event_accumulator.EventAccumulator(path, size_guidance={"tensors": 0})
    acc.Reload()
    for tag in acc.Tags()["tensors"]:
      tags[tag] = acc.SummaryMetadata(tag).plugin_data.plugin_name
  return tags


@pytest.fixture(scope="module")
def env(tmp_path_factory):
  config = tiny()
  mesh = mesh_lib.create_mesh()
  setup = state_lib.create_networks(config)
  repl, data = mesh_lib.replicated(mesh), mesh_lib.data_sharded(mesh)
  create = jax.jit(setup.create_state, out_shardings=repl)
  batch = next(datasets.create_train_dataset(config, seed=0).as_numpy_iterator())
  probe = next(datasets.create_eval_dataset(config).as_numpy_iterator())
  probe = {k: probe[k] for k in ("lineart", "target")}
  workdir = str(tmp_path_factory.mktemp("diagnostics"))
  metric_writer = metric_writers.create_default_writer(workdir, asynchronous=False)
  diag = writer.Diagnostics(setup, mesh, metric_writer, mesh_lib.place_batch(probe, mesh),
                            workdir=workdir)
  step = jax.jit(functools.partial(step_lib.train_step, setup), in_shardings=(repl, data),
                 out_shardings=(repl, repl), donate_argnums=0)
  return dict(config=config, mesh=mesh, setup=setup, create=create, diag=diag, step=step,
              batch=mesh_lib.place_batch(batch, mesh), host_batch=batch, workdir=workdir)


def test_step_writes_every_panel(env):
  """snapshot -> donated step -> write, as the trainer does; then read TensorBoard back."""
  diag, setup = env["diag"], env["setup"]
  state = env["create"](jax.random.key(0))
  before = diag.snapshot(state)
  state, _ = env["step"](state, env["batch"])
  out = diag.write(1, before, state, env["batch"])  # `before` survived the donation

  g_layers = set(stats.layer_sizes(state.g_params))
  d_layers = set(stats.layer_sizes(state.d_params))
  assert {k.split("/", 2)[2] for k in out if k.startswith("grad_norm/gen/")} == g_layers
  assert {k.split("/", 2)[2] for k in out if k.startswith("update_ratio/disc/")} == d_layers
  assert all(out[f"grad_norm/gen/{layer}"] > 0 for layer in g_layers)
  # Update ratios of Adam's first step: about lr / rms(W) = 2e-4 / 0.02 for kernels.
  assert 1e-3 < out["update_ratio_median/gen"] < 2e-2
  dead = {k for k in out if k.startswith("dead_units/")}
  assert dead == {f"dead_units/gen/{n}" for n in ("enc1_act", "enc2_act", "dec0_act",
                                                   "dec1_act", "dec2_act")} | {
                     f"dead_units/disc/act{k}" for k in range(3)}
  assert not [w for w in out["warnings"] if "vanishing" in w or "exploding" in w]

  tags = event_tags(env["workdir"])
  for tag, plugin in (("weights/gen/enc0_conv/kernel", "histograms"),
                      ("weights/disc/conv0/bias", "histograms"),
                      ("preact/gen/dec1_act", "histograms"),
                      ("preact/gen/dec0_up", "histograms"),  # G's pre-tanh
                      ("preact/disc/logits", "histograms"),
                      ("inputs/lineart", "histograms"),
                      ("grad_norm/gen/dec0_up/conv", "scalars"),
                      ("update_ratio/gen/enc0_conv", "scalars"),
                      ("update_ratio_median/disc", "scalars"),
                      ("dead_units/gen/dec1_act", "scalars"),
                      ("filters/gen_enc0_conv_lineart", "images"),
                      ("filters/disc_conv0_rgb", "images"),
                      ("top_patches/gen/enc2_act", "images"),
                      ("top_patches/disc/act2", "images"),
                      ("inputs/train_batch", "images")):
    assert tags.get(tag) == plugin, f"{tag}: {tags.get(tag)}"
  # Train and validation curves: the same tags in two run directories.
  train = event_tags(os.path.join(env["workdir"], "train"))
  evals = event_tags(os.path.join(env["workdir"], "eval"))
  assert set(train) == set(evals) == {"l1", "d_loss", "d_real_acc", "d_fake_acc"}
  assert out["train/l1"] != out["eval/l1"]


def test_receptive_fields_match_the_architecture(env):
  """Back-propagated receptive fields equal the ones counted by hand (4x4 convs, padding
  1): G's enc2_act sees enc1's output (2 stride-2 convs), D's act2 conv2's (stride 1)."""
  diag = env["diag"]
  if diag.fields is None:
    diag.fields = diag._receptive_fields(env["create"](jax.random.key(0)))
  assert diag.fields["gen/enc2_act"] == (4, 4, -3, -3, 10, 10)
  assert diag.fields["disc/act2"] == (4, 4, -7, -7, 22, 22)


def test_planted_faults_are_warned(env):
  diag, batch = env["diag"], env["batch"]
  state = env["create"](jax.random.key(1))
  before = diag.snapshot(state)
  after, _ = env["step"](state, batch)
  scaled = lambda s, f: s.replace(
      g_params=jax.tree_util.tree_map(lambda x: x * f, before.g_params),
      d_params=jax.tree_util.tree_map(lambda x: x * f, before.d_params))

  # A step that moves every weight by 10%: far above the ~1e-3 rule.
  out = diag.write(2, before, scaled(after, 1.1), batch)
  assert any("median update ratio" in w and "too fast" in w and "gen" in w
             for w in out["warnings"]), out["warnings"]
  # A step that barely moves them.
  out = diag.write(3, before, scaled(after, 1.0 + 1e-6), batch)
  assert any("median update ratio" in w and "barely move" in w for w in out["warnings"])
  assert not any("too fast" in w for w in out["warnings"])

  # A real step from all-zero weights: vanishing gradients and every unit dead.
  zero = diag.snapshot(scaled(before, 0.0))  # a copy: the step donates it
  zero_before = diag.snapshot(zero)
  zero_after, _ = env["step"](zero, batch)
  out = diag.write(4, zero_before, zero_after, batch)
  assert any("vanishing gradient in gen/" in w for w in out["warnings"]), out["warnings"]
  assert any("units of gen/dec1_act are dead" in w for w in out["warnings"])

  # Exploding: the bounds come from config.diagnostics; the healthy step has none.
  out = diag.write(5, before, after, batch)
  assert not any("exploding" in w or "vanishing" in w for w in out["warnings"])
  healthy_max = diag.opts["grad_norm_max"]
  diag.opts["grad_norm_max"] = 1e-3
  try:
    out = diag.write(6, before, after, batch)
  finally:
    diag.opts["grad_norm_max"] = healthy_max
  assert any("exploding gradient in disc/" in w for w in out["warnings"])


def test_gradient_and_update_warnings_pure(tiny_config):
  opts = writer.options(tiny_config)
  order = ["enc0_conv", "mid", "out"]
  sizes = {"enc0_conv": 100, "mid": 100, "out": 100}
  healthy = {"enc0_conv": 0.5, "mid": 1.0, "out": 2.0}
  assert stats.gradient_warnings("gen", healthy, sizes, order, opts) == []
  shrinking = {"enc0_conv": 1e-5, "mid": 1.0, "out": 100.0}
  (warning,) = stats.gradient_warnings("gen", shrinking, sizes, order, opts)
  assert "shrink 1e+07x" in warning and "enc0_conv" in warning
  bad = {"enc0_conv": 1e-9, "mid": 1e4, "out": float("nan")}
  text = " ".join(stats.gradient_warnings("gen", bad, sizes, order, opts))
  assert "vanishing gradient in gen/enc0_conv" in text
  assert "exploding gradient in gen/mid" in text and "non-finite gradient in gen/out" in text
  assert stats.update_ratio_warning("gen", {"a": 1e-3, "b": 2e-3, "c": 1.0}, opts) is None
  assert "too fast" in stats.update_ratio_warning("gen", {"a": 0.1, "b": 0.2}, opts)
  assert "barely" in stats.update_ratio_warning("gen", {"a": 1e-6, "b": 1e-3,
                                                        "c": 1e-7}, opts)


def test_gradients_are_the_train_steps(env):
  """The gradients written are the ones the step applied. Recovered from Adam's moments,
  they match `loss_gradients` (D's at the state before the step; G's against the D that
  the G update saw, the one after the D update), and `loss_gradients` matches the
  parameter change of a plain SGD step at lr 1 (optax.scale(-1): W_before - W_after)."""
  batch = {k: jnp.asarray(v) for k, v in env["host_batch"].items()}
  setup = env["setup"]
  state = jax.jit(setup.create_state)(jax.random.key(2))
  new, _ = jax.jit(functools.partial(step_lib.train_step, setup))(state, batch)
  g_adam, d_adam = stats.step_gradients(setup, state, new, batch)
  grads_fn = jax.jit(functools.partial(stats.loss_gradients, setup))
  _, d_loss = grads_fn(state, batch)
  g_loss, _ = grads_fn(state.replace(d_params=new.d_params), batch)

  sgd = dataclasses.replace(state_lib.create_networks(env["config"]),
                            g_tx=optax.scale(-1.0), d_tx=optax.scale(-1.0))
  sgd_state = state.replace(g_opt_state=sgd.g_tx.init(state.g_params),
                            d_opt_state=sgd.d_tx.init(state.d_params))
  sgd_new, _ = jax.jit(functools.partial(step_lib.train_step, sgd))(sgd_state, batch)
  g_loss_sgd, _ = grads_fn(state.replace(d_params=sgd_new.d_params), batch)
  delta = lambda a, b: jax.tree_util.tree_map(lambda x, y: x - y, a, b)
  for name, got, want in (
      ("D from Adam", d_adam, d_loss), ("G from Adam", g_adam, g_loss),
      ("D from SGD", delta(state.d_params, sgd_new.d_params), d_loss),
      ("G from SGD", delta(state.g_params, sgd_new.g_params), g_loss_sgd)):
    for path, g in jax.tree_util.tree_leaves_with_path(want):
      scale = float(jnp.max(jnp.abs(g)))
      np.testing.assert_allclose(
          np.asarray(dict(jax.tree_util.tree_leaves_with_path(got))[path]), np.asarray(g),
          rtol=2e-3, atol=2e-3 * scale + 1e-8, err_msg=f"{name} {path}")


def test_dead_fraction_and_subsample():
  pre = jnp.stack([jnp.full((2, 3, 3), -1.0), jnp.zeros((2, 3, 3)),
                   jnp.full((2, 3, 3), -1.0).at[1, 2, 2].set(0.1), jnp.ones((2, 3, 3))],
                  axis=-1)
  assert float(stats.dead_fraction(pre)) == 0.5  # channels 0 and 1: never > 0
  x = jnp.arange(2 * 8 * 8 * 16, dtype=jnp.float32).reshape(2, 8, 8, 16)
  sample = np.asarray(writer._subsample(x, 64))
  # The stride moves from 32 to 33 (coprime to 16 channels): every channel is sampled.
  assert 56 <= len(sample) <= 64 and len(set(sample % 16)) == 16


def test_filter_and_patch_grids():
  kernel = np.random.default_rng(0).normal(size=(4, 4, 5, 8))
  grids = panels.filter_grids(kernel, "filters/gen")
  assert set(grids) == {"filters/gen_lineart", "filters/gen_rgb", "filters/gen_channel4"}
  assert all(g.dtype == np.uint8 and g.ndim == 3 and g.shape[-1] == 3
             for g in grids.values())
  # One bright pixel at (5, 6) of image 1: the patch of unit (1, 1) of a stride-4 layer
  # whose field starts 3 pixels before (4 * 1 - 3 = 1) covers rows/cols 1..10.
  source = -np.ones((2, 16, 16, 1), np.float32)
  source[1, 5, 6] = 1.0
  positions = np.array([[1 * 16 + 1 * 4 + 1]])  # image 1, unit (1, 1) of a 4x4 layer
  grid = panels.patch_grid(source, positions, (4, 4), (4, 4, -3, -3, 10, 10))
  factor = panels._TILE // 10
  pad = 2
  tile = grid[pad:pad + 10 * factor, pad:pad + 10 * factor, 0]
  ys, xs = np.nonzero(tile > 128)
  assert (ys.min() // factor, xs.min() // factor) == (5 - 1, 6 - 1)


def test_a_training_run_shows_every_panel(tmp_path):
  """The trainer itself writes the panels on its diagnostic steps (the default config turns
  them on every 500 steps; here every 2 steps of a 2-step run)."""
  from configs import default  # pylint: disable=g-import-not-at-top
  assert default.get_config().diagnostics_every_steps > 0, "panels off by default"
  config = tiny()
  config.diagnostics_every_steps = 2
  loop.train_and_evaluate(config, str(tmp_path))
  tags = event_tags(str(tmp_path))
  families = {tag.split("/")[0] for tag in tags}
  for family in ("weights", "preact", "dead_units", "grad_norm", "update_ratio",
                 "update_ratio_median", "filters", "top_patches", "inputs"):
    assert family in families, f"{family}/ missing; have {sorted(families)}"
  for tag in ("grad_norm/disc/conv0", "weights/gen/enc0_conv/kernel",
              "train_d_real_acc", "train_d_fake_acc", "eval_worst", "eval_samples"):
    assert tag in tags, f"{tag} missing"
  for run in ("train", "eval"):
    assert set(event_tags(str(tmp_path / run))) == {"l1", "d_loss", "d_real_acc",
                                                    "d_fake_acc"}
