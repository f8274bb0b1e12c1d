"""The web page of `python -m mangacolor_jax.serve`: its pure functions, and the page itself
driven in headless Chromium (upload a real sketch, paint a red stroke, Colorize).

The browser test trains, in a subprocess on one device, a tiny model that must follow hints:
synthetic characters whose colours are hue-rotated at random, so only a hint tells the
colour. `MANGACOLOR_SCREENSHOT=1` writes the page's screenshot to docs/serve.png.
"""

import io
import json
import os
import pathlib
import shutil
import socket
import struct
import subprocess
import sys
import time
import urllib.request
import zlib

import numpy as np
import pytest
from PIL import Image

gr = pytest.importorskip("gradio", reason="gradio is not installed: pip install -e '.[app]'")

# pylint: disable=g-import-not-at-top,wrong-import-position
from mangacolor_jax.infer import app
from mangacolor_jax.input_pipeline import synthetic

REPO = pathlib.Path(__file__).resolve().parents[2]
SKETCHES = REPO.parent / "shared" / "data" / "anime_faces" / "real_sketches"
SKETCH = "s2p_v1_test10.jpg"  # 540x960: small enough to colour in a second
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
RED = (255, 0, 0)


class FakeColorizer:
  """Records what the page passes to a colorizer; colours everything grey."""
  takes_hints = True
  step = 7
  workdir = "runs/fake"

  def __init__(self):
    self.calls = []

  def __call__(self, lineart, hint_tensor=None):
    self.calls.append((lineart, hint_tensor))
    return np.full(lineart.shape[:2] + (3,), 128, np.uint8)


def _save(path, array, mode=None):
  Image.fromarray(array, mode).save(path)
  return str(path)


# -- the pure functions ------------------------------------------------------------------


def test_red_stroke_in_the_editor_is_a_red_hint_where_painted():
  h, w = 40, 56
  layer = np.zeros((h, w, 4), np.uint8)
  layer[10:13, 5:30] = (*RED, 255)
  layer[30, 40] = (0, 0, 255, 60)  # faint (anti-aliased) edge: below the alpha threshold
  sketch = np.full((h, w, 4), 255, np.uint8)
  value = {"background": sketch, "layers": [layer], "composite": sketch}
  hint_tensor = app.hints_from_editor(value, (h, w, 1))
  assert hint_tensor.shape == (h, w, 4) and hint_tensor.dtype == np.float32
  painted = np.zeros((h, w), bool)
  painted[10:13, 5:30] = True
  np.testing.assert_array_equal(hint_tensor[..., 3] > 0, painted)
  np.testing.assert_allclose(hint_tensor[painted][:, :3], [[1.0, -1.0, -1.0]] * painted.sum())
  assert not hint_tensor[~painted].any()
  # Several layers composite like the RGBA image `colorize --hints` reads; PIL layers too.
  blue = np.zeros((h, w, 4), np.uint8)
  blue[10:20, 20:25] = (0, 0, 255, 255)
  both = app.hints_from_editor({"layers": [layer, Image.fromarray(blue)]}, (h, w, 1))
  np.testing.assert_allclose(both[15, 22], [-1.0, -1.0, 1.0, 1.0])
  np.testing.assert_allclose(both[11, 10], [1.0, -1.0, -1.0, 1.0])


def test_nothing_painted_is_no_hints():
  empty = np.zeros((8, 8, 4), np.uint8)
  assert app.hints_from_editor({"layers": [empty]}, (8, 8, 1)) is None
  assert app.hints_from_editor({"layers": []}, (8, 8, 1)) is None
  assert app.hints_from_editor(None, (8, 8, 1)) is None


def test_colour_upload_becomes_line_art(tmp_path):
  picture = synthetic.render(3, 0, 40, 56)
  path = _save(tmp_path / "colour.png", picture)
  lineart, extracted = app.read_upload(path)
  assert extracted and lineart.shape == (40, 56, 1) and lineart.dtype == np.float32
  assert -1.0 <= lineart.min() < 0.0 < lineart.max() <= 1.0  # black lines on white paper
  assert app.lineart_image(lineart).shape == (40, 56, 3)
  # Grey line art is read as `colorize` reads a sketch, unless told it is a colour picture.
  gray = _save(tmp_path / "gray.png", np.asarray(Image.fromarray(picture).convert("L")))
  assert not app.read_upload(gray)[1]
  assert app.read_upload(gray, "colour picture")[1]
  assert not app.read_upload(path, "line art")[1]


def test_real_sketches_are_line_art_and_real_faces_colour(anime_faces):
  """`auto` takes every real sketch (blue ink, a pencil photo on cream paper) as line art
  (a sketch taken for colour would be turned into the line art of its own lines) and most
  real colour illustrations (41 of these 50 faces) as colour pictures."""
  for path in sorted((anime_faces / "real_sketches").iterdir()):
    with Image.open(path) as im:
      assert not app.is_colour(np.asarray(im.convert("RGB"))), path.name
  faces = sorted((anime_faces / "faces64").iterdir())[:50]
  colour = [app.is_colour(np.asarray(Image.open(p).convert("RGB"))) for p in faces]
  assert sum(colour) >= 38, f"{sum(colour)} of 50 faces taken for colour pictures"


def test_colorize_passes_the_painted_hints(tmp_path):
  fake = FakeColorizer()
  lineart, _ = app.read_upload(_save(tmp_path / "s.png", np.full((20, 30), 255, np.uint8)))
  layer = np.zeros((20, 30, 4), np.uint8)
  layer[5, 5] = (*RED, 255)
  out = app.colorize(fake, lineart, {"layers": [layer]})
  assert out.shape == (20, 30, 3)
  assert fake.calls[-1][1][5, 5, 3] == 1.0
  app.colorize(fake, lineart, {"layers": []})
  assert fake.calls[-1][1] is None
  with pytest.raises(ValueError, match="upload"):
    app.colorize(fake, None, {"layers": []})


def _bomb_png(path, width, height):
  """A valid PNG header claiming a huge size (a decompression bomb as PIL sees it)."""
  ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
  chunk = lambda kind, data: (struct.pack(">I", len(data)) + kind + data +
                              struct.pack(">I", zlib.crc32(kind + data)))
  data = zlib.compress(b"\0" * 64)
  path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) +
                   chunk(b"IEND", b""))
  return str(path)


def test_bad_uploads_are_clear_errors(tmp_path):
  text = tmp_path / "notes.png"
  text.write_text("not an image")
  with pytest.raises(ValueError, match="not an image"):
    app.read_upload(str(text))
  big = _save(tmp_path / "big.png", np.zeros((64, 80), np.uint8))
  with pytest.raises(ValueError, match="80x64: larger than"):
    app.read_upload(big, max_pixels=50 * 50)
  with pytest.raises(ValueError, match="decompression bomb|larger than"):
    app.read_upload(_bomb_png(tmp_path / "bomb.png", 40000, 40000))
  with pytest.raises(ValueError, match="larger than the 4096x4096"):
    app.read_upload(_bomb_png(tmp_path / "wide.png", 5000, 5000))
  whole = (tmp_path / "ok.png")
  _save(whole, synthetic.render(1, 0, 64, 64))
  truncated = tmp_path / "truncated.png"
  truncated.write_bytes(whole.read_bytes()[:200])
  with pytest.raises(ValueError, match="not an image"):
    app.read_upload(str(truncated))
  with pytest.raises(ValueError, match="no file"):
    app.read_upload(str(tmp_path / "missing.png"))


def test_build_app_makes_a_page_that_shows_the_model_card(tmp_path):
  colorizer = FakeColorizer()
  colorizer.workdir = str(tmp_path)
  (tmp_path / "MODEL_CARD.md").write_text("# Model card\n\nTrained on 7,200 faces.\n")
  page = app.build_app(colorizer)
  assert isinstance(page, gr.Blocks)
  config = json.dumps(page.get_config_file(), default=str)
  assert "googleapis" not in config and "ui-sans-serif" in str(page.theme_for_launch.font)
  assert "Trained on 7,200 faces." in config


# -- the page in a browser ---------------------------------------------------------------


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _train_hint_model(tmp_path) -> str:
  """Tiny, 200 steps on one device: characters of random hues, so hints carry the colour."""
  folder = tmp_path / "characters"
  folder.mkdir()
  rng = np.random.default_rng(0)
  for i in range(256):
    hsv = np.asarray(Image.fromarray(synthetic.render(7, i, 48, 48)).convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(int) + int(rng.integers(256))) % 256
    Image.fromarray(hsv, "HSV").convert("RGB").save(folder / f"c{i:04d}.png")
  workdir = tmp_path / "run"
  steps = 200
  flags = [
      "--config.data.source=folder", f"--config.data.image_dir={folder}",
      "--config.data.image_size=48", "--config.data.image_width=0",
      "--config.data.extractors=('xdog',)", "--config.data.crop_scale=(1.0, 1.0)",
      "--config.hints.mode=strokes", "--config.hints.drop_prob=0.1",
      "--config.hints.stroke_width=(2.0, 4.0)", "--config.loss.gan=none",
      "--config.optim.g_lr=1e-3", "--config.batch_size=16",
      f"--config.num_train_steps={steps}", f"--config.log_every_steps={steps}",
      f"--config.eval_every_steps={steps}", f"--config.checkpoint_every_steps={steps}",
      "--config.diagnostics_every_steps=0"]
  env = dict(os.environ, XLA_FLAGS="")  # one device: no collectives in a tiny run
  result = subprocess.run([sys.executable, "-m", "mangacolor_jax.train", "--config",
                           str(REPO / "configs" / "tiny.py"), "--workdir", str(workdir),
                           *flags], cwd=REPO, env=env, capture_output=True, text=True,
                          check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  return str(workdir)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
  """`python -m mangacolor_jax.serve` over a freshly trained hint model, on a free port."""
  if not SKETCHES.is_dir():
    pytest.skip(f"shared sketches folder {SKETCHES} is absent (only developer checkouts "
                "and CI have it)")
  if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip("chromium / chromedriver are not installed (apt-get install chromium "
                "chromium-driver)")
  pytest.importorskip("selenium", reason="selenium is not installed: pip install -e '.[test]'")
  workdir = _train_hint_model(tmp_path_factory.mktemp("serve"))
  port = _free_port()
  env = dict(os.environ, XLA_FLAGS="", GRADIO_ANALYTICS_ENABLED="False")
  log = open(tmp_path_factory.mktemp("serve_log") / "serve.log", "w+")  # pylint: disable=consider-using-with
  process = subprocess.Popen(  # pylint: disable=consider-using-with
      [sys.executable, "-m", "mangacolor_jax.serve", "--workdir", workdir,
       "--checkpoint", "latest", "--port", str(port)],
      cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
  url = f"http://127.0.0.1:{port}/"
  try:
    deadline = time.monotonic() + 120
    while True:
      try:
        urllib.request.urlopen(url, timeout=2).close()
        break
      except OSError:
        if process.poll() is not None or time.monotonic() > deadline:
          log.seek(0)
          pytest.fail(f"serve did not start:\n{log.read()[-3000:]}")
        time.sleep(0.5)
    yield url
  finally:
    process.terminate()
    try:
      process.wait(timeout=20)
    except subprocess.TimeoutExpired:
      process.kill()
      process.wait()
    log.close()


@pytest.fixture
def browser():
  from selenium import webdriver
  options = webdriver.ChromeOptions()
  for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              "--window-size=1500,1000"):
    options.add_argument(arg)
  options.binary_location = CHROMIUM
  options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
  driver = webdriver.Chrome(service=webdriver.ChromeService(CHROMEDRIVER), options=options)
  driver.set_page_load_timeout(60)
  yield driver
  driver.quit()


def _result(driver, wait, previous):
  """Waits for the result image to change from `previous`; returns (src, uint8 RGB)."""
  from selenium.webdriver.common.by import By

  def ready(d):
    images = d.find_elements(By.CSS_SELECTOR, "#result img")
    src = images[0].get_attribute("src") if images else None
    return src if src and src != previous else False
  src = wait.until(ready)
  with urllib.request.urlopen(src, timeout=20) as response:
    data = response.read()
  with Image.open(io.BytesIO(data)) as im:
    assert im.format == "PNG"
    return src, np.asarray(im.convert("RGB"))


def _redness(rgb: np.ndarray) -> float:
  """Mean R - (G + B) / 2 in the middle of the picture (where the stroke is painted)."""
  h, w = rgb.shape[:2]
  box = rgb[int(h * 0.45):int(h * 0.55), int(w * 0.3):int(w * 0.7)].astype(np.float64)
  return float(np.mean(box[..., 0] - box[..., 1:].mean(axis=-1)))


def test_page_colours_an_uploaded_sketch_with_a_painted_stroke(server, browser, tmp_path):
  from selenium.webdriver.common.action_chains import ActionChains
  from selenium.webdriver.common.by import By
  from selenium.webdriver.support import expected_conditions as ec
  from selenium.webdriver.support.ui import WebDriverWait

  sketch = SKETCHES / SKETCH
  with Image.open(sketch) as im:
    size = im.size
  wait = WebDriverWait(browser, 60)
  browser.get(server)
  wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#upload input[type=file]"))
             ).send_keys(str(sketch))
  wait.until(ec.text_to_be_present_in_element((By.ID, "status"), f"{size[0]}x{size[1]}"))
  canvas = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "#editor canvas")))

  button = browser.find_element(By.ID, "colorize")
  button.click()
  src, plain = _result(browser, wait, None)
  assert plain.shape == (size[1], size[0], 3)  # the sketch's size: padded, never squashed

  # A red stroke across the middle of the sketch (the brush is the editor's first tool).
  brush = browser.find_element(By.CSS_SELECTOR, "#editor button[aria-label='Brush']")
  if "highlight" not in (brush.get_attribute("class") or ""):
    brush.click()
  half = canvas.size["width"] // 12
  (ActionChains(browser).move_to_element_with_offset(canvas, -half, 0).click_and_hold()
   .move_by_offset(half, 1).move_by_offset(half, -1).release().perform())
  time.sleep(0.5)  # the editor sends its layers with the next event
  button.click()
  _, hinted = _result(browser, wait, src)
  assert hinted.shape == plain.shape
  before, after = _redness(plain), _redness(hinted)
  assert after > before + 5.0, (
      f"the middle's redness (R - (G+B)/2) is {before:.1f} without the stroke and "
      f"{after:.1f} with it: the red stroke should make it redder")
  print(f"redness in the middle: {before:.1f} without the stroke, {after:.1f} with it")
  if os.environ.get("MANGACOLOR_SCREENSHOT") == "1":
    (REPO / "docs").mkdir(exist_ok=True)
    browser.execute_script("window.scrollTo(0, 0)")
    browser.save_screenshot(str(REPO / "docs" / "serve.png"))

  # Nothing was fetched from outside this server (fonts, scripts, analytics).
  urls = set()
  for entry in browser.get_log("performance"):
    message = json.loads(entry["message"])["message"]
    if message.get("method") == "Network.requestWillBeSent":
      urls.add(message["params"]["request"]["url"])
  outside = sorted(u for u in urls if not u.startswith((server, "data:", "blob:")))
  assert urls and not outside, outside

  # A file that is not an image: a message on the page, and the server goes on serving.
  bad = tmp_path / "notes.png"
  bad.write_text("not an image")
  browser.find_element(By.CSS_SELECTOR, "#upload button[aria-label='Clear']").click()
  wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#upload input[type=file]"))
             ).send_keys(str(bad))
  wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "not an image"))
  urllib.request.urlopen(server, timeout=10).close()
