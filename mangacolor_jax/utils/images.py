"""Model-space images to pictures: [-1, 1] floats to uint8, and sample grids."""

import numpy as np


def to_uint8(x) -> np.ndarray:
  """Maps model space [-1, 1] to a uint8 numpy array in [0, 255].

  Values are clipped, then rounded to the nearest integer (ties to even, as np.rint).
  NaNs become 0 so a diverged generator still gives a writable image. Runs on the host:
  it is for writing images, not for use under jit.

  Args:
    x: array of any shape in [-1, 1] (jax or numpy).

  Returns:
    np.ndarray of dtype uint8 and the same shape.
  """
  x = np.asarray(x, dtype=np.float32)
  x = np.nan_to_num(x, nan=-1.0)
  x = np.clip((x + 1.0) * 127.5, 0.0, 255.0)
  return np.rint(x).astype(np.uint8)


def sample_grid(lineart: np.ndarray, output: np.ndarray, target: np.ndarray,
                num: int) -> np.ndarray:
  """Rows of line art | output | target, as uint8 [rows*H, 3*W, 3]."""
  rows = []
  for i in range(min(num, lineart.shape[0])):
    row = [np.repeat(lineart[i], 3, axis=-1), output[i], target[i]]
    rows.append(np.concatenate([to_uint8(x) for x in row], axis=1))
  return np.concatenate(rows, axis=0)
