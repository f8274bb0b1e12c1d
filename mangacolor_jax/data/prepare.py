r"""Command line: split a cleaned folder and build the TFDS data set that training reads.

  python -m mangacolor_jax.data.prepare --input data/clean --output data/tfds \
      [--split 70/20/10] [--seed 0] [--cluster_distance 10] [--cluster_colour 0.08]

Then train with `--config.data.source=tfds --config.data.tfds_dir=data/tfds` (see
configs/anime_faces_tfds.py).

`--input` is the output of `mangacolor_jax.data.clean` (its manifest gives ids, tags and
pHashes) or any folder of images (ids from the paths, hashes computed). It is only read.

The split is deterministic: a function of the images, `--split` and `--seed` only.
Near-duplicate clusters never straddle splits: images within `--cluster_distance` pHash bits
and `--cluster_colour` mean colour difference are linked (the clean's near-duplicate test,
looser by default so that pairs just outside the clean's thresholds are caught too), linked
images form clusters (connected components), and whole clusters are dealt out: ordered by a
hash of (seed, the cluster's smallest id), and each goes to the split in whose share of the
ordered images its middle falls, which gives the requested shares to within a cluster.

`--output` (a folder for this data set alone) gets the TFDS data set
`mangacolor_images/1.0.0/` (ArrayRecord shards of 64-256 MB of PNG images, ids and tags,
in id order: see `tfds_builder`), `splits.json` (the ids of each split and the clusters of more than one
image) and `prepare_report.json` (split sizes, cluster statistics, the settings and a
fingerprint of the inputs). The whole folder is built in a temporary folder beside `--output` and
swapped in when complete: the report is never ahead of the data set. Re-running with the
same inputs and settings does nothing (once the data set is checked to load with the
report's split sizes); with different ones it stops unless `--overwrite` is given. Only a
folder that prepare made, holding nothing but what it wrote there (its marker,
`.mangacolor_jax.json`, lists those files), is ever replaced.
"""

import json

from absl import app
from absl import flags

from mangacolor_jax.data import command_line
from mangacolor_jax.data import preparer
from mangacolor_jax.utils import cli

FLAGS = flags.FLAGS


def define_flags():
  """The command's flags; defined only when it runs, so that the module imports cleanly
  beside the other commands (several define --input / --output)."""
  flags.DEFINE_string("input", None, "Cleaned folder (the --output of the clean command).")
  flags.DEFINE_string("output", None, "Folder for the TFDS data set (config.data.tfds_dir).")
  flags.DEFINE_string("split", "70/20/10", "train/validation/test shares.")
  flags.DEFINE_integer("seed", 0, "Seed of the split.")
  flags.DEFINE_integer("cluster_distance", 10, "pHash bits within which images are linked "
                       "into one near-duplicate cluster.")
  flags.DEFINE_float("cluster_colour", 0.08, "...and the largest mean colour difference (8x8 "
                     "thumbnails, [0, 1]).")
  flags.DEFINE_bool("overwrite", False, "Replace a data set built from other images or "
                    "settings.")


def main(argv):
  command_line.check_args(argv, ("input", "output"))
  with cli.user_errors():
    report = preparer.prepare(FLAGS.input, FLAGS.output, split=FLAGS.split, seed=FLAGS.seed,
                              cluster_distance=FLAGS.cluster_distance,
                              cluster_colour=FLAGS.cluster_colour, overwrite=FLAGS.overwrite)
  print(json.dumps({k: report[k] for k in ("data_dir", "images", "splits", "clusters",
                                           "largest_cluster")}, sort_keys=True))


if __name__ == "__main__":
  define_flags()
  cli.run(main)
