"""Loading a trained generator from a workdir and colouring line art of any size.

The generator is fully convolutional, so a sketch of any size and aspect is padded with
paper (white) up to a multiple of 2**depth, coloured, and cropped back: never squashed.
One compiled function per padded shape: repeated calls of one shape never recompile.
"""

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image

from mangacolor_jax import checkpointing
from mangacolor_jax import trainer


def load_config_and_state(workdir: str, checkpoint: str | int = "best"
                          ) -> tuple[ml_collections.ConfigDict, trainer.GANState, int]:
  """Restores (config, state, step) from `workdir/checkpoints` on the default device."""
  directory = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"no checkpoints in {workdir!r} (expected {directory}); "
                            "train first with python -m mangacolor_jax.train")
  ckpt = checkpointing.Checkpointer(directory, create=False)
  step = ckpt.resolve(checkpoint)
  meta = ckpt.restore_meta(step)
  config = ml_collections.ConfigDict(meta["config"])
  setup = trainer.Setup(config)
  abstract = jax.eval_shape(setup.create_state, jax.random.key(0))
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


class Colorizer:
  """A trained generator, ready to colour line art of any size.

  Example:
    colorizer = Colorizer("runs/faces")
    rgb = colorizer(read_lineart("sketch.png"))   # uint8 [H, W, 3]
  """

  def __init__(self, workdir: str, checkpoint: str | int = "best"):
    self.config, self.state, self.step = load_config_and_state(workdir, checkpoint)
    self.setup = trainer.Setup(self.config)
    self.multiple = 2**self.config.model.gen_depth
    self._generate = jax.jit(self.setup.generate)

  @property
  def takes_hints(self) -> bool:
    return self.setup.use_hints

  def __call__(self, lineart: np.ndarray, hint_tensor: np.ndarray | None = None
               ) -> np.ndarray:
    """Colours one [H, W, 1] line art in [-1, 1]; returns uint8 [H, W, 3].

    Args:
      lineart: the sketch, 1 = paper.
      hint_tensor: optional [H, W, 4] hints (see hints.hints_from_rgba); ignored by a model
        trained without hints (a warning is the caller's job).
    """
    h, w = lineart.shape[:2]
    ph, pw = -h % self.multiple, -w % self.multiple
    x = np.pad(lineart, ((0, ph), (0, pw), (0, 0)), constant_values=1.0)[None]
    if hint_tensor is None:
      hint_tensor = np.zeros(lineart.shape[:2] + (4,), np.float32)
    if hint_tensor.shape[:2] != (h, w):
      raise ValueError(f"hints are {hint_tensor.shape[1]}x{hint_tensor.shape[0]} but the "
                       f"line art is {w}x{h}; they must be the same size")
    hx = np.pad(hint_tensor, ((0, ph), (0, pw), (0, 0)))[None]
    out = self._generate(self.state, jnp.asarray(x, jnp.float32),
                         jnp.asarray(hx, jnp.float32))
    out = np.asarray(jax.device_get(out))[0, :h, :w]
    return np.round((np.clip(out, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)
