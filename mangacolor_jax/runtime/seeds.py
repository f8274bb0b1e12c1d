"""Every key of a run, derived in one place from `config.seed`.

  root = key(seed)
  init, data = split(root)             # the initial state; the input pipeline's seed
  gen, disc, train = split(init, 3)    # G's and D's initial weights; the state's own key
  hints, dropout, penalty = split(fold_in(train, step), 3)   # step `step`'s randomness

The training loop, the tuner, the doctor and `data.inspect` all derive their keys here,
so the doctor checks the very first batches and weights of a run and `inspect` shows the
very batches (and hints) of its steps. Evaluation hints come from a fixed key that does
not depend on the seed, so "with hints" metrics compare across runs.
"""

import dataclasses
import secrets

import jax

# Key of the hints given at evaluation: fixed, so "with hints" metrics compare across runs.
EVAL_HINTS_SEED = 1234
# The hints of the batches G's BatchNorm statistics are measured on (`step.average_batch_stats`).
AVERAGE_STATS_SEED = 4321


def resolve_seed(config, restored_meta: dict | None = None) -> int:
  """The run's seed: the config's, the resumed run's, or a fresh one for seed == -1."""
  if config.seed >= 0:
    return int(config.seed)
  if restored_meta is not None and "seed" in restored_meta:
    return int(restored_meta["seed"])
  return secrets.randbelow(2**31 - 1)


@dataclasses.dataclass(frozen=True)
class RunKeys:
  """The keys a run starts from."""
  init: jax.Array  # of the initial state (`state_keys`)
  data_seed: int  # of the input pipeline: its order, augmentations and line art


def run_keys(seed: int) -> RunKeys:
  init_rng, data_rng = jax.random.split(jax.random.key(seed))
  return RunKeys(init_rng, int(jax.random.randint(data_rng, (), 0, 2**31 - 1)))


def state_keys(init_rng: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(G's initial weights, D's initial weights, the state's training key)."""
  g_rng, d_rng, train_rng = jax.random.split(init_rng, 3)
  return g_rng, d_rng, train_rng


@dataclasses.dataclass(frozen=True)
class StepKeys:
  """The randomness of one training step."""
  hints: jax.Array
  dropout: jax.Array
  penalty: jax.Array  # the gradient penalty's perturbation (DRAGAN)


def step_keys(train_rng: jax.Array, step) -> StepKeys:
  """The keys of step `step` (0-based: the state's step before the update)."""
  hints, dropout, penalty = jax.random.split(jax.random.fold_in(train_rng, step), 3)
  return StepKeys(hints, dropout, penalty)


def eval_hints_key(batch_index: int) -> jax.Array:
  """The key of the hints given to evaluation batch `batch_index`."""
  return jax.random.fold_in(jax.random.key(EVAL_HINTS_SEED), batch_index)
