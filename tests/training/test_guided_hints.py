"""hints.guided_share: a training step paints where G's own colouring is wrong."""

import jax
import numpy as np

from mangacolor_jax.nn import hints as hints_lib
from mangacolor_jax.runtime import seeds
from mangacolor_jax.training import objective
from mangacolor_jax.training import state as state_lib
from mangacolor_jax.training import step as step_lib


def test_a_step_paints_where_its_generator_colours_wrong_and_trains(tiny_config):
  """The step's hints are `training_hints` given G's colouring of the batch without hints
  (G as in training: the state's weights, batch statistics); without guided_share they are
  the strokes it always drew. A step with them runs and changes G."""
  tiny_config.hints.mode = "strokes"
  tiny_config.hints.drop_prob = 0.0
  tiny_config.hints.guided_share = 1.0
  nets = state_lib.create_networks(tiny_config)
  state = jax.jit(nets.create_state)(jax.random.key(0))
  rng = np.random.default_rng(0)
  target = rng.uniform(-1, 1, (4, 32, 48, 3)).astype(np.float32)
  lineart = np.ones((4, 32, 48, 1), np.float32)
  keys = seeds.step_keys(state.rng, 0)
  guided = objective.step_hints(nets, keys, target, lineart, state.g_params,
                                state.g_batch_stats)
  plain, _ = nets.generate_for_training(
      state.g_params, state.g_batch_stats,
      nets.generator_input(lineart, hints_lib.no_hints(lineart)), keys.dropout)
  expected = hints_lib.training_hints(keys.hints, tiny_config.hints, target, lineart, plain)
  np.testing.assert_allclose(np.asarray(guided), np.asarray(expected), atol=1e-6)
  uniform = hints_lib.training_hints(keys.hints, tiny_config.hints, target, lineart)
  assert not np.array_equal(np.asarray(guided[..., 3]), np.asarray(uniform[..., 3]))
  new_state, metrics = jax.jit(lambda s, b: step_lib.train_step(nets, s, b))(
      state, {"lineart": lineart, "target": target})
  assert np.isfinite(float(metrics["g_loss"]))
  moved = jax.tree_util.tree_map(lambda a, b: float(np.abs(a - b).max()),
                                 new_state.g_params, state.g_params)
  assert max(jax.tree_util.tree_leaves(moved)) > 0
