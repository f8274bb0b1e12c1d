"""The data checks: each passes on the tiny config's batches and FAILs on its planted fault.

Faults are planted through the checks' explicit inputs (batches, a state), never by patching
the checks. `env` comes from conftest.py.
"""

import numpy as np

from mangacolor_jax.debug import checklist
from mangacolor_jax.debug import data_checks


def status_of(result):
  return result.status, result.line()



def test_pipeline_repeating_one_batch_fails_batches_differ(env):
  assert data_checks.check_batches_differ(env["train"]).status == checklist.PASS
  status, line = status_of(data_checks.check_batches_differ([env["train"][0]] * 4))
  assert status == checklist.FAIL, line
  # One image repeated within every batch is caught too.
  same = {k: np.repeat(v[:1], 8, axis=0) for k, v in env["train"][0].items()}
  assert data_checks.check_batches_differ([same, env["train"][1]]).status == checklist.FAIL


def test_unscaled_inputs_fail_range_and_centring(env):
  assert data_checks.check_input_range(env["train"], env["evals"]).status == checklist.PASS
  assert data_checks.check_input_centring(env["train"]).status == checklist.PASS
  to_255 = [{k: (v + 1.0) * 127.5 for k, v in b.items()} for b in env["train"]]
  status, line = status_of(data_checks.check_input_range(to_255, env["evals"]))
  assert status == checklist.FAIL and "255" in line, line
  to_unit = [{k: (v + 1.0) * 0.5 for k, v in b.items()} for b in env["train"]]
  assert data_checks.check_input_range(to_unit, env["evals"]).status == checklist.PASS
  status, line = status_of(data_checks.check_input_centring(to_unit))
  assert status == checklist.FAIL, line


def test_misaligned_targets_fail_alignment(env):
  assert data_checks.check_target_aligned(env["train"]).status == checklist.PASS
  batch = env["train"][0]
  flipped = {"lineart": batch["lineart"], "target": batch["target"][:, :, ::-1]}
  status, line = status_of(data_checks.check_target_aligned([flipped]))
  assert status == checklist.FAIL, line
  mixed = {"lineart": batch["lineart"], "target": np.roll(batch["target"], 1, axis=0)}
  assert data_checks.check_target_aligned([mixed]).status == checklist.FAIL


def test_wrong_shape_and_nan_fail(env):
  hw = env["nets"].image_hw
  assert data_checks.check_input_shapes(env["train"], env["evals"], hw).status == checklist.PASS
  swapped = [{k: v.transpose(0, 2, 1, 3) for k, v in env["evals"][0].items()}]
  assert data_checks.check_input_shapes(env["train"], swapped, hw).status == checklist.FAIL
  assert data_checks.check_finite(env["train"], env["evals"], env["state"]).status == checklist.PASS
  nan = [dict(env["train"][0])]
  nan[0]["target"] = nan[0]["target"].copy()
  nan[0]["target"][0, 0, 0, 0] = np.nan
  assert data_checks.check_finite(nan, env["evals"], env["state"]).status == checklist.FAIL
