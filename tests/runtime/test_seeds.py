"""Every key of a run comes from `runtime.seeds`: the state, the data and each step."""

import jax
import numpy as np

from mangacolor_jax.runtime import seeds
from mangacolor_jax.training import objective
from mangacolor_jax.training import state as state_lib


def test_the_state_key_and_the_step_hints_are_the_seeds(tiny_config):
  tiny_config.hints.mode = "sparse"
  nets = state_lib.create_networks(tiny_config)
  keys = seeds.run_keys(7)
  # Under jit only the key is computed: the model initialisation is dead code.
  state_rng = jax.jit(lambda rng: nets.create_state(rng).rng)(keys.init)
  train_rng = seeds.state_keys(keys.init)[2]
  np.testing.assert_array_equal(jax.random.key_data(train_rng),
                                jax.random.key_data(state_rng))
  # Step 3's hints, as the step draws them and as `data.inspect` shows them.
  rng = np.random.default_rng(0)
  target = rng.uniform(-1, 1, (2, 32, 48, 3)).astype(np.float32)
  lineart = rng.uniform(-1, 1, (2, 32, 48, 1)).astype(np.float32)
  step_keys = seeds.step_keys(state_rng, 3)
  from_step = objective.step_hints(nets, step_keys, target, lineart, None, None)
  expected = jax.random.split(jax.random.fold_in(train_rng, 3), 3)[0]
  np.testing.assert_array_equal(jax.random.key_data(step_keys.hints),
                                jax.random.key_data(expected))
  assert from_step.shape == (2, 32, 48, 4)


def test_seeds_differ_and_repeat():
  a, b = seeds.run_keys(1), seeds.run_keys(1)
  assert a.data_seed == b.data_seed != seeds.run_keys(2).data_seed
  steps = [jax.random.key_data(seeds.step_keys(a.init, s).dropout) for s in range(3)]
  assert len({tuple(np.asarray(k).ravel()) for k in steps}) == 3
