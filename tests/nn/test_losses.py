"""Each loss on fixed inputs with values known by hand."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from mangacolor_jax.nn import hints
from mangacolor_jax.nn import losses

ZEROS = jnp.zeros((2, 3, 3, 1))
ONES = jnp.ones((2, 3, 3, 1))


def test_d_loss_known_values():
  assert float(losses.d_loss(ZEROS, ZEROS, "vanilla")) == pytest.approx(math.log(2), 1e-6)
  assert float(losses.d_loss(ONES, ZEROS, "lsgan")) == 0.0
  assert float(losses.d_loss(ZEROS, ONES, "lsgan")) == pytest.approx(1.0)
  assert float(losses.d_loss(ONES, -ONES, "hinge")) == 0.0
  assert float(losses.d_loss(ZEROS, ZEROS, "hinge")) == pytest.approx(2.0)
  # A confident, correct D has a small vanilla loss; a wrong one a large loss.
  assert float(losses.d_loss(10 * ONES, -10 * ONES, "vanilla")) < 1e-4
  assert float(losses.d_loss(-10 * ONES, 10 * ONES, "vanilla")) > 9.9


def test_g_adv_loss_known_values():
  assert float(losses.g_adv_loss(ZEROS, "vanilla")) == pytest.approx(math.log(2), 1e-6)
  assert float(losses.g_adv_loss(ONES, "lsgan")) == 0.0
  assert float(losses.g_adv_loss(3 * ONES, "hinge")) == pytest.approx(-3.0)
  with pytest.raises(ValueError, match="gan"):
    losses.g_adv_loss(ZEROS, "wgan")


def test_reconstruction_losses():
  a = jnp.zeros((1, 2, 2, 3))
  b = jnp.full((1, 2, 2, 3), 0.5)
  assert float(losses.l1_loss(a, b)) == pytest.approx(0.5)
  assert float(losses.mse_loss(a, b)) == pytest.approx(0.25)


def test_chroma_loss_pays_for_grey_not_for_hue():
  red = jnp.zeros((1, 2, 2, 3)).at[..., 0].set(1.0)
  green = red[..., (1, 0, 2)]  # R and G swapped: the same chroma, another hue
  grey = jnp.zeros_like(red)
  assert float(losses.chroma_loss(red, red)) == pytest.approx(0.0, abs=1e-6)
  assert float(losses.chroma_loss(green, red)) == pytest.approx(0.0, abs=1e-6)
  assert float(losses.l1_loss(green, red)) > 0.5  # L1 sees the hue ...
  # ... and the chroma term the grey: red's chroma is |(1, 0.5)| = 1.118.
  assert float(losses.chroma_loss(grey, red)) == pytest.approx(math.sqrt(1.25), 1e-3)
  grad = jax.grad(losses.chroma_loss)(grey, red)
  assert np.all(np.isfinite(np.asarray(grad)))


def test_chroma_term_joins_g_objective_only_with_weight(tiny_config):
  from mangacolor_jax.training import objective  # pylint: disable=g-import-not-at-top
  fake = jnp.zeros((1, 2, 2, 3))
  target = jnp.zeros((1, 2, 2, 3)).at[..., 0].set(1.0)
  plain, terms = objective.reconstruction_loss(tiny_config.loss, fake, target)
  assert "g_chroma" not in terms  # off by default: the step computes what it did before
  tiny_config.loss.chroma_weight = 10.0
  total, terms = objective.reconstruction_loss(tiny_config.loss, fake, target)
  assert float(terms["g_chroma"]) == pytest.approx(math.sqrt(1.25), 1e-3)
  assert float(total) == pytest.approx(float(plain) + 10.0 * math.sqrt(1.25), 1e-3)


def test_l2_penalty_counts_kernels_only():
  params = {"conv": {"kernel": jnp.full((2, 2), 2.0), "bias": jnp.full((3,), 100.0)},
            "norm": {"scale": jnp.full((3,), 100.0)}}
  assert float(losses.l2_penalty(params)) == pytest.approx(0.5 * 4 * 4.0)


def _linear_d(w):
  return lambda x: jnp.sum(x * w, axis=(1, 2, 3))[:, None]


def test_r1_penalty_of_linear_discriminator():
  w = jnp.asarray(np.arange(12, dtype=np.float32).reshape(1, 2, 2, 3) / 10)
  real = jnp.ones((2, 2, 2, 3))
  gp = losses.gradient_penalty(_linear_d(w), real, jax.random.key(0), "r1")
  assert float(gp) == pytest.approx(0.5 * float(jnp.sum(w**2)), rel=1e-6)


@pytest.mark.parametrize("scale, expected", [(1.0, 0.0), (2.0, 1.0)])
def test_dragan_penalty_of_linear_discriminator(scale, expected):
  w = jnp.zeros((1, 2, 2, 3)).at[0, 0, 0, 0].set(scale)  # |grad| == scale everywhere
  real = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (4, 2, 2, 3)), jnp.float32)
  gp = losses.gradient_penalty(_linear_d(w), real, jax.random.key(0), "dragan")
  assert float(gp) == pytest.approx(expected, abs=1e-5)


def test_gradient_penalties_are_differentiable_and_finite():
  """Numerical vs analytic gradients of the penalties w.r.t. D's weights (fixed data)."""
  real = np.linspace(-1, 1, 2 * 3 * 3 * 2).reshape(2, 3, 3, 2)
  w0 = np.linspace(0.1, 0.9, 3 * 3 * 2).reshape(1, 3, 3, 2)

  def penalty(w, kind):
    d = lambda x: jnp.sum(jnp.tanh(x * w), axis=(1, 2, 3))[:, None]
    return losses.gradient_penalty(d, jnp.asarray(real), jax.random.key(3), kind)

  with jax.enable_x64(True):
    for kind in ("r1", "dragan"):
      check_grads(lambda w: penalty(w, kind), (jnp.asarray(w0),), order=1,
                  modes=["rev"], atol=1e-6, rtol=1e-5)
    # Zero weights give a zero input gradient: DRAGAN's norm must stay finite there.
    g = jax.grad(lambda w: penalty(w, "dragan"))(jnp.zeros(w0.shape))
    assert np.all(np.isfinite(np.asarray(g)))


def test_discriminator_accuracy():
  real, fake = jnp.array([1.0, -1.0]), jnp.array([-1.0, -2.0])
  real_acc, fake_acc = losses.discriminator_accuracy(real, fake, "vanilla")
  assert float(real_acc) == 0.5 and float(fake_acc) == 1.0
  real_acc, _ = losses.discriminator_accuracy(jnp.array([0.4, 0.6]), fake, "lsgan")
  assert float(real_acc) == 0.5


def test_sample_hints():
  target = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (64, 32, 32, 3)),
                       jnp.float32)
  h = hints.sample_hints(jax.random.key(0), target, max_points=40, drop_prob=0.0)
  colour, mask = h[..., :3], h[..., 3:]
  assert set(np.unique(np.asarray(mask))) <= {0.0, 1.0}
  np.testing.assert_array_equal(colour, target * mask)
  per_image = np.asarray(mask.sum(axis=(1, 2, 3)))
  assert 10 < per_image.mean() < 30  # U[0, 40] on average: 20
  assert per_image.std() > 3  # the count varies per image
  dropped = hints.sample_hints(jax.random.key(0), target, max_points=40, drop_prob=1.0)
  assert float(jnp.abs(dropped).sum()) == 0.0


def test_hints_from_rgba():
  rgba = np.zeros((4, 6, 4), np.uint8)
  rgba[1, 2] = (255, 0, 0, 255)
  h = hints.hints_from_rgba(rgba)
  assert h.shape == (4, 6, 4)
  np.testing.assert_allclose(h[1, 2], [1.0, -1.0, -1.0, 1.0])
  assert h[..., 3].sum() == 1.0
  with pytest.raises(ValueError, match="RGBA"):
    hints.hints_from_rgba(rgba[..., :3])
