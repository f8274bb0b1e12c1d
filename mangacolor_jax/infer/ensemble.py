"""Ensembles: several trained generators whose outputs are averaged, optionally weighted
(several runs, or several checkpoints of one run), with `Colorizer`'s call signature."""

import os

import numpy as np

from mangacolor_jax.infer import colorizer as colorizer_lib
from mangacolor_jax.training import checkpointing
from mangacolor_jax.utils import images


def checkpoint_metrics(workdir: str, step: int) -> dict[str, float]:
  """The eval metrics saved with checkpoint `step` of `workdir` ({} if none)."""
  ckpt = checkpointing.Checkpointer(os.path.join(workdir, "checkpoints"), create=False)
  try:
    return ckpt.metrics(step) or {}
  finally:
    ckpt.close()


WEIGHTINGS = ("uniform", "psnr", "disc")
# The --ensemble_weights flag's help, for the commands that take ensembles.
WEIGHTINGS_HELP = ("Ensemble weights: uniform; psnr (each member's validation PSNR saved with "
                   "its checkpoint); disc (each member's discriminator's score of its output, "
                   "per image).")


def parse_members(workdirs: str | None, checkpoints: str | None) -> list[tuple[str, str]]:
  """Ensemble members from comma-separated workdirs and/or checkpoints.

  "A,B,C" with checkpoint "best" gives each run's best checkpoint; one workdir with
  "1000,2000,3000" gives three steps of that run. Several of each is ambiguous and refused.
  """
  dirs = [d.strip() for d in (workdirs or "").split(",") if d.strip()]
  steps = [c.strip() for c in (checkpoints or "best").split(",") if c.strip()] or ["best"]
  if not dirs:
    raise ValueError("an ensemble needs at least one workdir")
  if len(dirs) > 1 and len(steps) > 1:
    raise ValueError(f"give several workdirs ({len(dirs)}) or several checkpoints "
                     f"({len(steps)}), not both")
  members = [(d, s) for d in dirs for s in steps]
  if len(set(members)) != len(members):
    raise ValueError(f"an ensemble member appears twice: {members}")
  return members


class EnsembleColorizer:
  """Several trained generators whose outputs are averaged, optionally weighted.

  Weighting (`weights`):
    uniform: the plain mean.
    psnr: each member's validation PSNR saved with its checkpoint, turned into
      1 / MSE = 10**(PSNR / 10): the inverse-error weights that minimise the error of a
      mean of independent estimates (a PSNR difference of 1 dB is a weight ratio of 1.26).
    disc: per image, each member's own discriminator's mean "real" score of that member's
      output (its confidence in it). Discriminators of different runs are not calibrated
      against each other, so this weighting is a heuristic; it needs GAN members.

  The call signature is `Colorizer`'s: `ensemble(lineart, hints) -> uint8 [H, W, 3]`.
  """

  def __init__(self, members: list[tuple[str, str | int]], weights: str = "uniform"):
    if weights not in WEIGHTINGS:
      raise ValueError(f"ensemble weights {weights!r} is not one of {WEIGHTINGS}")
    if not members:
      raise ValueError("an ensemble needs at least one member")
    self.members = [colorizer_lib.Colorizer(w, c) for w, c in members]
    self.weighting = weights
    self.metrics = [checkpoint_metrics(m.workdir, m.step) for m in self.members]
    self.static_weights = np.full(len(self.members), 1.0 / len(self.members))
    if weights == "psnr":
      psnr = []
      for m, metrics in zip(self.members, self.metrics):
        if "eval_psnr" not in metrics:
          raise ValueError(f"step {m.step} of {m.workdir} was saved without eval_psnr: "
                           "use --ensemble_weights=uniform or another checkpoint")
        psnr.append(metrics["eval_psnr"])
      w = 10.0**((np.asarray(psnr) - max(psnr)) / 10.0)
      self.static_weights = w / w.sum()
    elif weights == "disc":
      for m in self.members:
        if not m.has_discriminator:
          raise ValueError(f"--ensemble_weights=disc: step {m.step} of {m.workdir} has no "
                           "discriminator (loss.gan=none)")
    self.config = self.members[0].config
    self.step = [m.step for m in self.members]

  @property
  def takes_hints(self) -> bool:
    """True when every member takes hints (members that do not would ignore them)."""
    return all(m.takes_hints for m in self.members)

  def weights_for(self, lineart: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    """[M, B] weights (summing to 1 over members) for member outputs [M, B, H, W, 3]."""
    if self.weighting != "disc":
      return np.repeat(self.static_weights[:, None], outputs.shape[1], axis=1)
    scores = np.stack([m.disc_score(lineart, out) for m, out in zip(self.members, outputs)])
    scores = np.maximum(scores, 1e-6)
    return scores / scores.sum(axis=0, keepdims=True)

  def predict_members(self, lineart: np.ndarray, hint_tensor: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Colours a batch with every member.

    Returns:
      (ensemble [B, H, W, 3], members [M, B, H, W, 3], weights [M, B]), floats in [-1, 1].
    """
    outputs = np.stack([
        m.predict_batch(lineart, hint_tensor if m.takes_hints else None)
        for m in self.members])
    weights = self.weights_for(lineart, outputs)
    mean = np.einsum("mb,mbhwc->bhwc", weights, outputs).astype(np.float32)
    return mean, outputs, weights

  def predict_batch(self, lineart: np.ndarray, hint_tensor: np.ndarray | None = None
                    ) -> np.ndarray:
    return self.predict_members(lineart, hint_tensor)[0]

  def predict(self, lineart: np.ndarray, hint_tensor: np.ndarray | None = None
              ) -> np.ndarray:
    return colorizer_lib.predict_one(self.predict_batch, lineart, hint_tensor)

  def __call__(self, lineart: np.ndarray, hint_tensor: np.ndarray | None = None
               ) -> np.ndarray:
    """Colours one [H, W, 1] line art in [-1, 1] with the ensemble; uint8 [H, W, 3]."""
    return images.to_uint8(self.predict(lineart, hint_tensor))
