"""MODEL_CARD.md: what a run's best model is, what it saw and how well it colours.

Training writes the card at each new best checkpoint (by validation PSNR): the data and its
split sizes, steps and images seen, the validation metrics with and without hints, the
code version, hardware and wall time, and the whole config. The quality command adds the
protocol's test-split scores (`add_protocol_scores`) once it has scored the run.
"""

import os
import platform

import jax

from mangacolor_jax.input_pipeline import config_check
from mangacolor_jax.utils import files
from mangacolor_jax.utils import provenance

NAME = "MODEL_CARD.md"
_PROTOCOL = "## Quality protocol (test split)"
_METRICS = (("PSNR (dB)", "eval_psnr"), ("SSIM", "eval_ssim"), ("L1 in Lab", "eval_lab_l1"),
            ("colourfulness", "eval_colourfulness"))


def data_lines(config, split_sizes: dict[str, int]) -> list[str]:
  """The card's lines on the data: where it comes from and how it was split."""
  data = config.data
  where = {"folder": f"the image folder `{data.image_dir}`",
           "tfds": f"the prepared data set `{data.tfds_dir}` (its report.json lists the "
                   "crawl's tags and the cleaning)",
           "synthetic": "the procedural character (no files)"}[data.source]
  sizes = ", ".join(f"{n:,} {split}" for split, n in split_sizes.items())
  h, w = config_check.image_hw(config)
  return [f"- Source: {where}" + (f"; {sizes} images." if sizes else "."),
          f"- {h}x{w} crops; line art from {', '.join(data.extractors)}; "
          f"hints: {config.hints.mode}; colour jitter {data.color_jitter}."]


def write(workdir: str, config, step: int, metrics: dict[str, float],
          split_sizes: dict[str, int], wall_seconds: float, git_commit: str) -> None:
  """Writes WORKDIR/MODEL_CARD.md for the checkpoint of `step` (atomically), keeping the
  protocol's section of an earlier card."""
  devices = jax.devices()
  rows = [f"| {label} | {metrics[key]:.3f} | "
          + (f"{metrics[key + '_hints']:.3f} |" if key + "_hints" in metrics else "- |")
          for label, key in _METRICS if key in metrics]
  lines = [
      f"# Model card: {os.path.basename(os.path.abspath(workdir))}", "",
      f"The generator of checkpoint {step} of this run (the best so far by validation "
      "PSNR), as `colorize` and `evaluate` load it by default.", "",
      "## Data", *data_lines(config, split_sizes), "",
      "## Training",
      f"- {step:,} of {config.num_train_steps:,} steps of batch {config.batch_size}: "
      f"{step * config.batch_size:,} images seen; seed {config.seed}.",
      f"- Loss: {config.loss.gan} GAN + {config.loss.l1_weight:g} x L1; generator EMA "
      f"{config.model.ema_decay or 'off'}.",
      f"- Hardware: {len(devices)} x {devices[0].device_kind} ({devices[0].platform}), "
      f"{jax.process_count()} process(es), {os.cpu_count()} CPU cores on "
      f"{platform.machine()}; {wall_seconds / 60:.1f} minutes of this session's training.",
      f"- Code: mangacolor_jax at git {git_commit}, JAX {jax.__version__}.", "",
      "## Validation metrics at this checkpoint",
      "| metric | no hints | with hints |", "| --- | --- | --- |", *rows, "",
      "## Config", "```", *(f"{k} = {v!r}" for k, v in
                           sorted(provenance.flatten_config(config).items())), "```", ""]
  path = os.path.join(workdir, NAME)
  old = open(path, encoding="utf-8").read() if os.path.exists(path) else ""
  if _PROTOCOL in old:
    lines.append(old[old.index(_PROTOCOL):].rstrip() + "\n")
  files.write_text(path, "\n".join(lines))


def add_protocol_scores(workdir: str, step: int, scores: dict) -> None:
  """Adds (or replaces) the card's section with the quality protocol's scores of the
  checkpoint of `step` (`protocol.scoring.score`'s {extractor: {strokes_N or guided_N:
  {metric: value}}})."""
  path = os.path.join(workdir, NAME)
  card = open(path, encoding="utf-8").read() if os.path.exists(path) else ""
  if _PROTOCOL in card:
    card = card[:card.index(_PROTOCOL)]
  lines = [_PROTOCOL, f"The checkpoint of step {step}, scored by the quality protocol "
           "(docs/quality.md) on images no training or validation read.", "",
           "| line art | strokes | PSNR | SSIM | Lab L1 | colourfulness ratio |",
           "| --- | --- | --- | --- | --- | --- |"]
  for extractor, by_strokes in sorted(scores.items()):
    conditions = [(c.split("_")[0], int(c.split("_")[1]), m) for c, m in by_strokes.items()]
    for kind, count, m in sorted(conditions, key=lambda c: (c[0] == "guided", c[1])):
      strokes = f"{count}" + (" where wrong" if kind == "guided" else "")
      lines.append(f"| {extractor} | {strokes} | {m['psnr']:.2f} | "
                   f"{m['ssim']:.3f} | {m['lab_l1']:.2f} | {m['colourfulness_ratio']:.2f} |")
  files.write_text(path, card.rstrip() + "\n\n" + "\n".join(lines) + "\n")
