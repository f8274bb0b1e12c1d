"""The checklist: a healthy tiny config passes every check, in order, and the report."""

import json

from mangacolor_jax.debug import checklist


def test_healthy_tiny_config_passes_every_check(env, tmp_path):
  lines = []
  results = checklist.run_checks(env["config"], nets=env["nets"], state=env["state"],
                                 train_batches=env["train"], eval_batches=env["evals"],
                                 echo=lines.append)
  names = [r.name for r in results]
  assert names == ["input_range", "input_centring", "batches_differ", "target_aligned",
                   "input_shapes", "finite", "weights_init", "initial_loss",
                   "one_step_lowers_loss", "update_ratio", "gradients_reach_layers",
                   "dead_units",
                   "frozen_stay_frozen", "inference_deterministic", "batchnorm_updates",
                   "non_square_shapes", "overfit_tiny_subset"]
  failed = [r.line() for r in results if r.status == checklist.FAIL]
  assert not failed, "\n".join(failed)
  assert len(lines) == len(results) and all(line.split()[0] in ("PASS", "WARN")
                                            for line in lines)
  path = str(tmp_path / "doctor.json")
  checklist.write_report(results, path, {"seconds": 1.0})
  report = json.load(open(path))
  assert [c["name"] for c in report["checks"]] == names and report["failed"] == []
