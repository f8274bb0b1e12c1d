"""The doctor's data checks: what the input pipeline feeds the model.

Each check takes numpy batches (dicts with "lineart" [B, H, W, 1] and "target"
[B, H, W, 3], as the pipelines give them) and returns a `checklist.Result`: values in the
model's [-1, 1] and centred, batches and images that differ, targets aligned with their
line art, the config's shapes, nothing non-finite.
"""

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mangacolor_jax.debug import checklist
from mangacolor_jax.input_pipeline import lineart
from mangacolor_jax.input_pipeline.tf_cpu import tf
from mangacolor_jax.nn import image_metrics

# Tolerances; each is the boundary between a healthy and a broken run for this project's
# models and data (measured on the default and anime_faces configs).
RANGE_TOLERANCE = 1e-3  # inputs live in [-1, 1]
MEAN_WARN = 0.75  # |mean| of the targets beyond: not centred (white backgrounds
# make illustrations' means positive: ~0.3 to 0.55 here)
DIFFERENT = 1e-6  # mean |a - b| below: two batches (or images) are the same
ALIGN_MARGIN = 0.2  # SSIM(aligned) must exceed SSIM(misaligned) by this much


def _stack(batches: Sequence[dict], key: str) -> np.ndarray:
  return np.concatenate([np.asarray(b[key]) for b in batches])


def check_input_range(train_batches: Sequence[dict], eval_batches: Sequence[dict]
                      ) -> checklist.Result:
  """Line art and targets of training and validation batches in the model's [-1, 1]."""
  parts = []
  worst = 0.0
  for split, batches in (("train", train_batches), ("validation", eval_batches)):
    for key in ("lineart", "target"):
      x = _stack(batches, key)
      lo, hi = float(np.nanmin(x)), float(np.nanmax(x))
      worst = max(worst, abs(lo), abs(hi))
      parts.append(f"{split} {key} [{lo:.3g}, {hi:.3g}]")
  ok = worst <= 1.0 + RANGE_TOLERANCE
  meaning = ("inputs and targets are in [-1, 1] like the generator's tanh output" if ok else
             "values outside [-1, 1]: unscaled inputs (e.g. [0, 255]) or a wrong "
             "normalisation; the tanh output can never match them")
  return checklist.Result("input_range", checklist.status(ok), worst,
                          f"{'; '.join(parts)}: {meaning}")


def check_input_centring(train_batches: Sequence[dict]) -> checklist.Result:
  """Inputs use both halves of [-1, 1] (ink at -1, paper at +1; dark and light colours):
  data left in [0, 1] or [0, 255] never goes below 0. Targets should be roughly centred;
  line art is mostly paper, so its mean is high by nature."""
  target, art = _stack(train_batches, "target"), _stack(train_batches, "lineart")
  t_mean, a_mean = float(np.mean(target)), float(np.mean(art))
  t_min, a_min = float(np.min(target)), float(np.min(art))
  constant = min(float(np.std(target)), float(np.std(art))) < 1e-3
  one_sided = max(t_min, a_min) >= 0.0
  off = abs(t_mean) > MEAN_WARN
  if constant:
    meaning = "an input is constant: nothing to learn from (blank line art or targets)"
  elif one_sided:
    meaning = ("no value below 0: the data is not shifted to [-1, 1] (still [0, 1] or "
               "[0, 255]), so inputs are not centred")
  elif off:
    meaning = f"targets far from zero mean (|mean| > {MEAN_WARN}): check the scaling"
  else:
    meaning = "inputs centred on [-1, 1] (line art is mostly paper: its mean is high)"
  return checklist.Result(
      "input_centring", checklist.status(not (constant or one_sided), off), t_mean,
      f"target mean {t_mean:.3f} (min {t_min:.3g}), line art mean {a_mean:.3f} "
      f"(min {a_min:.3g}): {meaning}")


def check_batches_differ(train_batches: Sequence[dict]) -> checklist.Result:
  """Consecutive batches (and the images inside one) are not copies of each other."""
  if len(train_batches) < 2:
    return checklist.Result("batches_differ", checklist.FAIL, None,
                            "need at least 2 batches to compare")
  targets = [np.asarray(b["target"], np.float64) for b in train_batches]
  between = min(float(np.mean(np.abs(a - b)))
                for i, a in enumerate(targets) for b in targets[i + 1:] if a.shape == b.shape)
  within = min(float(np.mean(np.abs(t[i] - t[j])))
               for t in targets for i in range(len(t)) for j in range(i + 1, len(t)))
  value = min(between, within)
  ok = value > DIFFERENT
  meaning = (f"the {len(targets)} batches and their images all differ" if ok else
             "two batches (or two images of one batch) are identical: the pipeline repeats "
             "data instead of iterating over the set")
  return checklist.Result(
      "batches_differ", checklist.status(ok), value,
      f"smallest mean |difference| between batches {between:.3g}, between images "
      f"of a batch {within:.3g}: {meaning}")


def _extract_lineart(targets01: np.ndarray, upscale: int) -> np.ndarray:
  fn = tf.function(lambda image: lineart.fixed_lineart(image, upscale=upscale),
                   autograph=False)
  return np.stack([fn(tf.constant(t, tf.float32)).numpy() for t in targets01])


def check_target_aligned(train_batches: Sequence[dict], upscale: int = 2) -> checklist.Result:
  """After augmentation, each target still matches its line art.

  Line art is re-extracted from each target (`lineart.fixed_lineart`) and compared with
  the line art fed to the model by SSIM; the same is done against misaligned pairs (the
  target shifted by 4 pixels, and the next example's target). Aligned pairs must score
  clearly higher (by ALIGN_MARGIN): otherwise the augmentation moved one and not the other.
  """
  batch = train_batches[0]
  fed = (np.asarray(batch["lineart"], np.float32) + 1.0) * 0.5
  targets = np.clip((np.asarray(batch["target"], np.float32) + 1.0) * 0.5, 0.0, 1.0)
  extracted = _extract_lineart(targets, upscale)
  ssim = lambda a, b: np.asarray(image_metrics.ssim(jnp.asarray(a), jnp.asarray(b)))
  aligned = ssim(fed, extracted)
  misaligned = np.maximum(ssim(fed, np.roll(extracted, 4, axis=2)),
                          ssim(fed, np.roll(extracted, 1, axis=0)))
  gap = float(np.mean(aligned) - np.mean(misaligned))
  share = float(np.mean(aligned > misaligned))
  ok = gap > ALIGN_MARGIN
  meaning = ("targets match their line art" if ok else
             "line art and targets do not match: an augmentation (crop, flip) applied to one "
             "and not the other, or pairs mixed up")
  if ok and share < 0.9:
    meaning += f", but {1 - share:.0%} of the images match a shifted target better"
  return checklist.Result("target_aligned", checklist.status(ok, share < 0.9), gap,
                          f"SSIM of fed line art to line art re-extracted from its target "
                          f"{np.mean(aligned):.3f}, to misaligned ones {np.mean(misaligned):.3f}: "
                          f"{meaning}")


def check_input_shapes(train_batches: Sequence[dict], eval_batches: Sequence[dict],
                       image_hw: tuple[int, int]) -> checklist.Result:
  """Every batch has the config's image size, 1 line-art and 3 target channels."""
  h, w = image_hw
  seen, bad = set(), []
  for split, batches in (("train", train_batches), ("validation", eval_batches)):
    for b in batches:
      for key, channels in (("lineart", 1), ("target", 3)):
        shape = tuple(np.asarray(b[key]).shape)
        seen.add(shape[1:])
        if shape[1:] != (h, w, channels):
          bad.append(f"{split} {key} {shape}")
  ok = not bad
  meaning = (f"every input is {h}x{w} (HxW) with 1 line-art and 3 colour channels" if ok else
             f"expected [B, {h}, {w}, 1|3], got {', '.join(bad[:3])}")
  return checklist.Result("input_shapes", checklist.status(ok), float(len(seen)), meaning)


def check_finite(train_batches: Sequence[dict], eval_batches: Sequence[dict], state
                 ) -> checklist.Result:
  """No NaN or Inf in the inputs or the initial parameters and statistics."""
  bad = []
  for split, batches in (("train", train_batches), ("validation", eval_batches)):
    for key in ("lineart", "target"):
      n = int(np.sum(~np.isfinite(_stack(batches, key))))
      if n:
        bad.append(f"{n} in {split} {key}")
  leaves = jax.tree_util.tree_leaves_with_path(jax.device_get(
      {"gen": state.g_params, "disc": state.d_params, "gen_stats": state.g_batch_stats,
       "disc_stats": state.d_batch_stats}))
  for path, x in leaves:
    n = int(np.sum(~np.isfinite(np.asarray(x))))
    if n:
      bad.append(f"{n} in {jax.tree_util.keystr(path, simple=True, separator='/')}")
  ok = not bad
  return checklist.Result("finite", checklist.status(ok), float(len(bad)),
                          "no NaN or Inf in inputs, targets or initial variables" if ok else
                          f"non-finite values: {', '.join(bad[:4])}")
