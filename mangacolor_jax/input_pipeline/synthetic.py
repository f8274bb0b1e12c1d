"""Procedural renderer of one anime-style character, for data that needs no files.

Every image shows the same character -- hair with a fringe and side locks, a face with two
eyes and a mouth, a neck and a shirt with a collar and a ribbon -- always in the same palette
(`PALETTE`), outlined in black, at a random pose, size and position and with small shape
variations (hair length, face width, eye size, gaze). That is the "one character" scope of the
project: a colorizer has to learn which colour goes in which region that the line art
delimits, and the answer never changes.

The drawing is a label map (which part covers each pixel) rendered at twice the output size
with vectorised numpy masks, outlined where two parts meet, coloured from the palette and
averaged down 2x2, which anti-aliases edges and lines. Each part is computed only inside a
window around it, which keeps a 64x64 image near 1-1.5 ms on one core.
"""

from typing import Dict, Tuple

import numpy as np

# The character's fixed palette (RGB). Hair, eyes, shirt, collar and ribbon are distinct,
# saturated hues so a colorizer's mistakes show; skin is the usual pale anime tone.
PALETTE: Dict[str, Tuple[int, int, int]] = {
    "background": (255, 255, 255),
    "hair": (62, 104, 214),  # blue
    "skin": (255, 224, 199),
    "shirt": (206, 40, 64),  # crimson
    "collar": (250, 250, 246),  # white
    "ribbon": (250, 196, 32),  # yellow
    "eye_white": (255, 255, 255),
    "iris": (38, 170, 92),  # green
    "pupil": (16, 64, 40),
    "highlight": (255, 255, 255),
    "lash": (40, 28, 36),
    "mouth": (196, 70, 84),
    "ink": (24, 20, 28),
}

# Parts in painting order (back to front); a part's index is its label in the label map.
_PARTS = (
    "background", "back_hair", "neck", "shirt", "collar", "ribbon", "face", "eye_white",
    "iris", "pupil", "highlight", "lash", "mouth", "fringe",
)
_LABEL = {name: i for i, name in enumerate(_PARTS)}
_PART_COLOUR = {
    "background": "background", "back_hair": "hair", "neck": "skin", "shirt": "shirt",
    "collar": "collar", "ribbon": "ribbon", "face": "skin", "eye_white": "eye_white",
    "iris": "iris", "pupil": "pupil", "highlight": "highlight", "lash": "lash",
    "mouth": "mouth", "fringe": "hair",
}
# Colour of each label, plus the ink colour at index len(_PARTS).
_COLOURS = np.array(
    [PALETTE[_PART_COLOUR[p]] for p in _PARTS] + [PALETTE["ink"]], dtype=np.float32)
_INK = len(_PARTS)
# Outline group per label: an outline is drawn where neighbouring pixels belong to different
# groups. The iris, pupil and highlight share one so that the 1-2 px highlight and pupil are
# not swallowed by their own outlines at 64 px.
_GROUP = np.arange(len(_PARTS), dtype=np.int8)
_GROUP[[_LABEL["pupil"], _LABEL["highlight"]]] = _LABEL["iris"]


def _ellipse(u, v, cu, cv, ru, rv):
  """Mask of the ellipse with centre (cu, cv) and radii (ru, rv)."""
  du = (u - cu) * (1.0 / ru)
  dv = (v - cv) * (1.0 / rv)
  return du * du + dv * dv <= 1.0


class _Frame:
  """A rotated, scaled coordinate frame (u right, v down) over the 2x pixel grid.

  Coordinates are computed only inside the window around the part being drawn: most parts
  cover a small share of the image, and numpy time scales with the pixels touched.
  """

  def __init__(self, shape2, ox, oy, angle, unit, v_offset=0.0):
    self.shape2 = shape2
    self.ox, self.oy, self.unit, self.v_offset = ox, oy, unit, v_offset
    self.c, self.s = float(np.cos(angle)), float(np.sin(angle))

  def window(self, cu, cv, radius):
    """Slices of the 2x grid that cover the disc of `radius` about frame point (cu, cv)."""
    vv = cv - self.v_offset
    px = self.ox + self.unit * (self.c * cu - self.s * vv)
    py = self.oy + self.unit * (self.s * cu + self.c * vv)
    half = radius * self.unit
    h2, w2 = self.shape2
    # The pixel centre at output position p has 2x index 2p - 0.5.
    y0 = min(max(int(np.floor(2.0 * (py - half) - 0.5)), 0), h2)
    y1 = min(max(int(np.ceil(2.0 * (py + half) - 0.5)) + 1, y0), h2)
    x0 = min(max(int(np.floor(2.0 * (px - half) - 0.5)), 0), w2)
    x1 = min(max(int(np.ceil(2.0 * (px + half) - 0.5)) + 1, x0), w2)
    return slice(y0, y1), slice(x0, x1)

  def coords(self, win):
    """Frame coordinates (u, v), float32 arrays, of the pixel centres in window `win`."""
    ys, xs = win
    y = (np.arange(ys.start, ys.stop, dtype=np.float32) + 0.5) * 0.5
    x = (np.arange(xs.start, xs.stop, dtype=np.float32) + 0.5) * 0.5
    inv = 1.0 / self.unit
    dx = ((x - self.ox) * inv)[None, :]
    dy = ((y - self.oy) * inv)[:, None]
    return self.c * dx + self.s * dy, self.c * dy - self.s * dx + self.v_offset


def _sample_pose(rng: np.random.Generator) -> Dict[str, float]:
  """Draws the per-image pose and shape variations."""
  # One generator call keeps the draws cheap and their order stable; python floats keep
  # the float32 grids from being promoted to float64.
  r = [float(v) for v in rng.random(11)]
  return {
      "scale": 0.7 + 0.4 * r[0],
      "shift_x": 0.3 * r[1] - 0.15,
      "shift_y": 0.25 * r[2] - 0.1,
      "body_angle": float(np.deg2rad(6.0 * r[3] - 3.0)),
      "head_tilt": float(np.deg2rad(24.0 * r[4] - 12.0)),
      "hair_len": 0.3 + 1.2 * r[5],  # end of the back hair, below the head centre
      "face_w": 0.92 + 0.16 * r[6],
      "eye_size": 0.85 + 0.3 * r[7],
      "gaze": 0.04 * r[8] - 0.02,
      "mouth_open": 0.012 + 0.02 * r[9],
      "fringe_phase": 0.3 * r[10] - 0.15,
  }


def _label_map(height2: int, width2: int, pose: Dict[str, float]) -> np.ndarray:
  """Paints the parts back to front into an int8 label map of size (height2, width2)."""
  shape2 = (height2, width2)
  h, w = height2 * 0.5, width2 * 0.5
  # One unit is half the shorter side at scale 1, so the character fits non-square images.
  unit = 0.5 * min(h, w) * pose["scale"]
  cx = 0.5 * w + pose["shift_x"] * 0.5 * min(h, w)
  cy = 0.5 * h + pose["shift_y"] * 0.5 * min(h, w)
  body = _Frame(shape2, cx, cy, pose["body_angle"], unit)
  # Head frame: tilted about a pivot at the jaw, with the head centre at (0, 0).
  pivot, head_y = 0.08, -0.24
  head = _Frame(shape2, cx - unit * pivot * np.sin(pose["body_angle"]),
                cy + unit * pivot * np.cos(pose["body_angle"]),
                pose["body_angle"] + pose["head_tilt"], unit, v_offset=pivot - head_y)

  labels = np.zeros(shape2, dtype=np.int8)

  def paint(name, win, mask):
    labels[win][mask] = _LABEL[name]

  _paint_back_hair(paint, head, pose)
  _paint_body(paint, body)
  _paint_face(paint, head, pose)
  return labels


def _paint_back_hair(paint, head: "_Frame", pose: Dict[str, float]) -> None:
  """The hair behind the head."""
  fw = pose["face_w"]
  # Back hair: a skull-sized cap plus a curtain down to the hair length, with rounded,
  # slightly jagged ends.
  hair_len = pose["hair_len"]
  win = head.window(0.0, 0.5 * (hair_len - 0.6), np.hypot(0.6, 0.5 * (hair_len + 0.6)))
  hu, hv = head.coords(win)
  ends = hair_len - 0.07 * np.abs(np.sin(hu * 9.0)) - 0.1 * hu * hu
  curtain_w = 0.55 * fw * np.sqrt(np.clip((ends - hv) * 8.0, 0.0, 1.0))
  back_hair = _ellipse(hu, hv, 0.0, -0.04, 0.54 * fw, 0.56)
  back_hair |= (np.abs(hu) < curtain_w) & (hv > 0.0)
  paint("back_hair", win, back_hair)


def _paint_body(paint, body: "_Frame") -> None:
  """Neck, shirt, collar and ribbon."""
  # Neck and the skin showing in the V of the collar (one skin part, no line between).
  v_top, v_apex = 0.42, 0.74
  win = body.window(0.0, 0.25, 0.42)
  bu, bv = body.coords(win)
  neck = (np.abs(bu) < 0.1) & (bv > -0.1) & (bv < 0.6)
  paint("neck", win, neck)

  # Shirt: rounded shoulders continued straight down past the bottom edge, a sailor-style
  # collar along both sides of the V and a ribbon at its apex.
  sh_y = 0.88
  win = body.window(0.0, 1.9, 1.55)
  bu, bv = body.coords(win)
  au = np.abs(bu)
  v_width = 0.42 * (v_apex - bv)
  v_skin = (bv > v_top - 0.05) & (au < v_width)
  paint("neck", win, v_skin)
  shoulders = _ellipse(bu, bv, 0.0, sh_y, 0.82, 0.46) | ((bv > sh_y) & (au < 0.82))
  paint("shirt", win, shoulders & ~v_skin)
  paint("collar", win, (au < v_width + 0.16) & (bv > v_top) & ~v_skin & shoulders)
  bow = (au < 0.17) & (np.abs(bv - v_apex) < 0.02 + 0.45 * au)
  bow &= (bv > v_apex - 0.1) & (bv < v_apex + 0.1)
  paint("ribbon", win, bow)


def _paint_face(paint, head: "_Frame", pose: Dict[str, float]) -> None:
  """Face, eyes, mouth and the hair in front of the face."""
  fw = pose["face_w"]
  face_a, face_b = 0.40 * fw, 0.46
  # Face: an ellipse whose lower half narrows into the chin.
  win = head.window(0.0, 0.0, 0.5)
  hu, hv = head.coords(win)
  t = np.clip(hv * (1.0 / face_b), 0.0, 1.0)
  chin_a = face_a * (1.0 - 0.42 * t * np.sqrt(t))
  du = hu / chin_a
  dv = hv * (1.0 / face_b)
  paint("face", win, du * du + dv * dv <= 1.0)

  # Eyes: white, iris, pupil, highlight and a heavy upper lash line.
  es = pose["eye_size"]
  ey, erx, ery = 0.13, 0.10 * es, 0.11 * es
  gaze = pose["gaze"]
  for side in (-1.0, 1.0):
    ex = side * 0.175 * fw
    win = head.window(ex, ey, 0.16 * es)
    hu, hv = head.coords(win)
    white = _ellipse(hu, hv, ex, ey, erx, ery)
    paint("eye_white", win, white)
    iris = white & _ellipse(hu, hv, ex + gaze, ey + 0.012, 0.07 * es, 0.1 * es)
    paint("iris", win, iris)
    paint("pupil", win,
          iris & _ellipse(hu, hv, ex + gaze, ey + 0.02, 0.032 * es, 0.05 * es))
    paint("highlight", win,
          _ellipse(hu, hv, ex + gaze - 0.03 * es, ey - 0.035 * es, 0.025 * es, 0.025 * es))
    lash = _ellipse(hu, hv, ex, ey - 0.01, erx * 1.22, ery * 1.3) & ~white
    lash &= hv < ey - 0.3 * ery
    paint("lash", win, lash)

  win = head.window(0.0, 0.31, 0.07)
  hu, hv = head.coords(win)
  paint("mouth", win, _ellipse(hu, hv, 0.0, 0.31, 0.05 * fw, pose["mouth_open"]))

  # Fringe: a cap over the forehead ending in downward spikes, plus two side locks in front
  # of the cheeks that narrow to a point.
  win = head.window(0.0, -0.05, 0.62)
  hu, hv = head.coords(win)
  n_spikes = 5.0
  phase = (hu * (1.0 / (2.1 * face_a)) + (0.5 + pose["fringe_phase"])) * n_spikes
  tri = np.abs(phase - np.floor(phase) - 0.5) * 2.0  # 1 between spikes, 0 at their tips
  fringe_bottom = -0.10 + 0.15 * (1.0 - tri)
  fringe = _ellipse(hu, hv, 0.0, -0.07, face_a * 1.12, 0.52) & (hv < fringe_bottom)
  lock_bottom = 0.30 + 0.15 * es
  lt = np.clip((hv + 0.1) * (1.0 / (lock_bottom + 0.1)), 0.0, 1.0)
  au = np.abs(hu)
  locks = (hv > -0.2) & (hv < lock_bottom)
  locks &= (au < face_a * 1.1 - 0.03 * lt) & (au > face_a * (0.78 + 0.3 * lt * lt))
  paint("fringe", win, fringe | locks)


def _outline(labels: np.ndarray, radius: int) -> np.ndarray:
  """Mask of the pixels within `radius` of a boundary between two outline groups."""
  groups = _GROUP[labels]
  edge = np.zeros(labels.shape, dtype=bool)
  # Half of a disc of offsets; each differing pair marks both of its pixels.
  for dy in range(0, radius + 1):
    for dx in range(-radius, radius + 1):
      if (dy == 0 and dx <= 0) or dy * dy + dx * dx > radius * radius:
        continue
      hh, ww = labels.shape
      a = groups[dy:, max(dx, 0):ww + min(dx, 0)]
      b = groups[:hh - dy, max(-dx, 0):ww - max(dx, 0)]
      diff = a != b
      edge[dy:, max(dx, 0):ww + min(dx, 0)] |= diff
      edge[:hh - dy, max(-dx, 0):ww - max(dx, 0)] |= diff
  return edge


def render_character(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
  """Draws the character at a random pose.

  Args:
    rng: source of the pose and shape variations.
    height: output height in pixels, at least 16.
    width: output width in pixels, at least 16.

  Returns:
    uint8 array [height, width, 3], RGB, on a white background.
  """
  if height < 16 or width < 16:
    raise ValueError(f"image size must be at least 16x16, got {height}x{width}")
  pose = _sample_pose(rng)
  labels = _label_map(2 * height, 2 * width, pose)
  # Outlines about 1 px wide at 64 px (2 px at 2x), growing with the image.
  radius = max(1, int(round(min(height, width) / 64.0)))
  labels = np.where(_outline(labels, radius), np.int8(_INK), labels)
  rgb = _COLOURS[labels]
  # 2x2 box filter: the anti-aliasing.
  rgb = (rgb[0::2, 0::2] + rgb[1::2, 0::2]) + (rgb[0::2, 1::2] + rgb[1::2, 1::2])
  return (rgb * 0.25 + 0.5).astype(np.uint8)


def render(seed: int, index: int, height: int, width: int) -> np.ndarray:
  """Draws image number `index` of the data set `seed`; the same arguments, the same image.

  Args:
    seed: data set seed, >= 0.
    index: image index within the data set, >= 0.
    height: output height in pixels, at least 16.
    width: output width in pixels, at least 16.

  Returns:
    uint8 array [height, width, 3].
  """
  return render_character(np.random.default_rng([int(seed), int(index)]), height, width)
