"""Ensembles: averaged outputs of several runs or checkpoints, weights, evaluate, colorize."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from mangacolor_jax.infer import colorizer as colorizer_lib
from mangacolor_jax.infer import ensemble as ensemble_lib
from mangacolor_jax.utils import images
from mangacolor_jax.infer import evaluation as infer_eval
from mangacolor_jax.training import loop

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """Two tiny GAN runs with hints: A keeps checkpoints 1, 2, 3 (each evaluated), B has 2."""
  from configs import tiny  # pylint: disable=g-import-not-at-top
  out = {}
  for name, seed, steps in (("a", 0, 3), ("b", 1, 2)):
    config = tiny.get_config()
    config.seed = seed
    config.hints.mode = "sparse"
    config.num_train_steps = steps
    config.eval_every_steps = config.checkpoint_every_steps = 1
    config.keep_best_checkpoints = 3
    config.optim.g_lr = 1e-2  # members must differ visibly after a few steps
    out[name] = str(tmp_path_factory.mktemp(f"run_{name}"))
    loop.train_and_evaluate(config, out[name])
  return out


def sketch(h=40, w=56, seed=0):
  rng = np.random.default_rng(seed)
  return np.where(rng.uniform(size=(h, w, 1)) < 0.15, -1.0, 1.0).astype(np.float32)


def test_parse_members():
  assert ensemble_lib.parse_members("a,b", None) == [("a", "best"), ("b", "best")]
  assert ensemble_lib.parse_members("a", "1,2,3") == [("a", "1"), ("a", "2"), ("a", "3")]
  assert ensemble_lib.parse_members("a,b", "latest") == [("a", "latest"), ("b", "latest")]
  for workdirs, checkpoints in (("a,b", "1,2"), ("", "1"), ("a,a", "best")):
    with pytest.raises(ValueError):
      ensemble_lib.parse_members(workdirs, checkpoints)


def test_uniform_ensemble_is_the_mean_of_its_members(runs):
  members = [(runs["a"], s) for s in (1, 2, 3)]
  ensemble = ensemble_lib.EnsembleColorizer(members)
  assert ensemble.step == [1, 2, 3] and ensemble.takes_hints
  lineart = np.stack([sketch(seed=0), sketch(seed=1)])
  mean, outputs, weights = ensemble.predict_members(lineart)
  assert outputs.shape == (3, 2, 40, 56, 3) and mean.shape == (2, 40, 56, 3)
  np.testing.assert_allclose(weights, 1.0 / 3.0)
  np.testing.assert_allclose(mean, outputs.mean(axis=0), atol=1e-6)
  assert np.abs(outputs[0] - outputs[2]).max() > 1e-2  # the members differ
  # Each member output is what that checkpoint's Colorizer gives alone.
  for (workdir, step), out in zip(members, outputs):
    single = colorizer_lib.Colorizer(workdir, step)
    np.testing.assert_allclose(single.predict(lineart[1]), out[1], atol=1e-6)
  # The Colorizer call signature: uint8 [H, W, 3] of the averaged float output.
  rgb = ensemble(lineart[0])
  assert rgb.dtype == np.uint8 and rgb.shape == (40, 56, 3)
  np.testing.assert_array_equal(rgb, images.to_uint8(mean[0]))
  # Hints reach every member (they change the ensemble's output).
  hints = np.zeros((40, 56, 4), np.float32)
  hints[::4, ::4] = (1.0, -1.0, -1.0, 1.0)
  assert np.any(ensemble(lineart[0], hints) != rgb)


def test_psnr_weights_follow_each_members_validation_psnr(runs):
  members = [(runs["a"], 3), (runs["b"], 2)]
  ensemble = ensemble_lib.EnsembleColorizer(members, weights="psnr")
  psnr = np.array([ensemble_lib.checkpoint_metrics(w, s)["eval_psnr"] for w, s in members])
  expected = 10.0**(psnr / 10.0) / np.sum(10.0**(psnr / 10.0))  # inverse MSE
  np.testing.assert_allclose(ensemble.static_weights, expected, rtol=1e-6)
  assert abs(expected[0] - expected[1]) > 1e-4  # not uniform by accident
  lineart = sketch()[None]
  mean, outputs, weights = ensemble.predict_members(lineart)
  np.testing.assert_allclose(weights[:, 0], expected, rtol=1e-6)
  np.testing.assert_allclose(mean, np.tensordot(expected, outputs, axes=1), atol=1e-6)


def test_disc_weights_are_each_discriminators_score_per_image(runs):
  members = [(runs["a"], 3), (runs["b"], 2)]
  ensemble = ensemble_lib.EnsembleColorizer(members, weights="disc")
  lineart = np.stack([sketch(seed=0), sketch(seed=3)])
  mean, outputs, weights = ensemble.predict_members(lineart)
  scores = np.stack([m.disc_score(lineart, out) for m, out in zip(ensemble.members,
                                                                   outputs)])
  assert np.all((scores >= 0) & (scores <= 1))
  np.testing.assert_allclose(weights, scores / scores.sum(axis=0), rtol=1e-5)
  np.testing.assert_allclose(weights.sum(axis=0), 1.0, rtol=1e-6)
  np.testing.assert_allclose(mean, np.einsum("mb,mbhwc->bhwc", weights, outputs),
                             atol=1e-6)


def test_evaluate_reports_the_ensemble_against_each_member(runs):
  result = infer_eval.evaluate_ensemble([(runs["a"], "latest"), (runs["b"], "latest")],
                                 weights="uniform")
  assert result["images"] == 16 and len(result["members"]) == 2
  for row, workdir in zip(result["members"], (runs["a"], runs["b"])):
    alone = infer_eval.evaluate_run(workdir, checkpoint="latest")  # the same images and hints
    assert row["workdir"] == workdir and row["step"] == alone["step"]
    assert row["weight"] == pytest.approx(0.5)
    for key in ("psnr", "ssim", "lab_l1", "psnr_hints"):
      assert row[key] == pytest.approx(alone[key], rel=1e-4, abs=1e-4), key
  ens = result["ensemble"]
  for key in ("psnr", "ssim", "lab_l1", "colourfulness", "psnr_hints"):
    assert np.isfinite(ens[key])
  best = max(r["psnr"] for r in result["members"])
  assert result["ensemble_minus_best_member"]["psnr"] == pytest.approx(ens["psnr"] - best)
  assert json.dumps(result)


def test_colorize_and_evaluate_commands_take_an_ensemble(runs, tmp_path):
  src = tmp_path / "sketch.png"
  Image.fromarray(((sketch()[..., 0] + 1) * 127.5).astype(np.uint8)).save(src)
  out = tmp_path / "out.png"
  base = [sys.executable, "-m", "mangacolor_jax.colorize", "--input", str(src), "--output",
          str(out)]
  subprocess.run(base + ["--ensemble", f"{runs['a']},{runs['b']}", "--checkpoint",
                         "latest", "--ensemble_weights", "psnr"],
                 check=True, cwd=REPO, capture_output=True, timeout=300)
  ensemble = ensemble_lib.EnsembleColorizer([(runs["a"], "latest"), (runs["b"], "latest")],
                                         weights="psnr")
  expected = ensemble(colorizer_lib.read_lineart(str(src)))
  with Image.open(out) as im:
    np.testing.assert_array_equal(np.asarray(im), expected)
  both = subprocess.run(base + ["--workdir", runs["a"], "--ensemble", runs["b"]],
                        cwd=REPO, capture_output=True, text=True, timeout=300)
  assert both.returncode != 0 and "exactly one of --workdir" in both.stderr
  # Several checkpoints of one run, through evaluate's command line.
  proc = subprocess.run([sys.executable, "-m", "mangacolor_jax.evaluate", "--workdir",
                         runs["a"], "--checkpoint", "1,3"], check=True, cwd=REPO,
                        capture_output=True, text=True, timeout=300)
  result = json.loads(proc.stdout)
  assert [m["step"] for m in result["members"]] == [1, 3]
  assert "psnr" in result["ensemble"]
