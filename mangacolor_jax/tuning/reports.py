"""How a sweep's trials rank and read: the metric's direction, results.csv, results.md."""

import csv
import io
from typing import Sequence

from mangacolor_jax.tuning import grid


def metric_mode(metric: str, mode: str = "auto") -> str:
  """Whether a higher `metric` is better ("max") or a lower one ("min").

  "auto" reads it from the name: errors, losses and distances (l1, lab, loss, mse, fid)
  are better lower, anything else (psnr, ssim...) higher.
  """
  if mode != "auto":
    return mode
  lower = ("l1", "lab", "loss", "mse", "fid")
  return "min" if any(s in metric for s in lower) else "max"


def results_csv(params: Sequence[grid.Param], metric: str, ranked: Sequence[dict]) -> str:
  """results.csv: one row per trial, best first, with every eval metric recorded."""
  extra = sorted({k for r in ranked for k in r["metrics"] if k != metric})
  columns = (["rank", "trial", "stage"] + [p.name for p in params] +
             [metric, "best_step", "final_step", "status", "wall_s"] + extra)
  buf = io.StringIO()
  w = csv.writer(buf)
  w.writerow(columns)
  for rank, r in enumerate(ranked, 1):
    w.writerow([rank, r["trial"], r["stage"]] + [r["values"][p.name] for p in params]
               + [r["score"], r["best_step"], r["final_step"], r["status"], r["wall_s"]]
               + [r["metrics"].get(k) for k in extra])
  return buf.getvalue()


def best_lines(metric: str, ranked: Sequence[dict]) -> list[str]:
  """The Markdown paragraph naming the best trial and its overrides (none unscored)."""
  best = next((r for r in ranked if r["score"] is not None), None)
  if not best:
    return []
  return [f"Best: {best['trial']} with "
          + " ".join(f"--config.{k}={v}" for k, v in best["values"].items())
          + f" ({metric} {best['score']:.4f}).", ""]


def markdown_table(params: Sequence[grid.Param], metric: str, ranked: Sequence[dict]
                   ) -> list[str]:
  """The lines of the ranked Markdown table, one row per trial."""
  header = (["rank", "trial", "stage"] + [p.name for p in params]
            + [metric, "best step", "status", "minutes"])
  lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
  for rank, r in enumerate(ranked, 1):
    score = "" if r["score"] is None else f"{r['score']:.4f}"
    cells = ([str(rank), r["trial"], r["stage"]]
             + [f"{r['values'][p.name]:g}" for p in params]  # already 3 digits
             + [score, str(r["best_step"]), r["status"], f"{r['wall_s'] / 60:.1f}"])
    lines.append("| " + " | ".join(cells) + " |")
  return lines
