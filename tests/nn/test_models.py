"""Shapes (H != W), parameter counts and train/inference behaviour of the networks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mangacolor_jax.nn import layers as layers_lib
from mangacolor_jax.nn import models
from mangacolor_jax.nn import resampling


def expected_generator_params(cin, features, max_features, depth, norm=True):
  """Counted by hand from the architecture (resize upsampling: 3x3 convs)."""
  widths = [min(features * 2**i, max_features) for i in range(depth)]
  n, c = 0, cin
  for i, w in enumerate(widths):
    n += 16 * c * w
    if norm and 0 < i < depth - 1:
      n += 2 * w
    c = w
  for i in reversed(range(depth)):
    c_in = widths[i] if i == depth - 1 else 2 * widths[i]
    c_out = 3 if i == 0 else widths[i - 1]
    n += 9 * c_in * c_out + (c_out if i == 0 else 0)
    if norm and i > 0:
      n += 2 * c_out
  return n


def expected_discriminator_params(cin, features, layers, max_features=512):
  n = 16 * cin * features + features
  c = features
  for k in range(1, layers + 1):
    w = min(features * 2**k, max_features)
    n += 16 * c * w + 2 * w
    c = w
  return n + 16 * c + 1


@pytest.mark.parametrize("hints", ["none", "sparse"])
def test_parameter_counts(tiny_config, hints):
  tiny_config.hints.mode = hints
  gen, disc = models.create_models(tiny_config)
  cin = models.input_channels(tiny_config)
  x = jnp.zeros((1, 32, 48, cin))
  g_params = gen.init(jax.random.key(0), x, train=False)["params"]
  d_params = disc.init(jax.random.key(0), x[..., :1], jnp.zeros((1, 32, 48, 3)),
                       train=False)["params"]
  gen, disc = tiny_config.model.gen, tiny_config.model.disc
  assert models.count_params(g_params) == expected_generator_params(
      cin, gen.features, gen.max_features, gen.depth)
  assert models.count_params(d_params) == expected_discriminator_params(
      4, disc.features, disc.layers)


@pytest.mark.parametrize("upsample", resampling.UPSAMPLES)
@pytest.mark.parametrize("norm", layers_lib.NORMS)
def test_generator_shapes_non_square(upsample, norm):
  gen = models.UNetGenerator(features=4, max_features=16, depth=3, norm=norm,
                             upsample=upsample)
  x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, 24, 40, 1)), jnp.float32)
  variables = gen.init(jax.random.key(0), x, train=False)
  y = gen.apply(variables, x, train=False)
  assert y.shape == (2, 24, 40, 3)
  assert float(jnp.max(jnp.abs(y))) <= 1.0  # tanh output, the targets' range
  y_train, _ = gen.apply(variables, x, train=True, mutable=["batch_stats"])
  assert y_train.shape == (2, 24, 40, 3)


def test_discriminator_patch_shape_non_square():
  disc = models.PatchDiscriminator(features=8, layers=3)
  cond, image = jnp.zeros((2, 64, 96, 1)), jnp.zeros((2, 64, 96, 3))
  variables = disc.init(jax.random.key(0), cond, image, train=False)
  logits = disc.apply(variables, cond, image, train=False)
  # 3 stride-2 convs then two stride-1 4x4 convs with padding 1: (64/8 - 2, 96/8 - 2).
  assert logits.shape == (2, 6, 10, 1)


def test_batchnorm_updates_in_training_not_inference():
  gen = models.UNetGenerator(features=4, max_features=16, depth=3, norm="batch")
  x = jnp.asarray(np.random.default_rng(1).uniform(-1, 1, (4, 16, 16, 1)), jnp.float32)
  variables = gen.init(jax.random.key(0), x, train=False)
  _, updated = gen.apply(variables, x, train=True, mutable=["batch_stats"])
  changed = jax.tree_util.tree_map(lambda a, b: bool(jnp.any(a != b)),
                                   variables["batch_stats"], updated["batch_stats"])
  assert all(jax.tree_util.tree_leaves(changed))
  _, not_updated = gen.apply(variables, x, train=False, mutable=["batch_stats"])
  same = jax.tree_util.tree_map(lambda a, b: bool(jnp.all(a == b)),
                                variables["batch_stats"], not_updated["batch_stats"])
  assert all(jax.tree_util.tree_leaves(same))


def test_dropout_off_at_inference_on_in_training():
  gen = models.UNetGenerator(features=4, max_features=16, depth=4, norm="none",
                             dropout=0.5)
  x = jnp.asarray(np.random.default_rng(2).uniform(-1, 1, (2, 32, 32, 1)), jnp.float32)
  variables = gen.init(jax.random.key(0), x, train=False)
  a = gen.apply(variables, x, train=False)
  b = gen.apply(variables, x, train=False)
  np.testing.assert_array_equal(a, b)
  c = gen.apply(variables, x, train=True, rngs={"dropout": jax.random.key(1)})
  d = gen.apply(variables, x, train=True, rngs={"dropout": jax.random.key(2)})
  assert float(jnp.max(jnp.abs(c - d))) > 0


def test_unknown_choices_raise():
  x = jnp.zeros((1, 16, 16, 1))
  with pytest.raises(ValueError, match="norm"):
    models.UNetGenerator(norm="group", depth=2).init(jax.random.key(0), x, train=False)
  with pytest.raises(ValueError, match="upsample"):
    models.UNetGenerator(upsample="bilinear", depth=2).init(jax.random.key(0), x,
                                                            train=False)


def test_pooled_hints_are_each_cells_painted_colour_and_share():
  hints = np.zeros((1, 4, 8, 4), np.float32)
  hints[0, 0, 0] = hints[0, 1, 1] = [0.8, -0.6, -0.6, 1.0]  # two red pixels in cell (0, 0)
  hints[0, 2:4, 4:8] = [-1.0, -1.0, 1.0, 1.0]  # cell (1, 2) and (1, 3) all blue
  pooled = np.asarray(models.pool_hints(jnp.asarray(hints), 2))
  assert pooled.shape == (1, 2, 4, 4)
  np.testing.assert_allclose(pooled[0, 0, 0], [0.8, -0.6, -0.6, 0.5], rtol=1e-6)
  np.testing.assert_allclose(pooled[0, 1, 2], [-1.0, -1.0, 1.0, 1.0], rtol=1e-6)
  np.testing.assert_array_equal(pooled[0, 0, 1], [0, 0, 0, 0])  # nothing painted there


def test_hint_pyramid_lets_a_hint_reach_the_coarse_levels(tiny_config):
  """With the pyramid, each encoder level past the first gets the 4 pooled hint channels;
  without it, the network is the one it always was."""
  tiny_config.hints.mode = "strokes"
  cin = models.input_channels(tiny_config)
  x = jnp.zeros((1, 32, 48, cin))
  plain = models.create_models(tiny_config)[0].init(jax.random.key(0), x, train=False)
  tiny_config.model.gen.hint_pyramid = True
  pyramid = models.create_models(tiny_config)[0].init(jax.random.key(0), x, train=False)
  gen = tiny_config.model.gen
  widths = [min(gen.features * 2**i, gen.max_features) for i in range(gen.depth)]
  extra = sum(16 * 4 * w for w in widths[1:])  # 4x4 kernels over 4 more input channels
  assert (models.count_params(pyramid["params"]) ==
          models.count_params(plain["params"]) + extra)
  assert models.count_params(plain["params"]) == expected_generator_params(
      cin, gen.features, gen.max_features, gen.depth)


def test_full_resolution_head_reads_the_input_beside_the_decoder(tiny_config):
  """head_features > 0: the outermost level maps to that many channels, and a 3x3 conv over
  them and the input makes RGB, so an output pixel depends on the input pixel under it
  through one layer; 0 is the network it always was."""
  tiny_config.hints.mode = "strokes"
  cin = models.input_channels(tiny_config)
  x = jnp.zeros((1, 32, 48, cin))
  plain = models.create_models(tiny_config)[0].init(jax.random.key(0), x, train=False)
  tiny_config.model.gen.head_features = 8
  gen_module = models.create_models(tiny_config)[0]
  head = gen_module.init(jax.random.key(0), x, train=False)
  gen = tiny_config.model.gen
  c_in = 2 * gen.features  # the outermost level's input: its skip and the level below
  old_last = 9 * c_in * 3 + 3
  new_last = 9 * c_in * 8 + 8 + 9 * (8 + cin) * 3 + 3
  assert (models.count_params(head["params"]) ==
          models.count_params(plain["params"]) - old_last + new_last)
  # Zero every weight but the head's input-channel taps: the line art alone reaches RGB.
  params = jax.tree_util.tree_map(jnp.zeros_like, head["params"])
  kernel = np.zeros(head["params"]["head_conv"]["kernel"].shape, np.float32)
  kernel[1, 1, 8, :] = 1.0  # centre tap of the line-art channel
  params["head_conv"]["kernel"] = jnp.asarray(kernel)
  lineart = np.zeros((1, 32, 48, cin), np.float32)
  lineart[0, 5, 7, 0] = 0.5
  out = gen_module.apply({**head, "params": params}, jnp.asarray(lineart), train=False)
  np.testing.assert_allclose(np.asarray(out)[0, 5, 7], np.tanh(0.5), rtol=1e-6)
  assert float(jnp.abs(out).sum()) == pytest.approx(3 * np.tanh(0.5), rel=1e-5)


def _plain_and_variant(config, **gen_fields):
  """An input with stroke hints, and the generator of `config` without and with
  `gen_fields` (each: module, variables from the same key)."""
  config.hints.mode = "strokes"
  x = jax.random.uniform(jax.random.key(1), (2, 32, 48, models.input_channels(config)),
                         minval=-1.0, maxval=1.0)
  nets = []
  for fields in ({}, gen_fields):
    config.model.gen.update(fields)
    module = models.create_models(config)[0]
    nets += [module, module.init(jax.random.key(0), x, train=False)]
  return (x, *nets)


def test_residual_blocks_add_a_3x3_layer_per_level_and_start_near_identity(tiny_config):
  """res_blocks = 1: one 3x3 conv (no bias) and one BatchNorm at every encoder level but the
  innermost and every decoder level but the outermost; 0 is the network it always was. At
  initialisation's small weights the blocks pass their input on almost unchanged."""
  x, plain_module, plain, res_module, res = _plain_and_variant(tiny_config, res_blocks=1)
  gen = tiny_config.model.gen
  assert models.count_params(plain["params"]) == expected_generator_params(
      models.input_channels(tiny_config), gen.features, gen.max_features, gen.depth)
  widths = [min(gen.features * 2**i, gen.max_features) for i in range(gen.depth)]
  # Encoder levels 0..depth-2 and decoder levels 1..depth-1 run at the same widths.
  extra = 2 * sum(9 * w * w + 2 * w for w in widths[:-1])
  assert models.count_params(res["params"]) == models.count_params(plain["params"]) + extra
  assert {k for k in res["params"] if "_res0_" in k} == (
      {f"enc{i}_res0_conv" for i in range(gen.depth - 1)}
      | {f"enc{i}_res0_norm" for i in range(gen.depth - 1)}
      | {f"dec{i}_res0_conv" for i in range(1, gen.depth)}
      | {f"dec{i}_res0_norm" for i in range(1, gen.depth)})
  # The other layers' parameters are shaped as before, so with the blocks' kernels at zero
  # the network computes exactly the plain one's function.
  params = {k: v for k, v in res["params"].items()}
  for k in params:
    if k.endswith("_conv") and "_res" in k:
      params[k] = {"kernel": jnp.zeros_like(params[k]["kernel"])}
    elif "_res" not in k:
      params[k] = plain["params"][k]
  for k in plain["batch_stats"]:
    res["batch_stats"][k] = plain["batch_stats"][k]
  out = res_module.apply({"params": params, "batch_stats": res["batch_stats"]}, x, train=False)
  np.testing.assert_allclose(np.asarray(out),
                             np.asarray(plain_module.apply(plain, x, train=False)),
                             atol=1e-6)
  # With their initial weights the blocks change the output, by a little.
  diff = np.abs(np.asarray(res_module.apply(res, x, train=False))
                - np.asarray(plain_module.apply({**plain, "params": {
                    k: v for k, v in res["params"].items() if "_res" not in k}}, x,
                    train=False)))
  assert 0 < diff.max() < 0.5


def test_self_attention_starts_as_the_identity_and_then_mixes_every_position():
  """SelfAttention2D: with its output projection at zero (its initialisation) it returns
  its input; with one trained away from zero, changing a single position changes the output
  at every position, which no 3x3 layer does."""
  layer = layers_lib.SelfAttention2D(head_width=4)
  x = jax.random.normal(jax.random.key(0), (2, 6, 5, 8))
  variables = layer.init(jax.random.key(1), x)
  np.testing.assert_array_equal(np.asarray(layer.apply(variables, x)), np.asarray(x))
  params = jax.tree_util.tree_map(lambda v: v, variables["params"])
  out_proj = params["attention"]["out"]
  out_proj["kernel"] = jax.random.normal(jax.random.key(2), out_proj["kernel"].shape)
  x2 = x.at[:, 0, 0].set(3 * jax.random.normal(jax.random.key(3), (2, 8)))
  change = np.abs(np.asarray(layer.apply({"params": params}, x2)
                             - layer.apply({"params": params}, x)))
  assert (change.max(axis=-1)[:, 1:, 1:] > 1e-4).all()


def test_attention_levels_add_a_self_attention_layer_that_starts_as_the_plain_network(
    tiny_config):
  """attention_levels=(i,): a residual self-attention layer after decoder level i (a
  LayerNorm and query, key, value and output projections of its width); at initialisation
  the generator computes exactly the network without it, given the same other weights."""
  gen = tiny_config.model.gen
  level = gen.depth - 1
  x, plain_module, plain, attn_module, attn = _plain_and_variant(
      tiny_config, attention_levels=(level,))
  width = min(gen.features * 2**(level - 1), gen.max_features)
  assert set(attn["params"]) - set(plain["params"]) == {f"dec{level}_attention"}
  assert models.count_params(attn["params"]) == (
      models.count_params(plain["params"]) + 4 * width * width + 6 * width)
  params = {**plain["params"], f"dec{level}_attention": attn["params"][f"dec{level}_attention"]}
  out = attn_module.apply({"params": params, "batch_stats": plain["batch_stats"]}, x,
                          train=False)
  np.testing.assert_array_equal(np.asarray(out),
                                np.asarray(plain_module.apply(plain, x, train=False)))


@pytest.mark.parametrize("levels", [(0,), (4,), (1, 7)])
def test_attention_levels_outside_the_decoder_are_a_config_error(tiny_config, levels):
  tiny_config.model.gen.depth = 4
  tiny_config.model.gen.attention_levels = levels
  with pytest.raises(ValueError, match=r"config\.model\.gen\.attention_levels"):
    models.validate_model_config(tiny_config, (32, 48))


def test_subpixel_levels_change_only_those_levels_upsampling(tiny_config):
  """subpixel_levels=(0,): the outermost level upsamples by a 3x3 conv to four times its
  outputs, the others as gen.upsample says; every level listed computes exactly the
  network whose gen.upsample is subpixel."""
  gen = tiny_config.model.gen
  x, _, plain, _, outer = _plain_and_variant(tiny_config, upsample="resize",
                                             subpixel_levels=(0,))
  shapes = lambda v: jax.tree_util.tree_map(np.shape, v["params"])
  plain_shapes, outer_shapes = shapes(plain), shapes(outer)
  assert outer_shapes["dec0_up"]["conv"]["kernel"][-1] == (
      4 * plain_shapes["dec0_up"]["conv"]["kernel"][-1])
  assert {k: v for k, v in outer_shapes.items() if k != "dec0_up"} == {
      k: v for k, v in plain_shapes.items() if k != "dec0_up"}
  *_, every_module, every = _plain_and_variant(
      tiny_config, upsample="resize", subpixel_levels=tuple(range(gen.depth)))
  tiny_config.model.gen.update(upsample="subpixel", subpixel_levels=())
  sub_module = models.create_models(tiny_config)[0]
  np.testing.assert_array_equal(np.asarray(sub_module.apply(every, x, train=False)),
                                np.asarray(every_module.apply(every, x, train=False)))


@pytest.mark.parametrize("levels", [(-1,), (4,), (0, 7)])
def test_subpixel_levels_outside_the_decoder_are_a_config_error(tiny_config, levels):
  tiny_config.model.gen.depth = 4
  tiny_config.model.gen.subpixel_levels = levels
  with pytest.raises(ValueError, match=r"config\.model\.gen\.subpixel_levels"):
    models.validate_model_config(tiny_config, (32, 48))
