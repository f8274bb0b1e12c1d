"""A small Orbax wrapper: save, keep, list and restore the GAN training state.

One `Checkpointer` manages one directory (normally `<workdir>/checkpoints`). Each
checkpoint step holds two items, written together by `ocp.CheckpointManager`:

* `state`: any pytree of `jax.Array`s (the GAN state: both networks, optimiser
  states, batch stats, step and typed PRNG keys), sharded or replicated;
* `meta`: a JSON dict (config, git commit, seed, ...) that colorize/evaluate read
  first, without touching arrays, to rebuild the model before restoring `state`;

plus Orbax's own `metrics` item when metrics are given.

Retention. Orbax preservation policies decide what survives each save:
`AnyPreservationPolicy([LatestN(keep_latest), BestN(keep_best)])`. A best-k policy
alone deletes the newest checkpoint whenever its metric is not among the best,
which loses the run's progress; `LatestN` keeps the resume point alive.

Atomicity. On a local filesystem Orbax writes a step into
`<directory>/<step>.orbax-checkpoint-tmp` and renames it to `<directory>/<step>`
only once every item is on disk (object stores use a `commit_success.txt` marker
instead). Listing only matches finalized `<step>` names, and old steps are deleted
only after the new one is committed. So a `kill -9` during a save, even an
asynchronous one, leaves the previous checkpoints intact: the half-written step
stays as an ignored `*.orbax-checkpoint-tmp` directory, a resumed run starts from
the previous checkpoint, and saving that step again replaces the leftover.

Multi-host: call every method on every process with the same arguments; Orbax
writes `meta` and `metrics` from the primary process only and syncs the rest.
"""

import dataclasses
import math
import numbers
import os
from collections.abc import Mapping
from typing import Any

from absl import logging
import jax
import orbax.checkpoint as ocp

_STATE = "state"
_META = "meta"


def _to_abstract(tree: Any) -> Any:
  """Turns a pytree of arrays / ShapeDtypeStructs into restore targets.

  Leaves without a sharding (what `jax.eval_shape` of a plain function gives)
  are placed on the first local device. Left as `None`, Orbax would reuse the
  sharding recorded at save time, which names the training job's devices and
  which Orbax itself warns is unsafe on another topology (e.g. colorize on one
  GPU or the CPU after training on eight).
  """
  default = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])

  def leaf(x):
    sharding = getattr(x, "sharding", None) or default
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)

  return jax.tree.map(leaf, tree)


def _check_retention(
    keep_best: int | None, keep_latest: int | None, best_mode: str
) -> None:
  """Raises ValueError on an unknown `best_mode` or a bad keep count."""
  if best_mode not in ("max", "min"):
    raise ValueError(f"best_mode must be 'max' or 'min', got {best_mode!r}.")
  if keep_latest is not None and keep_latest < 1:
    # With 0 the checkpoint just written could be deleted at once, and a
    # resumed run would restart from an older step.
    raise ValueError(f"keep_latest must be >= 1 or None, got {keep_latest}.")
  if keep_best is not None and keep_best < 0:
    raise ValueError(f"keep_best must be >= 0 or None, got {keep_best}.")


class Checkpointer:
  """Saves and restores (state, meta) checkpoints with best + latest retention.

  Saving is driven by the caller: every `save` of a new, higher step writes a
  checkpoint (no interval policy in between). Saves are asynchronous; call
  `wait_until_finished()` (or `close()`) before the process exits.

  The list of steps is read from disk when the Checkpointer is created, so a
  resumed run opens a new Checkpointer on the same directory and sees the steps,
  and metrics, of earlier runs. Only one process group may write a directory
  at a time (an Orbax restriction).
  """

  def __init__(
      self,
      directory: str | os.PathLike,
      *,
      keep_best: int | None = 1,
      keep_latest: int | None = 1,
      best_metric: str = "eval_psnr",
      best_mode: str = "max",
      create: bool = True,
  ):
    """Opens (and by default creates) a checkpoint directory.

    Args:
      directory: Directory holding one sub-directory per step.
      keep_best: How many of the best checkpoints by `best_metric` to keep;
        `None` keeps all, 0 keeps none for being best.
      keep_latest: How many of the most recent checkpoints to keep (>= 1, so
        the newest checkpoint is never deleted); `None` keeps all.
      best_metric: Metric name ranking checkpoints, e.g. `"eval_psnr"`.
      best_mode: `"max"` if a higher `best_metric` is better, else `"min"`.
      create: Create `directory` if missing. Read-only users (colorize,
        evaluate) pass False.

    Raises:
      ValueError: On an unknown `best_mode` or a bad keep count.
    """
    _check_retention(keep_best, keep_latest, best_mode)
    # Orbax's storage layer refuses relative paths (and fails only in the async
    # writer, long after save() returned).
    self._directory = os.path.abspath(os.fspath(directory))
    self._best_metric = best_metric
    self._best_mode = best_mode
    self._manager = ocp.CheckpointManager(
        self._directory,
        options=self._manager_options(keep_best, keep_latest, create),
        item_names=(_STATE, _META),
    )
    # Orbax re-reads metrics from disk per call, and an in-flight async save
    # has not written them yet; a cache keeps best_step() non-blocking.
    self._metrics = {
        step: self._manager.metrics(step) for step in self._manager.all_steps()
    }

  def _preservation_policy(
      self, keep_best: int | None, keep_latest: int | None
  ) -> ocp.checkpoint_managers.AnyPreservationPolicy:
    """Keeps the latest `keep_latest` steps and the best `keep_best` by metric."""
    return ocp.checkpoint_managers.AnyPreservationPolicy([
        ocp.checkpoint_managers.LatestN(n=keep_latest),
        ocp.checkpoint_managers.BestN(
            get_metric_fn=self._rank_value,
            # BestN sorts ascending (descending if reverse) and keeps the
            # last n.
            reverse=(self._best_mode == "min"),
            n=keep_best,
            # Steps saved without an eval (e.g. periodic saves) are LatestN's
            # business; the default True would keep every one of them forever.
            keep_checkpoints_without_metrics=False,
        ),
    ])

  def _manager_options(
      self, keep_best: int | None, keep_latest: int | None, create: bool
  ) -> ocp.CheckpointManagerOptions:
    """The Orbax manager's options: retention, metrics, async saves."""
    return ocp.CheckpointManagerOptions(
        preservation_policy=self._preservation_policy(keep_best, keep_latest),
        # Orbax writes per-step metrics only when `best_fn` is set; they must
        # be on disk so a reopened Checkpointer still knows which step is best.
        best_fn=self._rank_value,
        best_mode=self._best_mode,
        # The caller decides when to save; `save` passes force=True, and this
        # keeps `should_save` truthful for any caller that asks Orbax directly.
        save_decision_policy=ocp.checkpoint_managers.FixedIntervalPolicy(1),
        create=create,
        # Not cleaned up at open: an evaluate job opening the directory while
        # the trainer saves would delete the trainer's in-flight temp dir.
        # Leftovers are ignored and replaced when their step is saved again.
        cleanup_tmp_directories=False,
        enable_async_checkpointing=True,
    )

  @property
  def directory(self) -> str:
    """The managed directory."""
    return self._directory

  def _metric_value(self, metrics: Mapping[str, Any] | None) -> float | None:
    """Returns `best_metric` from `metrics`, or None if absent or NaN."""
    value = (metrics or {}).get(self._best_metric)
    if value is None or math.isnan(float(value)):
      return None
    return float(value)

  def _rank_value(self, metrics: Mapping[str, Any]) -> float:
    """Sort key for BestN: a missing or NaN metric ranks below every real one."""
    value = self._metric_value(metrics)
    if value is None:
      return -math.inf if self._best_mode == "max" else math.inf
    return value

  def save(
      self,
      step: int,
      state: Any,
      *,
      meta: Mapping[str, Any],
      metrics: Mapping[str, float] | None = None,
      force: bool = False,
  ) -> bool:
    """Saves `state` and `meta` as checkpoint `step` (asynchronously).

    The arrays are copied before this returns, so the caller may donate or
    overwrite `state` right away. Retention runs once the save is committed.

    Args:
      step: Training step; must be higher than every saved step unless
        `force`.
      state: Pytree of `jax.Array`s, typed PRNG keys included.
      meta: JSON-serialisable dict (tuples come back as lists).
      metrics: Scalars for this step, e.g. `{"eval_psnr": 21.3}`; may lack
        `best_metric` or be None (no eval ran), which leaves the step out of
        the best ranking.
      force: Also write when `step` is older than the latest checkpoint (e.g.
        a deliberate branch from an earlier step). Such a step may be pruned at
        once by the retention policy.

    Returns:
      True if a checkpoint was written; False if `step` already exists (e.g. a
      resumed run saving the step it restored), which is never overwritten.

    Raises:
      ValueError: If `step` is older than the latest checkpoint and not
        `force`, which usually means a run was resumed from the wrong step.
    """
    step = int(step)
    if not self._is_new_step(step, force):
      return False
    if metrics is not None:
      # JSON cannot hold jax/numpy scalars.
      metrics = {k: float(v) for k, v in metrics.items()}
    saved = self._manager.save(
        step,
        args=ocp.args.Composite(**{
            _STATE: ocp.args.StandardSave(state),
            _META: ocp.args.JsonSave(dict(meta)),
        }),
        metrics=metrics,
        # Orbax's should_save() also drops steps <= latest silently; the checks
        # above decide instead, with a clear outcome.
        force=True,
    )
    if saved:
      kept = set(self._manager.all_steps())
      self._metrics = {s: m for s, m in self._metrics.items() if s in kept}
      self._metrics[step] = metrics
      logging.info(
          "Saving checkpoint step %d to %s (metrics %s).",
          step, self._directory, metrics,
      )
    return saved

  def _is_new_step(self, step: int, force: bool) -> bool:
    """False for a step already saved (kept as it is); raises for an old one (`save`)."""
    if step in self._manager.all_steps():
      logging.warning(
          "Checkpoint step %d already exists in %s; not overwriting it.",
          step, self._directory,
      )
      return False
    latest = self.latest_step()
    if latest is not None and step < latest and not force:
      raise ValueError(
          f"Refusing to save step {step} in {self._directory}: the latest "
          f"checkpoint is step {latest}. Pass force=True to write it anyway."
      )
    return True

  def all_steps(self) -> list[int]:
    """Returns the kept (or being written) steps, ascending."""
    return sorted(self._manager.all_steps())

  def latest_step(self) -> int | None:
    """Returns the highest saved step, or None if there is none."""
    return self._manager.latest_step()

  def best_step(self) -> int | None:
    """Returns the best step by `best_metric`, else the latest, else None.

    Only checkpoints whose metrics contain a non-NaN `best_metric` compete; a
    final save without an eval does not displace the best one.
    """
    ranked = []
    for step in self.all_steps():
      value = self._metric_value(self._metrics.get(step))
      if value is not None:
        ranked.append((value if self._best_mode == "max" else -value, step))
    if not ranked:
      return self.latest_step()
    # On a tie the later step wins: it trained longer for the same score.
    return max(ranked)[1]

  def metrics(self, step: int) -> dict[str, float] | None:
    """Returns the metrics saved with `step`, or None if it had none."""
    step = int(step)
    metrics = self._metrics.get(step) if step in self.all_steps() else None
    return dict(metrics) if metrics is not None else None

  def resolve(self, which: str | int | None) -> int:
    """Turns "best", "latest" (or None), a step or a digit string into a step.

    Raises:
      ValueError: If no such checkpoint exists; the message names the
        directory and the available steps.
    """
    steps = self.all_steps()
    if which is None or which == "latest":
      step = self.latest_step()
    elif which == "best":
      step = self.best_step()
    elif isinstance(which, numbers.Integral) and not isinstance(which, bool):
      step = int(which) if int(which) in steps else None
    elif isinstance(which, str) and which.strip().isdigit():
      step = int(which) if int(which) in steps else None
    else:
      raise ValueError(
          f"Checkpoint must be 'best', 'latest' or a step number, got {which!r}."
      )
    if step is None:
      raise ValueError(
          f"No checkpoint {which!r} in {self._directory}: available steps "
          f"{steps or 'none (no finished checkpoint there)'}."
      )
    return step

  def restore(self, which: str | int | None, abstract_state: Any) -> tuple[Any, dict]:
    """Restores (state, meta) from checkpoint `which`.

    Args:
      which: "best", "latest", a step or a digit string; see `resolve`.
      abstract_state: The state's structure, e.g.
        `jax.eval_shape(create_state, rng)`; leaves are ShapeDtypeStructs (or
        arrays). Their `.sharding` decides placement; leaves without one go to
        the first local device.

    Returns:
      The restored state, with the structure of `abstract_state`, and meta.
    """
    # Our own async save of this step may still be in flight.
    self._manager.wait_until_finished()
    step = self.resolve(which)
    try:
      state, meta = self._restore(step, _to_abstract(abstract_state))
    except ValueError as e:
      # A checkpoint written before a dataclass field existed whose value here is None
      # (a feature this run does not use, e.g. no weight average): restore the fields the
      # checkpoint has, and keep None for the others.
      if not dataclasses.is_dataclass(abstract_state) or "do not match" not in str(e):
        raise
      present = {f.name: getattr(abstract_state, f.name)
                 for f in dataclasses.fields(abstract_state)
                 if getattr(abstract_state, f.name) is not None}
      fields, meta = self._restore(step, _to_abstract(present))
      state = abstract_state.replace(**fields)
    logging.info("Restored checkpoint step %d from %s.", step, self._directory)
    return state, meta

  def _restore(self, step: int, target: Any) -> tuple[Any, dict]:
    restored = self._manager.restore(
        step,
        args=ocp.args.Composite(**{
            _STATE: ocp.args.StandardRestore(target),
            _META: ocp.args.JsonRestore(),
        }),
    )
    return restored[_STATE], restored[_META]

  def restore_meta(self, which: str | int | None) -> dict:
    """Returns only the meta dict of checkpoint `which`; reads no arrays."""
    self._manager.wait_until_finished()
    step = self.resolve(which)
    restored = self._manager.restore(
        step, args=ocp.args.Composite(**{_META: ocp.args.JsonRestore()})
    )
    return restored[_META]

  def wait_until_finished(self) -> None:
    """Blocks until pending saves (and their retention deletes) are done."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    """Waits for pending saves and releases Orbax's threads."""
    self._manager.close()

  def __enter__(self) -> "Checkpointer":
    return self

  def __exit__(self, *exc) -> None:
    self.close()
