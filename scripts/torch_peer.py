r"""The PyTorch pix2pix peer in the quality protocol: trained and scored like the project.

  python scripts/torch_peer.py --config configs/anime_faces.py --workdir runs/quality \
      --seeds 0,1,2 --images 32000 --config.data.image_dir=../shared/data/anime_faces/faces64

The networks, initialisation, losses and optimiser step are the peer's own
(`../shared/bench/torch_pix2pix.py`: U-Net with log2(size) downsamplings and 64 base
filters, 70x70 PatchGAN, BatchNorm, dropout, vanilla GAN + 100 x L1, Adam 2e-4 / 0.5, D
step then G step; its `Pix2PixTrainer.step` runs each step). What it learns from is the
project's: the same images, crops, augmentation and line art (`datasets.create_train_dataset`
with the same seeds), and, for a config with hints, the same hints, given to the peer as
extra input channels (and so to its D, which sees pix2pix's input A). It is scored on the
same test set by the same code (`protocol.scoring`), with its networks in eval mode
(running BatchNorm statistics, no dropout). Results land beside the project's
(WORKDIR/peer/images_N/seed_S/result.json), so `python -m mangacolor_jax.quality
--workdir WORKDIR --table_only` lists both. Beside it: the generator's weights
(generator.pt, which `--rescore` scores again after a change to the scoring) and
pictures.png (the project's picture sheet, `protocol.pictures`: the first test faces on
each extractor's line art, without hints and with 10 strokes where its colours are wrong).

Needs torch in the same environment (`pip install torch==2.13.0`); the project does not
depend on it.
"""

import importlib.util
import io
import math
import os
import sys
import time

from absl import app
from absl import flags
from absl import logging
import jax
import numpy as np
from ml_collections import config_flags
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from mangacolor_jax.input_pipeline import datasets  # pylint: disable=g-import-not-at-top,wrong-import-position
from mangacolor_jax.nn import hints as hints_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from mangacolor_jax.protocol import pictures  # pylint: disable=g-import-not-at-top,wrong-import-position
from mangacolor_jax.protocol import runs  # pylint: disable=g-import-not-at-top,wrong-import-position
from mangacolor_jax.protocol import scoring  # pylint: disable=g-import-not-at-top,wrong-import-position
from mangacolor_jax.protocol import testset  # pylint: disable=g-import-not-at-top,wrong-import-position
from mangacolor_jax.runtime import seeds as seeds_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from mangacolor_jax.utils import files  # pylint: disable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "The project's config of the comparison.",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Root folder of the protocol's runs.")
flags.DEFINE_string("name", "peer", "Name of these runs.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds, one run each.")
flags.DEFINE_list("images", ["32000"], "Budgets of training images seen.")
flags.DEFINE_string("peer", os.path.join(os.path.dirname(__file__), "..", "..", "shared",
                                         "bench", "torch_pix2pix.py"),
                    "The peer's torch_pix2pix.py.")
flags.DEFINE_integer("threads", 0, "torch threads (0: torch's default).")
flags.DEFINE_bool("rescore", False, "Score finished runs again from their saved generator "
                  "(generator.pt), after a change to the scoring.")
flags.mark_flags_as_required(["config", "workdir"])


def load_peer(path: str):
  spec = importlib.util.spec_from_file_location("torch_pix2pix", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def to_torch(x: np.ndarray) -> torch.Tensor:
  return torch.from_numpy(np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2))))


def train(peer, config, seed: int, steps: int):
  """The peer's trainer after `steps` of its own step on the project's batches."""
  h = int(config.data.image_size)
  takes_hints = config.hints.mode != "none"
  trainer = peer.Pix2PixTrainer(size=h, batch=config.batch_size, in_ch=5 if takes_hints else 1,
                                num_downs=int(round(math.log2(h))), seed=seed)
  keys = seeds_lib.run_keys(seed)
  train_rng = seeds_lib.state_keys(keys.init)[2]
  batches = datasets.create_train_dataset(config, seed=keys.data_seed).as_numpy_iterator()
  hint_fn = jax.jit(lambda rng, t, a: hints_lib.training_hints(rng, config.hints, t, a))
  start = time.time()
  for step in range(steps):
    batch = next(batches)
    inputs = batch["lineart"]
    if takes_hints:
      hints = np.asarray(hint_fn(seeds_lib.step_keys(train_rng, step).hints, batch["target"],
                                 batch["lineart"]))
      inputs = np.concatenate([inputs, hints], axis=-1)
    trainer.data = [(to_torch(inputs), to_torch(batch["target"]))]
    trainer.step()
    if (step + 1) % 200 == 0:
      d, g_gan, g_l1 = trainer.losses()
      logging.info("peer step %d / %d: D %.4f, G gan %.4f, G L1x100 %.4f (%.0f s)",
                   step + 1, steps, d, g_gan, g_l1, time.time() - start)
  return trainer, time.time() - start


def predictor(generator, takes_hints: bool):
  """The protocol's `predict(lineart, hints)` for the peer's generator (eval mode)."""
  def predict(lineart, hints):
    if takes_hints:
      hints = np.zeros(lineart.shape[:-1] + (4,), np.float32) if hints is None else hints
      lineart = np.concatenate([lineart, hints], axis=-1)
    with torch.no_grad():
      y = generator(to_torch(lineart.astype(np.float32))).numpy()
    return np.transpose(y, (0, 2, 3, 1))
  return predict


def run(peer, config, test, workdir: str, images: int, seed: int) -> dict | None:
  """Trains (or, with --rescore, reloads) one seed's peer and scores it; None when the
  run is finished and not to be scored again."""
  result_path = os.path.join(workdir, runs.RESULT)
  weights = os.path.join(workdir, "generator.pt")
  finished = os.path.exists(result_path)
  if finished and not (FLAGS.rescore and os.path.exists(weights)):
    return None
  takes_hints = config.hints.mode != "none"
  steps = images // config.batch_size
  trainer, wall = train(peer, config, seed, 0 if finished else steps)
  if finished:
    trainer.G.load_state_dict(torch.load(weights))
  else:
    os.makedirs(workdir, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(trainer.G.state_dict(), buffer)
    files.write_bytes(weights, buffer.getvalue())
  predict = predictor(trainer.G.eval(), takes_hints)
  scores = scoring.score(predict, takes_hints, test)
  pictures.write(workdir, predict, takes_hints, test)
  if finished:
    return runs.replace_scores(workdir, scores)
  return runs.write_result(workdir, FLAGS.name, images, seed, scores, steps=steps,
                           train_seconds=round(wall, 1), params_g=trainer.params_G,
                           params_d=trainer.params_D)


def main(argv):
  del argv
  if FLAGS.threads:
    torch.set_num_threads(FLAGS.threads)
  peer = load_peer(FLAGS.peer)
  config = FLAGS.config
  test = testset.build_test_set(config)
  for images in (int(i) for i in FLAGS.images):
    for seed in (int(s) for s in FLAGS.seeds):
      workdir = runs.run_dir(FLAGS.workdir, FLAGS.name, images, seed)
      result = run(peer, config, test, workdir, images, seed)
      if result is not None:
        xdog = result["scores"]["xdog"]["strokes_0"]
        print(f"{FLAGS.name} images={images} seed={seed}: PSNR {xdog['psnr']:.2f} dB, "
              f"colourfulness {xdog['colourfulness_ratio']:.2f}", flush=True)


if __name__ == "__main__":
  app.run(main)
