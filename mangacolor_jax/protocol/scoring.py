"""Scoring any colorizer on the protocol's test set: PSNR, SSIM, L1 in Lab and the
colourfulness ratio (outputs' mean colourfulness over the targets'), per extractor and
per stroke count. A model is a `predict(lineart, hints) -> outputs` function on batches
([B, H, W, 1] and [B, H, W, 4] or None, in [-1, 1]), so the PyTorch peer is scored by the
same code."""

from typing import Callable

import jax
import numpy as np

from mangacolor_jax.nn import image_metrics
from mangacolor_jax.protocol import testset as testset_lib
from mangacolor_jax.training import step as step_lib

Predict = Callable[[np.ndarray, np.ndarray | None], np.ndarray]


def score(predict: Predict, takes_hints: bool, test: testset_lib.TestSet,
          batch: int = 50) -> dict[str, dict[str, dict[str, float]]]:
  """{extractor: {condition: {psnr, ssim, lab_l1, colourfulness_ratio}}}: every extractor
  without hints ("strokes_0") and, for a model that takes hints, the `xdog` line art with
  each count N of the test strokes ("strokes_N") and of strokes painted where the model's
  colours are wrong, ten per look ("guided_N", `testset.paint_where_wrong`)."""
  metrics = jax.jit(step_lib.quality_metrics)
  target_colour = float(np.mean(np.asarray(image_metrics.colourfulness(
      image_metrics.to_unit(test.target)))))

  def colour(art, hints):
    return np.concatenate([
        np.asarray(predict(art[i:i + batch], None if hints is None else hints[i:i + batch]))
        for i in range(0, len(art), batch)])

  def condition(art, hints):
    outputs, sums = colour(art, hints), {}
    for i in range(0, len(art), batch):
      m = metrics(outputs[i:i + batch], test.target[i:i + batch])
      for k, v in jax.device_get(m).items():
        sums[k] = sums.get(k, 0.0) + float(np.sum(np.asarray(v, np.float64)))
    n = len(art)
    return outputs, {
        "psnr": sums["psnr"] / n, "ssim": sums["ssim"] / n, "lab_l1": sums["lab_l1"] / n,
        "colourfulness_ratio": sums["colourfulness"] / n / target_colour}

  out = {}
  for name, art in test.lineart.items():
    plain, scores = condition(art, None)
    out[name] = {"strokes_0": scores}
    # Hints on the training extractor's line art; the others show robustness without.
    if not takes_hints or name != "xdog":
      continue
    for count, hints in test.hints.items():
      if count:
        out[name][f"strokes_{count}"] = condition(art, hints)[1]
    for count in testset_lib.GUIDED:
      hints = testset_lib.paint_where_wrong(colour, plain, test.target, art, count)
      out[name][f"guided_{count}"] = condition(art, hints)[1]
  return out
