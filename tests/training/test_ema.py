"""The generator's weight average (config.model.ema_decay): kept, saved, used for inference."""

import dataclasses

import jax
import numpy as np

from mangacolor_jax.infer import colorizer as colorizer_lib
from mangacolor_jax.input_pipeline import datasets
from mangacolor_jax.runtime import mesh as mesh_lib
from mangacolor_jax.runtime import seeds
from mangacolor_jax.training import checkpointing
from mangacolor_jax.training import loop
from mangacolor_jax.training import objective
from mangacolor_jax.training import state as state_lib
from mangacolor_jax.training import step as step_lib


def _leaves(tree):
  return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def test_the_average_follows_the_weights_and_is_what_inference_uses(tiny_config):
  tiny_config.model.ema_decay = 0.5
  nets = state_lib.create_networks(tiny_config)
  mesh = mesh_lib.create_mesh()
  state = jax.jit(nets.create_state)(jax.random.key(0))
  assert all(np.array_equal(a, b) for a, b in zip(_leaves(state.g_ema),
                                                  _leaves(state.g_params)))
  batch = {"lineart": np.zeros((8, 32, 48, 1), np.float32) + 0.5,
           "target": np.random.default_rng(0).uniform(-1, 1, (8, 32, 48, 3)).astype(
               np.float32)}
  step = step_lib.compile_train_step(nets, mesh)
  placed = mesh_lib.place_batch(batch, mesh)
  before = jax.device_get(state)
  state, _ = step(mesh_lib.replicate(state, mesh), placed)
  state, _ = step(state, placed)
  after = jax.device_get(state)
  # Step 0 averages with min(0.5, 1/10), step 1 with min(0.5, 2/11): by hand.
  one = jax.device_get(jax.jit(step_lib.train_step, static_argnums=0)(
      nets, jax.device_get(before), batch)[0])
  expected = [0.1 * e + 0.9 * p for e, p in zip(_leaves(before.g_ema), _leaves(one.g_params))]
  expected = [2 / 11 * e + 9 / 11 * p for e, p in zip(expected, _leaves(after.g_params))]
  for got, want in zip(_leaves(after.g_ema), expected):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  assert not all(np.array_equal(a, b) for a, b in zip(_leaves(after.g_ema),
                                                      _leaves(after.g_params)))
  lineart = batch["lineart"]
  averaged = nets.generate(after, lineart, np.zeros((8, 32, 48, 4), np.float32))
  raw = nets.generate(after.replace(g_ema=None), lineart, None)
  assert not np.allclose(averaged, raw)
  weights_of_ema = nets.generate(after.replace(g_params=after.g_ema, g_ema=None), lineart,
                                 None)
  np.testing.assert_array_equal(np.asarray(averaged), np.asarray(weights_of_ema))


def test_the_average_is_checkpointed_and_colorize_uses_it(tiny_config, tmp_path):
  tiny_config.model.ema_decay = 0.9
  state = loop.train_and_evaluate(tiny_config, str(tmp_path))
  model = colorizer_lib.Colorizer(str(tmp_path), "latest")
  for a, b in zip(_leaves(model.state.g_ema), _leaves(jax.device_get(state.g_ema))):
    np.testing.assert_array_equal(a, b)
  lineart = np.random.default_rng(1).uniform(-1, 1, (1, 32, 48, 1)).astype(np.float32)
  expected = model.nets.generate(model.state, lineart, None)
  np.testing.assert_allclose(model.predict_batch(lineart), np.clip(expected, -1, 1),
                             atol=1e-6)


def test_checkpoints_from_before_the_average_still_load(tiny_config, tmp_path):
  nets = state_lib.create_networks(tiny_config)
  state = jax.jit(nets.create_state)(jax.random.key(0))
  old = {f.name: getattr(state, f.name) for f in dataclasses.fields(state)
         if f.name != "g_ema"}  # what a checkpoint of an older version holds
  ckpt = checkpointing.Checkpointer(str(tmp_path))
  ckpt.save(1, old, meta={"config": tiny_config.to_dict()})
  ckpt.wait_until_finished()
  restored, _ = ckpt.restore("latest", jax.eval_shape(nets.create_state, jax.random.key(0)))
  ckpt.close()
  assert restored.g_ema is None
  for a, b in zip(_leaves(restored.g_params), _leaves(state.g_params)):
    np.testing.assert_array_equal(a, b)


def test_the_average_is_evaluated_with_batch_norm_statistics_measured_under_it(
    tiny_config, tmp_path):
  """The saved statistics are those of the averaged weights (not of the last iterate's
  batches): on the training batch they were measured on, G in evaluation mode, as colorize
  runs it, gives what G in training mode (the batch's own statistics) gives."""
  tiny_config.model.ema_decay = 0.9
  tiny_config.model.ema_bn_batches = 1
  tiny_config.hints.mode = "strokes"
  tiny_config.num_train_steps = 4
  loop.train_and_evaluate(tiny_config, str(tmp_path))
  model = colorizer_lib.Colorizer(str(tmp_path), "latest")
  nets, state = model.nets, model.state
  # The run's first training batch, with the hints the measurement drew for it.
  batch = next(datasets.create_train_dataset(
      tiny_config, seed=seeds.run_keys(tiny_config.seed).data_seed).as_numpy_iterator())
  keys = seeds.step_keys(jax.random.key(seeds.AVERAGE_STATS_SEED), 0)
  zeros = jax.tree_util.tree_map(np.zeros_like, state.g_batch_stats)
  hints = objective.step_hints(nets, keys, batch["target"], batch["lineart"], state.g_ema,
                               zeros)
  evaluated = nets.generate(state, batch["lineart"], hints)
  in_training, _ = nets.generate_for_training(
      state.g_ema, state.g_batch_stats, nets.generator_input(batch["lineart"], hints),
      keys.dropout)
  np.testing.assert_allclose(np.asarray(evaluated), np.asarray(in_training), atol=2e-4)
