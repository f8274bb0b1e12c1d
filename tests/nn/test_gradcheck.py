"""Numerical gradient checks of the hand-written layers and losses, and finite gradients at
their edge cases (zero variance, zero norm, black images, saturated logits).

`jax.test_util.check_grads` compares reverse-mode gradients with finite differences in
float64 on fixed, non-random data. The image metrics (SSIM, Lab, colourfulness) are checked
the same way in test_image_metrics.py, and the gradient penalties on a linear D in
test_losses.py; here they go through the real discriminator.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from mangacolor_jax.nn import conv_forms
from mangacolor_jax.nn import image_metrics
from mangacolor_jax.nn import layers as layers_lib
from mangacolor_jax.nn import models
from mangacolor_jax.nn import resampling
from mangacolor_jax.nn import losses

TOL = dict(atol=1e-5, rtol=1e-4)
# Finite-difference step of the network checks: far below the distance of any ReLU input
# to its kink (see init_away_from_kinks), far above float64 round-off.
EPS = 1e-9


def smooth(shape, phase=0.0):
  """A fixed smooth pattern in (-1, 1), away from 0 (no ReLU kink at the input)."""
  n = int(np.prod(shape))
  x = np.sin(np.arange(n) * 0.7 + phase) * 0.8
  return (np.where(x >= 0, 1.0, -1.0) * (0.1 + np.abs(x))).reshape(shape) / 1.1


def as64(tree):
  return jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float64), tree)


def all_finite(tree):
  return all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree_util.tree_leaves(tree))


# ------------------------------------------------------------------------------- losses


@pytest.mark.parametrize("kind", ["vanilla", "lsgan", "hinge"])
def test_gan_losses(kind):
  with jax.enable_x64(True):
    # Logits away from the hinge's kinks at +-1.
    real = jnp.asarray(smooth((2, 3, 3, 1)) * 0.8 + 0.05)
    fake = jnp.asarray(smooth((2, 3, 3, 1), 1.0) * 0.8 - 0.05)
    check_grads(lambda r, f: losses.d_loss(r, f, kind), (real, fake), order=1,
                modes=["rev"], **TOL)
    check_grads(lambda f: losses.g_adv_loss(f, kind), (fake,), order=1, modes=["rev"], **TOL)
  # Saturated logits: finite values and gradients (no log(0), no exp overflow).
  big = jnp.full((2, 3, 3, 1), 100.0)
  for r, f in ((big, -big), (-big, big)):
    value, grads = jax.value_and_grad(lambda r, f: losses.d_loss(r, f, kind),
                                      argnums=(0, 1))(r, f)
    assert np.isfinite(float(value)) and all_finite(grads)
    assert all_finite(jax.grad(lambda f: losses.g_adv_loss(f, kind))(f))


def test_reconstruction_losses_and_l2():
  with jax.enable_x64(True):
    pred, target = jnp.asarray(smooth((2, 4, 5, 3))), jnp.asarray(smooth((2, 4, 5, 3), 2.0))
    check_grads(losses.l1_loss, (pred, target), order=1, modes=["rev"], **TOL)
    check_grads(losses.mse_loss, (pred, target), order=1, modes=["rev"], **TOL)
    # Identical images: L1's kink; the gradient stays finite.
    assert all_finite(jax.grad(losses.l1_loss)(pred, pred))
  # The L2 penalty sums in float32 by design; its gradient is the kernel (biases free).
  params = {"conv": {"kernel": jnp.asarray(smooth((3, 3, 2, 4)), jnp.float32),
                     "bias": jnp.ones((4,))}}
  grads = jax.grad(losses.l2_penalty)(params)
  np.testing.assert_allclose(grads["conv"]["kernel"], params["conv"]["kernel"], rtol=1e-6)
  assert float(jnp.max(jnp.abs(grads["conv"]["bias"]))) == 0.0


def test_psnr_gradients_and_identical_images():
  with jax.enable_x64(True):
    a = jnp.asarray((smooth((2, 6, 7, 3)) + 1) / 2)
    b = jnp.asarray((smooth((2, 6, 7, 3), 1.0) + 1) / 2)
    check_grads(lambda x: image_metrics.psnr(x, b), (a,), order=1, modes=["rev"], **TOL)
    # Identical images hit the MSE floor: finite, zero gradient.
    g = jax.grad(lambda x: jnp.sum(image_metrics.psnr(x, a)))(a)
    assert all_finite(g)


def test_a_wrong_gradient_is_caught():
  """The check itself: a layer whose backward pass is off by 1% fails it."""

  @jax.custom_vjp
  def leaky(x):
    return jnp.where(x > 0, x, 0.2 * x)

  leaky.defvjp(lambda x: (leaky(x), x),
               lambda x, g: (1.01 * g * jnp.where(x > 0, 1.0, 0.2),))
  with jax.enable_x64(True):
    x = jnp.asarray(smooth((2, 3, 3, 2)))
    with pytest.raises(AssertionError):
      check_grads(lambda x: jnp.sum(leaky(x) ** 2), (x,), order=1, modes=["rev"], **TOL)


# ------------------------------------------------------------------------------ layers


@pytest.mark.parametrize("features", [3, 12])  # phase: one 3x3 conv / the others
# phase, 12 features: matrix products (sides <= 4) / four 2x2 convolutions (side 5)
@pytest.mark.parametrize("side", [4, 5])
@pytest.mark.parametrize("kind", resampling.UPSAMPLES)
def test_upsample_layers(kind, side, features):
  with jax.enable_x64(True):
    layer = resampling.Upsample(features, kind, use_bias=True, dtype=jnp.float64)
    x = jnp.asarray(smooth((1, 3, side, 2)))
    params = as64(layer.init(jax.random.key(0), x)["params"])
    y = layer.apply({"params": params}, x)
    assert y.shape == (1, 6, 2 * side, features)
    check_grads(lambda p, x: layer.apply({"params": p}, x), (params, x), order=1,
                modes=["rev"], **TOL)


def test_phase_gradients_through_the_strided_conv(monkeypatch):
  """The phase layer's hand-written gradients (used on inputs of side >= 16), here on a
  small input."""
  monkeypatch.setattr(conv_forms, "PHASE_STRIDED_GRAD_MIN_SIDE", 1)
  monkeypatch.setattr(conv_forms, "PHASE_GEMM_MAX_SIDE", 0)
  with jax.enable_x64(True):
    layer = resampling.PhaseConvTranspose(12, use_bias=True, dtype=jnp.float64)
    x = jnp.asarray(smooth((1, 3, 4, 2)))
    params = as64(layer.init(jax.random.key(0), x)["params"])
    check_grads(lambda p, x: layer.apply({"params": p}, x), (params, x), order=1,
                modes=["rev"], **TOL)


@pytest.mark.parametrize("channels", [3, 12])  # the custom input gradient's two paths
# auto: the strided convolution with its custom input gradient (sides > 16) / one matrix
# product (sides <= 16)
@pytest.mark.parametrize("shape", [(1, 18, 20), (1, 6, 4), (1, 2, 2)])
@pytest.mark.parametrize("kind", resampling.DOWNSAMPLES)
def test_downsample_layers(kind, shape, channels):
  """`auto` has a hand-written input gradient (conv_forms.strided_conv_phase_grad)."""
  with jax.enable_x64(True):
    layer = resampling.Downsample(5, kind, use_bias=True, dtype=jnp.float64)
    x = jnp.asarray(smooth(shape + (channels,)))
    params = as64(layer.init(jax.random.key(0), x)["params"])
    assert layer.apply({"params": params}, x).shape == (1, shape[1] // 2, shape[2] // 2, 5)
    check_grads(lambda p, x: layer.apply({"params": p}, x), (params, x), order=1,
                modes=["rev"], **TOL)


@pytest.mark.parametrize("kind", layers_lib.ACTIVATIONS)
def test_activations(kind):
  with jax.enable_x64(True):
    layer = layers_lib.Activation(kind)
    x = jnp.asarray(smooth((2, 3, 3, 2)))  # no exact zeros: away from the kink
    variables = as64(layer.init(jax.random.key(0), x))
    check_grads(lambda v, x: layer.apply(v, x), (variables, x), order=1, modes=["rev"],
                **TOL)


def before_cast(module, variables, *args, layer, **kwargs):
  """The output of submodule `layer` (the networks cast their final output to float32,
  which would make float64 finite differences meaningless; what follows `layer` is a tanh
  or nothing)."""
  out = {}

  def intercept(next_fun, a, k, context):
    y = next_fun(*a, **k)
    if context.method_name == "__call__" and "/".join(context.module.path) == layer:
      out["y"] = y
    return y

  with nn.intercept_methods(intercept):
    module.apply(variables, *args, **kwargs)
  return out["y"]


def min_abs_preactivation(module, variables, *args, **kwargs):
  """Distance of the nearest activation input to its kink at 0."""
  found = []

  def intercept(next_fun, a, k, context):
    if isinstance(context.module, layers_lib.Activation):
      found.append(float(jnp.min(jnp.abs(a[0]))))
    return next_fun(*a, **k)

  with nn.intercept_methods(intercept):
    module.apply(variables, *args, **kwargs)
  return min(found)


def init_away_from_kinks(module, *args, points=(), margin=1e-7, **kwargs):
  """float64 variables for which no (leaky) ReLU input lies within `margin` of 0 (at the
  inputs `args` and at each extra argument tuple in `points`), so the finite differences
  (EPS) never straddle a kink."""
  for seed in range(20):
    variables = as64(module.init(jax.random.key(seed), *args, train=False))
    if min(min_abs_preactivation(module, variables, *a, **kwargs)
           for a in (args,) + tuple(points)) > margin:
      return variables
  raise AssertionError("no initialisation away from the kinks")


@pytest.mark.parametrize("norm", layers_lib.NORMS)
def test_generator_gradients_and_black_input(norm):
  gen = models.UNetGenerator(features=4, max_features=8, depth=2, norm=norm,
                             activation="leaky_relu", dtype=jnp.float64)
  with jax.enable_x64(True):
    x = jnp.asarray(smooth((2, 8, 12, 1)))
    kw = dict(train=True, mutable=["batch_stats"])
    variables = init_away_from_kinks(gen, x, **kw)
    out = lambda p, x: before_cast(gen, {**variables, "params": p}, x, layer="dec0_up", **kw)
    check_grads(out, (variables["params"], x), order=1, modes=["rev"], eps=EPS, **TOL)
    # A black image: zero variance in every norm layer; gradients must stay finite.
    black = -jnp.ones_like(x)
    loss = lambda p: jnp.mean(jnp.abs(out(p, black) - 0.3))
    assert all_finite(jax.grad(loss)(variables["params"]))


@pytest.mark.parametrize("penalty", ["r1", "dragan"])
@pytest.mark.parametrize("norm", layers_lib.NORMS)
# auto on 32x32: the custom VJPs, differentiated twice (first layer), and one matrix
# product (16x16 and smaller)
@pytest.mark.parametrize("downsample", ["conv", "auto"])
def test_gradient_penalties_through_the_discriminator(norm, penalty, downsample):
  """Penalties differentiate D twice, through its norm layers: numerical check on a
  smooth image, finite gradients on black images (zero variance, zero input gradient)."""
  disc = models.PatchDiscriminator(features=4, layers=1, norm=norm, downsample=downsample,
                                   dtype=jnp.float64)
  with jax.enable_x64(True):
    cond = jnp.asarray(smooth((2, 32, 32, 1), 3.0))
    real = jnp.asarray(smooth((2, 32, 32, 3)))
    kw = dict(train=True, mutable=["batch_stats"])
    # DRAGAN evaluates D at a perturbed image: the same formula and key as losses.py.
    noise_rng, alpha_rng = jax.random.split(jax.random.key(1))
    std = jnp.std(real, axis=(1, 2, 3), keepdims=True)
    perturbed = real + 0.5 * std * jax.random.uniform(noise_rng, real.shape)
    dragan_x = real + jax.random.uniform(alpha_rng, (2, 1, 1, 1)) * (perturbed - real)
    variables = init_away_from_kinks(disc, cond, real, points=[(cond, dragan_x)], **kw)

    def gp(params, image):
      d = lambda x: before_cast(disc, {**variables, "params": params}, cond, x,
                                layer="logits", **kw)
      return losses.gradient_penalty(d, image, jax.random.key(1), penalty)

    check_grads(lambda p: gp(p, real), (variables["params"],), order=1, modes=["rev"],
                eps=EPS, **TOL)
    black = -jnp.ones_like(real)
    assert np.isfinite(float(gp(variables["params"], black)))
    assert all_finite(jax.grad(gp)(variables["params"], black))
