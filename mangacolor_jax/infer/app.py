"""The web page of `python -m mangacolor_jax.serve`: upload line art, paint hints, colour.

The page is thin over `colorizer.Colorizer`; what it does lives in the pure functions here,
which tests call without a browser:

* `read_upload`: an uploaded file -> line art [H, W, 1] in [-1, 1]. Grey line art is read
  as `colorize` reads a sketch (`colorizer.read_lineart`); a colour picture is first turned
  into line art with evaluation's fixed XDoG (`lineart.to_lineart_numpy`). Files that are
  not images, larger than `MAX_PIXELS`, or decompression bombs raise `ValueError`.
* `hints_from_editor`: the image editor's value -> the hint tensor: its painted layers,
  composited, are the RGBA hint image of `colorize --hints` (`hints.hints_from_rgba`).
* `colorize`: both -> uint8 RGB.

Gradio is imported only inside `build_app`; nothing else in the package imports this
module, so the core package does not need gradio (`pip install -e ".[app]"`).
"""

import os
import warnings

import numpy as np
from PIL import Image

from mangacolor_jax.infer import colorizer as colorizer_lib
from mangacolor_jax.input_pipeline import lineart as lineart_lib
from mangacolor_jax.nn import hints as hints_lib

MAX_PIXELS = 4096 * 4096
MAX_FILE_SIZE = "64mb"
UPLOAD_MODES = ("auto", "line art", "colour picture")
# A picture is colour when more than this share of its pixels lies this far (in RGB units)
# off the line through its main colours: grey, or one ink on tinted paper, stays near one
# line (a pencil photo on cream paper, blue ink); a coloured picture does not. Measured at
# distance 24: the 8 real sketches 0-5% of their pixels (5% the blue-ink one, by its JPEG
# noise), 80% of 400 64x64 colour faces over 8% (the washed-out rest pass for line art:
# the page has a manual choice).
COLOUR_DISTANCE = 24.0
COLOUR_SHARE = 0.08
HINT_COLOURS = ["#e02020", "#f08c28", "#f0d040", "#40b040", "#3080e0", "#8040c0",
                "#f4c8a8", "#604030", "#202020", "#ffffff"]
# System fonts only: the page loads no font (nor anything else) from the network.
FONTS = ["ui-sans-serif", "system-ui", "Segoe UI", "Helvetica", "Arial", "sans-serif"]
MONO_FONTS = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"]


def is_colour(rgb: np.ndarray) -> bool:
  """Whether a uint8 [H, W, 3] picture is in colour rather than grey-ish line art."""
  x = np.asarray(rgb, np.float64).reshape(-1, 3)
  x = x[::max(1, len(x) // 100_000)]  # a sample is enough
  centred = x - x.mean(axis=0)
  _, _, vt = np.linalg.svd(centred, full_matrices=False)
  off = centred - np.outer(centred @ vt[0], vt[0])
  return float(np.mean(np.sqrt(np.sum(off**2, axis=1)) > COLOUR_DISTANCE)) > COLOUR_SHARE


def _open_checked(path: str, max_pixels: int) -> Image.Image:
  """Opens an image file after checking its size from the header (nothing decoded yet)."""
  name = os.path.basename(path)
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("error", Image.DecompressionBombWarning)
      im = Image.open(path)
  except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
    raise ValueError(f"{name} is too large to open (a decompression bomb?): {e}") from e
  except (OSError, ValueError, SyntaxError) as e:
    raise ValueError(f"{name} is not an image that can be read: {e}") from e
  w, h = im.size
  if w * h > max_pixels:
    im.close()
    side = int(max_pixels**0.5)
    raise ValueError(f"{name} is {w}x{h}: larger than the {side}x{side} pixels this page "
                     "accepts; scale it down first")
  return im


def read_upload(path: str, mode: str = "auto", max_pixels: int = MAX_PIXELS,
                normalize: bool = True) -> tuple[np.ndarray, bool]:
  """An uploaded file as line art.

  Args:
    path: the uploaded file.
    mode: "auto" (colour pictures are turned into line art), "line art" or
      "colour picture" (always extract line art).
    max_pixels: larger images are refused.
    normalize: as `colorize --normalize`, for line art read as it is.

  Returns:
    (float32 [H, W, 1] line art in [-1, 1] (1 = paper), whether it was extracted from a
    colour picture).

  Raises:
    ValueError: not an image, too large, a decompression bomb, or an unknown mode.
  """
  if mode not in UPLOAD_MODES:
    raise ValueError(f"unknown upload mode {mode!r}: one of {UPLOAD_MODES}")
  if not path or not os.path.isfile(path):
    raise ValueError("no file was uploaded")
  im = _open_checked(path, max_pixels)
  try:
    with im:
      im.load()
      if im.mode in ("RGBA", "LA", "P", "PA"):
        im = im.convert("RGBA")
        paper = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(paper, im)
      rgb = np.asarray(im.convert("RGB"))
  except (OSError, ValueError, SyntaxError) as e:  # a truncated or corrupt file
    raise ValueError(f"{os.path.basename(path)} is not an image that can be read: {e}"
                     ) from e
  colour = mode == "colour picture" or (mode == "auto" and is_colour(rgb))
  if colour:  # evaluation's fixed XDoG, as line art is made from colour images there
    return lineart_lib.to_lineart_numpy(rgb)[..., :1] * 2.0 - 1.0, True
  return colorizer_lib.read_lineart(path, normalize=normalize), False


def lineart_image(lineart: np.ndarray) -> np.ndarray:
  """Line art [H, W, 1] in [-1, 1] as uint8 RGB [H, W, 3], for the page."""
  gray = np.clip((np.asarray(lineart)[..., 0] + 1.0) * 127.5, 0, 255).round()
  return np.repeat(gray.astype(np.uint8)[..., None], 3, axis=-1)


def _rgba(layer, size: tuple[int, int]) -> Image.Image:
  """One editor layer as an RGBA image of `size` (w, h)."""
  im = layer if isinstance(layer, Image.Image) else Image.fromarray(np.asarray(layer))
  im = im.convert("RGBA")
  if im.size != size:  # the canvas never differs from the sketch, but be safe
    im = im.resize(size, Image.NEAREST)
  return im


def hints_from_editor(value, shape: tuple[int, ...]) -> np.ndarray | None:
  """The image editor's painted layers as a hint tensor for line art of `shape`.

  Args:
    value: gr.ImageEditor's value: a dict with "layers" (RGBA images, numpy or PIL; the
      background, the sketch itself, is not a hint).
    shape: the line art's shape [H, W, ...].

  Returns:
    float32 [H, W, 4] (`hints.hints_from_rgba` of the composited layers, as
    `colorize --hints` reads an RGBA image), or None when nothing is painted.
  """
  layers = [layer for layer in (value or {}).get("layers") or [] if layer is not None]
  if not layers:
    return None
  h, w = shape[:2]
  rgba = Image.new("RGBA", (w, h), (0, 0, 0, 0))
  for layer in layers:
    rgba = Image.alpha_composite(rgba, _rgba(layer, (w, h)))
  hint_tensor = hints_lib.hints_from_rgba(np.asarray(rgba))
  return hint_tensor if hint_tensor[..., 3].any() else None


def colorize(colorizer, lineart: np.ndarray, editor_value) -> np.ndarray:
  """Colours line art with the hints painted in the editor; uint8 RGB [H, W, 3]."""
  if lineart is None:
    raise ValueError("upload a line-art image first")
  hint_tensor = hints_from_editor(editor_value, lineart.shape)
  if hint_tensor is not None and not colorizer.takes_hints:
    hint_tensor = None
  return colorizer(lineart, hint_tensor)


def _theme(gr):
  return gr.themes.Default(font=FONTS, font_mono=MONO_FONTS)


def _upload_handler(gr, colorizer, max_pixels: int):
  """The callback of an upload (and of a change of mode): the editor's new value, the line
  art, and the status note; a file that cannot be read is a warning and a note."""

  def on_upload(path, mode):
    if path is None:
      return gr.update(), None, ""
    try:
      lineart, extracted = read_upload(path, mode, max_pixels)
    except ValueError as e:
      gr.Warning(str(e))
      return gr.update(), None, f"**Not loaded:** {e}"
    h, w = lineart.shape[:2]
    sketch = lineart_image(lineart)
    note = (f"Colour picture: line art extracted with XDoG ({w}x{h})." if extracted
            else f"Line art, {w}x{h}.")
    if not colorizer.takes_hints:
      note += " This model was trained without hints: painted strokes are ignored."
    return {"background": sketch, "layers": [], "composite": sketch}, lineart, note

  return on_upload


def _colorize_handler(gr, colorizer):
  """The callback of the Colorize button: the coloured image, or the page's error."""

  def on_colorize(lineart, editor_value):
    if lineart is None:
      raise gr.Error("Upload a line-art image first.")
    try:
      return colorize(colorizer, lineart, editor_value)
    except ValueError as e:
      raise gr.Error(str(e)) from e

  return on_colorize


def _model_card(gr, workdir: str) -> None:
  """The run's MODEL_CARD.md in a closed accordion, where the run has one."""
  card = os.path.join(workdir, "MODEL_CARD.md")
  if os.path.isfile(card):  # what the model was trained on and how well it scored
    with gr.Accordion("Model card", open=False, elem_id="model_card"):
      with open(card, encoding="utf-8") as f:
        gr.Markdown(f.read())


def build_app(colorizer, max_pixels: int = MAX_PIXELS):
  """The page over a loaded colorizer (a `colorizer.Colorizer`)."""
  # gradio is the optional `app` extra: only the page needs it.
  import gradio as gr  # pylint: disable=g-import-not-at-top

  on_upload = _upload_handler(gr, colorizer, max_pixels)
  on_colorize = _colorize_handler(gr, colorizer)
  title = "mangacolor: colour line art"
  with gr.Blocks(title=title, analytics_enabled=False) as page:
    gr.Markdown(f"## {title}\nUpload line art (or a colour picture, turned into line art), "
                "paint colour hints with the brush, press **Colorize**. Model: step "
                f"{colorizer.step} of run "
                f"`{os.path.basename(os.path.normpath(colorizer.workdir))}`.")
    lineart_state = gr.State(None)
    with gr.Row():
      with gr.Column():
        upload = gr.File(label="Line art image (drop or click)", file_types=["image"],
                         type="filepath", elem_id="upload")
        mode = gr.Radio(list(UPLOAD_MODES), value="auto", label="The upload is",
                        elem_id="mode")
        status = gr.Markdown("", elem_id="status")
      with gr.Column(scale=2):
        editor = gr.ImageEditor(
            label="Sketch: paint colour hints", type="numpy", image_mode="RGBA",
            sources=(), transforms=(), format="png", elem_id="editor",
            brush=gr.Brush(colors=HINT_COLOURS, default_color=HINT_COLOURS[0],
                           default_size=6, color_mode="defaults"),
            eraser=gr.Eraser(default_size=12),
            layers=gr.LayerOptions(allow_additional_layers=True))
      with gr.Column(scale=2):
        result = gr.Image(label="Coloured (download as PNG)", type="numpy", format="png",
                          interactive=False, buttons=["download", "fullscreen"],
                          elem_id="result")
    button = gr.Button("Colorize", variant="primary", elem_id="colorize")
    _model_card(gr, colorizer.workdir)
    upload.upload(on_upload, [upload, mode], [editor, lineart_state, status])
    mode.change(on_upload, [upload, mode], [editor, lineart_state, status])
    button.click(on_colorize, [lineart_state, editor], result)
  page.theme_for_launch = _theme(gr)
  return page


def launch(page, host: str = "127.0.0.1", port: int = 7860, **kwargs):
  """Serves the page locally: no analytics, no share link, uploads capped in size."""
  os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
  return page.launch(server_name=host, server_port=port, share=False,
                     max_file_size=MAX_FILE_SIZE, show_error=True,
                     theme=getattr(page, "theme_for_launch", None), **kwargs)
