r"""Command line: download illustrations by tag from a Safebooru / Danbooru-style image board.

  python -m mangacolor_jax.data.crawl --site safebooru --tags "1girl solo" --limit 500 \
      --out data/raw [--exclude_tags "comic monochrome"] [--rating safe] [--min_side 256] \
      [--rate 1.0] [--base_url URL]

Talks to the boards' public JSON APIs: Safebooru (Gelbooru 0.2:
`/index.php?page=dapi&s=post&q=index&json=1&tags=..&limit=..&pid=..`) and Danbooru
(`/posts.json?tags=..&limit=..&page=..`). `--base_url` points either at another host that
speaks the same API (a mirror, or the fake server of the tests).

Polite: at most `--rate` requests per second (API pages and image downloads together), a
User-Agent naming the project, exponential back-off on 429 and 5xx (a Retry-After header is
honoured, capped at `--max_backoff`), time-outs, and at most `--max_retries` retries per
request.

`--out` must be a new or empty folder, or one that crawl made (its marker,
`.mangacolor_jax.json`): crawl never writes into a folder of someone else's.

Safe and resumable: each image is downloaded into memory, its md5 checked against the one the
API gives, written to a hidden temporary name and renamed into place; a short, corrupt or
mismatched download is never kept. `--out/manifest.jsonl` gets one JSON line per image kept
(id, site, post id, md5, tags, character tags when the site gives them, rating, width,
height, file, source URL). Re-running with the same `--out` continues where the last run
stopped (the page it was on is in `crawl_state.json`) and downloads nothing twice: posts in
the manifest are skipped, and a file that is already in place with the right md5 (a run
killed between the rename and the manifest line) is recorded without downloading it again.
`--limit` counts the images in the manifest, so re-running a finished crawl does nothing and
raising the limit downloads only the difference.

Filters run on the API's metadata, before any download: `--rating` (comma-separated
general / sensitive / questionable / explicit; `safe` means general, `any` turns the filter
off), `--exclude_tags` (a post with any of them is skipped), `--min_side` (the shorter side
in pixels) and the file type (JPEG, PNG and WebP only: no GIF, video or archives). Counts of
what was skipped, and why, go to `crawl_report.json` and the log.
"""

import json

from absl import app
from absl import flags

from mangacolor_jax.data import boards
from mangacolor_jax.data import command_line
from mangacolor_jax.data import crawler
from mangacolor_jax.data import http_client
from mangacolor_jax.utils import cli

FLAGS = flags.FLAGS


def define_flags():
  """The command's flags; defined only when it runs, so that the module imports cleanly
  beside the other commands (several define --input / --output)."""
  flags.DEFINE_enum("site", "safebooru", sorted(boards.SITES), "Which board API to speak.")
  flags.DEFINE_string("tags", None, "The search, space-separated (e.g. \"1girl solo\").")
  flags.DEFINE_string("exclude_tags", "", "Space-separated tags; posts with any are skipped.")
  flags.DEFINE_integer("limit", None, "Images wanted in --out's manifest (earlier runs count).")
  flags.DEFINE_string("out", None, "Output folder: images/, manifest.jsonl and reports.")
  flags.DEFINE_string("rating", "safe",
                      "Comma-separated ratings to keep: safe (= general), sensitive, "
                      "questionable, explicit; or any.")
  flags.DEFINE_integer("min_side", 256, "Skip posts whose shorter side is smaller (pixels).")
  flags.DEFINE_float("rate", 1.0, "At most this many requests per second.")
  flags.DEFINE_string("base_url", None, "API host (default: the site's own).")
  flags.DEFINE_integer("page_size", 100, "Posts per API page (Safebooru <= 1000, Danbooru "
                       "<= 200).")
  flags.DEFINE_integer("max_pages", 1000, "API pages fetched by one run at most.")
  flags.DEFINE_float("timeout", 30.0, "Seconds a connection may stay silent before a retry.")
  flags.DEFINE_float("max_seconds", 300.0, "Seconds one request may take in all, however "
                     "slowly the server sends, before it is abandoned and retried.")
  flags.DEFINE_integer("max_retries", 5, "Retries per request (429, 5xx, time-outs, short "
                       "bodies, malformed JSON).")
  flags.DEFINE_float("backoff", 2.0, "First back-off in seconds, doubled on each retry.")
  flags.DEFINE_float("max_backoff", 120.0, "Longest back-off, Retry-After included (s).")
  flags.DEFINE_integer("max_file_mb", 64, "Larger files are not downloaded.")
  flags.DEFINE_bool("allow_any_host", False, "Download file URLs on any http(s) host, not "
                    "only the API's and the site's known file hosts.")


def main(argv):
  # An empty --tags or a --limit of 0 is the crawl's to refuse, with its own message.
  command_line.check_args(argv, ("tags", "limit", "out"), empty_is_missing=False)
  try:
    client = http_client.HttpClient(
        rate=FLAGS.rate, timeout=FLAGS.timeout, max_retries=FLAGS.max_retries,
        backoff=FLAGS.backoff, max_backoff=FLAGS.max_backoff,
        max_bytes=FLAGS.max_file_mb * 2**20, max_seconds=FLAGS.max_seconds)
    opts = crawler.CrawlOptions(
        site=FLAGS.site, tags=FLAGS.tags, limit=FLAGS.limit, out=FLAGS.out,
        exclude_tags=FLAGS.exclude_tags.split(), rating=FLAGS.rating,
        min_side=FLAGS.min_side, base_url=FLAGS.base_url, page_size=FLAGS.page_size,
        max_pages=FLAGS.max_pages, allow_any_host=FLAGS.allow_any_host)
    report = crawler.crawl(opts, client)
  except (boards.CrawlError, ValueError) as e:
    cli.fail(str(e))
  print(json.dumps(report, sort_keys=True))


if __name__ == "__main__":
  define_flags()
  cli.run(main)
