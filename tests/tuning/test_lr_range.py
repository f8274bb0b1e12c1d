"""The learning-rate range test: smoothing, suggestions, and ramps on the tiny config."""

import glob
import json
import os

import numpy as np
import pytest

from mangacolor_jax.tuning import lr_range as lr_range_lib


def tensorboard_tags(workdir):
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
  tags = set()
  for path in glob.glob(os.path.join(workdir, "events.out.tfevents.*")):
    acc = event_accumulator.EventAccumulator(path, size_guidance={"tensors": 0})
    acc.Reload()
    tags |= set(acc.Tags()["tensors"])
  return tags


def test_smoothing_and_suggestion_on_a_known_curve():
  lrs = np.geomspace(1e-6, 1.0, 61)
  # Loss falls from 1e-5 to a minimum at 1e-2, then climbs.
  x = np.log10(lrs)
  loss = np.where(x < -2, 1.0 - 0.5 / (1 + np.exp(-3 * (x + 3.5))), 0.5 + 0.4 * (x + 2)**2)
  smoothed = lr_range_lib.smooth_centred(loss, 0.5)
  s = lr_range_lib.suggest_lr(lrs, smoothed)
  assert 5e-3 < s["min_loss_lr"] < 2e-2
  assert s["suggested_lr"] == pytest.approx(s["min_loss_lr"] / 10, rel=0.01)
  assert 1e-4 < s["steepest_lr"] < 1e-3  # where the sigmoid falls fastest
  assert lr_range_lib.diverged([1.0, float("nan")], [1.0, 1.0], 4.0)
  assert lr_range_lib.diverged([1.0, 5.0], [1.0, 4.5], 4.0)
  assert not lr_range_lib.diverged([1.0, 3.0], [1.0, 3.0], 4.0)
  # A bounded loss that doubles from its best and then settles on a plateau: the
  # suggestion only looks before the rise.
  assert lr_range_lib.before_rise([1.0, 0.5, 0.4, 0.9, 0.3]) == 3
  assert lr_range_lib.before_rise([1.0, 0.8, 0.7]) == 3


def final_loss(config, lr, steps=40):
  const = lambda count: lr + 0.0 * count  # pylint: disable=unnecessary-lambda-assignment
  history = lr_range_lib.run_steps(config, const, const, steps, seed=0)
  return float(np.mean([h["g_l1"] for h in history[-5:]]))


def test_lr_range_suggestion_trains_better_than_100x_above_and_below(tiny_config,
                                                                     tmp_path):
  """The issue's test: on a tiny problem (the L1 baseline on the tiny config), the
  suggested rate beats rates 100x above and below it after the same number of steps."""
  config = tiny_config
  config.loss.gan = "none"
  config.loss.l1_weight = 1.0
  result = lr_range_lib.lr_range(config, str(tmp_path), lr_min=1e-6, lr_max=10.0, steps=60)
  assert list(result["networks"]) == ["gen"]  # no discriminator, no second ramp
  lr = result["suggested"]["optim.g_lr"]
  assert 1e-6 < lr < 10.0
  losses = {f: final_loss(config, lr * f) for f in (0.01, 1.0, 100.0)}
  assert losses[1.0] < losses[0.01] and losses[1.0] < losses[100.0], (lr, losses)
  on_disk = json.loads((tmp_path / "lr_range.json").read_text())
  assert on_disk["suggested"] == result["suggested"]
  curve = on_disk["networks"]["gen"]["curve"]
  assert len(curve["lr"]) == len(curve["loss"]) == len(curve["smoothed"]) > 10
  assert (tmp_path / "lr_range.png").stat().st_size > 1000
  assert {"lr_range_gen/lr", "lr_range_gen/g_l1_smoothed"} <= tensorboard_tags(tmp_path)


def test_lr_range_gan_ramps_each_network_and_stops_at_divergence(tiny_config, tmp_path):
  tiny_config.optim.d_lr = 1e-4
  result = lr_range_lib.lr_range(tiny_config, str(tmp_path), lr_min=1e-4, lr_max=1e4,
                                 steps=40)
  gen, disc = result["networks"]["gen"], result["networks"]["disc"]
  assert (gen["field"], gen["loss"], gen["other_lr"]) == ("optim.g_lr", "g_l1", 1e-4)
  assert (disc["field"], disc["loss"], disc["other_lr"]) == ("optim.d_lr", "d_loss", 0.0)
  # A rate of 1e4 wrecks D: the ramp stops before its end.
  assert disc["diverged_at_lr"] is not None and len(disc["curve"]["lr"]) < 40
  assert set(result["suggested"]) == {"optim.g_lr", "optim.d_lr"}
