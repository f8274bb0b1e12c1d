r"""Command line: the quality protocol (docs/quality.md).

  python -m mangacolor_jax.quality --config configs/anime_faces.py --workdir runs/quality \
      --name faces --seeds 0,1,2 --images 32000,128000 \
      --config.data.image_dir=../shared/data/anime_faces/faces64
  python -m mangacolor_jax.quality --workdir runs/quality --table_only

Trains the config from scratch once per seed and budget of images seen (each in
WORKDIR/NAME/images_N/seed_S; a finished run is kept and not trained again), scores its
last checkpoint on the config's test split (`config.data.test_fraction` of the folder, held
out before training and validation ever read it), with line art from three extractors and
with 0, 1, 3, 10 and 30 painted strokes, and writes the table of every run under WORKDIR to
WORKDIR/results.md (means ± standard deviations over seeds). `scripts/quality.sh` runs the
whole protocol: the project's recipe, its L1-only run and the PyTorch pix2pix peer.
"""

import os

from absl import app
from absl import flags
from ml_collections import config_flags

from mangacolor_jax.utils import cli

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Training configuration file.",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Root folder of the protocol's runs.")
flags.DEFINE_string("name", None, "Name of these runs (default: the config file's name).")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds, one run each.")
flags.DEFINE_list("images", ["32000"], "Budgets of training images seen.")
flags.DEFINE_bool("table_only", False, "Only write the table of the runs under --workdir.")
flags.DEFINE_bool("rescore", False, "Score the finished runs' last checkpoints again (after "
                  "a change to the scoring); runs not yet trained are trained.")
flags.mark_flags_as_required(["workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError("Too many command-line arguments.")
  # Imported here so that --help answers without loading JAX and TensorFlow.
  from mangacolor_jax.protocol import runs  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.protocol import testset  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.training import config_check  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.utils import files  # pylint: disable=g-import-not-at-top

  if not FLAGS.table_only:
    config = FLAGS.config
    if config is None:
      raise app.UsageError("--config is required (or --table_only)")
    with cli.user_errors():
      config_check.validate_config(config)
      if config.data.test_fraction <= 0 and config.data.source == "folder":
        raise ValueError("config.data.test_fraction is 0: the protocol scores on a test "
                         "split that training never reads")
      seeds, budgets = [int(s) for s in FLAGS.seeds], [int(i) for i in FLAGS.images]
    name = FLAGS.name or os.path.splitext(
        os.path.basename(FLAGS["config"].config_filename.split(":")[0]))[0]
    test = testset.build_test_set(config)
    for images in budgets:
      for seed in seeds:
        result = runs.train_and_score(config, FLAGS.workdir, name, images, seed, test,
                                      rescore=FLAGS.rescore)
        xdog = result["scores"]["xdog"]["strokes_0"]
        print(f"{name} images={images} seed={seed}: PSNR {xdog['psnr']:.2f} dB, "
              f"colourfulness {xdog['colourfulness_ratio']:.2f}", flush=True)
  text = runs.table(runs.load_results(FLAGS.workdir))
  files.write_text(os.path.join(FLAGS.workdir, "results.md"), text)
  print(text)


if __name__ == "__main__":
  cli.run(main)
