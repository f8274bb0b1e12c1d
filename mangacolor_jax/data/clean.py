r"""Command line: clean a folder of illustrations into a data set worth training on.

  python -m mangacolor_jax.data.clean --input data/raw --output data/clean \
      [--min_side 64] [--near_duplicate_distance 6] [--max_line_density 0.3] \
      [--min_character_area 0.2] [--max_per_tag 0 --balance_tags ...]

Reads every JPEG / PNG / WebP / GIF / BMP / TIFF under `--input` (recursively; hidden files
and folders are skipped) and never modifies or deletes anything there. If `--input` holds a
crawl manifest (`manifest.jsonl` of `mangacolor_jax.data.crawl`), each image keeps its id,
tags and rating; otherwise its id is its path.

Each kept image is written to `--output/images/<id>.png` as 8-bit RGB: EXIF orientation
applied, transparency composited on white (the paper of a drawing), palette, CMYK, 16-bit,
float, bilevel and grayscale inputs converted. A file is dropped, for the first reason that
applies, in this order:

  undecodable          zero bytes, truncated, not an image (an HTML page named .png), or a
                       colour mode PIL cannot convert
  decompression_bomb   more than --max_pixels pixels (checked from the header, before
                       decoding)
  too_small            shorter side under --min_side
  exact_duplicate      same pixels as an earlier file (SHA-256 of the decoded RGB, so a
                       lossless re-encode counts), whatever the format
  too_intricate        line density over --max_line_density: the share of line pixels in
                       the dilation-difference line art (`lineart.dilation_difference`,
                       gain 2.5: pixels whose local contrast is over 0.2) of the image
                       shrunk so its shorter side is at most --analysis_side. Dense
                       strands, frills, hatching and screentone score high: the series'
                       "too intricate to learn from". Not XDoG's ink share: XDoG fills
                       dark areas with ink, so on the development faces it ranked black
                       hair, not intricate drawing, and a cut on it dropped dark-haired
                       characters as a class
  small_character      the character covers less than --min_character_area of the image:
                       where the image's border is a flat colour (the background), the
                       bounding box of the pixels that differ from it (rows and columns with
                       at least 2 % such pixels, which ignores specks and signatures) over
                       the image area. A busy border means no flat background to measure
                       against; such images are kept
  near_duplicate       perceptual hash (64-bit DCT pHash) within --near_duplicate_distance
                       bits of an image kept already; the larger image is kept
  balance              with --max_per_tag N: more than N images already kept for one of its
                       capped tags (--balance_tags, or the character tags the crawl recorded)

Re-running replaces `--output` as a whole (it is built beside it and swapped in), so a
report always describes the images next to it. Only a folder that clean made may be
replaced, and only while it holds nothing but what clean wrote there: its marker
(`.mangacolor_jax.json`) lists those files, and a folder with any other file is refused
(`mangacolor_jax.utils.files`). The report: `report.json` and `report.md`
(counts per reason, the settings, percentiles and a histogram of line density and character
area so a threshold can be chosen from the data), `line_density.png` (that histogram, with
the threshold), `dropped.jsonl` (each dropped file, why, and the numbers behind it),
`manifest.jsonl` (each kept image: id, file, source, size, sha256, phash, line density,
character area, tags), and contact sheets in `sheets/`: kept images, each reason's dropped
images, and the kept images of highest line density (what a lower threshold would drop next).
"""

import json

from absl import app
from absl import flags

from mangacolor_jax.data import cleaner
from mangacolor_jax.data import command_line
from mangacolor_jax.utils import cli

FLAGS = flags.FLAGS


def define_flags():
  """The command's flags; defined only when it runs, so that the module imports cleanly
  beside the other commands (several define --input / --output)."""
  flags.DEFINE_string("input", None, "Folder of images: a crawl's --out (its manifest's "
                      "files), or any folder (every image file in it).")
  flags.DEFINE_string("output", None, "Folder for the cleaned data set (replaced as a whole).")
  defaults = cleaner.Options()
  flags.DEFINE_integer("min_side", defaults.min_side, "Drop images whose shorter side is smaller.")
  flags.DEFINE_integer("max_pixels", defaults.max_pixels, "Drop larger images (decompression "
                       "bombs) before decoding them.")
  flags.DEFINE_integer("near_duplicate_distance", defaults.near_duplicate_distance,
                       "pHash bits within which two images can be near copies (even: pHashes "
                       "have 32 ones, so distances are even).")
  flags.DEFINE_float("near_duplicate_colour", defaults.near_duplicate_colour,
                     "...and the largest mean colour difference (8x8 thumbnails, [0, 1]).")
  flags.DEFINE_float("max_line_density", defaults.max_line_density,
                     "Drop images whose line art has a larger share of line pixels (see the "
                     "report's histogram to choose).")
  flags.DEFINE_integer("analysis_side", defaults.analysis_side,
                       "Line density is measured with the shorter side shrunk to this (never "
                       "enlarged): use about the training resolution.")
  flags.DEFINE_float("min_character_area", defaults.min_character_area,
                     "Drop images on a flat background whose character's bounding box covers "
                     "less of the image.")
  flags.DEFINE_float("background_tolerance", defaults.background_tolerance,
                     "Colour distance ([0, 1], max over channels) that still counts as "
                     "background.")
  flags.DEFINE_integer("max_per_tag", defaults.max_per_tag, "Balance: at most this many images per "
                       "capped tag (0: no cap).")
  flags.DEFINE_list("balance_tags", [], "Tags to cap (default: the character tags of the "
                    "crawl manifest).")
  flags.DEFINE_integer("workers", defaults.workers, "Threads (0: one per CPU, at most 8).")


def main(argv):
  command_line.check_args(argv, ("input", "output"))
  opts = cleaner.Options(
      min_side=FLAGS.min_side, max_pixels=FLAGS.max_pixels,
      near_duplicate_distance=FLAGS.near_duplicate_distance,
      near_duplicate_colour=FLAGS.near_duplicate_colour,
      max_line_density=FLAGS.max_line_density, analysis_side=FLAGS.analysis_side,
      min_character_area=FLAGS.min_character_area,
      background_tolerance=FLAGS.background_tolerance,
      max_per_tag=FLAGS.max_per_tag, balance_tags=tuple(FLAGS.balance_tags),
      workers=FLAGS.workers)
  with cli.user_errors():
    report = cleaner.clean(FLAGS.input, FLAGS.output, opts)
  print(json.dumps({"output": report["output"], **report["counts"]}, sort_keys=True))


if __name__ == "__main__":
  define_flags()
  cli.run(main)
