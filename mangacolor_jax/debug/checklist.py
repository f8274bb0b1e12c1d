"""The doctor's checklist: a result per check, and running the checks in order.

Every check is a function of explicit inputs (batches, a `state.Networks`, a state), so
tests plant a fault -- zero weights, a pipeline repeating one batch, unscaled [0, 255]
inputs, a learning rate 1e4 times too high, a layer cut off from the loss -- by passing a
broken input, and see that check FAIL. The model checks run unsharded on the default device
on a fixed batch of `images` training images; a check that raises counts as a FAIL.

The checks themselves are in `data_checks` (the batches) and `model_checks` (the networks);
`run_checks` builds their inputs from a config as training would.
"""

import dataclasses
import json
import math
from typing import Any, Callable, Sequence

from absl import logging
import jax
import numpy as np

from mangacolor_jax.input_pipeline import datasets
from mangacolor_jax.runtime import seeds
from mangacolor_jax.training import state as state_lib
from mangacolor_jax.training.diagnostics import writer as diagnostics_writer
from mangacolor_jax.utils import files

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"


@dataclasses.dataclass
class Result:
  """The outcome of one check."""
  name: str
  status: str  # PASS | WARN | FAIL
  value: float | None  # the measured number
  message: str  # what it means

  def line(self) -> str:
    value = "-" if self.value is None else f"{self.value:.4g}"
    return f"{self.status:4}  {self.name:<24} {value:>10}  {self.message}"


def status(ok: bool, warn: bool = False) -> str:
  """PASS when `ok` and not `warn`, WARN when both, FAIL when not `ok`."""
  return PASS if ok and not warn else (WARN if ok else FAIL)


def first_batches(config, seed: int, num_train: int = 4, num_eval: int = 1
                  ) -> tuple[list[dict], list[dict]]:
  """`num_train` training batches and `num_eval` validation batches (valid images only)."""
  it = datasets.create_train_dataset(config, seed=seed).as_numpy_iterator()
  train = [next(it) for _ in range(num_train)]
  evals = []
  for batch in datasets.create_eval_dataset(config).as_numpy_iterator():
    valid = np.asarray(batch.pop("valid")) > 0
    batch.pop("name", None)
    evals.append({k: v[valid] for k, v in batch.items()})
    if len(evals) >= num_eval:
      break
  return train, evals


def _guard(name: str, fn: Callable[[], Result]) -> Result:
  """`fn()`, or a FAIL naming the exception when the check raises."""
  try:
    return fn()
  except Exception as e:  # pylint: disable=broad-except
    logging.exception("check %s raised", name)
    return Result(name, FAIL, None, f"the check raised {type(e).__name__}: {e}")


@dataclasses.dataclass(frozen=True)
class Options:
  """The settings of a checklist run (the doctor's flags)."""
  images: int = 8  # the fixed batch of the model checks: the first training images
  overfit_steps: int = 200  # step budget of the overfitting check
  overfit_factor: float = 5.0  # L1 reduction the overfitting check needs
  skip: Sequence[str] = ()  # names of checks not to run


def _build_inputs(config, nets: state_lib.Networks | None, state,
                  train_batches: Sequence[dict] | None, eval_batches: Sequence[dict] | None
                  ) -> tuple[state_lib.Networks, Any, Sequence[dict], Sequence[dict]]:
  """(nets, state, train_batches, eval_batches), each built from `config` when None."""
  # The keys of `trainer.train_and_evaluate`: the same initial state and first batches as a
  # training run of this config (seed -1, a fresh seed there, is 0 here).
  keys = seeds.run_keys(max(int(config.seed), 0))
  init_rng, data_seed = keys.init, keys.data_seed
  nets = nets or state_lib.create_networks(config)
  if train_batches is None or eval_batches is None:
    t, e = first_batches(config, data_seed)
    train_batches = t if train_batches is None else train_batches
    eval_batches = e if eval_batches is None else eval_batches
  if state is None:
    state = jax.jit(nets.create_state)(init_rng)
  return nets, state, train_batches, eval_batches


def _checks(config, opts: Options, nets: state_lib.Networks, state,
            train_batches: Sequence[dict], eval_batches: Sequence[dict]
            ) -> list[tuple[str, Callable[[], Result]]]:
  """Every check, in order, as (name, a function running it on these inputs)."""
  # The check modules return this module's `Result`s, so they import it: importing them
  # here, not at the top, keeps that from being a cycle.
  from mangacolor_jax.debug import data_checks  # pylint: disable=g-import-not-at-top
  from mangacolor_jax.debug import model_checks  # pylint: disable=g-import-not-at-top
  images = opts.images
  fixed = {k: np.asarray(train_batches[0][k])[:images] for k in ("lineart", "target")}
  val = {k: np.asarray(eval_batches[0][k])[:images] for k in ("lineart", "target")}
  diag = diagnostics_writer.options(config)
  freeze = tuple(config.model.freeze)
  upscale = int(config.data.lineart_upscale)
  return [
      ("input_range", lambda: data_checks.check_input_range(train_batches, eval_batches)),
      ("input_centring", lambda: data_checks.check_input_centring(train_batches)),
      ("batches_differ", lambda: data_checks.check_batches_differ(train_batches)),
      ("target_aligned", lambda: data_checks.check_target_aligned(train_batches, upscale)),
      ("input_shapes", lambda: data_checks.check_input_shapes(train_batches, eval_batches,
                                                              nets.image_hw)),
      ("finite", lambda: data_checks.check_finite(train_batches, eval_batches, state)),
      ("weights_init", lambda: model_checks.check_weights_init(state)),
      ("initial_loss", lambda: model_checks.check_initial_loss(nets, state, fixed)),
      ("one_step_lowers_loss", lambda: model_checks.check_one_step(nets, state, fixed)),
      ("update_ratio", lambda: model_checks.check_update_ratio(nets, state, fixed)),
      ("gradients_reach_layers", lambda: model_checks.check_gradients(nets, state, fixed,
                                                                      diag)),
      ("dead_units", lambda: model_checks.check_dead_units(nets, state, val, diag)),
      ("frozen_stay_frozen", lambda: model_checks.check_frozen(nets, state, fixed, freeze)),
      ("inference_deterministic",
       lambda: model_checks.check_inference_deterministic(nets, state, fixed)),
      ("batchnorm_updates", lambda: model_checks.check_batchnorm(nets, state, fixed)),
      ("non_square_shapes", lambda: model_checks.check_output_shapes(nets, state)),
      ("overfit_tiny_subset", lambda: model_checks.check_overfit(
          nets, state, fixed, opts.overfit_steps, opts.overfit_factor)),
  ]


def run_checks(config, opts: Options = Options(), *,
               nets: state_lib.Networks | None = None, state=None,
               train_batches: Sequence[dict] | None = None,
               eval_batches: Sequence[dict] | None = None,
               echo: Callable[[str], None] | None = None) -> list[Result]:
  """Runs every check; any input left None is built from `config` as training would.

  Args:
    config: the run's ConfigDict.
    opts: the fixed batch's size, the overfitting check's budget, the checks to skip.
    nets: a `state.Networks` (tests pass broken ones).
    state: the initial `GANState` (default: `nets.create_state` on the run's init key).
    train_batches: numpy training batches (default: the config's pipeline's first).
    eval_batches: numpy validation batches (default: the config's pipeline's first).
    echo: called with each result's line as soon as it is known.

  Returns:
    The results, in order.
  """
  inputs = _build_inputs(config, nets, state, train_batches, eval_batches)
  results = []
  for name, fn in _checks(config, opts, *inputs):
    if name in opts.skip:
      continue
    result = _guard(name, fn)
    results.append(result)
    if echo:
      echo(result.line())
  return results


def write_report(results: Sequence[Result], path: str, extra: dict | None = None) -> None:
  """The results as JSON, written atomically (`files.write_text`)."""
  report = dict(extra or {})
  report["checks"] = [dataclasses.asdict(r) for r in results]
  for check in report["checks"]:  # strict JSON: no NaN / Infinity literals
    if check["value"] is not None and not math.isfinite(check["value"]):
      check["value"] = str(check["value"])
  report["failed"] = [r.name for r in results if r.status == FAIL]
  report["warned"] = [r.name for r in results if r.status == WARN]
  files.write_text(path, json.dumps(report, indent=2, default=str))
