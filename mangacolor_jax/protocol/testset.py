"""The protocol's test set: the images of a config's test split, their line art from three
extractors, and painted hints of fixed stroke counts.

The extractors are training's two at the middle of their ranges (`xdog`, sigma 0.4;
`dilate`, gain 2.5) and one that training never uses (`xdog_thick`, sigma 0.8: thicker
lines and inked dark areas), so a model that only knows its own line art shows it. Hints are
`hints.stroke_hints` strokes from fixed keys and of a fixed shape (`PAINTED`, not the
trained config's `hints`), the same for every model, placed on the `xdog` line art and
scored with it: a change to the strokes training draws is measured on the same strokes.

Those strokes start anywhere on paper, so most land on skin and background. A person looks
at the colouring first and paints where it is wrong: `guided_hints` places the same kind of
strokes there, from the model's own no-hint output, so each model gets its own. More than
`GUIDED_PER_LOOK` strokes are painted in rounds (`paint_where_wrong`): ten where the
no-hint colouring is wrong, then, after looking at the colouring those ten give, ten where
it is still wrong, and so on, as a person who looks again paints.
"""

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from scipy import ndimage

from mangacolor_jax.input_pipeline import datasets
from mangacolor_jax.input_pipeline import lineart
from mangacolor_jax.input_pipeline.tf_cpu import tf
from mangacolor_jax.nn import hints as hints_lib

EXTRACTORS = {
    "xdog": lambda image, upscale: lineart.xdog(image, 0.4, upscale=upscale),
    "dilate": lambda image, upscale: lineart.dilation_difference(image, 2.5),
    "xdog_thick": lambda image, upscale: lineart.xdog(image, 0.8, upscale=upscale,
                                                      max_sigma=0.8),
}
STROKES = (0, 1, 3, 10, 30)
# The shape of the painted strokes: configs/default.py's `hints` stroke fields, which every
# row of docs/quality.md was scored with.
PAINTED = ml_collections.FrozenConfigDict({
    "max_strokes": 30, "stroke_length": (0.05, 0.25), "stroke_width": (1.0, 3.0),
    "region_tolerance": 0.25})
# Key of the test hints: fixed, so every model is scored with the same strokes.
_HINTS_SEED = 20261202
# Stroke counts of the strokes painted where the colours are wrong (`guided_hints`).
GUIDED = (1, 3, 10, 30)
# Strokes painted per look at the colouring: 30 are three rounds of 10.
GUIDED_PER_LOOK = 10
_GUIDED_SEED = 20261206


@dataclasses.dataclass
class TestSet:
  """Arrays in [-1, 1]: target [N, H, W, 3]; lineart[extractor] [N, H, W, 1];
  hints[strokes] [N, H, W, 4] (none for 0 strokes)."""
  names: list[str]
  target: np.ndarray
  lineart: dict[str, np.ndarray]
  hints: dict[int, np.ndarray | None]


def line_art(target: np.ndarray, extract: Callable[[tf.Tensor], tf.Tensor],
             batch: int = 64) -> np.ndarray:
  """`extract` (an [H, W, 3] image in [0, 1] to its [H, W, 1] line art) over `target`
  ([N, H, W, 3] in [-1, 1]) in batches: [N, H, W, 1] in [-1, 1]."""
  fn = tf.function(lambda x: tf.map_fn(extract, x))
  return np.concatenate([fn(tf.constant((target[i:i + batch] + 1.0) / 2.0)).numpy()
                         for i in range(0, len(target), batch)]) * 2.0 - 1.0


def build_test_set(config, strokes=STROKES, batch: int = 64) -> TestSet:
  """The test split of `config` (`datasets.create_eval_dataset(split="test")`)."""
  names, targets = [], []
  for b in datasets.create_eval_dataset(config, split="test").as_numpy_iterator():
    keep = b["valid"] > 0
    names += [n.decode() for n in b["name"][keep]]
    targets.append(b["target"][keep])
  target = np.concatenate(targets)
  upscale = int(config.data.lineart_upscale)
  arts = {name: line_art(target, lambda im, extract=extract: extract(im, upscale), batch)
          for name, extract in EXTRACTORS.items()}
  hints = {}
  for count in strokes:
    if count == 0:
      hints[count] = None
      continue
    key = jax.random.fold_in(jax.random.key(_HINTS_SEED), count)
    strokes_fn = jax.jit(lambda k, t, a, count=count: hints_lib.stroke_hints(
        k, t, a, jnp.full((t.shape[0],), count, jnp.int32), PAINTED))
    hints[count] = np.concatenate([
        np.asarray(strokes_fn(jax.random.fold_in(key, i), target[i:i + batch],
                              arts["xdog"][i:i + batch]))
        for i in range(0, len(target), batch)])
  return TestSet(names, target, arts, hints)


def guided_hints(plain: np.ndarray, target: np.ndarray, lineart: np.ndarray, count: int,
                 look: int = 0, batch: int = 64) -> np.ndarray:
  """`count` strokes per image where a person would paint them: where `plain` is wrong.

  `plain` is a model's output without hints on `lineart` ([N, H, W, 3], [-1, 1]). Each
  stroke (of the `PAINTED` shape, carrying its region's colour like every test stroke)
  starts at a paper pixel drawn in proportion to the square of the colour error there
  (the mean over channels of |plain - target|, averaged over the pixel's 5x5 neighbourhood):
  the wrongly coloured regions get the strokes, the worst the most, and a region coloured
  right gets next to none. The key is fixed by `count` and `look` (the round, counted
  from 0), so the same outputs give the same strokes.
  """
  error = ndimage.uniform_filter(np.mean(np.abs(plain - target), axis=-1), size=(1, 5, 5))
  key = jax.random.fold_in(jax.random.key(_GUIDED_SEED), count)
  if look:
    key = jax.random.fold_in(key, look)
  strokes_fn = jax.jit(lambda k, t, a, wt: hints_lib.stroke_hints(
      k, t, a, jnp.full((t.shape[0],), count, jnp.int32), PAINTED, start_weight=wt))
  return np.concatenate([
      np.asarray(strokes_fn(jax.random.fold_in(key, i), target[i:i + batch],
                            lineart[i:i + batch], np.square(error[i:i + batch])))
      for i in range(0, len(target), batch)])


def paint_where_wrong(predict: Callable[[np.ndarray, np.ndarray], np.ndarray],
                      plain: np.ndarray, target: np.ndarray, lineart: np.ndarray,
                      count: int) -> np.ndarray:
  """`count` strokes where the colours are wrong, `GUIDED_PER_LOOK` per look: each round
  is painted (`guided_hints`) where the colouring of the strokes so far is wrong, and
  `predict(lineart, hints)` gives that colouring (`plain` is the one without hints). A new
  stroke covers the old ones it crosses. The first round's strokes are `guided_hints`' of
  `min(count, GUIDED_PER_LOOK)`, so 30 strokes start with the same 10 as 10 strokes."""
  hints = guided_hints(plain, target, lineart, min(count, GUIDED_PER_LOOK))
  for look, painted in enumerate(range(GUIDED_PER_LOOK, count, GUIDED_PER_LOOK), start=1):
    more = guided_hints(predict(lineart, hints), target, lineart,
                        min(count - painted, GUIDED_PER_LOOK), look=look)
    hints = np.where(more[..., 3:] > 0, more, hints)
  return hints
