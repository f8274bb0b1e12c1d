"""The tuning plots: the range test's loss curves and a sweep's metric per parameter."""

import io
import math
from typing import Sequence

import numpy as np

from mangacolor_jax.tuning import grid
from mangacolor_jax.utils import files

# The colours of a sweep's stages, in the order of their legends.
_STAGE_COLOURS = {"grid": "C0", "extension": "C1", "refine": "C2"}


def _pyplot():
  # Imported on first use: matplotlib is optional and heavy, and the modules that import
  # this one are on the training path.
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")  # files only: no display on training machines
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def _save_figure(fig, path: str) -> None:
  """Writes `fig` to `path` as a PNG atomically, and closes it."""
  fig.tight_layout()
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
  _pyplot().close(fig)
  files.write_bytes(path, buf.getvalue())


def plot_lr_range(result: dict, path: str) -> None:
  """Loss against learning rate (log axis), one panel per network."""
  plt = _pyplot()
  nets = result["networks"]
  fig, axes = plt.subplots(1, len(nets), figsize=(5.5 * len(nets), 4), squeeze=False)
  for ax, (network, r) in zip(axes[0], nets.items()):
    c = {k: [math.nan if v is None else v for v in vs] for k, vs in r["curve"].items()}
    ax.plot(c["lr"], c["loss"], color="0.75", lw=1, label=f"{r['loss']} (per step)")
    ax.plot(c["lr"], c["smoothed"], color="C0", lw=2, label="smoothed")
    ax.axvline(r["suggested_lr"], color="C2", ls="--",
               label=f"suggested {r['suggested_lr']:.3g}")
    ax.axvline(r["min_loss_lr"], color="C1", ls=":", label=f"minimum {r['min_loss_lr']:.3g}")
    if r["diverged_at_lr"]:
      ax.axvline(r["diverged_at_lr"], color="C3", ls="-.",
                 label=f"diverged {r['diverged_at_lr']:.3g}")
    ax.set_xscale("log")
    ax.set_xlabel(f"{r['field']} (other rate {r['other_lr']:.3g})")
    ax.set_ylabel(r["loss"])
    ax.set_title(f"learning-rate range test: {network}")
    finite = [v for v in c["smoothed"] if math.isfinite(v)]
    if finite:  # the divergence spike would flatten the interesting part
      lo, hi = min(finite), max(finite[:max(2, len(finite) * 9 // 10)])
      ax.set_ylim(lo - 0.05 * (hi - lo + 1e-9), hi + 0.3 * (hi - lo + 1e-9))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
  _save_figure(fig, path)


def plot_sweep(params: Sequence[grid.Param], ranked: Sequence[dict], metric: str,
               mode: str, path: str) -> None:
  """The metric against each parameter; for two, also a heat map over the grid."""
  plt = _pyplot()
  scored = [r for r in ranked if r["score"] is not None and math.isfinite(r["score"])]
  panels = len(params) + (1 if len(params) == 2 else 0)
  fig, axes = plt.subplots(1, panels, figsize=(4.8 * panels, 4), squeeze=False)
  axes = axes[0]
  best = scored[0] if scored else None
  for ax, p in zip(axes, params):
    _scatter_panel(ax, p, scored, best, metric)
  if len(params) == 2:
    _heat_map(fig, axes[-1], params, ranked, metric, mode)
  _save_figure(fig, path)


def _scatter_panel(ax, p: grid.Param, scored: Sequence[dict], best: dict | None,
                   metric: str) -> None:
  """The scored trials' metric against one parameter, by stage, the best one starred."""
  for stage, colour in _STAGE_COLOURS.items():
    xs = [r["values"][p.name] for r in scored if r["stage"] == stage]
    ys = [r["score"] for r in scored if r["stage"] == stage]
    if xs:
      ax.scatter(xs, ys, color=colour, label=stage, s=30)
  if best:
    ax.scatter([best["values"][p.name]], [best["score"]], marker="*", s=200,
               color="gold", edgecolor="k", zorder=3, label="best")
  if p.log:
    ax.set_xscale("log")
  ax.set_xlabel(p.name)
  ax.set_ylabel(metric)
  ax.grid(True, which="both", alpha=0.3)
  ax.legend(fontsize=8)


def _heat_map(fig, ax, params: Sequence[grid.Param], ranked: Sequence[dict], metric: str,
              mode: str) -> None:
  """The metric over the level-0 grid of two parameters, each cell labelled."""
  cells = [r for r in ranked if r["level"] == 0]
  i0 = sorted({r["index"][0] for r in cells})
  i1 = sorted({r["index"][1] for r in cells})
  values = np.full((len(i1), len(i0)), np.nan)
  for r in cells:
    if r["score"] is not None and math.isfinite(r["score"]):
      values[i1.index(r["index"][1]), i0.index(r["index"][0])] = r["score"]
  cmap = "viridis" if mode == "max" else "viridis_r"
  im = ax.imshow(values, origin="lower", cmap=cmap, aspect="auto")
  for r in cells:
    x, y = i0.index(r["index"][0]), i1.index(r["index"][1])
    text = r["status"] if r["score"] is None else f"{r['score']:.2f}"
    # viridis is bright at its top end (the low end for viridis_r): dark text there.
    level = None if r["score"] is None else float(im.norm(r["score"]))
    bright = level is not None and (level > 0.6 if mode == "max" else level < 0.4)
    ax.text(x, y, text, ha="center", va="center", fontsize=8,
            color="k" if bright else "w")
  ax.set_xticks(range(len(i0)), [f"{grid.grid_value(params[0], i):g}" for i in i0])
  ax.set_yticks(range(len(i1)), [f"{grid.grid_value(params[1], i):g}" for i in i1])
  ax.set_xlabel(f"{params[0].name} (grid node; each trial jittered)")
  ax.set_ylabel(params[1].name)
  ax.set_title(f"{metric} over the grid")
  fig.colorbar(im, ax=ax, label=metric)
