"""Evaluating a trained run, or an ensemble, on a folder of colour images or on the run's
validation split: the metrics `python -m mangacolor_jax.evaluate` prints.

Line art is made from each colour image as training's validation makes it. Metrics are the
training evaluation's (`step.quality_metrics`, `step.reference_metrics`), without hints
and, for a model trained with hints, with sparse hints from the fixed evaluation keys
(`seeds.eval_hints_key`), so every number compares with the trainer's own.
"""

import os

import jax
import numpy as np

from mangacolor_jax.infer import colorizer as colorizer_lib
from mangacolor_jax.infer import ensemble as ensemble_lib
from mangacolor_jax.input_pipeline import datasets
from mangacolor_jax.input_pipeline import files as input_files
from mangacolor_jax.nn import hints as hints_lib
from mangacolor_jax.runtime import mesh as mesh_lib
from mangacolor_jax.runtime import seeds
from mangacolor_jax.training import evaluation
from mangacolor_jax.training import state as state_lib
from mangacolor_jax.training import step as step_lib
from mangacolor_jax.utils import files
from mangacolor_jax.utils import images

COMMAND = "evaluate"


def output_name(name: str) -> str:
  """The --save_images file of an input, by its path in the folder: sub/a.jpg -> sub/a.png."""
  return os.path.splitext(name)[0] + ".png"


def claim_save_images(save_images: str | None, image_dir: str | None = None) -> None:
  """Makes the --save_images folder evaluate's own (or refuses it) before any long work,
  and refuses an --image_dir whose images would overwrite each other's (a.png, a.jpg)."""
  if save_images:
    shared = image_dir and files.shared_output(
        (p, output_name(os.path.relpath(p, image_dir)))
        for p in input_files.list_images(image_dir))
    if shared:
      raise ValueError(f"--image_dir images {shared[0]} and {shared[1]} would both be "
                       f"saved as {shared[2]} in --save_images: rename one of them")
    files.claim_folder(save_images, COMMAND, "--save_images")
    os.makedirs(os.path.join(save_images, "triptychs"), exist_ok=True)
    os.makedirs(os.path.join(save_images, "outputs"), exist_ok=True)


def save_outputs(save_images: str, lineart, outputs, target, valid, names) -> None:
  """Writes the `line art | output | target` triptych and the output of each real example,
  named like its input."""
  for j in np.nonzero(valid)[0]:
    name = output_name(names[j].decode())
    grid = images.sample_grid(lineart[j:j + 1], outputs[j:j + 1], target[j:j + 1], 1)
    for kind, image in (("triptychs", grid), ("outputs", images.to_uint8(outputs[j]))):
      path = os.path.join(save_images, kind, name)
      os.makedirs(os.path.dirname(path), exist_ok=True)
      files.save_image(path, image)


def _eval_config(config, image_dir: str | None):
  config = config.copy_and_resolve_references()
  if image_dir:
    config.data.source = "folder"
    config.data.image_dir = image_dir
  return config


def evaluate_run(workdir: str, image_dir: str | None = None,
                 save_images: str | None = None, checkpoint: str | int = "best") -> dict:
  """The metrics of checkpoint `checkpoint` of `workdir` (see the module docstring)."""
  claim_save_images(save_images, image_dir)
  config, state, step = colorizer_lib.load_config_and_state(workdir, checkpoint)
  config = _eval_config(config, image_dir)
  nets = state_lib.create_networks(config)
  mesh = mesh_lib.create_mesh()
  mesh_lib.check_batch_size(config.batch_size, mesh)
  state = mesh_lib.replicate(state, mesh)
  ds = datasets.create_eval_dataset(config, image_dir=image_dir,
                                    process_index=jax.process_index(),
                                    process_count=jax.process_count())
  count, seen = 0, set()

  def on_batch(batch, fake, valid, names):
    nonlocal count
    count += int(valid.sum())
    seen.update(n.decode() for n, v in zip(names, valid) if v)
    if save_images:
      save_outputs(save_images, batch["lineart"], fake, batch["target"], valid, names)

  metrics, _ = evaluation.evaluate_dataset(state, ds, mesh,
                                           step_lib.compile_eval_step(nets, mesh),
                                           on_batch=on_batch)
  metrics = {k.removeprefix("eval_"): v for k, v in metrics.items()}
  result = {"workdir": workdir, "step": step, "images": count,
            "image_dir": image_dir or "validation split", **metrics}
  if image_dir:  # files that do not decode are skipped (each named in a warning)
    listed = {os.path.relpath(p, image_dir) for p in input_files.list_images(image_dir)}
    result["skipped_files"] = sorted(listed - seen)
  return result


class _Sums:
  """Sums of per-example metrics over the real examples, per named model."""

  def __init__(self):
    self.sums: dict[str, dict[str, float]] = {}

  def add(self, name: str, per_example: dict, valid: np.ndarray) -> None:
    out = self.sums.setdefault(name, {})
    for k, v in jax.device_get(per_example).items():
      out[k] = out.get(k, 0.0) + float(np.sum(np.asarray(v, np.float64) * valid))

  def means(self, name: str, count: float) -> dict[str, float]:
    return {k: v / count for k, v in self.sums.get(name, {}).items()}


def evaluate_ensemble(members: list[tuple[str, str | int]], weights: str = "uniform",
                      image_dir: str | None = None, save_images: str | None = None) -> dict:
  """Evaluates the average of several models and each member on the same images.

  Args:
    members: (workdir, checkpoint) pairs, e.g. from ensemble.parse_members.
    weights: uniform | psnr | disc (see ensemble.EnsembleColorizer).
    image_dir: folder of colour images (default: the first member's validation split).
    save_images: folder for the ensemble's triptychs and outputs.

  Returns:
    {"ensemble": metrics, "members": [{"workdir", "step", "weight", metrics...}],
     "ensemble_minus_best_member": {metric: ensemble - best member}, ...}; the metrics are
    those of `evaluate_run`, with hints only when every member takes them.
  """
  claim_save_images(save_images, image_dir)
  ensemble = ensemble_lib.EnsembleColorizer(members, weights)
  # The images (size, validation split) are the first member's; every member pads them to
  # its own multiple of 2**depth.
  config = _eval_config(ensemble.config, image_dir)
  ds = datasets.create_eval_dataset(config, image_dir=image_dir)
  quality = jax.jit(step_lib.quality_metrics, static_argnums=2)
  reference = jax.jit(step_lib.reference_metrics)
  names = ["ensemble"] + [f"member{k}" for k in range(len(ensemble.members))]
  sums, weight_sums, count = _Sums(), np.zeros(len(ensemble.members)), 0.0
  for i, batch in enumerate(ds.as_numpy_iterator()):
    valid, batch_names = batch.pop("valid"), batch.pop("name")
    lineart, target = batch["lineart"], batch["target"]
    mean, outputs, w = ensemble.predict_members(lineart)
    for name, out in zip(names, [mean, *outputs]):
      sums.add(name, quality(out, target, ""), valid)
    weight_sums += (w * valid[None]).sum(axis=1)
    if ensemble.takes_hints:
      hint_tensor = np.asarray(hints_lib.evaluation_hints(
          seeds.eval_hints_key(i), config.hints, target, lineart))
      hinted_mean, hinted, _ = ensemble.predict_members(lineart, hint_tensor)
      for name, out in zip(names, [hinted_mean, *hinted]):
        sums.add(name, quality(out, target, "_hints"), valid)
    sums.add("data", reference(lineart, target), valid)
    count += float(valid.sum())
    if save_images:
      save_outputs(save_images, lineart, mean, target, valid, batch_names)
  count = max(count, 1.0)
  member_rows = [{"workdir": m.workdir, "step": m.step, "weight": weight_sums[k] / count,
                  **sums.means(f"member{k}", count)}
                 for k, m in enumerate(ensemble.members)]
  averaged = sums.means("ensemble", count)
  better = {"psnr": max, "ssim": max, "lab_l1": min, "l1": min}
  delta = {key + suffix: averaged[key + suffix] - pick(r[key + suffix] for r in member_rows)
           for key, pick in better.items() for suffix in ("", "_hints")
           if key + suffix in averaged}
  return {"images": int(count), "image_dir": image_dir or "validation split",
          "weights": weights, "ensemble": averaged, "members": member_rows,
          "ensemble_minus_best_member": delta, **sums.means("data", count)}
