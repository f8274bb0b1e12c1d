"""The CPU-fast layers compute what pix2pix's layers compute, with the same parameters."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import pix2pix
from mangacolor_jax.nn import conv_forms
from mangacolor_jax.nn import models
from mangacolor_jax.nn import resampling


def _perturbed(variables, seed=1):
  """Init values plus noise: biases non-zero, so that they are checked too."""
  leaves, tree = jax.tree_util.tree_flatten(variables)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  return tree.unflatten([x + jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])


def _value_and_grads(module, variables, x):
  """Output, and gradients of a loss that weights every output position differently (a
  plain sum would not see outputs in the wrong place)."""
  def loss(v, x):
    y = module.apply(v, x)
    weights = jnp.cos(jnp.arange(y.size, dtype=jnp.float32)).reshape(y.shape)
    return jnp.sum(jnp.sin(y) * weights), y
  return jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(variables, x)


def _assert_close(a, b, rtol=1e-4):
  for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    scale = float(jnp.max(jnp.abs(v))) + 1e-6
    assert float(jnp.max(jnp.abs(u - v))) <= rtol * 10 * scale


@pytest.mark.parametrize("features", [conv_forms.PHASE_FUSED_MAX_FEATURES,  # one 3x3 conv
                                      conv_forms.PHASE_FUSED_MAX_FEATURES + 1])  # four 2x2
# Four 2x2 convolutions (side 5), matrix products (sides <= 4), gradients through a
# strided convolution (sides >= 16).
@pytest.mark.parametrize("shape", [(2, 3, 5, 6), (1, 1, 1, 4), (2, 4, 2, 3),
                                   (1, 16, 18, 3)])
# Off the CPU, wide outputs take `dgrad_conv_transpose` and narrow ones a padded 3x3.
@pytest.mark.parametrize("backend", ["cpu", "gpu"])
def test_phase_upsampling_is_conv_transpose(shape, features, backend, monkeypatch):
  monkeypatch.setattr(jax, "default_backend", lambda: backend)
  x = jnp.asarray(np.random.default_rng(0).standard_normal(shape), jnp.float32)
  ref = nn.ConvTranspose(features, (4, 4), strides=(2, 2), padding="SAME", use_bias=True)
  fast = resampling.PhaseConvTranspose(features, use_bias=True)
  variables = _perturbed(ref.init(jax.random.key(0), x))
  assert jax.tree_util.tree_map(jnp.shape, fast.init(jax.random.key(0), x)) == \
      jax.tree_util.tree_map(jnp.shape, variables)
  assert fast.apply(variables, x).shape == (shape[0], 2 * shape[1], 2 * shape[2], features)
  _assert_close(_value_and_grads(fast, variables, x), _value_and_grads(ref, variables, x))


@pytest.mark.parametrize("kind", resampling.DOWNSAMPLES)
# auto: the strided convolution with input gradients through the one-3x3 (3 channels)
# and the four-2x2 path (12 channels) on sides > 16, one matrix product on sides <= 16;
# odd sides (the plain strided convolution).
@pytest.mark.parametrize("shape", [(2, 18, 20, 3), (2, 20, 18, 12), (2, 4, 4, 3),
                                   (2, 6, 4, 12), (1, 2, 2, 5), (2, 5, 7, 3)])
def test_downsample_kinds_are_the_strided_conv(kind, shape):
  x = jnp.asarray(np.random.default_rng(0).standard_normal(shape), jnp.float32)
  ref = nn.Conv(7, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)), use_bias=True)
  fast = resampling.Downsample(7, kind, use_bias=True)
  variables = _perturbed(ref.init(jax.random.key(0), x))
  assert jax.tree_util.tree_map(jnp.shape, fast.init(jax.random.key(0), x)) == \
      jax.tree_util.tree_map(jnp.shape, variables)
  _assert_close(_value_and_grads(fast, variables, x), _value_and_grads(ref, variables, x))


def _record_calls(monkeypatch, name):
  """Replaces fast_layers.<name> by a wrapper that records each call's input shape."""
  calls, fn = [], getattr(conv_forms, name)
  monkeypatch.setattr(conv_forms, name, lambda x, k: calls.append(x.shape) or fn(x, k))
  return calls


def test_phase_upsampling_takes_matrix_products_for_wide_kernels(monkeypatch):
  """Inputs of side <= PHASE_GEMM_WIDE_MAX_SIDE take `gemm_conv_transpose` when the kernel
  is wide enough (here: any kernel), and compute the same as ConvTranspose."""
  monkeypatch.setattr(conv_forms, "PHASE_GEMM_WIDE_MIN_WEIGHTS", 1)
  calls = _record_calls(monkeypatch, "gemm_conv_transpose")
  x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 8, 6, 5)), jnp.float32)
  ref = nn.ConvTranspose(9, (4, 4), strides=(2, 2), padding="SAME", use_bias=True)
  fast = resampling.PhaseConvTranspose(9, use_bias=True)
  variables = _perturbed(ref.init(jax.random.key(0), x))
  _assert_close(_value_and_grads(fast, variables, x), _value_and_grads(ref, variables, x))
  assert calls and all(max(shape[1:3]) == 8 for shape in calls)


def test_auto_downsampling_takes_one_matrix_product_for_wide_kernels(monkeypatch):
  """Inputs of side <= AUTO_GEMM_WIDE_MAX_SIDE take `im2col_conv` when the kernel is wide
  enough (here: any kernel), and compute the same as the strided nn.Conv."""
  monkeypatch.setattr(conv_forms, "AUTO_GEMM_WIDE_MIN_WEIGHTS", 1)
  calls = _record_calls(monkeypatch, "im2col_conv")
  x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 16, 12, 5)), jnp.float32)
  ref = nn.Conv(7, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)), use_bias=True)
  fast = resampling.Downsample(7, "auto", use_bias=True)
  variables = _perturbed(ref.init(jax.random.key(0), x))
  _assert_close(_value_and_grads(fast, variables, x), _value_and_grads(ref, variables, x))
  assert calls and all(max(shape[1:3]) == 16 for shape in calls)


def test_auto_downsampling_takes_space_to_depth_for_large_cpu_inputs(monkeypatch):
  """On the CPU, inputs of side >= CPU_S2D_MIN_SIDE take `space_to_depth_conv`, smaller
  ones the strided form; both compute the same as the strided nn.Conv."""
  monkeypatch.setattr(conv_forms, "CPU_S2D_MIN_SIDE", 16)
  s2d = _record_calls(monkeypatch, "space_to_depth_conv")
  phase_grads = _record_calls(monkeypatch, "strided_conv_phase_grad")
  ref = nn.Conv(7, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)), use_bias=True)
  fast = resampling.Downsample(7, "auto", use_bias=True)
  for shape in ((2, 16, 20, 4), (2, 14, 14, 4)):
    x = jnp.asarray(np.random.default_rng(1).standard_normal(shape), jnp.float32)
    variables = _perturbed(ref.init(jax.random.key(0), x))
    _assert_close(_value_and_grads(fast, variables, x), _value_and_grads(ref, variables, x))
  assert {s[1] for s in s2d} == {16} and {s[1] for s in phase_grads} == {14}


def test_auto_downsampling_is_the_plain_strided_conv_off_the_cpu(monkeypatch):
  """On a GPU/TPU backend `auto` takes neither CPU path (cuDNN's strided convolution is
  faster there); on the CPU it takes them."""
  products = _record_calls(monkeypatch, "im2col_conv")
  phase_grads = _record_calls(monkeypatch, "strided_conv_phase_grad")
  small = jnp.zeros((1, 4, 4, 3))
  large = jnp.zeros((1, 32, 32, 3))
  down = resampling.Downsample(5, "auto")
  for x in (small, large):
    down.init(jax.random.key(0), x)
  assert [s[1] for s in products] == [4] and [s[1] for s in phase_grads] == [32]
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  for x in (small, large):
    down.init(jax.random.key(0), x)
  assert len(products) == 1 and len(phase_grads) == 1


def test_generator_phase_equals_transpose_with_the_same_weights():
  kwargs = dict(features=4, max_features=16, depth=3, dropout=0.0)
  x = jnp.asarray(np.random.default_rng(2).uniform(-1, 1, (2, 16, 24, 1)), jnp.float32)
  ref = models.UNetGenerator(upsample="transpose", **kwargs)
  fast = models.UNetGenerator(upsample="phase", downsample="auto", **kwargs)
  variables = ref.init(jax.random.key(0), x, train=False)
  np.testing.assert_allclose(fast.apply(variables, x, train=False),
                             ref.apply(variables, x, train=False), atol=1e-5)


@pytest.mark.parametrize("size,g_params,d_params", [("128", 41_826_947, 2_766_657),
                                                    ("256", 54_411_907, 2_766_657)])
def test_pix2pix_config_has_the_peers_parameter_counts(size, g_params, d_params):
  # The counts torch_pix2pix.py --count-flops prints for the PyTorch peer.
  config = pix2pix.get_config(size)
  gen, disc = models.create_models(config)
  s = int(size)
  x = jnp.zeros((1, s, s, 1))
  g = jax.eval_shape(lambda: gen.init(jax.random.key(0), x, train=False))["params"]
  d = jax.eval_shape(lambda: disc.init(jax.random.key(0), x, jnp.zeros((1, s, s, 3)),
                                       train=False))["params"]
  assert (models.count_params(g), models.count_params(d)) == (g_params, d_params)


def test_dgrad_upsampling_hands_the_compiler_a_reversed_kernel():
  """XLA:GPU runs an input-dilated convolution as cuDNN's backward-data convolution only
  when its kernel operand is a `reverse`; without one, the slow path of row 38."""
  x, kernel = jnp.zeros((1, 4, 4, 3)), jnp.zeros((4, 4, 3, 5))
  hlo = jax.jit(conv_forms.dgrad_conv_transpose).lower(x, kernel).as_text()
  conv = next(line for line in hlo.splitlines() if "stablehlo.convolution" in line)
  assert "lhs_dilate = [2, 2]" in conv
  kernel_operand = conv.split("stablehlo.convolution(")[1].split(",")[1].split(")")[0].strip()
  assert f"{kernel_operand} = stablehlo.reverse" in hlo


def test_gpu_layer_forms_compute_the_same(monkeypatch):
  """Off the CPU, narrow convolutions change form (space-to-depth inputs, zero-padded
  outputs) and wide upsampling is cuDNN's backward-data convolution: the same outputs and
  gradients as the plain layers, same parameters; on the CPU none of these forms runs."""
  s2d = _record_calls(monkeypatch, "space_to_depth_conv")
  dgrad = _record_calls(monkeypatch, "dgrad_conv_transpose")
  out_channels = []  # of every convolution
  conv = jax.lax.conv_general_dilated
  def recording_conv(lhs, rhs, *args, **kwargs):
    out_channels.append(rhs.shape[-1])
    return conv(lhs, rhs, *args, **kwargs)
  monkeypatch.setattr(jax.lax, "conv_general_dilated", recording_conv)
  x = jnp.zeros((1, 8, 8, 3))
  resampling.Downsample(5, "auto").init(jax.random.key(0), x)
  resampling.PhaseConvTranspose(3).init(jax.random.key(0), x)
  resampling.PhaseConvTranspose(9).init(jax.random.key(0), x)
  assert not s2d and not dgrad and 16 not in out_channels  # the CPU: no GPU form
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  x = jnp.asarray(np.random.default_rng(3).standard_normal((2, 8, 10, 4)), jnp.float32)
  ref = nn.Conv(5, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)), use_bias=True)
  fast = resampling.Downsample(5, "auto", use_bias=True)
  variables = _perturbed(ref.init(jax.random.key(0), x))
  _assert_close(_value_and_grads(fast, variables, x), _value_and_grads(ref, variables, x))
  assert s2d == [x.shape]
  ref = nn.Conv(1, (4, 4), padding=((1, 1), (1, 1)), use_bias=True)
  fast = nn.Conv(1, (4, 4), padding=((1, 1), (1, 1)), use_bias=True,
                 conv_general_dilated=conv_forms.padded_output_conv)
  variables = _perturbed(ref.init(jax.random.key(0), x))
  _assert_close(_value_and_grads(fast, variables, x), _value_and_grads(ref, variables, x))
  out_channels.clear()
  for features in (3, 9):  # a padded 3x3 (4 x 3 = 12 outputs -> 16), backward-data
    ref = nn.ConvTranspose(features, (4, 4), strides=(2, 2), padding="SAME", use_bias=True)
    fast = resampling.PhaseConvTranspose(features, use_bias=True)
    variables = _perturbed(ref.init(jax.random.key(0), x))
    _assert_close(_value_and_grads(fast, variables, x), _value_and_grads(ref, variables, x))
  assert 16 in out_channels and len(dgrad) == 1
