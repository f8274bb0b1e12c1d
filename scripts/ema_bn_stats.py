r"""G's BatchNorm statistics measured again under the averaged weights: what it changes.

  .venv/bin/python scripts/ema_bn_stats.py --config configs/anime_faces.py \
      --workdir runs/quality/faces/images_32000/seed_0 \
      --config.data.image_dir=../shared/data/anime_faces/faces64

A run with `model.ema_decay > 0` is evaluated with the average of G's weights. Runs from
before `model.ema_bn_batches` saved beside it the BatchNorm running statistics of the last
iterate (momentum `nn.layers.BATCH_NORM_MOMENTUM`: about its last ten training batches,
seen by weights other than the average's). This measures them again under the averaged
weights exactly as training now does before each checkpoint (`step.with_average_stats`:
the run's own first `--batches` training batches, with its line art and hints), and prints
the protocol's no-hint scores (`--strokes`: all its scores) on the test split of
`--config` with the saved statistics and with the measured ones. For a run with
`model.ema_bn_batches` = `--batches`, the two are the same.
"""

import json
import os
import sys

from absl import app
from absl import flags
import jax
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from mangacolor_jax.infer import colorizer as colorizer_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from mangacolor_jax.input_pipeline import datasets  # pylint: disable=g-import-not-at-top,wrong-import-position
from mangacolor_jax.protocol import scoring  # pylint: disable=g-import-not-at-top,wrong-import-position
from mangacolor_jax.protocol import testset as testset_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from mangacolor_jax.runtime import seeds  # pylint: disable=g-import-not-at-top,wrong-import-position
from mangacolor_jax.runtime import mesh as mesh_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from mangacolor_jax.training import inputs  # pylint: disable=g-import-not-at-top,wrong-import-position
from mangacolor_jax.training import state as state_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from mangacolor_jax.training import step as step_lib  # pylint: disable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "The run's config (its test split and "
                                "image folder are read).", lock_config=True)
flags.DEFINE_string("workdir", None, "A trained run with averaged weights.")
flags.DEFINE_string("checkpoint", "latest", "Its checkpoint: latest | best | a step.")
flags.DEFINE_integer("batches", 50, "Training batches the statistics are measured on "
                     "(config.model.ema_bn_batches's default).")
flags.DEFINE_bool("strokes", False, "Score with the protocol's strokes too (every condition).")
flags.mark_flags_as_required(["config", "workdir"])


def measured_state(config, nets: state_lib.Networks, state: state_lib.GANState,
                   batches: int) -> state_lib.GANState:
  """`state` with G's statistics measured under its averaged weights on the run's first
  `batches` training batches, as training does."""
  if config.seed < 0:
    raise app.UsageError("the run drew its seed (config.seed=-1): its batches are unknown")
  mesh = mesh_lib.create_mesh()
  data = datasets.create_train_dataset(
      config, seed=seeds.run_keys(int(config.seed)).data_seed,
      lineart_on_device=inputs.on_device(config)).take(batches)
  place = inputs.Placer(config, mesh, training=True)
  return jax.device_get(step_lib.with_average_stats(
      step_lib.compile_average_batch_stats(nets, mesh), mesh_lib.replicate(state, mesh),
      (place(b) for b in data.as_numpy_iterator())))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError("too many arguments")
  model = colorizer_lib.Colorizer(FLAGS.workdir, FLAGS.checkpoint)
  saved = model.state
  if saved.g_ema is None or not jax.tree_util.tree_leaves(saved.g_batch_stats):
    raise app.UsageError(f"{FLAGS.workdir}: G has no averaged weights or no BatchNorm")
  model.config.data.image_dir = FLAGS.config.data.image_dir
  measured = measured_state(model.config, model.nets, saved, FLAGS.batches)
  test = (testset_lib.build_test_set(FLAGS.config) if FLAGS.strokes else
          testset_lib.build_test_set(FLAGS.config, strokes=(0,)))
  print(f"{FLAGS.workdir} (step {model.step}): PSNR dB, colourfulness ratio")
  for name, state in (("saved", saved), ("measured", measured)):
    model.state = state
    scores = scoring.score(model.predict_batch, FLAGS.strokes and model.takes_hints, test)
    print(name, json.dumps({f"{e}/{c}": [round(s["psnr"], 2), round(s["colourfulness_ratio"], 2)]
                            for e, conditions in scores.items()
                            for c, s in conditions.items()}))


if __name__ == "__main__":
  app.run(main)
