r"""Command line: look at the batches a config feeds the model, and check them, before training.

  python -m mangacolor_jax.data.inspect --config configs/anime_faces_tfds.py \
      --config.data.tfds_dir=/tmp/faces_tfds --output /tmp/faces_inspect [--num_batches 4]

The series' data checks, run on the project's own pipeline (`input_pipeline`) with the
config's seed, as `train` would: the first `--num_batches` training batches (the data seed
and the sparse hints derived from `config.seed` the way the trainer derives them, so these
are the very batches of steps 1, 2, ...) and the first validation batch (with the trainer's
fixed evaluation hints).

Writes to `--output` (a new or empty folder, or an earlier inspect's: never a folder of
someone else's): `train_batch_<k>.png` and `validation_batch.png` (one row per example:
line art | hints, when `config.hints.mode` is "sparse" | target, every value mapped from
[-1, 1] to [0, 255] exactly as the model receives it: a missing hint is 0, mid-grey),
`histograms.png` (the input values of each tensor, train and validation), `report.json`
(statistics per tensor and the checks), and the same images, histograms and means as
TensorBoard events (`tensorboard --logdir OUTPUT`).

Exits non-zero, naming the problem, when: two training batches are identical (the same batch
fed again and again) or a validation batch equals a training batch; every example of a
batch is the same image; a value is not finite or leaves [-1, 1]; a tensor's mean is
farther than `--max_abs_mean` from zero (line art is mostly paper, so its mean sits near
+0.6 on real drawings: the default 0.9 catches blank line art and unscaled inputs, not
paper); the target is never negative (scaled to [0, 1], not [-1, 1]) or the line art has
no ink; validation statistics stray from training's (scaled differently); or shapes differ
from [batch, H, W, C] of the config, between batches, or between train and validation.
Everything is written first, so the pictures show what failed.
"""

import json
import os
import sys
from typing import Dict, List, Optional, Sequence, Tuple

from absl import app
from absl import flags
from absl import logging
import numpy as np
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont

from mangacolor_jax.utils import files

_TOLERANCE = 1e-5  # float slack on the [-1, 1] range
_MAX_MEAN_SHIFT = 0.5  # largest train / validation difference of a tensor's mean
COMMAND = "inspect"


class InspectionError(Exception):
  """The batches fail a check; the message lists every failure."""


def trainer_keys(seed: int):
  """(data seed, training key) exactly as `trainer.train_and_evaluate` derives them.

  The trainer splits key(seed) into init and data keys, draws the data seed from the data
  key, and keeps the third split of the init key as the state's key, from which step s
  (0-based) draws its hints with split(fold_in(key, s), 3)[0].
  """
  import jax  # pylint: disable=g-import-not-at-top
  init_rng, data_rng = jax.random.split(jax.random.key(seed))
  data_seed = int(jax.random.randint(data_rng, (), 0, 2**31 - 1))
  return data_seed, jax.random.split(init_rng, 3)[2]


def collect_batches(config, num_batches: int) -> Tuple[List[Dict[str, np.ndarray]],
                                                       Dict[str, np.ndarray]]:
  """The first `num_batches` training batches and the first validation batch, with hints.

  Validation padding rows (valid == 0) are removed.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.input_pipeline import datasets  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.nn import hints as hints_lib  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.runtime import seeds  # pylint: disable=g-import-not-at-top

  seed = int(config.seed)
  if seed < 0:
    logging.warning("config.seed=%d draws a fresh seed per run; inspecting seed 0", seed)
    seed = 0
  data_seed, train_rng = trainer_keys(seed)
  it = datasets.create_train_dataset(config, seed=data_seed).as_numpy_iterator()
  train = [dict(next(it)) for _ in range(num_batches)]
  val = dict(next(datasets.create_eval_dataset(config).as_numpy_iterator()))
  keep = val.pop("valid") > 0
  val = {k: v[keep] for k, v in val.items()}
  if config.hints.mode == "sparse":
    for step, batch in enumerate(train):
      hint_rng = jax.random.split(jax.random.fold_in(train_rng, step), 3)[0]
      batch["hints"] = np.asarray(hints_lib.sample_hints(
          hint_rng, batch["target"], config.hints.max_points, config.hints.drop_prob))
    # Evaluation gives hints to every image (drop 0), from the trainer's fixed key.
    val["hints"] = np.asarray(hints_lib.sample_hints(
        seeds.eval_hints_key(0), val["target"],
        config.hints.max_points, 0.0))
  return train, val


# ----------------------------------------------------------------------------------------
# Checks.

_CHANNELS = {"lineart": 1, "target": 3, "hints": 4}


def _stats(x: np.ndarray) -> dict:
  x = np.asarray(x, np.float64)
  finite = x[np.isfinite(x)]
  if not finite.size:
    return {"shape": list(x.shape), "finite_share": 0.0}
  return {"shape": list(x.shape), "min": round(float(finite.min()), 5),
          "max": round(float(finite.max()), 5), "mean": round(float(finite.mean()), 5),
          "std": round(float(finite.std()), 5),
          "finite_share": round(float(finite.size / x.size), 6)}


def check_batches(train: Sequence[Dict[str, np.ndarray]], val: Dict[str, np.ndarray],
                  batch_size: int, hw: Tuple[int, int],
                  max_abs_mean: float = 0.9) -> List[str]:
  """Every failed check, as a message (empty: all passed)."""
  failures = []
  keys = [k for k in _CHANNELS if k in train[0]]
  h, w = hw
  for name, batches in [(f"train batch {i}", [b]) for i, b in enumerate(train)] + [
      ("validation batch", [val])]:
    batch = batches[0]
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
  for i in range(len(train)):
    for j in range(i + 1, len(train)):
      if all(np.array_equal(train[i][k], train[j][k]) for k in ("lineart", "target")):
        failures.append(f"train batches {i} and {j} are identical: the pipeline feeds the "
                        "same batch again")
    if train[i]["target"].shape == val["target"].shape and all(
        np.array_equal(train[i][k], val[k]) for k in ("lineart", "target")):
      failures.append(f"the validation batch equals train batch {i}")
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


# ----------------------------------------------------------------------------------------
# Pictures.


def to_uint8(x: np.ndarray) -> np.ndarray:
  """[-1, 1] to [0, 255] (clipped, rounded)."""
  return np.clip(np.round((np.asarray(x, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def batch_grid(batch: Dict[str, np.ndarray], max_images: int = 8) -> np.ndarray:
  """uint8 [rows, cols, 3]: a header, then one row per example: line art | hints | target.

  Pixels are exact (nearest-neighbour, integer scale to at least 128 px per cell).
  """
  columns = [k for k in ("lineart", "hints", "target") if k in batch]
  n, h, w = batch["target"].shape[:3]
  n = min(n, max_images)
  scale = max(1, -(-128 // max(h, w)))
  gap, header = 2, 14
  cell_h, cell_w = h * scale, w * scale
  grid = np.full((header + n * (cell_h + gap), len(columns) * (cell_w + gap), 3), 255,
                 np.uint8)
  for c, key in enumerate(columns):
    x = batch[key][:n]
    x = x[..., :3] if key == "hints" else x
    images = to_uint8(x)
    if images.shape[-1] == 1:
      images = np.repeat(images, 3, axis=-1)
    images = images.repeat(scale, axis=1).repeat(scale, axis=2)
    for r in range(n):
      y0, x0 = header + r * (cell_h + gap), c * (cell_w + gap)
      grid[y0:y0 + cell_h, x0:x0 + cell_w] = images[r]
  image = Image.fromarray(grid)
  draw = ImageDraw.Draw(image)
  for c, key in enumerate(columns):
    draw.text((c * (cell_w + gap) + 2, 1), key, fill=(0, 0, 0), font=ImageFont.load_default())
  return np.asarray(image)


def histogram_panel(values: np.ndarray, title: str, bins: int = 64) -> np.ndarray:
  """uint8 bar chart of values over [-1.05, 1.05]; bar height is sqrt(count), so the
  paper spike of line art does not flatten everything else."""
  v = np.asarray(values, np.float64).ravel()
  v = v[np.isfinite(v)]
  counts, _ = np.histogram(v, bins=bins, range=(-1.05, 1.05))
  w, h, m = 520, 130, 20
  image = Image.new("RGB", (w, h), "white")
  draw = ImageDraw.Draw(image)
  font = ImageFont.load_default()
  top = np.sqrt(max(1, counts.max()))
  bar = (w - 2 * m) / bins
  for k, c in enumerate(counts):
    x = m + k * bar
    draw.rectangle([x, h - m - (h - 2 * m - 12) * np.sqrt(c) / top, x + bar - 1, h - m],
                   fill=(70, 110, 180))
  for tick in (-1.0, 0.0, 1.0):
    x = m + (w - 2 * m) * (tick + 1.05) / 2.1
    draw.line([x, 14, x, h - m], fill=(200, 0, 0) if tick == 0 else (150, 150, 150))
    draw.text((x - 6, h - m + 3), f"{tick:g}", fill=0, font=font)
  stats = (f"min {v.min():.3f} max {v.max():.3f} mean {v.mean():.3f} std {v.std():.3f}"
           if v.size else "no values")
  draw.text((m, 1), f"{title}: {stats}", fill=0, font=font)
  return np.asarray(image)


def _save_png(path: str, image: np.ndarray) -> None:
  tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp")
  Image.fromarray(image).save(tmp, format="PNG")
  os.replace(tmp, path)


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


def inspect_data(config, output: str, *, num_batches: int = 4, max_images: int = 8,
                 max_abs_mean: float = 0.9) -> dict:
  """Writes the grids, histograms and report for `config`'s batches into `output`.

  Returns:
    The report (also `output/report.json`).

  Raises:
    InspectionError: listing every failed check (after everything is written).
    ValueError: a bad config (from the input pipeline) or --num_batches < 2.
  """
  from clu import metric_writers  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.input_pipeline import config_check  # pylint: disable=g-import-not-at-top

  if num_batches < 2:
    raise ValueError(f"--num_batches={num_batches}: need at least 2 to compare batches")
  files.claim_folder(output, COMMAND, "--output")
  train, val = collect_batches(config, num_batches)
  hw = config_check.image_hw(config)
  failures = check_batches(train, val, config.batch_size, hw, max_abs_mean)

  written = []
  grids = [batch_grid(b, max_images) for b in train]
  for k, grid in enumerate(grids):
    _save_png(os.path.join(output, f"train_batch_{k}.png"), grid)
    written.append(f"train_batch_{k}.png")
  val_grid = batch_grid(val, max_images)
  _save_png(os.path.join(output, "validation_batch.png"), val_grid)
  written.append("validation_batch.png")
  values = _histogram_values(train, val)
  _save_png(os.path.join(output, "histograms.png"),
            np.concatenate([histogram_panel(v, k) for k, v in values.items()]))
  written.append("histograms.png")

  writer = metric_writers.create_default_writer(output, asynchronous=False)
  for k, grid in enumerate(grids):
    writer.write_images(k, {"inspect/train_batch": grid[None]})
  writer.write_images(0, {"inspect/validation_batch": val_grid[None]})
  writer.write_histograms(0, {f"inspect/{k}": v for k, v in values.items() if v.size})
  writer.write_scalars(0, {f"inspect/{k}_mean": float(v.mean())
                           for k, v in values.items() if v.size})
  writer.flush()
  writer.close()

  report = {
      "config": {"source": config.data.source, "batch_size": config.batch_size,
                 "image_hw": list(hw), "hints": config.hints.mode, "seed": config.seed},
      "stats": {k: _stats(v) for k, v in values.items()},
      "train_batch_shapes": [{k: list(v.shape) for k, v in b.items()} for b in train],
      "validation_batch_shapes": {k: list(v.shape) for k, v in val.items()},
      "validation_names": [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n)
                           for n in val.get("name", [])][:max_images],
      "checks": {"passed": not failures, "failures": failures},
      "files": written,
  }
  tmp = os.path.join(output, ".report.json.tmp")
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(report, f, indent=2, sort_keys=True)
    f.write("\n")
  os.replace(tmp, os.path.join(output, "report.json"))
  if failures:
    raise InspectionError(f"{len(failures)} data check(s) failed (see {output}):\n  " +
                          "\n  ".join(failures))
  logging.info("data checks passed; grids and histograms in %s", output)
  return report


FLAGS = flags.FLAGS


def define_flags():
  """The command's flags; defined only when it runs (the module imports as a library)."""
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  config_flags.DEFINE_config_file("config", None, "Training configuration file.",
                                  lock_config=True)
  flags.DEFINE_string("output", None, "Folder for the grids, histograms, report and "
                      "TensorBoard events.")
  flags.DEFINE_integer("num_batches", 4, "Training batches to look at (>= 2).")
  flags.DEFINE_integer("max_images", 8, "Examples per grid at most.")
  flags.DEFINE_float("max_abs_mean", 0.9, "Fail when a tensor's mean is farther from 0.")
  flags.mark_flags_as_required(["config", "output"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  try:
    report = inspect_data(FLAGS.config, FLAGS.output, num_batches=FLAGS.num_batches,
                          max_images=FLAGS.max_images, max_abs_mean=FLAGS.max_abs_mean)
  except InspectionError as e:
    raise SystemExit(f"inspect: {e}") from None
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print(json.dumps({"output": os.path.abspath(FLAGS.output), "checks": report["checks"]}))


if __name__ == "__main__":
  define_flags()
  app.run(main)
