"""The debug tests' shared set-up: a healthy tiny config, its networks and initial state,
and the doctor's first batches."""

import jax
import pytest

from mangacolor_jax.debug import checklist
from mangacolor_jax.training import state as state_lib


@pytest.fixture(scope="session")
def env():
  """A healthy tiny `Networks`, its initial state, and the doctor's first batches (built
  once: the checks never change them)."""
  from configs import tiny  # pylint: disable=g-import-not-at-top
  config = tiny.get_config()
  nets = state_lib.create_networks(config)
  state = jax.jit(nets.create_state)(jax.random.key(0))
  train, evals = checklist.first_batches(config, seed=0)
  fixed = {k: train[0][k][:8] for k in ("lineart", "target")}
  return dict(config=config, nets=nets, state=state, train=train, evals=evals, fixed=fixed)
