"""Tests of `mangacolor_jax.data.inspect`: passes on real data, fails on broken pipelines."""

import json
import os

import jax
import numpy as np
import pytest

from mangacolor_jax.input_pipeline import datasets
from mangacolor_jax.data import inspection
from mangacolor_jax.data import sheets
from mangacolor_jax.utils import images


def _good_batches(rng, b=4, hw=(32, 48), n=3):
  """Plausible batches: line art mostly paper with ink, targets over [-1, 1]."""
  def batch():
    art = np.where(rng.random((b,) + hw + (1,)) < 0.2, -1.0, 1.0).astype(np.float32)
    return {"lineart": art, "target": rng.uniform(-1, 1, (b,) + hw + (3,)).astype(np.float32)}
  return [batch() for _ in range(n)], batch()


def test_inspect_passes_on_real_faces(ci_faces, tiny_config, tmp_path):
  config = tiny_config
  config.data.source = "folder"
  config.data.image_dir = str(ci_faces)
  config.hints.mode = "sparse"
  out = tmp_path / "inspect"
  report = inspection.inspect_data(config, str(out), num_batches=3, max_images=4)
  assert report["checks"] == {"passed": True, "failures": []}
  names = set(os.listdir(out))
  assert {"train_batch_0.png", "train_batch_2.png", "validation_batch.png",
          "histograms.png", "report.json"} <= names
  assert any(n.startswith("events.out.tfevents") for n in names)  # TensorBoard
  assert json.loads((out / "report.json").read_text())["checks"]["passed"]
  stats = report["stats"]
  assert stats["train_lineart"]["min"] == -1.0 and stats["train_lineart"]["max"] == 1.0
  assert stats["train_hint_colours"]["shape"][0] > 0  # some hints were drawn


def test_grid_shows_values_exactly_as_the_model_gets_them():
  rng = np.random.default_rng(1)
  (batch,), _ = _good_batches(rng, n=1)
  hints = np.zeros((4, 32, 48, 4), np.float32)
  hints[:, 5, 7] = [0.5, -0.5, 1.0, 1.0]  # one hint pixel per image
  batch["hints"] = hints
  grid = sheets.batch_grid(batch, max_images=3)
  h, w, scale, header, gap = 32, 48, 3, 14, 2  # scale: 128 / 48 rounded up
  assert grid.shape == (header + 3 * (h * scale + gap), 3 * (w * scale + gap), 3)
  for row in range(3):
    y0 = header + row * (h * scale + gap)
    cells = [grid[y0:y0 + h * scale:scale, c * (w * scale + gap):
                  c * (w * scale + gap) + w * scale:scale] for c in range(3)]
    np.testing.assert_array_equal(cells[0][..., 0],
                                  images.to_uint8(batch["lineart"][row, ..., 0]))
    np.testing.assert_array_equal(cells[1], images.to_uint8(hints[row, ..., :3]))
    np.testing.assert_array_equal(cells[2], images.to_uint8(batch["target"][row]))
  # No hint is 0, mid-grey, as the model sees it; the hint pixel has its colour.
  assert (grid[header + 0, w * scale + gap] == 128).all()
  np.testing.assert_array_equal(
      grid[header + 5 * scale, w * scale + gap + 7 * scale], [191, 64, 255])


def test_inspect_fails_on_a_pipeline_that_repeats_a_batch(tiny_config, tmp_path,
                                                          monkeypatch):
  original = datasets.create_train_dataset

  def repeating(*args, **kwargs):
    return original(*args, **kwargs).take(1).repeat()

  monkeypatch.setattr(datasets, "create_train_dataset", repeating)
  with pytest.raises(inspection.InspectionError, match="identical"):
    inspection.inspect_data(tiny_config, str(tmp_path / "out"), num_batches=2)
  # Everything was written first, so the failure can be looked at.
  report = json.loads((tmp_path / "out" / "report.json").read_text())
  assert not report["checks"]["passed"]
  assert os.path.exists(tmp_path / "out" / "train_batch_1.png")


def test_check_batches_catches_each_problem():
  rng = np.random.default_rng(0)
  train, val = _good_batches(rng)
  assert inspection.check_batches(train, val, 4, (32, 48)) == []

  def failures(edit):
    t, v = _good_batches(np.random.default_rng(0))
    edit(t, v)
    return " | ".join(inspection.check_batches(t, v, 4, (32, 48)))

  def unscaled(t, v):
    for b in t + [v]:
      b["target"] = (b["target"] + 1) / 2  # [0, 1]
  assert "never negative" in failures(unscaled)

  def out_of_range(t, v):
    t[1]["target"][0, 0, 0, 0] = 1.5
  assert "leaves [-1, 1]" in failures(out_of_range)

  def not_finite(t, v):
    t[0]["lineart"][0, 0, 0, 0] = np.nan
  assert "non-finite" in failures(not_finite)

  def wrong_shape(t, v):
    v["target"] = np.transpose(v["target"], (0, 2, 1, 3))  # H and W swapped
  assert "validation batch: target has shape (4, 48, 32, 3)" in failures(wrong_shape)

  def one_image(t, v):
    t[2]["target"][:] = t[2]["target"][:1]
  assert "every example's target is the same image" in failures(one_image)

  def repeated(t, v):
    t[2] = {k: x.copy() for k, x in t[0].items()}
  assert "train batches 0 and 2 are identical" in failures(repeated)

  def val_is_train(t, v):
    v.update({k: x.copy() for k, x in t[1].items()})
  assert "validation batch equals train batch 1" in failures(val_is_train)

  def blank(t, v):
    for b in t + [v]:
      b["lineart"][:] = 1.0
  assert "far from zero" in failures(blank) and "no ink" in failures(blank)

  def shifted(t, v):
    v["target"] = v["target"] * 0.3 - 0.7
  assert "validation is scaled differently" in failures(shifted)
