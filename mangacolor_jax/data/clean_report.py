"""The clean's report: manifest, list of dropped files, JSON and Markdown, sheets.

Everything in a clean's output but the images themselves (`IMAGES/<id>.png`): written
after the checks, into the folder that replaces the output (`staging.build_beside`).
"""

import dataclasses
import json
import math
import os
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np

from mangacolor_jax.data import decoding
from mangacolor_jax.data import inputs
from mangacolor_jax.data import sheets
from mangacolor_jax.utils import files

IMAGES = "images"
REPORT = "report.json"
_SHEET_MAX = 100  # images per contact sheet at most
# Dropped for these, an image has no pixels to show.
_NOT_DECODED = ("undecodable", "decompression_bomb")


def _sheet_sample(items: Sequence[inputs.Item], k: int = _SHEET_MAX) -> List[inputs.Item]:
  """Up to k items spread evenly over the list (deterministic)."""
  if len(items) <= k:
    return list(items)
  return [items[int(i * len(items) / k)] for i in range(k)]


def _pixels(path: str, max_pixels: int) -> Optional[np.ndarray]:
  try:
    return decoding.shrink(decoding.read_rgb(path, max_pixels), sheets.THUMB * 2)
  except (decoding.Rejected, OSError):
    return None


def _save_sheet(out: str, name: str, cells, written: Dict[str, str]) -> None:
  """Writes `sheets/<name>.png` unless there are no cells; records it in `written`."""
  if cells:
    path = os.path.join(out, "sheets", name + ".png")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    files.save_image(path, sheets.contact_sheet(cells))
    written[name] = f"sheets/{name}.png"


def _write_sheets(items: Sequence[inputs.Item], input_dir: str, out: str,
                  max_pixels: int) -> Dict[str, str]:
  """Contact sheets: kept images, the densest kept, and each reason's dropped images."""
  kept = [i for i in items if not i.reason]
  by_id = {i.id: i for i in items}

  def staged(i):
    return _pixels(os.path.join(out, IMAGES, i.id + ".png"), max_pixels)

  def source(i):
    return _pixels(os.path.join(input_dir, i.source), max_pixels)

  written = {}
  _save_sheet(out, "kept", [([staged(i)], i.id) for i in _sheet_sample(kept)], written)
  densest = sorted(kept, key=lambda i: -i.line_density)[:50]
  _save_sheet(out, "kept_densest", [([staged(i)], f"{i.line_density:.3f}") for i in densest],
              written)
  for reason in inputs.REASONS:
    cells = []
    for i in _sheet_sample([i for i in items if i.reason == reason]):
      images = [source(i) if reason not in _NOT_DECODED else None]
      caption = i.id
      if reason == "near_duplicate":
        images.append(staged(by_id[i.twin]))
        caption = f"{i.id} ~ {i.twin}"
      elif reason == "too_intricate":
        caption = f"{i.line_density:.3f} {i.id}"
      elif reason == "small_character":
        caption = f"{i.character_area:.2f} {i.id}"
      cells.append((images, caption))
    _save_sheet(out, f"dropped_{reason}", cells, written)
  return written


def _rounded(x: float) -> Optional[float]:
  return None if math.isnan(x) else round(x, 4)


def _json_lines(entries: Iterable[dict]) -> str:
  return "".join(json.dumps(entry, sort_keys=True) + "\n" for entry in entries)


def _write_lists(items: Sequence[inputs.Item], out: str) -> None:
  """manifest.jsonl (each kept image) and dropped.jsonl (each dropped file, and why)."""
  kept = []
  for i in items:
    if not i.reason:
      entry = {k: v for k, v in i.meta.items() if k not in ("file", "id", "width", "height")}
      entry.update(id=i.id, file=f"{IMAGES}/{i.id}.png", source=i.source, width=i.width,
                   height=i.height, sha256=i.sha256, phash=f"{i.phash:016x}",
                   line_density=round(i.line_density, 4),
                   character_area=round(i.character_area, 4),
                   tags=i.meta.get("tags", []))
      kept.append(entry)
  files.write_text(os.path.join(out, inputs.MANIFEST), _json_lines(kept))
  files.write_text(os.path.join(out, "dropped.jsonl"), _json_lines(
      {"source": i.source, "id": i.id, "reason": i.reason, "detail": i.detail,
       "width": i.width, "height": i.height, "line_density": _rounded(i.line_density),
       "character_area": _rounded(i.character_area)} for i in items if i.reason))


def _summary(values: Iterable[float]) -> dict:
  v = np.array([x for x in values if np.isfinite(x)], np.float64)
  if not v.size:
    return {"count": 0}
  pct = (1, 5, 25, 50, 75, 95, 99)
  counts, edges = np.histogram(v, bins=20)
  return {"count": int(v.size), "mean": round(float(v.mean()), 4),
          "percentiles": {f"p{p}": round(float(np.percentile(v, p)), 4) for p in pct},
          "histogram": {"edges": [round(float(e), 4) for e in edges],
                        "counts": counts.tolist()}}


def _markdown(report: dict, max_line_density: float) -> str:
  counts = report["counts"]
  dropped = counts["files"] - counts["kept"]
  lines = [f"# Clean of {report['input']}", "",
           f"{counts['files']} image files: **{counts['kept']} kept**, {dropped} dropped "
           f"({counts['ignored_non_image_files']} other files ignored).", "",
           "| reason | dropped | sheet |", "| --- | --- | --- |"]
  for r in inputs.REASONS:
    name = f"dropped_{r}"
    link = f"[{name}](sheets/{name}.png)" if name in report["sheets"] else ""
    lines.append(f"| {r} | {counts['dropped'][r]} | {link} |")
  ld = report["line_density"].get("percentiles", {})
  lines += ["", f"Kept: [sheets/kept.png](sheets/kept.png); densest kept (what a lower "
            f"--max_line_density drops next): [sheets/kept_densest.png]"
            f"(sheets/kept_densest.png).", "",
            f"Line density (threshold {max_line_density}): "
            + ", ".join(f"{k} {v}" for k, v in ld.items())
            + " -- [histogram](line_density.png).", "",
            "Settings: " + ", ".join(f"--{k}={v}" for k, v in report["settings"].items())]
  return "\n".join(lines) + "\n"


def write_report(items: Sequence[inputs.Item], input_dir: str, out: str, opts,
                 other_files: int) -> dict:
  """Writes manifest.jsonl, dropped.jsonl, report.json/.md, the histogram and the sheets.

  Args:
    items: every candidate, decided (`cleaner.decide`).
    input_dir: the clean's --input.
    out: the folder being built; its `IMAGES` holds the staged images.
    opts: the clean's settings (`cleaner.Options`).
    other_files: files of `input_dir` that are not candidates.

  Returns:
    The report (also `out/report.json`).
  """
  written = _write_sheets(items, input_dir, out, opts.max_pixels)
  # Distributions over distinct images (exact duplicates would count twice).
  measured = [i for i in items if i.sha256 and i.reason != "exact_duplicate"]
  files.save_image(os.path.join(out, "line_density.png"), sheets.histogram_plot(
      np.array([i.line_density for i in measured]), opts.max_line_density,
      "line density (line share of the dilation-difference line art)"))
  _write_lists(items, out)
  report = {
      "input": os.path.abspath(input_dir),
      "settings": {k: list(v) if isinstance(v, tuple) else v
                   for k, v in dataclasses.asdict(opts).items()},
      "counts": {"files": len(items), "kept": sum(not i.reason for i in items),
                 "dropped": {r: sum(i.reason == r for i in items) for r in inputs.REASONS},
                 "ignored_non_image_files": other_files},
      "line_density": _summary(i.line_density for i in measured),
      "character_area_flat_background": _summary(
          i.character_area for i in measured if i.flat_background),
      "flat_background_share": round(
          sum(i.flat_background for i in measured) / max(1, len(measured)), 4),
      "sheets": written,
      "histogram": "line_density.png",
  }
  files.write_json(os.path.join(out, REPORT), report)
  files.write_text(os.path.join(out, "report.md"), _markdown(report, opts.max_line_density))
  return report
