"""What a run records about itself: the code version and its config as flat scalars."""

import os
import subprocess
from typing import Any

import ml_collections


def git_commit() -> str:
  """The code version, recorded in checkpoints ("unknown" outside a git checkout)."""
  here = os.path.dirname(os.path.abspath(__file__))
  try:
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                            text=True, timeout=10, check=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                           cwd=here, capture_output=True, text=True, timeout=10).stdout
    return commit + ("-dirty" if dirty.strip() else "")
  except (OSError, subprocess.SubprocessError):
    return "unknown"


def flatten_config(config: ml_collections.ConfigDict | dict) -> dict[str, Any]:
  """Flat {"a.b": value} with scalars only (others as strings), for TensorBoard hparams
  and for comparing configs field by field."""
  out = {}

  def visit(prefix, d):
    for k, v in d.items():
      key = f"{prefix}{k}"
      if isinstance(v, dict):
        visit(key + ".", v)
      elif isinstance(v, (bool, int, float, str)):
        out[key] = v
      else:
        out[key] = str(v)

  visit("", config.to_dict() if hasattr(config, "to_dict") else config)
  return out
