"""Sweeps: resumable, self-extending runs of a jittered grid, ranked and reported."""

import csv
import json
import math
import os

import jax.numpy as jnp
import pytest

from mangacolor_jax.training import checkpointing
from mangacolor_jax.tuning import grid
from mangacolor_jax.tuning import sweep as sweep_lib

G_LR = grid.parse_param("optim.g_lr=1e-5:1e-2:log:4")
L1 = grid.parse_param("loss.l1_weight=1:1000:log:4")
SEVEN_STEPS = sweep_lib.Options(steps=7)
THREE_STEPS = sweep_lib.Options(steps=3)


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
  sweep = sweep_lib.Sweep(tiny_config, workdir, [G_LR, L1], SEVEN_STEPS, runner=fake)
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
  resumed = sweep_lib.Sweep(tiny_config, workdir, [G_LR, L1], SEVEN_STEPS, runner=again).run(
      extend=True, max_extensions=2, refine=True)
  assert again.calls == [os.path.join(workdir, "trial_005")]
  assert [r["values"] for r in resumed] == [r["values"] for r in ranked]

  # Another sweep in the same workdir is refused rather than mixed in...
  with pytest.raises(ValueError, match="other settings"):
    sweep_lib.Sweep(tiny_config, workdir, [G_LR, L1], sweep_lib.Options(steps=7, seed=1),
                    runner=again)
  changed = tiny_config.copy_and_resolve_references()
  changed.optim.b1 = 0.9
  with pytest.raises(ValueError, match=r"config\.optim\.b1"):
    sweep_lib.Sweep(changed, workdir, [G_LR, L1], SEVEN_STEPS, runner=again)
  # ...but a field the code gained since (with its default) does not stop a resume.
  grown = tiny_config.copy_and_resolve_references()
  grown.data.new_option = 0.0
  sweep_lib.Sweep(grown, workdir, [G_LR, L1], SEVEN_STEPS, runner=again)


def test_sweep_without_extension_and_failures(tiny_config, tmp_path):
  fake = FakeTraining()
  ranked = sweep_lib.Sweep(tiny_config, str(tmp_path), [G_LR], THREE_STEPS, runner=fake).run(
      extend=False)
  assert [r["stage"] for r in ranked] == ["grid"] * 4

  def diverging(config, workdir):
    if config.optim.g_lr > 5e-3:
      raise FloatingPointError("non-finite g_loss by step 2")
    fake(config, workdir)

  ranked = sweep_lib.Sweep(tiny_config, str(tmp_path / "d"), [G_LR], THREE_STEPS,
                      runner=diverging).run(extend=False)
  assert [r["status"] for r in ranked] == ["done"] * 3 + ["diverged"]
  assert ranked[-1]["score"] is None
  with pytest.raises(ValueError, match="config.optim.nope"):
    sweep_lib.Sweep(tiny_config, str(tmp_path / "x"),
               [grid.parse_param("optim.nope=1:2:lin:2")], runner=fake)
