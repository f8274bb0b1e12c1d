"""Colouring image files: a sketch (and its hint image) in, a picture out, and the pairs
of files a colorize command reads and writes."""

import os

from absl import logging
import numpy as np
from PIL import Image

from mangacolor_jax.infer import colorizer as colorizer_lib
from mangacolor_jax.infer import ensemble as ensemble_lib
from mangacolor_jax.nn import hints as hints_lib
from mangacolor_jax.utils import files
from mangacolor_jax.utils import images

COMMAND = "colorize"
EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


# Sketches of one size coloured together (a folder without hints).
BATCH = 8


def _scaled_down(lineart: np.ndarray, max_side: int) -> np.ndarray:
  """The line art at `max_side` on its longest side (aspect kept), if it is larger."""
  h, w = lineart.shape[:2]
  scale = max_side / max(h, w) if max_side and max(h, w) > max_side else 1.0
  if scale == 1.0:
    return lineart
  sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
  return np.asarray(Image.fromarray(lineart[..., 0]).resize((sw, sh), Image.BILINEAR))[..., None]


def _save(rgb: np.ndarray, dst: str, hw: tuple[int, int]) -> None:
  """Writes a result at the input's size `hw` (atomic write, marked as colorize's)."""
  if rgb.shape[:2] != hw:
    rgb = np.asarray(Image.fromarray(rgb).resize((hw[1], hw[0]), Image.BICUBIC))
  os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
  files.save_image(dst, rgb, COMMAND)


def colorize_file(colorizer, src: str, dst: str, hints_path: str | None, max_side: int,
                  normalize: bool) -> None:
  """Colours one file into `dst` (atomic write, marked as colorize's)."""
  lineart = colorizer_lib.read_lineart(src, normalize=normalize)
  h, w = lineart.shape[:2]
  hint_tensor = None
  if hints_path:
    if not colorizer.takes_hints:
      logging.warning("the model was trained without hints (hints.mode=none): %s is "
                      "ignored", hints_path)
    else:
      with Image.open(hints_path) as im:
        rgba = np.asarray(im.convert("RGBA"))
      if rgba.shape[:2] != (h, w):
        raise ValueError(f"--hints {hints_path} is {rgba.shape[1]}x{rgba.shape[0]} but the "
                         f"line art {src} is {w}x{h}; they must be the same size")
      hint_tensor = hints_lib.hints_from_rgba(rgba)
  small = _scaled_down(lineart, max_side)
  if hint_tensor is not None and small.shape != lineart.shape:
    hint_tensor = resize_hints(hint_tensor, *small.shape[:2])
  _save(colorizer(small, hint_tensor), dst, (h, w))


def colorize_files(colorizer, pairs: list[tuple[str, str]], max_side: int, normalize: bool,
                   batch: int = BATCH):
  """Colours (input, output) pairs without hints, sketches of one size `batch` at a time.

  Yields (input, None) for each file written, (input, error) for one that failed (not an
  image), in groups of one size.
  """
  groups: dict[tuple[int, int], list[tuple[str, str]]] = {}
  for src, dst in pairs:
    try:
      with Image.open(src) as im:  # the header only
        groups.setdefault(im.size, []).append((src, dst))
    except (OSError, ValueError) as e:
      yield src, ValueError(f"cannot read line art {src!r}: {e}")
  for members in groups.values():
    for i in range(0, len(members), batch):
      arts, ready = [], []
      for src, dst in members[i:i + batch]:
        try:
          lineart = colorizer_lib.read_lineart(src, normalize=normalize)
        except ValueError as e:
          yield src, e
          continue
        arts.append(_scaled_down(lineart, max_side))
        ready.append((src, dst, lineart.shape[:2]))
      if not ready:
        continue
      rgb = images.to_uint8(colorizer.predict_batch(np.stack(arts)))
      for (src, dst, hw), out in zip(ready, rgb):
        _save(out, dst, hw)
        yield src, None


def resize_hints(hint_tensor, h, w):
  """Nearest-neighbour placement of hint pixels on a smaller grid."""
  out = np.zeros((h, w, 4), np.float32)
  ys, xs = np.nonzero(hint_tensor[..., 3] > 0)
  sy, sx = h / hint_tensor.shape[0], w / hint_tensor.shape[1]
  out[np.minimum((ys * sy).astype(int), h - 1),
      np.minimum((xs * sx).astype(int), w - 1)] = hint_tensor[ys, xs]
  return out


def create_colorizer(workdir, ensemble, checkpoint, weights="uniform"):
  """A Colorizer, or an EnsembleColorizer for --ensemble or several --checkpoint steps.

  Raises:
    ValueError: for both or neither of --workdir and --ensemble, or ambiguous members.
  """
  if bool(workdir) == bool(ensemble):
    raise ValueError("give exactly one of --workdir (one run) and --ensemble (several)")
  if workdir and "," not in checkpoint:
    colorizer = colorizer_lib.Colorizer(workdir, checkpoint)
    logging.info("colouring with step %d of %s", colorizer.step, workdir)
    return colorizer
  members = ensemble_lib.parse_members(workdir or ensemble, checkpoint)
  colorizer = ensemble_lib.EnsembleColorizer(members, weights)
  logging.info("colouring with an ensemble (%s weights) of %s", weights,
               [f"{m.workdir}@{m.step}" for m in colorizer.members])
  return colorizer


def model_time(colorizer) -> float:
  """When the checkpoint(s) a colorizer reads were written (the newest, for an ensemble)."""
  members = getattr(colorizer, "members", None) or [colorizer]
  return max(os.path.getmtime(os.path.join(m.workdir, "checkpoints", str(m.step)))
             for m in members)


def up_to_date(src: str, dst: str, hints: str | None, since: float) -> bool:
  """Whether colorize's output `dst` is newer than its input, its hints and `since` (the
  model's time), so that a second run over a folder skips it."""
  if not (os.path.isfile(dst) and files.written_by(dst, COMMAND)):
    return False
  inputs = [src] + ([hints] if hints else [])
  return os.path.getmtime(dst) >= max([since] + [os.path.getmtime(p) for p in inputs])


def _same_file(a: str, b: str) -> bool:
  """Whether two paths name one file or folder (through links too), not just one string."""
  return os.path.exists(a) and os.path.exists(b) and os.path.samefile(a, b)


def _images_under(folder: str, skip: str) -> list[str]:
  """Image files under `folder`, recursively, as sorted paths relative to it; the folder
  `skip` (the output, when it lies inside the input) is not entered."""
  found = []
  for root, dirs, names in os.walk(folder):
    dirs[:] = sorted(d for d in dirs if not _same_file(os.path.join(root, d), skip))
    found += [os.path.relpath(os.path.join(root, n), folder)
              for n in names if n.lower().endswith(EXTENSIONS)]
  return sorted(found)


def plan_outputs(src: str, dst: str, hints: str | None) -> list[tuple[str, str]]:
  """(input, output) pairs for --input / --output, after checking that nothing a user
  owns would be overwritten: a folder --output must be colorize's own (or new), and a file
  --output may only replace an image that colorize wrote.

  A folder --input is read recursively and its tree mirrored under --output, each image
  written as NAME.png; two inputs that would share an output (a.png and a.jpg) are refused
  before anything is coloured.

  Raises:
    ValueError (files.OutputError for outputs): naming the flag.
  """
  if os.path.isdir(src):
    if hints:
      raise ValueError("--hints needs a single --input image, not a folder")
    if _same_file(src, dst):
      raise ValueError("--output must differ from --input: inputs are never overwritten")
    names = _images_under(src, dst)
    if not names:
      raise ValueError(f"--input folder {src} holds no {EXTENSIONS} image")
    pairs = [(os.path.join(src, n), os.path.join(dst, os.path.splitext(n)[0] + ".png"))
             for n in names]
    shared = files.shared_output(pairs)
    if shared:
      raise ValueError(f"--input {shared[0]} and {shared[1]} would both be written to "
                       f"{shared[2]}: rename one of them")
    files.claim_folder(dst, COMMAND, "--output")
    return pairs
  if not os.path.isfile(src):
    raise ValueError(f"--input {src} does not exist")
  if os.path.isdir(dst):
    dst = os.path.join(dst, os.path.splitext(os.path.basename(src))[0] + ".png")
  if os.path.abspath(dst) == os.path.abspath(src) or _same_file(src, dst):
    raise ValueError("--output must differ from --input: inputs are never overwritten")
  if os.path.lexists(dst) and not files.written_by(dst, COMMAND):
    raise files.OutputError(f"--output={dst} exists and was not written by colorize: "
                            "choose another name (colorize never overwrites other files)")
  return [(src, dst)]
