"""Generator (U-Net) and conditional PatchGAN discriminator, as pure Flax linen modules.

Both are fully convolutional: any input whose sides are multiples of 2**depth works, so the
colorize command can run on line art of any size and aspect after padding. Losses live in
`losses.py`, the layers in `layers.py` and `resampling.py`; these modules only map arrays
to arrays.
"""

import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from mangacolor_jax.nn import conv_forms
from mangacolor_jax.nn import layers as layers_lib
from mangacolor_jax.nn import resampling


class UNetGenerator(nn.Module):
  """pix2pix-style U-Net: `depth` stride-2 downsamplings, mirrored upsamplings, skips.

  Encoder level i: [activation unless i == 0] -> 4x4/2 conv -> [norm unless first or
  innermost] -> [`res_blocks` residual layers unless innermost]. Decoder level i: ReLU-like
  activation -> upsample -> [norm, then `res_blocks` residual layers, unless outermost]
  -> [self-attention if i in `attention_levels`] -> [dropout] -> concat the matching
  encoder output. The last layer maps to RGB with tanh,
  so outputs are in [-1, 1] like the targets.

  Attributes:
    features: width of the first level; doubles per level up to `max_features`.
    max_features: channel cap.
    depth: number of downsamplings (inputs need sides divisible by 2**depth).
    out_channels: 3 (RGB).
    norm: batch | instance | layer | none.
    activation: relu | leaky_relu | prelu, used in the decoder (encoder: leaky ReLU, as
      pix2pix, unless activation is prelu).
    upsample: resize | transpose | subpixel | phase (`Upsample`).
    subpixel_levels: decoder levels (0 to depth - 1; level i makes 1/2**i of the image's
      side) that upsample by `subpixel` whatever `upsample` says, e.g. the outer levels,
      where its four 3x3 kernels a position cost few weights.
    dropout: decoder dropout rate on the innermost half of the levels (0 turns it off).
    hint_pyramid: with hints (the input's last `hint_channels` channels), give every
      encoder level the hints pooled to its resolution (`pool_hints`) beside its input, so
      the coarse levels, which see whole regions, read the painted colours directly.
    head_features: 0: the outermost decoder level maps to RGB (pix2pix). > 0: it maps to
      this many channels at full resolution, which (after the decoder's activation) are
      concatenated with the generator's input and mapped to RGB by a 3x3 conv, so the last
      layer sees every line and every painted pixel at the output's resolution.
    res_blocks: residual 3x3 layers, x + norm(conv(activation(x))), at each level.
    attention_levels: decoder levels (1 to depth - 1; level i works at 1/2**i of the
      image's side) followed by a residual self-attention layer over all their positions
      (`layers.SelfAttention2D`), so each place can read every other place's features.
    hint_channels: how many of the input's channels are hints (0 or 4; set from the config).
    downsample: how the encoder's 4x4/2 convs are computed (`Downsample`):
      conv, space_to_depth or auto; the same function and parameters either way.
    dtype: computation dtype (parameters stay float32).
  """
  features: int = 32
  max_features: int = 256
  depth: int = 4
  out_channels: int = 3
  norm: str = "batch"
  activation: str = "relu"
  upsample: str = "resize"
  dropout: float = 0.0
  hint_pyramid: bool = False
  head_features: int = 0
  res_blocks: int = 0
  attention_levels: tuple[int, ...] = ()
  subpixel_levels: tuple[int, ...] = ()
  hint_channels: int = 0
  downsample: str = "conv"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    norm = layers_lib.make_norm(self.norm, train, self.dtype)
    hints = x[..., -self.hint_channels:] if self.hint_pyramid and self.hint_channels else None
    conv = functools.partial(resampling.Downsample, kind=self.downsample, use_bias=False,
                             dtype=self.dtype)
    widths = [min(self.features * 2**i, self.max_features) for i in range(self.depth)]
    enc_act = "prelu" if self.activation == "prelu" else "leaky_relu"

    def residual(x, prefix, activation):
      for k in range(self.res_blocks):
        y = layers_lib.Activation(activation, name=f"{prefix}_res{k}_act")(x)
        y = nn.Conv(x.shape[-1], (3, 3), use_bias=False, dtype=self.dtype,
                    kernel_init=layers_lib.conv_init, name=f"{prefix}_res{k}_conv")(y)
        x = x + norm(name=f"{prefix}_res{k}_norm")(y)
      return x

    x = inputs = x.astype(self.dtype)
    skips = []
    for i, width in enumerate(widths):
      if i > 0:
        x = layers_lib.Activation(enc_act, name=f"enc{i}_act")(x)
        if hints is not None:
          x = jnp.concatenate([x, pool_hints(hints, 2**i).astype(self.dtype)], axis=-1)
      x = conv(width, name=f"enc{i}_conv")(x)
      if 0 < i < self.depth - 1:
        x = norm(name=f"enc{i}_norm")(x)
      if i < self.depth - 1:
        x = residual(x, f"enc{i}", enc_act)
      skips.append(x)

    for i in reversed(range(self.depth)):
      if i < self.depth - 1:
        x = jnp.concatenate([skips[i], x], axis=-1)
      x = layers_lib.Activation(self.activation, name=f"dec{i}_act")(x)
      out = widths[i - 1] if i > 0 else (self.head_features or self.out_channels)
      kind = "subpixel" if i in self.subpixel_levels else self.upsample
      x = resampling.Upsample(out, kind, use_bias=(i == 0), dtype=self.dtype,
                              name=f"dec{i}_up")(x)
      if i > 0:
        x = norm(name=f"dec{i}_norm")(x)
        x = residual(x, f"dec{i}", self.activation)
        if i in self.attention_levels:
          x = layers_lib.SelfAttention2D(dtype=self.dtype, name=f"dec{i}_attention")(x)
        if self.dropout > 0 and i >= self.depth // 2:
          x = nn.Dropout(self.dropout, deterministic=not train)(x)
    if self.head_features:
      x = layers_lib.Activation(self.activation, name="head_act")(x)
      x = nn.Conv(self.out_channels, (3, 3), dtype=self.dtype,
                  kernel_init=layers_lib.conv_init, name="head_conv")(
                      jnp.concatenate([x, inputs], axis=-1))
    return jnp.tanh(x.astype(jnp.float32))


def pool_hints(hints: jax.Array, factor: int) -> jax.Array:
  """Hints [B, H, W, 4] (colour where painted, 0/1 mask) pooled over factor x factor
  cells: the mean painted colour of each cell (0 where none) and the share painted."""
  b, h, w, _ = hints.shape
  pool = lambda v: v.reshape(b, h // factor, factor, w // factor, factor, -1).mean((2, 4))
  cover = pool(hints[..., 3:])
  colour = pool(hints[..., :3] * hints[..., 3:]) / jnp.maximum(cover, 1e-6)
  return jnp.concatenate([colour, cover], axis=-1)


class PatchDiscriminator(nn.Module):
  """Conditional PatchGAN: sees the line art (not the hints) beside a colour image.

  `layers` stride-2 4x4 convs after the first, then a stride-1 conv and a 1-channel conv
  giving one logit per patch (layers=3: the 70x70 PatchGAN of pix2pix). `downsample` as
  in `UNetGenerator`.
  """
  features: int = 32
  layers: int = 3
  max_features: int = 512
  norm: str = "batch"
  activation: str = "leaky_relu"
  downsample: str = "conv"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, condition, image, *, train: bool):
    norm = layers_lib.make_norm(self.norm, train, self.dtype)
    conv = functools.partial(nn.Conv, kernel_size=(4, 4), padding=((1, 1), (1, 1)),
                             dtype=self.dtype, kernel_init=layers_lib.conv_init)
    down = functools.partial(resampling.Downsample, kind=self.downsample, dtype=self.dtype)
    x = jnp.concatenate([condition, image], axis=-1).astype(self.dtype)
    x = down(self.features, use_bias=True, name="conv0")(x)
    x = layers_lib.Activation(self.activation, name="act0")(x)
    for k in range(1, self.layers + 1):
      width = min(self.features * 2**k, self.max_features)
      if k < self.layers:
        x = down(width, use_bias=False, name=f"conv{k}")(x)
      else:
        x = conv(width, use_bias=False, name=f"conv{k}")(x)
      x = norm(name=f"norm{k}")(x)
      x = layers_lib.Activation(self.activation, name=f"act{k}")(x)
    x = conv(1, strides=(1, 1), use_bias=True, name="logits",
             conv_general_dilated=conv_forms.padded_output_conv)(x)
    return x.astype(jnp.float32)


def validate_model_config(config, image_hw: tuple[int, int]) -> None:
  """Raises ValueError naming the field of `config.model` that cannot work at `image_hw`."""
  m, gen, disc = config.model, config.model.gen, config.model.disc
  for field, value, choices in (("gen.norm", gen.norm, layers_lib.NORMS),
                                ("disc.norm", disc.norm, layers_lib.NORMS),
                                ("gen.activation", gen.activation, layers_lib.ACTIVATIONS),
                                ("gen.upsample", gen.upsample, resampling.UPSAMPLES),
                                ("downsample", m.downsample, resampling.DOWNSAMPLES)):
    if value not in choices:
      raise ValueError(f"config.model.{field}={value!r} is not one of {choices}")
  for field, value in (("gen.features", gen.features), ("gen.depth", gen.depth),
                       ("gen.max_features", gen.max_features),
                       ("disc.features", disc.features), ("disc.layers", disc.layers)):
    if int(value) <= 0:
      raise ValueError(f"config.model.{field}={value} must be positive")
  if not 0.0 <= m.ema_decay < 1.0:
    raise ValueError(f"config.model.ema_decay={m.ema_decay} must be in [0, 1)")
  if int(m.ema_bn_batches) < 0:
    raise ValueError(f"config.model.ema_bn_batches={m.ema_bn_batches} must be >= 0 "
                     "(0 keeps the running statistics)")
  for field in ("head_features", "res_blocks"):
    if int(gen[field]) < 0:
      raise ValueError(f"config.model.gen.{field}={gen[field]} must be >= 0")
  for field, lowest in (("attention_levels", 1), ("subpixel_levels", 0)):
    levels = tuple(gen[field])
    if any(not isinstance(i, int) or not lowest <= i < gen.depth for i in levels):
      raise ValueError(f"config.model.gen.{field}={levels} must hold decoder levels from "
                       f"{lowest} to config.model.gen.depth - 1 = {gen.depth - 1}")
  if not 0.0 <= gen.dropout < 1.0:
    raise ValueError(f"config.model.gen.dropout={gen.dropout} must be in [0, 1)")
  h, w = image_hw
  multiple = 2**gen.depth
  if h % multiple or w % multiple:
    raise ValueError(
        f"config.data.image_size={(h, w)} must be a multiple of 2**config.model.gen.depth"
        f" = {multiple} on each side")
  if config.loss.gan != "none" and min(h, w) < 2**(disc.layers + 1):
    raise ValueError(f"config.data.image_size={(h, w)} is too small for "
                     f"config.model.disc.layers={disc.layers}")


def input_channels(config) -> int:
  """Generator input channels: line art (1) + hint colours (3) + hint mask (1) if hints."""
  return 1 + (4 if config.hints.mode != "none" else 0)


def create_models(config) -> tuple[UNetGenerator, PatchDiscriminator]:
  """The generator and discriminator of `config.model` (their fields, by name) at
  `config.dtype`."""
  m, dtype = config.model, jnp.dtype(config.dtype)
  gen_fields = {**m.gen.to_dict(), "attention_levels": tuple(m.gen.attention_levels),
                "subpixel_levels": tuple(m.gen.subpixel_levels)}
  gen = UNetGenerator(**gen_fields, hint_channels=input_channels(config) - 1,
                      downsample=m.downsample, dtype=dtype)
  disc = PatchDiscriminator(**m.disc.to_dict(), downsample=m.downsample, dtype=dtype)
  return gen, disc


def count_params(params) -> int:
  return sum(int(x.size) for x in jax.tree_util.tree_leaves(params))
