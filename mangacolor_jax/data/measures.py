"""What the clean measures in an image: line density and the character's area.

Both are computed on a shrunk copy, so that a threshold means the same at any input size.
"""

from typing import Tuple

import numpy as np

from mangacolor_jax.data import decoding

_INK = 0.5  # line-art values below this count as line
_GAIN = 2.5  # dilation-difference gain of the line-density measure (mid training range)

_LINEART_FN = None


def line_density(rgb: np.ndarray, analysis_side: int) -> float:
  """Share of line pixels in the dilation-difference line art (`lineart.dilation_difference`,
  gain 2.5) of the image shrunk so that its shorter side is at most `analysis_side`."""
  global _LINEART_FN
  if _LINEART_FN is None:
    # TensorFlow only when measuring: importing the clean (or its --help) stays light.
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    from mangacolor_jax.input_pipeline import lineart  # pylint: disable=g-import-not-at-top

    @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)])
    def ink_share(image):
      art = lineart.dilation_difference(tf.cast(image, tf.float32) / 255.0, _GAIN)
      return tf.reduce_mean(tf.cast(art < _INK, tf.float32))

    _LINEART_FN = ink_share
  return float(_LINEART_FN(decoding.shrink(rgb, analysis_side)))


def character_area(rgb: np.ndarray, tolerance: float = 0.1, border: float = 0.04,
                   min_flat: float = 0.6, line_share: float = 0.02) -> Tuple[float, bool]:
  """(area share of the character's bounding box, whether the background is flat).

  The background colour is the median of a frame `border` of the side wide. When fewer than
  `min_flat` of the frame's pixels are within `tolerance` (max over channels, [0, 1] scale)
  of it, there is no flat background to measure against: (1.0, False). Otherwise the
  foreground is every pixel farther than `tolerance` from it, and its bounding box spans the
  rows and columns with at least `line_share` foreground pixels.
  """
  small = decoding.shrink(rgb, 128).astype(np.float32) / 255.0
  h, w = small.shape[:2]
  b = max(1, int(round(border * min(h, w))))
  frame = np.concatenate([small[:b].reshape(-1, 3), small[-b:].reshape(-1, 3),
                          small[:, :b].reshape(-1, 3), small[:, -b:].reshape(-1, 3)])
  background = np.median(frame, axis=0)
  if np.mean(np.abs(frame - background).max(-1) <= tolerance) < min_flat:
    return 1.0, False
  fg = np.abs(small - background).max(-1) > tolerance
  rows = np.nonzero(fg.mean(1) >= line_share)[0]
  cols = np.nonzero(fg.mean(0) >= line_share)[0]
  if not rows.size or not cols.size:
    return 0.0, True
  return float((rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1) / (h * w)), True
