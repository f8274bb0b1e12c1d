"""Inspect as a library: the batches a config feeds the model, checked and pictured.

`inspect_data(config, output)` reads the first training batches and the first validation
batch exactly as training will (`collect_batches`), checks them (`check_batches`) and
writes grids, histograms, a report and TensorBoard events into `output`. See
`mangacolor_jax.data.inspect` for the command and the checks.
"""

import os
from typing import Dict, List, Sequence, Tuple

from absl import logging
import numpy as np

from mangacolor_jax.data import sheets
from mangacolor_jax.input_pipeline import config_check as data_check
from mangacolor_jax.utils import files

_TOLERANCE = 1e-5  # float slack on the [-1, 1] range
_MAX_MEAN_SHIFT = 0.5  # largest train / validation difference of a tensor's mean
_CHANNELS = {"lineart": 1, "target": 3, "hints": 4}
COMMAND = "inspect"


class InspectionError(Exception):
  """The batches fail a check; the message lists every failure."""


def collect_batches(config, num_batches: int) -> Tuple[List[Dict[str, np.ndarray]],
                                                       Dict[str, np.ndarray]]:
  """The first `num_batches` training batches and the first validation batch, with hints.

  Validation padding rows (valid == 0) are removed.
  """
  # JAX and the input pipeline (TensorFlow) only to draw batches: they take seconds to
  # import, and the command's --help, the checks and the pictures do without.
  from mangacolor_jax.nn import hints as hints_lib  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.input_pipeline import datasets  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.runtime import seeds  # pylint: disable=g-import-not-at-top

  seed = int(config.seed)
  if seed < 0:
    logging.warning("config.seed=%d draws a fresh seed per run; inspecting seed 0", seed)
    seed = 0
  # The keys of a training run of this config (seeds): its batches, and its steps' hints.
  keys = seeds.run_keys(seed)
  train_rng = seeds.state_keys(keys.init)[2]
  it = datasets.create_train_dataset(config, seed=keys.data_seed).as_numpy_iterator()
  train = [dict(next(it)) for _ in range(num_batches)]
  val = dict(next(datasets.create_eval_dataset(config).as_numpy_iterator()))
  keep = val.pop("valid") > 0
  val = {k: v[keep] for k, v in val.items()}
  if config.hints.mode != "none":
    if config.hints.mode == "strokes" and config.hints.guided_share > 0:
      logging.info("config.hints.guided_share=%g: training starts that share of the "
                   "strokes where its generator colours wrong; without a model, these "
                   "strokes start anywhere on paper", config.hints.guided_share)
    for step, batch in enumerate(train):
      batch["hints"] = np.asarray(hints_lib.training_hints(
          seeds.step_keys(train_rng, step).hints, config.hints, batch["target"],
          batch["lineart"]))
    # Evaluation gives hints to every image (drop 0), from the trainer's fixed key.
    val["hints"] = np.asarray(hints_lib.evaluation_hints(
        seeds.eval_hints_key(0), config.hints, val["target"], val["lineart"]))
  return train, val


# ----------------------------------------------------------------------------------------
# Checks.


def _stats(x: np.ndarray) -> dict:
  x = np.asarray(x, np.float64)
  finite = x[np.isfinite(x)]
  if not finite.size:
    return {"shape": list(x.shape), "finite_share": 0.0}
  return {"shape": list(x.shape), "min": round(float(finite.min()), 5),
          "max": round(float(finite.max()), 5), "mean": round(float(finite.mean()), 5),
          "std": round(float(finite.std()), 5),
          "finite_share": round(float(finite.size / x.size), 6)}


def _check_batch(name: str, batch: Dict[str, np.ndarray], keys: Sequence[str],
                 batch_size: int, hw: Tuple[int, int]) -> List[str]:
  """One batch's failures: missing tensors, shapes, values, examples all alike."""
  failures = []
  h, w = hw
  for key in keys:
    if key not in batch:
      failures.append(f"{name}: no {key!r}")
      continue
    x = np.asarray(batch[key])
    rows = batch_size if name.startswith("train") else x.shape[0]
    expected = (rows, h, w, _CHANNELS[key])
    if x.shape != expected or (not name.startswith("train") and x.shape[0] > batch_size):
      failures.append(f"{name}: {key} has shape {x.shape}, expected {expected}")
    if not np.all(np.isfinite(x)):
      failures.append(f"{name}: {key} has {int(np.sum(~np.isfinite(x)))} non-finite values")
    elif x.size and (x.min() < -1 - _TOLERANCE or x.max() > 1 + _TOLERANCE):
      failures.append(f"{name}: {key} leaves [-1, 1]: min {x.min():.4g}, max "
                      f"{x.max():.4g}")
  for key in ("lineart", "target"):
    x = np.asarray(batch.get(key, np.zeros((0,))))
    if x.ndim == 4 and x.shape[0] > 1 and np.all(x == x[:1]):
      failures.append(f"{name}: every example's {key} is the same image")
  return failures


def _check_repeats(train: Sequence[Dict[str, np.ndarray]],
                   val: Dict[str, np.ndarray]) -> List[str]:
  """Training batches fed again, or a validation batch that is a training batch."""
  failures = []
  for i in range(len(train)):
    for j in range(i + 1, len(train)):
      if all(np.array_equal(train[i][k], train[j][k]) for k in ("lineart", "target")):
        failures.append(f"train batches {i} and {j} are identical: the pipeline feeds the "
                        "same batch again")
    if train[i]["target"].shape == val["target"].shape and all(
        np.array_equal(train[i][k], val[k]) for k in ("lineart", "target")):
      failures.append(f"the validation batch equals train batch {i}")
  return failures


def _check_scaling(train: Sequence[Dict[str, np.ndarray]], val: Dict[str, np.ndarray],
                   max_abs_mean: float) -> List[str]:
  """Means far from zero, no negative values, validation scaled unlike training."""
  failures = []
  for key in ("lineart", "target"):
    t = np.concatenate([np.asarray(b[key], np.float64).ravel() for b in train])
    v = np.asarray(val[key], np.float64).ravel()
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(v))):
      continue
    for split, x in (("train", t), ("validation", v)):
      if abs(x.mean()) > max_abs_mean:
        failures.append(f"{split} {key}: mean {x.mean():.3f} is far from zero (|mean| > "
                        f"--max_abs_mean={max_abs_mean}): not scaled to [-1, 1], or blank")
    if t.min() >= 0 and key == "target":
      failures.append("train target is never negative: scaled to [0, 1] instead of [-1, 1]?")
    if t.min() >= 0 and key == "lineart":
      failures.append("train lineart has no ink (no value below 0): blank line art?")
    if abs(t.mean() - v.mean()) > _MAX_MEAN_SHIFT:
      failures.append(f"{key}: validation mean {v.mean():.3f} vs train {t.mean():.3f}: "
                      "validation is scaled differently from training")
  return failures


def check_batches(train: Sequence[Dict[str, np.ndarray]], val: Dict[str, np.ndarray],
                  batch_size: int, hw: Tuple[int, int],
                  max_abs_mean: float = 0.9) -> List[str]:
  """Every failed check, as a message (empty: all passed)."""
  keys = [k for k in _CHANNELS if k in train[0]]
  failures = []
  named = [(f"train batch {i}", b) for i, b in enumerate(train)] + [("validation batch", val)]
  for name, batch in named:
    failures += _check_batch(name, batch, keys, batch_size, hw)
  return failures + _check_repeats(train, val) + _check_scaling(train, val, max_abs_mean)


# ----------------------------------------------------------------------------------------
# Outputs.


def _histogram_values(train, val) -> Dict[str, np.ndarray]:
  values = {}
  for split, batches in (("train", train), ("validation", [val])):
    for key in ("lineart", "target"):
      values[f"{split}_{key}"] = np.concatenate([np.asarray(b[key]).ravel() for b in batches])
    if "hints" in batches[0]:
      # The hint colours where there is a hint (elsewhere they are 0 by construction).
      hints = np.concatenate([np.asarray(b["hints"]).reshape(-1, 4) for b in batches])
      values[f"{split}_hint_colours"] = hints[hints[:, 3] > 0, :3].ravel()
  return values


def _write_events(output: str, grids: Sequence[np.ndarray], val_grid: np.ndarray,
                  values: Dict[str, np.ndarray]) -> None:
  """The grids, histograms and means as TensorBoard events in `output`."""
  # clu (and TensorFlow, its writer) only to write events: they take seconds to import.
  from clu import metric_writers  # pylint: disable=g-import-not-at-top
  writer = metric_writers.create_default_writer(output, asynchronous=False)
  for k, grid in enumerate(grids):
    writer.write_images(k, {"inspect/train_batch": grid[None]})
  writer.write_images(0, {"inspect/validation_batch": val_grid[None]})
  writer.write_histograms(0, {f"inspect/{k}": v for k, v in values.items() if v.size})
  writer.write_scalars(0, {f"inspect/{k}_mean": float(v.mean())
                           for k, v in values.items() if v.size})
  writer.flush()
  writer.close()


def inspect_data(config, output: str, *, num_batches: int = 4, max_images: int = 8,
                 max_abs_mean: float = 0.9) -> dict:
  """Writes the grids, histograms and report for `config`'s batches into `output`.

  Returns:
    The report (also `output/report.json`).

  Raises:
    InspectionError: listing every failed check (after everything is written).
    ValueError: a bad config (from the input pipeline) or --num_batches < 2.
  """
  if num_batches < 2:
    raise ValueError(f"--num_batches={num_batches}: need at least 2 to compare batches")
  files.claim_folder(output, COMMAND, "--output")
  train, val = collect_batches(config, num_batches)
  hw = data_check.image_hw(config)
  failures = check_batches(train, val, config.batch_size, hw, max_abs_mean)

  grids = [sheets.batch_grid(b, max_images) for b in train]
  val_grid = sheets.batch_grid(val, max_images)
  values = _histogram_values(train, val)
  pictures = {f"train_batch_{k}.png": grid for k, grid in enumerate(grids)}
  pictures["validation_batch.png"] = val_grid
  pictures["histograms.png"] = np.concatenate(
      [sheets.histogram_panel(v, k) for k, v in values.items()])
  for name, image in pictures.items():
    files.save_image(os.path.join(output, name), image)
  _write_events(output, grids, val_grid, values)

  report = {
      "config": {"source": config.data.source, "batch_size": config.batch_size,
                 "image_hw": list(hw), "hints": config.hints.mode, "seed": config.seed},
      "stats": {k: _stats(v) for k, v in values.items()},
      "train_batch_shapes": [{k: list(v.shape) for k, v in b.items()} for b in train],
      "validation_batch_shapes": {k: list(v.shape) for k, v in val.items()},
      "validation_names": [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n)
                           for n in val.get("name", [])][:max_images],
      "checks": {"passed": not failures, "failures": failures},
      "files": list(pictures),
  }
  files.write_json(os.path.join(output, "report.json"), report)
  if failures:
    raise InspectionError(f"{len(failures)} data check(s) failed (see {output}):\n  " +
                          "\n  ".join(failures))
  logging.info("data checks passed; grids and histograms in %s", output)
  return report
