"""Runs of the protocol and their table.

A run is (name, images seen, seed): the config trained from scratch for
`images // batch_size` steps in `ROOT/name/images_N/seed_S`, then its last checkpoint
(the budget's, not the best one) scored on the test set; `result.json` there records it,
and a finished run is not trained again. `table` averages the results over seeds.
"""

import glob
import json
import os
import time

import numpy as np

from mangacolor_jax.infer import colorizer as colorizer_lib
from mangacolor_jax.protocol import scoring
from mangacolor_jax.protocol import testset as testset_lib
from mangacolor_jax.training import loop
from mangacolor_jax.training import model_card
from mangacolor_jax.utils import files

RESULT = "result.json"


def run_dir(root: str, name: str, images: int, seed: int) -> str:
  return os.path.join(root, name, f"images_{images}", f"seed_{seed}")


def write_result(workdir: str, name: str, images: int, seed: int, scores: dict,
                 **extra) -> dict:
  result = {"name": name, "images": images, "seed": seed, "scores": scores, **extra}
  files.write_json(os.path.join(workdir, RESULT), result)
  return result


def train_and_score(config, root: str, name: str, images: int, seed: int,
                    test: testset_lib.TestSet) -> dict:
  """Trains `config` with `seed` for `images` images seen, scores it; skips a finished run."""
  workdir = run_dir(root, name, images, seed)
  path = os.path.join(workdir, RESULT)
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  config = config.copy_and_resolve_references()
  config.seed = seed
  config.num_train_steps = images // config.batch_size
  start = time.time()
  loop.train_and_evaluate(config, workdir)
  wall = time.time() - start
  model = colorizer_lib.Colorizer(workdir, "latest")
  scores = scoring.score(model.predict_batch, model.takes_hints, test)
  model_card.add_protocol_scores(workdir, model.step, scores)
  return write_result(workdir, name, images, seed, scores, steps=config.num_train_steps,
                      train_seconds=round(wall, 1))


def load_results(root: str) -> list[dict]:
  out = []
  for path in sorted(glob.glob(os.path.join(root, "*", "images_*", "seed_*", RESULT))):
    with open(path, encoding="utf-8") as f:
      out.append(json.load(f))
  return out


def _cell(values: list[float], digits: int = 2) -> str:
  if not values:
    return "-"
  if len(values) == 1:
    return f"{values[0]:.{digits}f}"
  return f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f}"


def table(results: list[dict]) -> str:
  """Markdown: per (name, images), means ± sd over seeds of the test metrics."""
  groups: dict[tuple[str, int], list[dict]] = {}
  for r in results:
    groups.setdefault((r["name"], r["images"]), []).append(r)
  head = ("| run | images | seeds | PSNR xdog | SSIM | Lab L1 | colourful. | PSNR dilate | "
          "PSNR xdog_thick | +1 stroke | +3 | +10 | +30 |")
  lines = [head, "|" + " --- |" * (head.count("|") - 1)]
  for (name, images), rs in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
    get = lambda ex, n, m: [r["scores"][ex][f"strokes_{n}"][m] for r in rs
                            if f"strokes_{n}" in r["scores"][ex]]
    base = get("xdog", 0, "psnr")
    gains = []
    for n in (1, 3, 10, 30):
      hinted = get("xdog", n, "psnr")
      gains.append(_cell([h - b for h, b in zip(hinted, base)]) if hinted else "-")
    lines.append(f"| {name} | {images:,} | {len(rs)} | {_cell(base)} | "
                 f"{_cell(get('xdog', 0, 'ssim'), 3)} | {_cell(get('xdog', 0, 'lab_l1'))} | "
                 f"{_cell(get('xdog', 0, 'colourfulness_ratio'), 2)} | "
                 f"{_cell(get('dilate', 0, 'psnr'))} | {_cell(get('xdog_thick', 0, 'psnr'))} | "
                 + " | ".join(gains) + " |")
  return "\n".join(lines) + "\n"
