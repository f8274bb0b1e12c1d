"""Command line: metrics of a trained model over a folder of colour images.

  python -m mangacolor_jax.evaluate --workdir runs/faces [--image_dir DIR] \
      [--save_images DIR] [--checkpoint best|latest|STEP]

Line art is made from each colour image the way training's validation makes it (fixed
extractor). Prints one JSON object: PSNR, SSIM, L1 in Lab and colourfulness of the outputs
against the targets' colourfulness, without hints and (for a model trained with hints) with
sparse hints sampled from the target with a fixed seed. Without --image_dir it uses the
run's own validation split. --save_images writes `line art | output | target` triptychs
under DIR/triptychs and the plain outputs under DIR/outputs, named like the inputs; DIR
must be a new or empty folder, or an earlier --save_images folder of evaluate.

Ensembles: `--ensemble DIR1,DIR2,...` (each run's --checkpoint), or `--workdir DIR
--checkpoint 1000,2000,3000` (several steps of one run), averages the members' outputs
(`--ensemble_weights uniform|psnr|disc`, see inference.EnsembleColorizer) and reports the
ensemble's metrics beside each member's, all on the same images and hints.
"""

import json
import os
import sys

from absl import app
from absl import flags

from mangacolor_jax.utils import files

FLAGS = flags.FLAGS
COMMAND = "evaluate"


def define_flags():
  """Flags of the command line (defined only when run as a command, so that the
  library functions here can be imported beside other commands)."""
  flags.DEFINE_string("workdir", None, "Training workdir holding checkpoints/.")
  flags.DEFINE_string("image_dir", None, "Folder of colour images (default: validation split).")
  flags.DEFINE_string("save_images", None, "Folder for triptychs and outputs.")
  flags.DEFINE_string("checkpoint", "best", "best | latest | a step number, or several "
                      "comma-separated steps of --workdir to evaluate as an ensemble.")
  flags.DEFINE_string("ensemble", None, "Comma-separated workdirs to evaluate as an "
                      "ensemble (instead of --workdir).")
  flags.DEFINE_enum("ensemble_weights", "uniform", ["uniform", "psnr", "disc"],
                    "Ensemble weights: uniform; psnr (validation PSNR saved with each "
                    "member's checkpoint); disc (each member's discriminator's score of its "
                    "output, per image).")


def claim_save_images(save_images: str | None) -> None:
  """Makes the --save_images folder evaluate's own (or refuses it) before any long work."""
  if save_images:
    files.claim_folder(save_images, COMMAND, "--save_images")
    os.makedirs(os.path.join(save_images, "triptychs"), exist_ok=True)
    os.makedirs(os.path.join(save_images, "outputs"), exist_ok=True)


def run(workdir: str, image_dir: str | None = None, save_images: str | None = None,
        checkpoint: str | int = "best") -> dict:
  """Evaluates and returns the metrics dict (also used by tests and the tuner)."""
  import functools  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from mangacolor_jax import image_metrics  # pylint: disable=g-import-not-at-top
  from mangacolor_jax import inference  # pylint: disable=g-import-not-at-top
  from mangacolor_jax import input_pipeline  # pylint: disable=g-import-not-at-top
  from mangacolor_jax import sharding  # pylint: disable=g-import-not-at-top
  from mangacolor_jax import trainer  # pylint: disable=g-import-not-at-top
  from mangacolor_jax import xla_cpu  # pylint: disable=g-import-not-at-top

  claim_save_images(save_images)
  config, state, step = inference.load_config_and_state(workdir, checkpoint)
  if image_dir:
    config.data.source = "folder"
    config.data.image_dir = image_dir
  setup = trainer.Setup(config)
  mesh = sharding.create_mesh()
  sharding.check_batch_size(config.batch_size, mesh)
  state = sharding.replicate(state, mesh)
  ds = input_pipeline.create_eval_dataset(config, image_dir=image_dir,
                                          process_index=jax.process_index(),
                                          process_count=jax.process_count())
  step_fn = xla_cpu.jit(functools.partial(trainer.eval_step, setup), config)

  count = 0

  def save(batch, fake, valid, names):
    nonlocal count
    count += int(valid.sum())
    if not save_images:
      return
    for j in np.nonzero(valid)[0]:
      stem = os.path.splitext(names[j].decode())[0]
      grid = trainer.sample_grid(batch["lineart"][j:j + 1], fake[j:j + 1],
                                 batch["target"][j:j + 1], 1)
      trainer.save_png(os.path.join(save_images, "triptychs", stem + ".png"), grid)
      trainer.save_png(os.path.join(save_images, "outputs", stem + ".png"),
                       image_metrics.to_uint8(fake[j]))

  metrics, _ = trainer.evaluate(setup, state, ds, mesh, step_fn, on_batch=save)
  metrics = {k.removeprefix("eval_"): v for k, v in metrics.items()}
  return {"workdir": workdir, "step": step, "images": count,
          "image_dir": image_dir or "validation split", **metrics}


def run_ensemble(members: list[tuple[str, str | int]], weights: str = "uniform",
                 image_dir: str | None = None, save_images: str | None = None) -> dict:
  """Evaluates the average of several models and each member on the same images.

  Args:
    members: (workdir, checkpoint) pairs, e.g. from inference.parse_members.
    weights: uniform | psnr | disc (see inference.EnsembleColorizer).
    image_dir: folder of colour images (default: the first member's validation split).
    save_images: folder for the ensemble's triptychs and outputs.

  Returns:
    {"ensemble": metrics, "members": [{"workdir", "step", "weight", metrics...}],
     "ensemble_minus_best_member": {metric: ensemble - best member}, ...}; the metrics are
    those of `run`, with hints only when every member takes them.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from mangacolor_jax import hints as hints_lib  # pylint: disable=g-import-not-at-top
  from mangacolor_jax import image_metrics  # pylint: disable=g-import-not-at-top
  from mangacolor_jax import inference  # pylint: disable=g-import-not-at-top
  from mangacolor_jax import input_pipeline  # pylint: disable=g-import-not-at-top
  from mangacolor_jax import trainer  # pylint: disable=g-import-not-at-top

  claim_save_images(save_images)
  ensemble = inference.EnsembleColorizer(members, weights)
  # The images (size, validation split) are the first member's; every member pads them to
  # its own multiple of 2**depth.
  config = ensemble.config.copy_and_resolve_references()
  if image_dir:
    config.data.source = "folder"
    config.data.image_dir = image_dir
  ds = input_pipeline.create_eval_dataset(config, image_dir=image_dir)
  quality = jax.jit(trainer.quality_metrics, static_argnums=2)

  n = len(ensemble.members)
  names = ["ensemble"] + [f"member{k}" for k in range(n)]
  sums = {name: {} for name in names}
  weight_sums, count = np.zeros(n), 0.0
  extra = {}

  def add(name, per_example, valid):
    for k, v in jax.device_get(per_example).items():
      sums[name][k] = sums[name].get(k, 0.0) + float(np.sum(np.asarray(v, np.float64)
                                                             * valid))

  for i, batch in enumerate(ds.as_numpy_iterator()):
    valid, batch_names = batch.pop("valid"), batch.pop("name")
    lineart, target = batch["lineart"], batch["target"]
    mean, outputs, w = ensemble.predict_members(lineart)
    for name, out in zip(names, [mean, *outputs]):
      add(name, quality(out, target, ""), valid)
    weight_sums += (w * valid[None]).sum(axis=1)
    if ensemble.takes_hints:
      rng = jax.random.fold_in(jax.random.key(trainer.EVAL_HINTS_SEED), i)
      hint_tensor = np.asarray(hints_lib.sample_hints(rng, target,
                                                      config.hints.max_points, 0.0))
      hinted_mean, hinted, _ = ensemble.predict_members(lineart, hint_tensor)
      for name, out in zip(names, [hinted_mean, *hinted]):
        add(name, quality(out, target, "_hints"), valid)
    target01 = image_metrics.to_unit(target)
    for k, v in (("colourfulness_target", image_metrics.colourfulness(target01)),
                 ("psnr_lineart", image_metrics.psnr(
                     image_metrics.to_unit(np.repeat(lineart, 3, axis=-1)), target01))):
      extra[k] = extra.get(k, 0.0) + float(np.sum(np.asarray(v, np.float64) * valid))
    count += float(valid.sum())
    if save_images:
      for j in np.nonzero(valid)[0]:
        stem = os.path.splitext(batch_names[j].decode())[0]
        grid = trainer.sample_grid(lineart[j:j + 1], mean[j:j + 1], target[j:j + 1], 1)
        trainer.save_png(os.path.join(save_images, "triptychs", stem + ".png"), grid)
        trainer.save_png(os.path.join(save_images, "outputs", stem + ".png"),
                         image_metrics.to_uint8(mean[j]))
  count = max(count, 1.0)
  averaged = {name: {k: v / count for k, v in sums[name].items()} for name in names}
  member_rows = [{"workdir": m.workdir, "step": m.step, "weight": weight_sums[k] / count,
                  **averaged[f"member{k}"]} for k, m in enumerate(ensemble.members)]
  better = {"psnr": max, "ssim": max, "lab_l1": min, "l1": min}
  delta = {}
  for key, pick in better.items():
    for suffix in ("", "_hints"):
      if key + suffix in averaged["ensemble"]:
        best = pick(r[key + suffix] for r in member_rows)
        delta[key + suffix] = averaged["ensemble"][key + suffix] - best
  return {"images": int(count), "image_dir": image_dir or "validation split",
          "weights": weights, "ensemble": averaged["ensemble"], "members": member_rows,
          "ensemble_minus_best_member": delta,
          **{k: v / count for k, v in extra.items()}}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError("Too many command-line arguments.")
  if FLAGS.image_dir and not os.path.isdir(FLAGS.image_dir):
    raise app.UsageError(f"--image_dir {FLAGS.image_dir} is not a folder")
  if bool(FLAGS.workdir) == bool(FLAGS.ensemble):
    raise app.UsageError("give exactly one of --workdir (one run) and --ensemble (several)")
  if FLAGS.workdir and "," not in FLAGS.checkpoint:
    try:
      result = run(FLAGS.workdir, FLAGS.image_dir, FLAGS.save_images, FLAGS.checkpoint)
    except files.OutputError as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(2)
  else:
    from mangacolor_jax import inference  # pylint: disable=g-import-not-at-top
    try:
      members = inference.parse_members(FLAGS.workdir or FLAGS.ensemble, FLAGS.checkpoint)
    except ValueError as e:
      raise app.UsageError(str(e)) from e
    try:
      result = run_ensemble(members, FLAGS.ensemble_weights, FLAGS.image_dir,
                            FLAGS.save_images)
    except files.OutputError as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(2)
  print(json.dumps(result, indent=1))


if __name__ == "__main__":
  define_flags()
  app.run(main)
