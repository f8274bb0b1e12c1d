"""A sweep's workdir keeps its settings: a rerun with others is refused."""

import json

import pytest

from mangacolor_jax.tuning import sweep_spec


def test_spec_is_written_then_checked_field_by_field(tmp_path):
  spec = {"seed": 0, "config": {"a": {"b": None, "c": [1, 2]}, "d": 1.0}}
  sweep_spec.check_or_write(str(tmp_path), spec)
  assert json.loads((tmp_path / sweep_spec.SPEC_FILE).read_text()) == spec
  sweep_spec.check_or_write(str(tmp_path), spec)  # the same settings resume
  # JSON values compare as they are: null is not the string "None", [1, 2] equals [1.0, 2].
  with pytest.raises(ValueError, match=r"config\.a\.b"):
    sweep_spec.check_or_write(str(tmp_path), {**spec, "config": {
        "a": {"b": "None", "c": [1, 2]}, "d": 1.0}})
  sweep_spec.check_or_write(str(tmp_path), {**spec, "config": {
      "a": {"b": None, "c": [1.0, 2]}, "d": 1.0}})
  with pytest.raises(ValueError, match=r"\['seed'\]"):
    sweep_spec.check_or_write(str(tmp_path), {**spec, "seed": 1})
