"""Evaluation over a finite dataset: metrics averaged over the real (non-padding) examples,
sample grids of the first examples and of the worst (the series' error analysis)."""

import jax
import numpy as np

from mangacolor_jax.runtime import mesh as mesh_lib
from mangacolor_jax.runtime import seeds
from mangacolor_jax.utils import images


def evaluate_dataset(state, eval_ds, mesh, compiled_eval_step, num_samples: int = 0,
                     on_batch=None, place=None):
  """Averages the metrics of `compiled_eval_step` (`step.compile_eval_step`) over
  `eval_ds` (`datasets.create_eval_dataset`).

  `on_batch(batch, outputs, valid, names)`, if given, sees every batch with the model's
  outputs (host arrays; `valid` marks the real, non-padding examples): on several
  processes, each sees the examples it read.

  `place(host_batch)` puts a batch on the mesh (default `mesh.place_batch`; the training
  loop's `inputs.Placer`, which may make the line art there).

  On several processes every one computes the metrics and grids of the whole global batch
  (`mesh.fetch`), so all of them log and checkpoint by the same numbers.

  Returns:
    (metrics, images): metrics averaged over the real (non-padding) examples, prefixed
    "eval_"; images (when num_samples > 0) holds "eval_samples", the first examples, and
    "eval_worst", the examples with the largest L1 error, each as a uint8 grid of line
    art | output | target rows.
  """
  sums, count, first, worst = {}, 0.0, None, []
  for i, batch in enumerate(eval_ds.as_numpy_iterator()):
    valid = batch.pop("valid")
    names = batch.pop("name", None)
    placed = place(batch) if place is not None else mesh_lib.place_batch(batch, mesh)
    if "lineart" not in batch and (on_batch is not None or num_samples):
      batch = {"lineart": mesh_lib.local_rows(placed["lineart"]), "target": batch["target"]}
    per_example, fake = compiled_eval_step(state, placed, seeds.eval_hints_key(i))
    if on_batch is not None:
      on_batch(batch, mesh_lib.local_rows(fake), valid, names)
    if jax.process_count() > 1:  # from here on, the global batch
      placed["valid"] = mesh_lib.place_batch({"valid": valid}, mesh)["valid"]
      batch, fake = mesh_lib.fetch((placed, fake))
      valid = batch.pop("valid")
    per_example = mesh_lib.fetch(per_example)
    for k, v in per_example.items():
      sums[k] = sums.get(k, 0.0) + float(np.sum(np.asarray(v, np.float64) * valid))
    count += float(valid.sum())
    if num_samples:
      fake = np.asarray(fake)  # a jax.Array keeps the host copy local_rows fetched
      rows = [(float(per_example["l1"][j]), batch["lineart"][j], fake[j], batch["target"][j])
              for j in np.nonzero(valid)[0]]
      if first is None:
        first = rows[:num_samples]
      worst = sorted(worst + rows, key=lambda r: -r[0])[:num_samples]
  metrics = {f"eval_{k}": v / max(count, 1.0) for k, v in sums.items()}
  grids = {}
  for name, rows in (("eval_samples", first), ("eval_worst", worst)):
    if rows:
      grids[name] = images.sample_grid(*(np.stack([r[c] for r in rows]) for c in (1, 2, 3)),
                                       len(rows))
  return metrics, grids
