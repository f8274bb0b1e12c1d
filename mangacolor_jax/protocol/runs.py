"""Runs of the protocol and their table.

A run is (name, images seen, seed): the config trained from scratch for
`images // batch_size` steps in `ROOT/name/images_N/seed_S`, then its last checkpoint
(the budget's, not the best one) scored on the test set; `result.json` there records it,
`pictures.png` shows its colourings of the first test faces (`pictures.sheet`), and a
finished run is not trained again. `table` averages the results over seeds.
"""

import glob
import json
import os
import time

import numpy as np

from mangacolor_jax.infer import colorizer as colorizer_lib
from mangacolor_jax.protocol import pictures
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


def replace_scores(workdir: str, scores: dict) -> dict:
  """A finished run's result with its scores replaced (a rescore), written back."""
  path = os.path.join(workdir, RESULT)
  with open(path, encoding="utf-8") as f:
    result = json.load(f)
  result["scores"] = scores
  files.write_json(path, result)
  return result


def _score_checkpoint(workdir: str, test: testset_lib.TestSet) -> dict:
  model = colorizer_lib.Colorizer(workdir, "latest")
  scores = scoring.score(model.predict_batch, model.takes_hints, test)
  model_card.add_protocol_scores(workdir, model.step, scores)
  pictures.write(workdir, model.predict_batch, model.takes_hints, test)
  return scores


def train_and_score(config, root: str, name: str, images: int, seed: int,
                    test: testset_lib.TestSet, rescore: bool = False) -> dict:
  """Trains `config` with `seed` for `images` images seen, scores it; a finished run is not
  trained again, and with `rescore` its last checkpoint is scored again (after a change
  to the scoring), keeping what its result records of the training."""
  workdir = run_dir(root, name, images, seed)
  path = os.path.join(workdir, RESULT)
  if os.path.exists(path):
    if rescore:
      return replace_scores(workdir, _score_checkpoint(workdir, test))
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  config = config.copy_and_resolve_references()
  config.seed = seed
  config.num_train_steps = images // config.batch_size
  start = time.time()
  loop.train_and_evaluate(config, workdir)
  wall = time.time() - start
  scores = _score_checkpoint(workdir, test)
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
          "PSNR xdog_thick | +1 stroke | +3 | +10 | +30 | +10 where wrong | +30 where wrong |")
  lines = [head, "|" + " --- |" * (head.count("|") - 1)]
  for (name, images), rs in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
    get = lambda ex, n, m: [r["scores"][ex][n][m] for r in rs if n in r["scores"][ex]]
    base = get("xdog", "strokes_0", "psnr")
    gains = []
    for condition in ("strokes_1", "strokes_3", "strokes_10", "strokes_30", "guided_10",
                      "guided_30"):
      # Each run's gain over its own no-hint score (runs scored before the guided strokes
      # existed have none until --rescore).
      hinted = [(r["scores"]["xdog"][condition]["psnr"]
                 - r["scores"]["xdog"]["strokes_0"]["psnr"]) for r in rs
                if condition in r["scores"]["xdog"]]
      gains.append(_cell(hinted) if hinted else "-")
    lines.append(f"| {name} | {images:,} | {len(rs)} | {_cell(base)} | "
                 f"{_cell(get('xdog', 'strokes_0', 'ssim'), 3)} | "
                 f"{_cell(get('xdog', 'strokes_0', 'lab_l1'))} | "
                 f"{_cell(get('xdog', 'strokes_0', 'colourfulness_ratio'), 2)} | "
                 f"{_cell(get('dilate', 'strokes_0', 'psnr'))} | "
                 f"{_cell(get('xdog_thick', 'strokes_0', 'psnr'))} | "
                 + " | ".join(gains) + " |")
  return "\n".join(lines) + "\n"
