"""Tests for the Orbax wrapper: round trips, retention, resolve, crash safety."""

import os

# Fake devices for the mesh test; only effective if jax is not imported yet.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import pathlib
import shutil
import subprocess
import sys
import textwrap

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mangacolor_jax.training import checkpointing

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


@flax.struct.dataclass
class _ToyState:
  step: jax.Array
  params: dict
  opt_state: optax.OptState
  rng: jax.Array


def _make_state(seed: int = 0):
  params = {
      "conv": {"kernel": jnp.arange(12, dtype=jnp.float32).reshape(3, 4) + seed},
      "norm": {"scale": jnp.full((4,), 0.5 + seed, dtype=jnp.bfloat16)},
  }
  return {
      "gen": _ToyState(
          step=jnp.asarray(seed, jnp.int32),
          params=params,
          opt_state=optax.adam(1e-3).init(params),
          rng=jax.random.key(seed),
      ),
      "batch_stats": {"mean": {"deep": jnp.arange(5, dtype=jnp.int32) * (seed + 1)}},
      "key": jax.random.fold_in(jax.random.key(0), seed),
  }


def _assert_trees_equal(got, want):
  assert jax.tree.structure(got) == jax.tree.structure(want)
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    assert g.dtype == w.dtype and g.shape == w.shape
    if jnp.issubdtype(w.dtype, jax.dtypes.prng_key):
      g, w = jax.random.key_data(g), jax.random.key_data(w)
    np.testing.assert_array_equal(np.asarray(g), np.asarray(w))


def _save_psnrs(ckpt, metrics_per_step, first_step=1):
  for step, metrics in enumerate(metrics_per_step, start=first_step):
    assert ckpt.save(step, _make_state(step), meta={"step": step}, metrics=metrics)
  ckpt.wait_until_finished()


def _on_disk_steps(directory):
  return sorted(int(p.name) for p in pathlib.Path(directory).iterdir() if p.name.isdigit())


def test_round_trip_is_exact_with_eval_shape_target(tmp_path):
  state = _make_state(3)
  meta = {"config": {"seed": 3, "data": {"image_size": [64, 48]}}, "git": "abc123"}
  with checkpointing.Checkpointer(tmp_path) as ckpt:
    assert ckpt.save(7, state, meta=meta, metrics={"eval_psnr": np.float32(21.5)})
    # Restoring in the same process must wait for the async save itself.
    restored, restored_meta = ckpt.restore("latest", jax.eval_shape(lambda: state))
    assert ckpt.metrics(7) == {"eval_psnr": 21.5}
  _assert_trees_equal(restored, state)
  assert isinstance(restored["gen"], _ToyState)
  assert restored["key"].dtype == state["key"].dtype  # still a typed key
  assert restored_meta == meta
  # A restored key is usable as a key, and gives the same stream.
  np.testing.assert_array_equal(
      jax.random.normal(restored["gen"].rng, (3,)), jax.random.normal(state["gen"].rng, (3,))
  )


def test_restore_meta_reads_no_arrays(tmp_path):
  meta = {"config": {"model": {"gen_features": 32}}, "seed": 0}
  with checkpointing.Checkpointer(tmp_path) as ckpt:
    ckpt.save(1, _make_state(), meta=meta)
  # With the array data gone, only a meta-only restore can still succeed.
  for path in (tmp_path / "1" / "state").rglob("*"):
    if path.is_file():
      path.write_bytes(b"")
  with checkpointing.Checkpointer(tmp_path, create=False) as ckpt:
    assert ckpt.restore_meta("best") == meta
    assert ckpt.restore_meta("1") == meta


def test_sharded_and_replicated_state_round_trip(tmp_path):
  mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  split = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  n = len(jax.devices())
  state = {
      "params": jax.device_put({"w": jnp.arange(6.0), "key": jax.random.key(5)}, replicated),
      "sharded": jax.device_put(jnp.arange(4.0 * n).reshape(2 * n, 2), split),
  }
  with checkpointing.Checkpointer(tmp_path) as ckpt:
    ckpt.save(1, state, meta={})
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state
    )
    restored, _ = ckpt.restore(1, abstract)
    _assert_trees_equal(restored, state)
    for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(state)):
      assert got.sharding == want.sharding
    # No sharding given (another topology, e.g. colorize on one device).
    restored, _ = ckpt.restore(1, jax.eval_shape(lambda: state))
    _assert_trees_equal(restored, state)
    assert all(len(x.sharding.device_set) == 1 for x in jax.tree.leaves(restored))


def test_keeps_best_and_latest(tmp_path):
  with checkpointing.Checkpointer(tmp_path, keep_best=1, keep_latest=1) as ckpt:
    _save_psnrs(ckpt, [{"eval_psnr": v} for v in (10, 30, 20, 15, 12)])
    assert ckpt.all_steps() == [2, 5]
    assert ckpt.best_step() == 2
    assert ckpt.latest_step() == 5
    assert ckpt.resolve("best") == 2 and ckpt.resolve("latest") == 5
    assert ckpt.metrics(2) == {"eval_psnr": 30.0}
  assert _on_disk_steps(tmp_path) == [2, 5]


def test_keeps_best_and_latest_in_min_mode(tmp_path):
  with checkpointing.Checkpointer(
      tmp_path, keep_best=2, keep_latest=1, best_metric="eval_l1", best_mode="min"
  ) as ckpt:
    _save_psnrs(ckpt, [{"eval_l1": v} for v in (0.5, 0.1, 0.3, 0.2, 0.4)])
    assert ckpt.all_steps() == [2, 4, 5]
    assert ckpt.best_step() == 2
  assert _on_disk_steps(tmp_path) == [2, 4, 5]


def test_checkpoints_without_the_metric_do_not_break_best(tmp_path):
  with checkpointing.Checkpointer(tmp_path, keep_best=1, keep_latest=1) as ckpt:
    # 3: periodic save, no eval; 4: other metrics only; 5: NaN (diverged).
    _save_psnrs(ckpt, [
        {"eval_psnr": 10.0}, {"eval_psnr": 30.0}, None, {"train_g_loss": 1.0},
        {"eval_psnr": float("nan")},
    ])
    assert ckpt.best_step() == 2
    assert ckpt.all_steps() == [2, 5]
    # A final save without an eval is kept as latest, best is unchanged.
    assert ckpt.save(6, _make_state(6), meta={})
    ckpt.wait_until_finished()
    assert ckpt.all_steps() == [2, 6]
    assert ckpt.best_step() == 2 and ckpt.latest_step() == 6
    assert ckpt.metrics(6) is None


def test_best_falls_back_to_latest_without_metrics(tmp_path):
  with checkpointing.Checkpointer(tmp_path, keep_best=1, keep_latest=2) as ckpt:
    assert ckpt.best_step() is None
    _save_psnrs(ckpt, [None, None])
    assert ckpt.best_step() == 2  # Orbax's own best_step() says None here.
    # Metrics without `eval_psnr` (step 3) must not win over the latest.
    _save_psnrs(ckpt, [{"train_g_loss": 0.3}, None], first_step=3)
    assert ckpt.all_steps() == [3, 4]
    assert ckpt.best_step() == 4
    assert ckpt.resolve("best") == 4


def test_reopened_checkpointer_sees_steps_and_keeps_best(tmp_path):
  with checkpointing.Checkpointer(tmp_path) as ckpt:
    _save_psnrs(ckpt, [{"eval_psnr": v} for v in (10, 30, 20)])
  # A resumed run: new Checkpointer, metrics of the old steps read from disk.
  with checkpointing.Checkpointer(tmp_path) as ckpt:
    assert ckpt.all_steps() == [2, 3]
    assert ckpt.best_step() == 2 and ckpt.latest_step() == 3
    _save_psnrs(ckpt, [{"eval_psnr": v} for v in (15, 12)], first_step=4)
    assert ckpt.all_steps() == [2, 5]
  with checkpointing.Checkpointer(tmp_path, create=False) as ckpt:
    assert ckpt.all_steps() == [2, 5] and ckpt.best_step() == 2
    restored, meta = ckpt.restore("best", jax.eval_shape(_make_state))
  _assert_trees_equal(restored, _make_state(2))
  assert meta == {"step": 2}


def test_every_save_of_a_new_step_writes(tmp_path):
  with checkpointing.Checkpointer(tmp_path, keep_latest=None, keep_best=None) as ckpt:
    for step in (0, 7, 13, 500):  # no interval policy in the way
      assert ckpt.save(step, _make_state(), meta={})
    # Saving the step a run resumed from again is a no-op, not an error.
    assert not ckpt.save(500, _make_state(1), meta={})
    with pytest.raises(ValueError, match="latest checkpoint is step 500"):
      ckpt.save(100, _make_state(), meta={})
    assert ckpt.save(100, _make_state(), meta={}, force=True)
    ckpt.wait_until_finished()
    assert ckpt.all_steps() == [0, 7, 13, 100, 500]
  assert _on_disk_steps(tmp_path) == [0, 7, 13, 100, 500]


def test_resolve_errors_name_directory_and_steps(tmp_path):
  empty = tmp_path / "empty"
  with checkpointing.Checkpointer(empty) as ckpt:
    for which in ("latest", "best", None, 3):
      with pytest.raises(ValueError, match=f"{empty}.*none"):
        ckpt.resolve(which)
  missing = tmp_path / "never_created"
  with checkpointing.Checkpointer(missing, create=False) as ckpt:
    with pytest.raises(ValueError, match=str(missing)):
      ckpt.restore_meta("latest")
  assert not missing.exists()

  full = tmp_path / "full"
  with checkpointing.Checkpointer(full, keep_latest=None) as ckpt:
    _save_psnrs(ckpt, [None, None])
    assert ckpt.resolve(2) == 2 and ckpt.resolve("1") == 1 and ckpt.resolve(np.int64(2)) == 2
    with pytest.raises(ValueError, match=rf"{full}.*\[1, 2\]"):
      ckpt.resolve(9)
    with pytest.raises(ValueError, match=rf"{full}.*\[1, 2\]"):
      ckpt.restore("9", jax.eval_shape(_make_state))
    with pytest.raises(ValueError, match="'best', 'latest' or a step"):
      ckpt.resolve("newest")


def test_leftover_temp_dir_is_ignored_and_replaced(tmp_path):
  with checkpointing.Checkpointer(tmp_path) as ckpt:
    _save_psnrs(ckpt, [{"eval_psnr": 10.0}, {"eval_psnr": 20.0}])
  # What a save killed mid-write leaves on a local disk (seen in the kill test
  # below): `<step>.orbax-checkpoint-tmp/` holding `_CHECKPOINT_METADATA` and
  # per-item `<item>.orbax-checkpoint-tmp/` dirs. Older Orbax releases appended
  # `-<timestamp>` to the step's temp name.
  suffix = ".orbax-checkpoint-tmp"
  for name in (f"3{suffix}", f"4{suffix}-1700000000"):
    partial = tmp_path / name
    (partial / f"state{suffix}").mkdir(parents=True)
    (partial / f"meta{suffix}").mkdir()
    (partial / f"state{suffix}" / "_METADATA").write_text("{truncated")
    (partial / "_CHECKPOINT_METADATA").write_text(
        (tmp_path / "2" / "_CHECKPOINT_METADATA").read_text()
    )
  with checkpointing.Checkpointer(tmp_path) as ckpt:
    assert ckpt.all_steps() == [2] and ckpt.latest_step() == 2
    restored, meta = ckpt.restore("latest", jax.eval_shape(_make_state))
    _assert_trees_equal(restored, _make_state(2))
    assert meta == {"step": 2}
    with pytest.raises(ValueError, match=r"available steps \[2\]"):
      ckpt.resolve(3)
    # The resumed run saves step 3 again: the leftover is replaced.
    assert ckpt.save(3, _make_state(3), meta={"step": 3})
    ckpt.wait_until_finished()
    restored, _ = ckpt.restore(3, jax.eval_shape(_make_state))
    _assert_trees_equal(restored, _make_state(3))
  assert not (tmp_path / f"3{suffix}").exists()
  assert _on_disk_steps(tmp_path) == [2, 3]


_KILLED_SAVE = textwrap.dedent("""
    import os, signal, sys, time
    import jax.numpy as jnp
    from mangacolor_jax.training import checkpointing
    ckpt = checkpointing.Checkpointer(sys.argv[1], keep_best=0, keep_latest=1)
    ckpt.save(1, {"w": jnp.full((1 << 23,), 1.0)}, meta={"step": 1})
    ckpt.wait_until_finished()
    # Returns once the arrays are copied; the write goes on in the background.
    ckpt.save(2, {"w": jnp.full((1 << 23,), 2.0)}, meta={"step": 2})
    # Kill once the background write has begun (the temp dir exists).
    tmp = os.path.join(sys.argv[1], "2.orbax-checkpoint-tmp")
    for _ in range(2000):
      if os.path.exists(tmp):
        break
      time.sleep(0.001)
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_kill_during_async_save_keeps_previous_checkpoint(tmp_path):
  env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), JAX_PLATFORMS="cpu")
  proc = subprocess.run(
      [sys.executable, "-c", _KILLED_SAVE, str(tmp_path)],
      env=env, cwd=REPO_ROOT, capture_output=True, timeout=120,
  )
  assert proc.returncode == -9, proc.stderr.decode()[-2000:]
  with checkpointing.Checkpointer(tmp_path) as ckpt:
    steps = ckpt.all_steps()
    latest = ckpt.latest_step()
    assert latest in (1, 2) and set(steps) <= {1, 2}
    if 2 not in steps:  # the usual case: killed before the commit rename
      assert not (tmp_path / "2").exists()
    abstract = {"w": jax.ShapeDtypeStruct((1 << 23,), jnp.float32)}
    restored, meta = ckpt.restore("latest", abstract)
  assert meta == {"step": latest}
  np.testing.assert_array_equal(np.asarray(restored["w"]), float(latest))


def test_half_deleted_old_step_is_never_chosen_and_is_cleaned_up(tmp_path):
  with checkpointing.Checkpointer(tmp_path, keep_best=None, keep_latest=None) as ckpt:
    _save_psnrs(ckpt, [{"eval_psnr": v} for v in (10, 30, 40)])
  # Retention deletes old steps in place, file by file; a kill in the middle
  # leaves a partial step 2 (it was being deleted: no longer best or latest).
  (tmp_path / "2" / "_CHECKPOINT_METADATA").unlink()
  for path in (tmp_path / "2").glob("*/"):
    shutil.rmtree(path)
  with checkpointing.Checkpointer(tmp_path) as ckpt:
    assert ckpt.all_steps() == [1, 2, 3]
    assert ckpt.best_step() == 3 and ckpt.latest_step() == 3
    assert ckpt.save(4, _make_state(4), meta={}, metrics={"eval_psnr": 5.0})
    ckpt.wait_until_finished()
    assert ckpt.all_steps() == [3, 4]
  assert _on_disk_steps(tmp_path) == [3, 4]


def test_rejects_bad_options(tmp_path):
  with pytest.raises(ValueError, match="best_mode"):
    checkpointing.Checkpointer(tmp_path, best_mode="highest")
  with pytest.raises(ValueError, match="keep_latest"):
    checkpointing.Checkpointer(tmp_path, keep_latest=0)


def test_relative_directory_saves_and_restores(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  state = {"w": jnp.arange(3.0)}
  with checkpointing.Checkpointer("run/checkpoints") as ckpt:
    ckpt.save(1, state, meta={"a": 1})
    ckpt.wait_until_finished()
  with checkpointing.Checkpointer("run/checkpoints", create=False) as ckpt:
    restored, meta = ckpt.restore("latest", jax.eval_shape(lambda: state))
  np.testing.assert_array_equal(restored["w"], state["w"])
  assert meta == {"a": 1}
