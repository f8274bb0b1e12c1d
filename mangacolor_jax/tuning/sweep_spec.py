"""A sweep's settings, kept in its workdir: a workdir belongs to one sweep.

A rerun resumes only with the settings it began with, since a changed spec would
mislabel the trials already finished.
"""

import json
import os
from typing import Any

from absl import logging

from mangacolor_jax.tuning import outputs

SPEC_FILE = "sweep_spec.json"


def check_or_write(workdir: str, spec: dict[str, Any]) -> None:
  """Writes `spec` to workdir/sweep_spec.json, or checks it against the one there.

  Args:
    workdir: the sweep's folder.
    spec: the sweep's settings as JSON values, the full config under "config".

  Raises:
    ValueError: naming the settings (and config fields) that differ from the spec there.
  """
  path = os.path.join(workdir, SPEC_FILE)
  if not os.path.exists(path):
    outputs.write_json(path, spec)
    return
  with open(path, encoding="utf-8") as f:
    old = json.load(f)
  changed = [k for k in spec if k != "config" and old.get(k) != spec[k]]
  old_cfg, new_cfg = _flatten(old.get("config", {})), _flatten(spec["config"])
  changed += [f"config.{k}" for k in sorted(old_cfg)
              if k in new_cfg and old_cfg[k] != new_cfg[k]]
  if changed:
    raise ValueError(f"{workdir} holds a sweep with other settings ({changed}); "
                     "use a new --workdir, or the same command as before to resume")
  # Fields that the code gained (or lost) since the sweep began: their defaults are
  # meant to keep old behaviour, so finished trials still compare.
  moved = sorted(set(old_cfg) ^ set(new_cfg))
  if moved:
    logging.warning("config fields added or removed since this sweep began: %s", moved)


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
  """Flat {"a.b": value} of JSON values, lists and nulls kept as they are.

  Not `provenance.flatten_config`, which writes lists and None as strings: its verdicts
  would differ (None and "None" would compare equal, [1] and [1.0] unequal).
  """
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out
