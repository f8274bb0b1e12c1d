"""MODEL_CARD.md: written at each best checkpoint, with the data, metrics and provenance a
user needs to know what the model is; the quality protocol adds its scores."""

import os

from mangacolor_jax.training import loop
from mangacolor_jax.training import model_card


def test_a_run_writes_its_card_at_the_best_checkpoint(tiny_config, ci_faces, tmp_path):
  tiny_config.data.source = "folder"
  tiny_config.data.image_dir = str(ci_faces)
  tiny_config.data.test_fraction = 0.1
  tiny_config.hints.mode = "strokes"
  tiny_config.num_train_steps = 4
  tiny_config.eval_every_steps = tiny_config.checkpoint_every_steps = 2
  workdir = str(tmp_path / "run")
  loop.train_and_evaluate(tiny_config, workdir)
  card = open(os.path.join(workdir, model_card.NAME), encoding="utf-8").read()
  assert f"the image folder `{ci_faces}`" in card
  assert "55 train, 3 validation, 6 test images" in card  # 64 faces: 10% test, 5% val
  assert "32x48 crops" in card
  assert "steps of batch 8" in card and "images seen" in card
  assert "| PSNR (dB) |" in card and "with hints" in card
  assert "git " in card and "hints.mode = 'strokes'" in card

  scores = {"xdog": {"strokes_0": dict(psnr=15.0, ssim=0.7, lab_l1=11.0,
                                       colourfulness_ratio=0.9),
                     "strokes_10": dict(psnr=16.5, ssim=0.75, lab_l1=10.0,
                                        colourfulness_ratio=1.0)}}
  model_card.add_protocol_scores(workdir, 4, scores)
  card = open(os.path.join(workdir, model_card.NAME), encoding="utf-8").read()
  assert "| xdog | 0 | 15.00 | 0.700 | 11.00 | 0.90 |" in card
  assert "| xdog | 10 | 16.50 |" in card
  # A later best checkpoint rewrites the card and keeps the protocol's section.
  model_card.write(workdir, tiny_config, 6, {"eval_psnr": 12.0}, {"train": 55}, 60.0, "abc")
  again = open(os.path.join(workdir, model_card.NAME), encoding="utf-8").read()
  assert "checkpoint 6 of this run" in again and "| PSNR (dB) | 12.000 | - |" in again
  assert again.count(model_card._PROTOCOL) == 1 and "| xdog | 10 | 16.50 |" in again
