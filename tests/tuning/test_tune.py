"""Tuning: the learning-rate range test and jittered, resumable, self-extending sweeps."""

import csv
import glob
import json
import math
import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from mangacolor_jax.training import checkpointing
from mangacolor_jax import tune

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

G_LR = tune.parse_param("optim.g_lr=1e-5:1e-2:log:4")
L1 = tune.parse_param("loss.l1_weight=1:1000:log:4")


def tensorboard_tags(workdir):
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
  tags = set()
  for path in glob.glob(os.path.join(workdir, "events.out.tfevents.*")):
    acc = event_accumulator.EventAccumulator(path, size_guidance={"tensors": 0})
    acc.Reload()
    tags |= set(acc.Tags()["tensors"])
  return tags


# --------------------------------------------------------------------------- the grid


def test_parse_param_and_bad_specs():
  assert G_LR == tune.Param("optim.g_lr", 1e-5, 1e-2, "log", 4)
  assert math.isclose(G_LR.spacing, 1.0)  # one decade per step
  assert tune.parse_param("config.model.gen.dropout=0:0.3:lin:4").spacing == pytest.approx(0.1)
  for bad in ("optim.g_lr", "optim.g_lr=1e-5:1e-2:log", "optim.g_lr=0:1:log:3",
              "optim.g_lr=1:0.1:log:3", "optim.g_lr=1e-5:1e-2:cube:3"):
    with pytest.raises(ValueError, match="--param"):
      tune.parse_param(bad)


def test_jittered_grid_is_seeded_bounded_and_ordered():
  points = tune.grid_points([G_LR, L1])
  assert len(points) == 16
  first = [tune.point_values([G_LR, L1], p, 0.3, seed=0) for p in points]
  again = [tune.point_values([G_LR, L1], p, 0.3, seed=0) for p in points]
  other = [tune.point_values([G_LR, L1], p, 0.3, seed=1) for p in points]
  plain = [tune.point_values([G_LR, L1], p, 0.0, seed=0) for p in points]
  assert first == again  # the same command gives the same trials
  assert first != other and first != plain  # the seed and the jitter matter
  assert sorted({v["optim.g_lr"] for v in plain}) == [1e-5, 1e-4, 1e-3, 1e-2]
  for p, v, nominal in zip(points, first, plain):
    for name in v:
      moved = abs(math.log10(v[name]) - math.log10(nominal[name]))
      assert 0 < moved <= 0.3 + 1e-3, (p, name)  # at most 0.3 of a decade
  # A point's values do not depend on the other points of the sweep.
  assert tune.point_values([G_LR, L1], tune.Point(0, (5, -1)), 0.3, 0) == \
      tune.point_values([G_LR, L1], tune.Point(0, (5, -1)), 0.3, 0)


def test_extension_points_step_past_the_edges_holding_the_best():
  planned = tune.grid_points([G_LR, L1])
  # Inside the grid: nothing to extend.
  assert tune.extension_points([G_LR, L1], tune.Point(0, (1, 2)), planned) == []
  # On the low edge of g_lr: one step below, around the best l1_weight.
  new = tune.extension_points([G_LR, L1], tune.Point(0, (0, 2)), planned)
  assert sorted(p.index for p in new) == [(-1, 1), (-1, 2), (-1, 3)]
  # In a corner: past both edges, the corner included.
  new = tune.extension_points([G_LR, L1], tune.Point(0, (3, 3)), planned)
  assert sorted(p.index for p in new) == [(2, 4), (3, 4), (4, 2), (4, 3), (4, 4)]
  # Extended points count as planned: the next extension goes one further.
  new = tune.extension_points([G_LR, L1], tune.Point(0, (-1, 2)),
                              planned + [tune.Point(0, (-1, j)) for j in (1, 2, 3)])
  assert sorted(p.index for p in new) == [(-2, 1), (-2, 2), (-2, 3)]


def test_refine_grid_is_finer_and_centred_on_the_best():
  best = tune.Point(0, (1, 2))
  points = tune.refine_grid([G_LR, L1], best, 3)
  assert len(points) == 8  # 3 x 3 without the centre
  centre = tune.nominal_axis([G_LR, L1], best)
  axes = [tune.nominal_axis([G_LR, L1], p, 3) for p in points]
  for k in range(2):
    assert sorted({round(a[k] - centre[k], 6) for a in axes}) == [-0.5, 0.0, 0.5]


# ------------------------------------------------------------------ running a sweep


class FakeTraining:
  """Stands in for trainer.train_and_evaluate: writes a checkpoint whose eval PSNR is a
  smooth function of the config, peaking at g_lr = 10**-5.6 (below the grid) and
  l1_weight = 30."""

  def __init__(self):
    self.calls = []

  @staticmethod
  def psnr(config):
    return 30.0 - (math.log10(config.optim.g_lr) + 5.6)**2 - (
        math.log10(config.loss.l1_weight) - math.log10(30.0))**2

  def __call__(self, config, workdir):
    self.calls.append(workdir)
    with checkpointing.Checkpointer(os.path.join(workdir, "checkpoints")) as ckpt:
      ckpt.save(config.num_train_steps, {"x": jnp.zeros(())},
                meta={"config": config.to_dict()},
                metrics={"eval_psnr": self.psnr(config), "eval_ssim": 0.5})


def test_sweep_extends_refines_resumes_and_reports(tiny_config, tmp_path):
  workdir = str(tmp_path / "sweep")
  fake = FakeTraining()
  sweep = tune.Sweep(tiny_config, workdir, [G_LR, L1], steps=7, runner=fake)
  ranked = sweep.run(extend=True, max_extensions=2, refine=True)
  stages = [r["stage"] for r in ranked]
  assert stages.count("grid") == 16
  # The optimum lies below the g_lr grid: the sweep stepped past that edge, twice.
  assert {tuple(r["index"])[0] for r in ranked if r["stage"] == "extension"} == {-1, -2}
  assert stages.count("refine") == 8
  assert len(fake.calls) == len(ranked) == len(set(fake.calls))
  best = ranked[0]
  assert best["values"]["optim.g_lr"] < 1e-5  # found past the original grid
  assert best["score"] == max(r["score"] for r in ranked)
  assert best["score"] == pytest.approx(FakeTraining.psnr(sweep.trial_config(
      next(p for p in sweep.planned if sweep.trial_name(p) == best["trial"]))))
  assert best["final_step"] == 7  # --steps sets config.num_train_steps

  # Results: one row per trial, ranked; the Markdown table; the plot.
  with open(os.path.join(workdir, "results.csv"), encoding="utf-8") as f:
    rows = list(csv.DictReader(f))
  assert [r["trial"] for r in rows] == [r["trial"] for r in ranked]
  assert float(rows[0]["eval_psnr"]) == pytest.approx(best["score"])
  assert "eval_ssim" in rows[0]
  table = open(os.path.join(workdir, "results.md"), encoding="utf-8").read()
  assert table.count(f"| {best['trial']} |") == 1 and "7 training steps" in table
  assert os.path.getsize(os.path.join(workdir, "sweep.png")) > 1000
  for r in ranked:
    with open(os.path.join(workdir, r["trial"], "result.json"), encoding="utf-8") as f:
      assert json.load(f)["values"] == r["values"]

  # Resume: finished trials are not re-run; a trial without its result is.
  os.remove(os.path.join(workdir, "trial_005", "result.json"))
  again = FakeTraining()
  resumed = tune.Sweep(tiny_config, workdir, [G_LR, L1], steps=7, runner=again).run(
      extend=True, max_extensions=2, refine=True)
  assert again.calls == [os.path.join(workdir, "trial_005")]
  assert [r["values"] for r in resumed] == [r["values"] for r in ranked]

  # Another sweep in the same workdir is refused rather than mixed in...
  with pytest.raises(ValueError, match="other settings"):
    tune.Sweep(tiny_config, workdir, [G_LR, L1], steps=7, seed=1, runner=again)
  changed = tiny_config.copy_and_resolve_references()
  changed.optim.b1 = 0.9
  with pytest.raises(ValueError, match=r"config\.optim\.b1"):
    tune.Sweep(changed, workdir, [G_LR, L1], steps=7, runner=again)
  # ...but a field the code gained since (with its default) does not stop a resume.
  grown = tiny_config.copy_and_resolve_references()
  grown.data.new_option = 0.0
  tune.Sweep(grown, workdir, [G_LR, L1], steps=7, runner=again)


def test_sweep_without_extension_and_failures(tiny_config, tmp_path):
  fake = FakeTraining()
  ranked = tune.Sweep(tiny_config, str(tmp_path), [G_LR], steps=3, runner=fake).run(
      extend=False)
  assert [r["stage"] for r in ranked] == ["grid"] * 4

  def diverging(config, workdir):
    if config.optim.g_lr > 5e-3:
      raise FloatingPointError("non-finite g_loss by step 2")
    fake(config, workdir)

  ranked = tune.Sweep(tiny_config, str(tmp_path / "d"), [G_LR], steps=3,
                      runner=diverging).run(extend=False)
  assert [r["status"] for r in ranked] == ["done"] * 3 + ["diverged"]
  assert ranked[-1]["score"] is None
  with pytest.raises(ValueError, match="config.optim.nope"):
    tune.Sweep(tiny_config, str(tmp_path / "x"),
               [tune.parse_param("optim.nope=1:2:lin:2")], runner=fake)


def test_set_field_keeps_types(tiny_config):
  assert tune.set_field(tiny_config, "model.gen.features", 11.6) == 12
  assert tiny_config.model.gen.features == 12
  assert tune.set_field(tiny_config, "optim.g_lr", 3) == 3.0
  with pytest.raises(ValueError, match="not a number"):
    tune.set_field(tiny_config, "model.gen.norm", 1.0)


def test_sweep_command_runs_trials_as_train_processes(tmp_path):
  """The command line with --trials_in_parallel 2: real training runs, one process each."""
  workdir = tmp_path / "sweep"
  cmd = [sys.executable, "-m", "mangacolor_jax.tune", "sweep", "--config",
         "configs/tiny.py", "--config.num_train_steps=5", "--config.loss.gan=none",
         "--workdir", str(workdir),
         "--param", "optim.g_lr=1e-4:1e-3:log:2", "--steps", "1", "--no_extend",
         "--trials_in_parallel", "2"]
  proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  for trial in ("trial_000", "trial_001"):
    result = json.loads((workdir / trial / "result.json").read_text())
    assert result["status"] == "done" and result["final_step"] == 1
    assert "--config.num_train_steps=5" in result["command"]  # the base override...
    assert "--config.num_train_steps=1" in result["command"]  # ...then --steps wins
    assert glob.glob(str(workdir / trial / "events.out.tfevents.*"))  # TensorBoard
    with checkpointing.Checkpointer(str(workdir / trial / "checkpoints"),
                                    create=False) as ckpt:
      assert result["score"] == pytest.approx(ckpt.metrics(1)["eval_psnr"])
  assert "| trial_00" in proc.stdout
  with open(workdir / "results.csv", encoding="utf-8") as f:
    assert len(list(csv.DictReader(f))) == 2


# ----------------------------------------------------------------------------- lr range


def test_smoothing_and_suggestion_on_a_known_curve():
  lrs = np.geomspace(1e-6, 1.0, 61)
  # Loss falls from 1e-5 to a minimum at 1e-2, then climbs.
  x = np.log10(lrs)
  loss = np.where(x < -2, 1.0 - 0.5 / (1 + np.exp(-3 * (x + 3.5))), 0.5 + 0.4 * (x + 2)**2)
  smoothed = tune.smooth_centred(loss, 0.5)
  s = tune.suggest_lr(lrs, smoothed)
  assert 5e-3 < s["min_loss_lr"] < 2e-2
  assert s["suggested_lr"] == pytest.approx(s["min_loss_lr"] / 10, rel=0.01)
  assert 1e-4 < s["steepest_lr"] < 1e-3  # where the sigmoid falls fastest
  assert tune.diverged([1.0, float("nan")], [1.0, 1.0], 4.0)
  assert tune.diverged([1.0, 5.0], [1.0, 4.5], 4.0)
  assert not tune.diverged([1.0, 3.0], [1.0, 3.0], 4.0)


def final_loss(config, lr, steps=40):
  const = lambda count: lr + 0.0 * count  # pylint: disable=unnecessary-lambda-assignment
  history = tune.run_steps(config, const, const, steps, seed=0)
  return float(np.mean([h["g_l1"] for h in history[-5:]]))


def test_lr_range_suggestion_trains_better_than_100x_above_and_below(tiny_config,
                                                                     tmp_path):
  """The issue's test: on a tiny problem (the L1 baseline on the tiny config), the
  suggested rate beats rates 100x above and below it after the same number of steps."""
  config = tiny_config
  config.loss.gan = "none"
  config.loss.l1_weight = 1.0
  result = tune.lr_range(config, str(tmp_path), lr_min=1e-6, lr_max=10.0, steps=60)
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
  result = tune.lr_range(tiny_config, str(tmp_path), lr_min=1e-4, lr_max=1e4, steps=40)
  gen, disc = result["networks"]["gen"], result["networks"]["disc"]
  assert (gen["field"], gen["loss"], gen["other_lr"]) == ("optim.g_lr", "g_l1", 1e-4)
  assert (disc["field"], disc["loss"], disc["other_lr"]) == ("optim.d_lr", "d_loss", 0.0)
  # A rate of 1e4 wrecks D: the ramp stops before its end.
  assert disc["diverged_at_lr"] is not None and len(disc["curve"]["lr"]) < 40
  assert set(result["suggested"]) == {"optim.g_lr", "optim.d_lr"}
