"""Test set-up: 8 fake CPU devices (set before JAX is imported) and shared fixtures."""

import os
import pathlib
import sys

# Every test runs data-parallel over 8 devices, so the sharded path is what gets tested.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tempfile  # pylint: disable=g-import-not-at-top

import jax  # pylint: disable=g-import-not-at-top
import pytest  # pylint: disable=g-import-not-at-top

# Many tests compile the same tiny train step: a session-wide persistent compilation cache
# turns each repeat into a cache hit (about 5x faster on 2 cores). Subprocesses started by
# tests inherit it through the environment.
_CACHE = tempfile.mkdtemp(prefix="mangacolor_jax_test_cache_")
os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
  sys.path.insert(0, str(REPO))  # for `from configs import ...`

SHARED_FACES = REPO.parent / "shared" / "data" / "anime_faces"


@pytest.fixture
def tiny_config():
  from configs import tiny  # pylint: disable=g-import-not-at-top
  return tiny.get_config()


@pytest.fixture(scope="module")
def hint_workdir(tmp_path_factory):
  """A tiny model trained 2 steps with sparse hints (the synthetic source), once per
  test module."""
  from configs import tiny  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.training import loop  # pylint: disable=g-import-not-at-top
  config = tiny.get_config()
  config.hints.mode = "sparse"
  workdir = str(tmp_path_factory.mktemp("hint_run"))
  loop.train_and_evaluate(config, workdir)
  return workdir


@pytest.fixture
def anime_faces():
  """The shared anime-faces folder, or a skip where this checkout has none."""
  if not (SHARED_FACES / "faces64").is_dir():
    pytest.skip(f"shared data folder {SHARED_FACES} is absent (only developer checkouts "
                "and CI have it)")
  return SHARED_FACES


@pytest.fixture
def ci_faces(anime_faces, tmp_path):
  """A folder of 64 real faces (links into the shared folder; nothing is copied)."""
  folder = tmp_path / "faces"
  folder.mkdir()
  for name in (anime_faces / "ci_subset.txt").read_text().split():
    (folder / pathlib.Path(name).name).symlink_to(anime_faces / name)
  return folder


def state_leaves(state):
  """Every leaf of a training state with its path: both networks' parameters and batch
  statistics, both optimiser states, the weight average, the step and the key (its data)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  state = jax.tree_util.tree_map(
      lambda x: jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)
      else x, state)
  return [(jax.tree_util.keystr(p), np.asarray(x))
          for p, x in jax.tree_util.tree_leaves_with_path(jax.device_get(state))]


@pytest.fixture
def assert_same_state():
  """`check(a, b, atol=0)`: two training states hold the same leaves, bit for bit (or
  within `atol`), every leaf of the state compared, not just the parameters."""
  import numpy as np  # pylint: disable=g-import-not-at-top

  def check(a, b, atol: float = 0.0):
    leaves_a, leaves_b = state_leaves(a), state_leaves(b)
    assert [p for p, _ in leaves_a] == [p for p, _ in leaves_b]
    assert len(leaves_a) > 10  # the whole state, not a part of it
    for (path, x), (_, y) in zip(leaves_a, leaves_b):
      if atol:
        np.testing.assert_allclose(x.astype(np.float64), y.astype(np.float64), atol=atol,
                                   rtol=0, err_msg=path)
      else:
        np.testing.assert_array_equal(x, y, err_msg=path)
  return check
