"""A trained model follows a painted hint: a red stroke on the hair turns the hair red, and
leaves the rest of the picture as it was.

The model is trained here, in a minute, on characters whose hair colour varies (the
procedural character, its hair recoloured to one of several hues), with strokes as
`colorize --hints` reads them from an RGBA image. Only a hint can tell such a model the
hair's colour, so a model that ignores hints fails the test (`drop_prob=1.0` shows it).
"""

import os
import pathlib
import subprocess
import sys

import colorsys

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from mangacolor_jax.infer import colorizer as colorizer_lib
from mangacolor_jax.input_pipeline import lineart as lineart_lib
from mangacolor_jax.input_pipeline import synthetic
from mangacolor_jax.nn import hints as hints_lib
from mangacolor_jax.nn import image_metrics

REPO = pathlib.Path(__file__).resolve().parents[2]
SIZE = 48
RED = (220, 30, 30)
HAIR = np.array(synthetic.PALETTE["hair"], np.float32)
HUES = (0.0, 0.08, 0.15, 0.33, 0.5, 0.62, 0.75, 0.88)  # red, orange, ... blue, purple


def hair_mask(image: np.ndarray) -> np.ndarray:
  """Pixels of the procedural character's (blue) hair."""
  return np.max(np.abs(image.astype(np.float32) - HAIR), axis=-1) < 24


def recolour_hair(image: np.ndarray, hue: float) -> np.ndarray:
  rgb = np.array(colorsys.hsv_to_rgb(hue, 0.7, 0.85)) * 255
  out = image.copy()
  out[hair_mask(image)] = rgb.astype(np.uint8)
  return out


def mean_ab(rgb: np.ndarray) -> np.ndarray:
  """Mean chroma (a*, b* of CIELAB) of uint8 pixels [..., 3]: its angle is the mean hue."""
  lab = np.asarray(image_metrics.rgb_to_lab(np.asarray(rgb, np.float32) / 255.0))
  return lab.reshape(-1, 3)[:, 1:].mean(axis=0)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
  mse = np.mean((a.astype(np.float64) - b.astype(np.float64))**2)
  return float(10 * np.log10(255.0**2 / max(mse, 1e-10)))


def train_hint_model(tmp_path, drop_prob: float) -> str:
  folder = tmp_path / "characters"
  folder.mkdir()
  rng = np.random.default_rng(0)
  for i in range(384):
    image = synthetic.render(7, i, SIZE, SIZE)
    Image.fromarray(recolour_hair(image, float(rng.choice(HUES)))).save(
        folder / f"c{i:04d}.png")
  workdir = tmp_path / "run"
  overrides = dict(
      source="folder", image_dir=str(folder), image_size=SIZE, image_width=0,
      extractors="('xdog',)", crop_scale="(1.0, 1.0)")
  flags = [f"--config.data.{k}={v}" for k, v in overrides.items()] + [
      "--config.model.gen.features=16", "--config.model.gen.max_features=64",
      "--config.loss.gan=none", "--config.hints.mode=strokes",
      f"--config.hints.drop_prob={drop_prob}", "--config.hints.stroke_width=(2.0, 4.0)",
      "--config.batch_size=16", "--config.optim.g_lr=1e-3",
      "--config.num_train_steps=1000", "--config.log_every_steps=300",
      "--config.eval_every_steps=1000", "--config.checkpoint_every_steps=1000",
      "--config.diagnostics_every_steps=0"]
  # One device: the 8 fake test devices would only add collectives to a 1-minute run.
  env = dict(os.environ, XLA_FLAGS="")
  result = subprocess.run([sys.executable, "-m", "mangacolor_jax.train", "--config",
                           str(REPO / "configs" / "tiny.py"), "--workdir", str(workdir),
                           *flags],
                          cwd=REPO, env=env, capture_output=True, text=True)
  assert result.returncode == 0, result.stderr[-3000:]
  return str(workdir)


def red_stroke_response(workdir: str) -> dict:
  """Colours a character the model never saw (blue hair) without hints and with one short
  red stroke on its hair, as `colorize --hints` reads a painted RGBA image."""
  target = synthetic.render(11, 0, SIZE, SIZE)
  hair = hair_mask(target)
  lineart = lineart_lib.to_lineart_numpy(target)[..., :1] * 2.0 - 1.0
  # The stroke: 2 px wide, along the hair's longest row run, away from its ends.
  rows = np.where(hair.sum(axis=1) >= 6)[0]
  y = int(rows[np.argmax(hair[rows].sum(axis=1))])
  xs = np.where(hair[y] & hair[y + 1])[0]
  rgba = np.zeros((SIZE, SIZE, 4), np.uint8)
  rgba[y:y + 2, xs[1]:xs[1] + 10] = (*RED, 255)
  painted = rgba[..., 3] > 0
  model = colorizer_lib.Colorizer(workdir, "latest")
  plain = model(lineart)
  hinted = model(lineart, hints_lib.hints_from_rgba(rgba))
  region = ndimage.binary_dilation(hair | painted, iterations=2)
  return dict(plain=plain, hinted=hinted, target=target, hair=hair & ~painted,
              outside=~region)


@pytest.fixture(scope="module")
def hint_model(tmp_path_factory):
  return train_hint_model(tmp_path_factory.mktemp("hints"), drop_prob=0.3)


def test_red_stroke_turns_the_hair_red_and_nothing_else(hint_model):
  r = red_stroke_response(hint_model)
  red = mean_ab(RED)
  before = np.linalg.norm(mean_ab(r["plain"][r["hair"]]) - red)
  after = np.linalg.norm(mean_ab(r["hinted"][r["hair"]]) - red)
  assert after < 0.85 * before, (
      f"the hair's mean chroma is {before:.1f} from the stroke's red without hints and "
      f"{after:.1f} with it: the stroke should pull it at least 15% closer")
  outside = r["outside"]
  before = psnr(r["plain"][outside], r["target"][outside])
  after = psnr(r["hinted"][outside], r["target"][outside])
  assert after >= before - 0.3, f"outside the stroke's region: {before:.2f} -> {after:.2f} dB"
