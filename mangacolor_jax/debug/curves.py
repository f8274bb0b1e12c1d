"""The doctor's look at a run's own curves: validation loss rising while training loss falls.

A run that peaks and then gets worse on validation data while it keeps getting better on
its training batches is overfitting, or its evaluation drifts away from its training
(augmentation the validation images never see, BatchNorm running statistics); either way
more steps make the model worse, and the best checkpoint is not the last one. The check
reads the scalars the training loop wrote to TensorBoard (`utils.scalars`): `eval_l1` (the
validation L1, written at each evaluation) and `train_g_l1` (G's L1 on its training
batches, written every `log_every_steps`), both the mean |output - target| in [-1, 1].
"""

import dataclasses

import numpy as np

from mangacolor_jax.utils import scalars as scalars_lib

VAL_TAG, TRAIN_TAG = "eval_l1", "train_g_l1"
# Validation L1 this far above its best (relative), at the last evaluation: a late rise.
RISE_WARN, RISE_FAIL = 0.03, 0.08
# ... counted only when training L1 fell over the same steps by at least this (relative).
TRAIN_FALL = 0.02
MIN_EVALS = 3  # evaluations needed (step 0 excluded) before the check says anything


@dataclasses.dataclass(frozen=True)
class Curves:
  """What the check measured on a run (relative changes; > 0 means a rise)."""
  best_step: int
  last_step: int
  val_rise: float  # last validation L1 / best - 1
  train_change: float  # training L1 near the last step / near the best step - 1
  evals: int


def _mean_near(curve: dict[int, float], step: int, window: int) -> float:
  """Mean of the training curve over the `window` logged points ending at `step`."""
  steps = sorted(s for s in curve if s <= step)[-window:]
  return float(np.mean([curve[s] for s in steps]))


def measure(val: dict[int, float], train: dict[int, float], window: int = 5
            ) -> Curves | None:
  """The late rise of `val` ({step: validation L1}) against `train` ({step: train L1}).

  None when there are fewer than MIN_EVALS evaluations after step 0 or no training points
  up to the best step (nothing to judge yet).
  """
  evals = {s: v for s, v in val.items() if s > 0}
  if len(evals) < MIN_EVALS or not train:
    return None
  best_step = min(evals, key=lambda s: (evals[s], s))
  last_step = max(evals)
  if not any(s <= best_step for s in train):
    return None
  val_rise = evals[last_step] / evals[best_step] - 1.0
  train_change = (_mean_near(train, last_step, window) /
                  _mean_near(train, best_step, window) - 1.0)
  return Curves(best_step, last_step, val_rise, train_change, len(evals))


def verdict(curves: Curves | None) -> tuple[str, str]:
  """("PASS" | "WARN" | "FAIL", what it means) for measured curves."""
  if curves is None:
    return "PASS", (f"fewer than {MIN_EVALS} evaluations after step 0: nothing to judge "
                    "yet")
  c = curves
  falling = c.train_change <= -TRAIN_FALL
  where = (f"validation L1 {c.val_rise:+.1%} from its best (step {c.best_step}) to step "
           f"{c.last_step}, training L1 {c.train_change:+.1%} over the same steps")
  if falling and c.val_rise >= RISE_FAIL:
    return "FAIL", (where + ": the model gets worse on data it does not train on while it "
                    "improves on its batches (overfitting, or augmentation / BatchNorm "
                    "statistics that evaluation does not share); use the best checkpoint "
                    "and fix the recipe (docs/quality.md)")
  if falling and c.val_rise >= RISE_WARN:
    return "WARN", where + ": validation is starting to fall behind training"
  return "PASS", where


def check_run(workdir: str) -> tuple[str, Curves | None, str]:
  """Reads `workdir`'s scalars and judges them: (status, curves, meaning).

  Raises:
    ValueError: `workdir` holds no validation or training L1 scalars (not a training run's
      folder).
  """
  found = scalars_lib.read_scalars(workdir, tags=(VAL_TAG, TRAIN_TAG))
  missing = [t for t in (VAL_TAG, TRAIN_TAG) if t not in found]
  if missing:
    raise ValueError(f"{workdir} holds no {' or '.join(missing)} scalars: not the workdir "
                     "of a training run (its TensorBoard event files)")
  curves = measure(found[VAL_TAG], found[TRAIN_TAG])
  status, meaning = verdict(curves)
  return status, curves, meaning
