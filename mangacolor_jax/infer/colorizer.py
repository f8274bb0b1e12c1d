"""Loading a trained generator from a workdir and colouring line art of any size.

The generator is fully convolutional, so a sketch of any size and aspect is padded with
paper (white) up to a multiple of 2**depth, coloured, and cropped back: never squashed.
One compiled function per padded shape: repeated calls of one shape never recompile.

`ensemble.EnsembleColorizer` averages several models (several runs, or several checkpoints
of one run) with the same call signature as `Colorizer`.
"""

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image

from mangacolor_jax.runtime import compile as compile_lib
from mangacolor_jax.training import checkpointing
from mangacolor_jax.training import config_check
from mangacolor_jax.training import state as state_lib
from mangacolor_jax.utils import images


def load_config_and_state(workdir: str, checkpoint: str | int = "best"
                          ) -> tuple[ml_collections.ConfigDict, state_lib.GANState, int]:
  """Restores (config, state, step) from `workdir/checkpoints` on the default device."""
  directory = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"no checkpoints in {workdir!r} (expected {directory}); "
                            "train first with python -m mangacolor_jax.train")
  ckpt = checkpointing.Checkpointer(directory, create=False)
  step = ckpt.resolve(checkpoint)
  meta = ckpt.restore_meta(step)
  config = ml_collections.ConfigDict(config_check.upgrade_saved_config(meta["config"]))
  nets = state_lib.create_networks(config)
  abstract = jax.eval_shape(nets.create_state, jax.random.key(0))
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  abstract = jax.tree_util.tree_map(
      lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=device), abstract)
  state, _ = ckpt.restore(step, abstract)
  ckpt.close()
  return config, state, step


def read_lineart(path: str, normalize: bool = True) -> np.ndarray:
  """Reads a sketch as float32 [H, W, 1] in [-1, 1] (1 = paper).

  With `normalize`, the 1st and 99th percentiles are stretched to black and white so that
  a photographed pencil sketch on grey paper looks like the line art seen in training.
  """
  try:
    with Image.open(path) as im:
      im = im.convert("RGBA") if im.mode in ("RGBA", "LA", "P") else im
      if im.mode == "RGBA":  # transparent background = paper
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, im)
      gray = np.asarray(im.convert("L"), np.float32) / 255.0
  except (OSError, ValueError) as e:
    raise ValueError(f"cannot read line art {path!r}: {e}") from e
  if normalize:
    lo, hi = np.percentile(gray, [1, 99])
    if hi - lo > 1e-3:
      gray = np.clip((gray - lo) / (hi - lo), 0.0, 1.0)
  return gray[..., None] * 2.0 - 1.0


def predict_one(predict_batch, lineart: np.ndarray, hint_tensor: np.ndarray | None
                ) -> np.ndarray:
  """Runs a batch predictor on one [H, W, 1] line art (and optional [H, W, 4] hints)."""
  h, w = lineart.shape[:2]
  if hint_tensor is not None and hint_tensor.shape[:2] != (h, w):
    raise ValueError(f"hints are {hint_tensor.shape[1]}x{hint_tensor.shape[0]} but the "
                     f"line art is {w}x{h}; they must be the same size")
  hints = None if hint_tensor is None else hint_tensor[None]
  return predict_batch(lineart[None], hints)[0]


class Colorizer:
  """A trained generator, ready to colour line art of any size.

  Example:
    colorizer = Colorizer("runs/faces")
    rgb = colorizer(read_lineart("sketch.png"))   # uint8 [H, W, 3]
  """

  def __init__(self, workdir: str, checkpoint: str | int = "best"):
    self.workdir = workdir
    self.config, self.state, self.step = load_config_and_state(workdir, checkpoint)
    self.nets = state_lib.create_networks(self.config)
    self._disc = None
    self.multiple = 2**self.config.model.gen.depth
    self._generate = compile_lib.jit(self.nets.generate, self.config)

  @property
  def takes_hints(self) -> bool:
    return self.nets.use_hints

  def __call__(self, lineart: np.ndarray, hint_tensor: np.ndarray | None = None
               ) -> np.ndarray:
    """Colours one [H, W, 1] line art in [-1, 1]; returns uint8 [H, W, 3].

    Args:
      lineart: the sketch, 1 = paper.
      hint_tensor: optional [H, W, 4] hints (see hints.hints_from_rgba); ignored by a model
        trained without hints (a warning is the caller's job).
    """
    return images.to_uint8(self.predict(lineart, hint_tensor))

  def predict(self, lineart: np.ndarray, hint_tensor: np.ndarray | None = None
              ) -> np.ndarray:
    """Like `__call__` but returns the raw float32 [H, W, 3] output in [-1, 1]."""
    return predict_one(self.predict_batch, lineart, hint_tensor)

  def _pad(self, x: np.ndarray, value: float) -> np.ndarray:
    ph, pw = -x.shape[1] % self.multiple, -x.shape[2] % self.multiple
    return np.pad(x, ((0, 0), (0, ph), (0, pw), (0, 0)), constant_values=value)

  def predict_batch(self, lineart: np.ndarray, hint_tensor: np.ndarray | None = None
                    ) -> np.ndarray:
    """Colours a batch: lineart [B, H, W, 1], hints [B, H, W, 4] or None; returns float32
    [B, H, W, 3] in [-1, 1]."""
    b, h, w = lineart.shape[:3]
    if hint_tensor is None:
      hint_tensor = np.zeros((b, h, w, 4), np.float32)
    out = self._generate(self.state, jnp.asarray(self._pad(lineart, 1.0), jnp.float32),
                         jnp.asarray(self._pad(hint_tensor, 0.0), jnp.float32))
    return np.clip(np.asarray(jax.device_get(out))[:, :h, :w], -1.0, 1.0)

  @property
  def has_discriminator(self) -> bool:
    return self.nets.use_gan

  def disc_score(self, lineart: np.ndarray, image: np.ndarray) -> np.ndarray:
    """This model's discriminator's mean "real" score of each image, in [0, 1].

    Args:
      lineart: [B, H, W, 1] in [-1, 1].
      image: [B, H, W, 3] in [-1, 1], e.g. this model's own output.

    Returns:
      float32 [B]: the mean over patches of sigmoid(logit) (vanilla, hinge) or of the
      least-squares output clipped to [0, 1] (lsgan, trained towards 1 for real).
    """
    if not self.has_discriminator:
      raise ValueError(f"step {self.step} of {self.workdir} has no discriminator "
                       "(loss.gan=none): use another ensemble weighting")
    if self._disc is None:
      gan = self.config.loss.gan

      def score(state, lineart, image):
        logits = self.nets.disc.apply(
            {"params": state.d_params, "batch_stats": state.d_batch_stats}, lineart, image,
            train=False)
        real = jnp.clip(logits, 0.0, 1.0) if gan == "lsgan" else jax.nn.sigmoid(logits)
        return jnp.mean(real, axis=(1, 2, 3))
      self._disc = compile_lib.jit(score, self.config)
    return np.asarray(jax.device_get(self._disc(
        self.state, jnp.asarray(self._pad(lineart, 1.0), jnp.float32),
        jnp.asarray(self._pad(image, 1.0), jnp.float32))))
