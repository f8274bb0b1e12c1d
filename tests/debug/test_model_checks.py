"""The model checks: each passes on a healthy tiny model and FAILs on its planted fault.

Faults are planted through the checks' explicit inputs (a `state_lib.create_networks` whose
generator is wrapped, an optimiser, a state), never by patching the checks. `env` comes from
conftest.py.
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
import pytest

from mangacolor_jax.debug import checklist
from mangacolor_jax.debug import model_checks
from mangacolor_jax.training import state as state_lib


def tiny():
  from configs import tiny as tiny_lib  # pylint: disable=g-import-not-at-top
  return tiny_lib.get_config()


def status_of(result):
  return result.status, result.line()


class Wrapped:
  """A generator stand-in with the module interface the trainer uses (`init`, `apply`),
  which breaks one thing about the real generator."""

  def __init__(self, inner, *, stop_layer=None, force_inference=False, swap_axes=False):
    self.inner = inner
    self.stop_layer = stop_layer
    self.force_inference = force_inference
    self.swap_axes = swap_axes

  def _intercept(self, next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if self.stop_layer and "/".join(context.module.path) == self.stop_layer:
      out = jax.lax.stop_gradient(out)  # the layer's output no longer reaches the loss
    return out

  def init(self, *args, **kwargs):
    with nn.intercept_methods(self._intercept):
      return self.inner.init(*args, **kwargs)

  def apply(self, variables, *args, train, **kwargs):
    with nn.intercept_methods(self._intercept):
      out = self.inner.apply(variables, *args, train=train and not self.force_inference,
                             **kwargs)
    if self.swap_axes:
      if isinstance(out, tuple):
        return out[0].transpose(0, 2, 1, 3), out[1]
      return out.transpose(0, 2, 1, 3)
    return out


def broken_nets(config, **wrap):
  nets = state_lib.create_networks(config)
  return dataclasses.replace(nets, gen=Wrapped(nets.gen, **wrap))



def test_zero_init_fails_weights_and_dead_units(env):
  assert model_checks.check_weights_init(env["state"]).status == checklist.PASS
  zero = env["state"].replace(
      g_params=jax.tree_util.tree_map(jnp.zeros_like, env["state"].g_params),
      d_params=jax.tree_util.tree_map(jnp.zeros_like, env["state"].d_params))
  status, line = status_of(model_checks.check_weights_init(zero))
  assert status == checklist.FAIL and "zero" in line, line
  status, line = status_of(model_checks.check_dead_units(env["nets"], zero, env["fixed"]))
  assert status == checklist.FAIL, line
  # Weights 20x too large are a wrong initializer too.
  big = env["state"].replace(
      g_params=jax.tree_util.tree_map(lambda x: 20 * x, env["state"].g_params))
  assert model_checks.check_weights_init(big).status == checklist.FAIL


def test_saturated_output_fails_initial_loss(env):
  assert model_checks.check_initial_loss(env["nets"], env["state"],
                                         env["fixed"]).status == checklist.PASS
  g = jax.tree_util.tree_map(lambda x: x, env["state"].g_params)
  g["dec0_up"]["conv"]["bias"] = jnp.full_like(g["dec0_up"]["conv"]["bias"], -10.0)
  status, line = status_of(model_checks.check_initial_loss(env["nets"],
                                                           env["state"].replace(g_params=g),
                                                           env["fixed"]))
  assert status == checklist.FAIL, line


def test_learning_rate_1e4_too_high_fails_update_ratio_and_overfit(env):
  """Adam's first step moves every weight by about lr: at 2.0 the weights jump (update
  ratio ~100 instead of ~1e-2) and training thrashes. One step may still lower the loss
  (saturating towards the mostly white targets), so one_step_lowers_loss is not the check
  for this fault; a sign error is (next test)."""
  config = tiny()
  config.optim.g_lr *= 1e4
  config.optim.d_lr *= 1e4
  nets = state_lib.create_networks(config)
  assert model_checks.check_update_ratio(env["nets"], env["state"],
                                         env["fixed"]).status == checklist.PASS
  status, line = status_of(model_checks.check_update_ratio(nets, env["state"], env["fixed"]))
  assert status == checklist.FAIL and "too high" in line, line
  # The healthy run reached the factor within this budget (test_checklist).
  status, line = status_of(model_checks.check_overfit(nets, env["state"], env["fixed"], steps=200))
  assert status == checklist.FAIL, line


def test_gradient_ascent_fails_one_step(env):
  """An update with the wrong sign raises the loss on the batch it was computed on."""
  assert model_checks.check_one_step(env["nets"], env["state"],
                                     env["fixed"]).status == checklist.PASS
  nets = state_lib.create_networks(tiny())
  nets = dataclasses.replace(nets, g_tx=optax.chain(nets.g_tx, optax.scale(-1.0)))
  state = env["state"].replace(g_opt_state=nets.g_tx.init(env["state"].g_params))
  status, line = status_of(model_checks.check_one_step(nets, state, env["fixed"]))
  assert status == checklist.FAIL, line


def test_layer_cut_off_from_the_loss_fails_gradients_and_frozen(env):
  assert model_checks.check_gradients(env["nets"], env["state"],
                                      env["fixed"]).status == checklist.PASS
  nets = broken_nets(tiny(), stop_layer="enc1_conv")
  status, line = status_of(model_checks.check_gradients(nets, env["state"], env["fixed"]))
  assert status == checklist.FAIL and "gen/enc1_conv" in line, line
  status, line = status_of(model_checks.check_frozen(nets, env["state"], env["fixed"], ()))
  assert status == checklist.FAIL and "enc1_conv" in line, line


def test_frozen_variables(env):
  config = tiny()
  config.model.freeze = ("gen/enc0_conv", "disc/conv0")
  nets = state_lib.create_networks(config)
  state = jax.jit(nets.create_state)(jax.random.key(0))
  result = model_checks.check_frozen(nets, state, env["fixed"], config.model.freeze)
  assert result.status == checklist.PASS, result.line()
  # A config that asks for freezing but an optimiser that does not freeze.
  status, line = status_of(model_checks.check_frozen(env["nets"], env["state"], env["fixed"],
                                                     config.model.freeze))
  assert status == checklist.FAIL and "frozen parameters changed" in line, line
  with pytest.raises(ValueError, match="config.model.freeze"):
    config.model.freeze = ("gen/no_such_layer",)
    jax.eval_shape(state_lib.create_networks(config).create_state, jax.random.key(0))


def test_randomness_at_inference_fails_determinism(env):
  config = tiny()
  config.model.gen.dropout = 0.5
  nets = state_lib.create_networks(config)
  state = jax.jit(nets.create_state)(jax.random.key(0))
  result = model_checks.check_inference_deterministic(nets, state, env["fixed"])
  assert result.status == checklist.PASS and "dropout is active" in result.line()

  class DropoutAtInference:
    """Inference that runs the generator in training mode with a new key per call."""

    def __init__(self, inner):
      self.inner, self.calls = inner, 0

    def __getattr__(self, name):
      return getattr(self.inner, name)

    def generate(self, state, lineart, hint_tensor):
      self.calls += 1
      return self.inner.gen.apply(
          {"params": state.g_params, "batch_stats": state.g_batch_stats},
          self.inner.generator_input(lineart, hint_tensor), train=True,
          mutable=["batch_stats"], rngs={"dropout": jax.random.key(self.calls)})[0]

  status, line = status_of(model_checks.check_inference_deterministic(DropoutAtInference(nets),
                                                                      state, env["fixed"]))
  assert status == checklist.FAIL, line
  # Dropout configured but never applied in training.
  no_dropout = broken_nets(config, force_inference=True)
  status, line = status_of(model_checks.check_inference_deterministic(no_dropout, state,
                                                                      env["fixed"]))
  assert status == checklist.FAIL and "dropout is off in training" in line, line


def test_batchnorm_without_training_mode_fails(env):
  assert model_checks.check_batchnorm(env["nets"], env["state"],
                                      env["fixed"]).status == checklist.PASS
  nets = broken_nets(tiny(), force_inference=True)
  status, line = status_of(model_checks.check_batchnorm(nets, env["state"], env["fixed"]))
  assert status == checklist.FAIL and "did not update" in line, line


def test_swapped_axes_fail_non_square_shapes(env):
  assert model_checks.check_output_shapes(env["nets"], env["state"]).status == checklist.PASS
  nets = broken_nets(tiny(), swap_axes=True)
  status, line = status_of(model_checks.check_output_shapes(nets, env["state"]))
  assert status == checklist.FAIL, line
