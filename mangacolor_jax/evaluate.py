"""Command line: metrics of a trained model over a folder of colour images.

  python -m mangacolor_jax.evaluate --workdir runs/faces [--image_dir DIR] \
      [--save_images DIR] [--checkpoint best|latest|STEP]

Line art is made from each colour image the way training's validation makes it (fixed
extractor). Prints one JSON object: PSNR, SSIM, L1 in Lab and colourfulness of the outputs
against the targets' colourfulness, without hints and (for a model trained with hints) with
sparse hints sampled from the target with a fixed seed. Without --image_dir it uses the
run's own validation split. --save_images writes `line art | output | target` triptychs
under DIR/triptychs and the plain outputs under DIR/outputs, named like the inputs.
"""

import json
import os

from absl import app
from absl import flags

FLAGS = flags.FLAGS


def define_flags():
  """Flags of the command line (defined only when run as a command, so that the
  library functions here can be imported beside other commands)."""
  flags.DEFINE_string("workdir", None, "Training workdir holding checkpoints/.")
  flags.DEFINE_string("image_dir", None, "Folder of colour images (default: validation split).")
  flags.DEFINE_string("save_images", None, "Folder for triptychs and outputs.")
  flags.DEFINE_string("checkpoint", "best", "best | latest | a step number.")
  flags.mark_flags_as_required(["workdir"])


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
  step_fn = jax.jit(functools.partial(trainer.eval_step, setup))
  if save_images:
    os.makedirs(os.path.join(save_images, "triptychs"), exist_ok=True)
    os.makedirs(os.path.join(save_images, "outputs"), exist_ok=True)

  sums, count = {}, 0.0
  for i, batch in enumerate(ds.as_numpy_iterator()):
    valid = batch.pop("valid")
    names = batch.pop("name")
    rng = jax.random.fold_in(jax.random.key(trainer.EVAL_HINTS_SEED), i)
    per_example, fake = step_fn(state, sharding.place_batch(batch, mesh), rng)
    for k, v in jax.device_get(per_example).items():
      sums[k] = sums.get(k, 0.0) + float(np.sum(np.asarray(v, np.float64) * valid))
    count += float(valid.sum())
    if save_images:
      fake = np.asarray(jax.device_get(fake))
      for j in np.nonzero(valid)[0]:
        stem = os.path.splitext(names[j].decode())[0]
        grid = trainer.sample_grid(batch["lineart"][j:j + 1], fake[j:j + 1],
                                   batch["target"][j:j + 1], 1)
        trainer.save_png(os.path.join(save_images, "triptychs", stem + ".png"), grid)
        trainer.save_png(os.path.join(save_images, "outputs", stem + ".png"),
                         image_metrics.to_uint8(fake[j]))
  metrics = {k: v / max(count, 1.0) for k, v in sums.items()}
  return {"workdir": workdir, "step": step, "images": int(count),
          "image_dir": image_dir or "validation split", **metrics}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError("Too many command-line arguments.")
  if FLAGS.image_dir and not os.path.isdir(FLAGS.image_dir):
    raise app.UsageError(f"--image_dir {FLAGS.image_dir} is not a folder")
  print(json.dumps(run(FLAGS.workdir, FLAGS.image_dir, FLAGS.save_images,
                       FLAGS.checkpoint), indent=1))


if __name__ == "__main__":
  define_flags()
  app.run(main)
