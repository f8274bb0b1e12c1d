"""What the tuning commands write: their folder claim, their JSON, their rounded numbers."""

import json
import math
from typing import Any

from mangacolor_jax.utils import files

# The command name that lr_range and sweep claim their --workdir under (utils.files).
COMMAND = "tune"


def write_json(path: str, obj: Any) -> None:
  """Writes `obj` atomically as JSON in insertion order, one space per level.

  Not `files.write_json` (sorted keys, two spaces): the layout of lr_range.json,
  sweep_spec.json and each result.json stays that of the sweeps already on disk.
  """
  files.write_text(path, json.dumps(obj, indent=1) + "\n")


def round_sig(x: float, digits: int = 3) -> float:
  """`x` kept to `digits` significant digits (trial values, suggestions, plot ticks)."""
  return float(f"{x:.{digits}g}")


def finite_or_none(x: float) -> float | None:
  """`x` as a float, or None where it is not finite: JSON has no NaN."""
  return float(x) if math.isfinite(x) else None
