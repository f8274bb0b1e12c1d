"""Generator (U-Net) and conditional PatchGAN discriminator, as pure Flax linen modules.

Both are fully convolutional: any input whose sides are multiples of 2**depth works, so the
colorize command can run on line art of any size and aspect after padding. Losses live in
`losses.py`; these modules only map arrays to arrays.
"""

import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from mangacolor_jax import fast_layers

NORMS = ("batch", "instance", "layer", "none")
ACTIVATIONS = ("relu", "leaky_relu", "prelu")
UPSAMPLES = ("resize", "transpose", "subpixel", "phase")


def make_norm(kind: str, train: bool, dtype: Any) -> Callable[..., nn.Module]:
  """Returns a constructor for the normalisation layer `kind` (called with `name=`)."""
  if kind == "batch":
    return functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9,
                             epsilon=1e-5, dtype=dtype)
  if kind == "instance":
    return functools.partial(nn.InstanceNorm, epsilon=1e-5, dtype=dtype)
  if kind == "layer":
    # Over height, width and channels of each example: a CNN's layer norm.
    return functools.partial(nn.LayerNorm, epsilon=1e-5, reduction_axes=(-3, -2, -1),
                             feature_axes=-1, dtype=dtype)
  if kind == "none":
    return lambda name=None: (lambda x: x)
  raise ValueError(f"unknown norm {kind!r}; choose one of {NORMS}")


class Activation(nn.Module):
  """ReLU, leaky ReLU (slope 0.2) or PReLU (learned slope, one per layer)."""
  kind: str = "relu"

  @nn.compact
  def __call__(self, x):
    if self.kind == "relu":
      return nn.relu(x)
    if self.kind == "leaky_relu":
      return nn.leaky_relu(x, 0.2)
    if self.kind == "prelu":
      return nn.PReLU(param_dtype=jnp.float32, negative_slope_init=0.2)(x)
    raise ValueError(f"unknown activation {self.kind!r}; choose one of {ACTIVATIONS}")


class Upsample(nn.Module):
  """Doubles height and width and maps to `features` channels.

  `resize` (nearest neighbour + 3x3 conv) avoids the checkerboard artefacts of transposed
  convolutions and is much faster under XLA:CPU; `transpose` is pix2pix's 4x4/2
  ConvTranspose; `subpixel` is a 3x3 conv to 4x channels + depth-to-space; `phase` is
  the same map as `transpose` with the same weights, computed without input dilation
  (`fast_layers.PhaseConvTranspose`): pix2pix's layer at dense-convolution speed.
  """
  features: int
  kind: str = "resize"
  use_bias: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(nn.Conv, use_bias=self.use_bias, dtype=self.dtype,
                             kernel_init=fast_layers.conv_init)
    if self.kind == "transpose":
      return nn.ConvTranspose(self.features, (4, 4), strides=(2, 2), padding="SAME",
                              use_bias=self.use_bias, dtype=self.dtype,
                              kernel_init=fast_layers.conv_init, name="conv")(x)
    if self.kind == "phase":
      return fast_layers.PhaseConvTranspose(
          self.features, use_bias=self.use_bias, dtype=self.dtype, name="conv")(x)
    b, h, w, c = x.shape
    if self.kind == "resize":
      x = jnp.broadcast_to(x[:, :, None, :, None, :], (b, h, 2, w, 2, c))
      x = x.reshape(b, 2 * h, 2 * w, c)
      return conv(self.features, (3, 3), name="conv")(x)
    if self.kind == "subpixel":
      x = conv(4 * self.features, (3, 3), name="conv")(x)
      x = x.reshape(b, h, w, 2, 2, self.features).transpose(0, 1, 3, 2, 4, 5)
      return x.reshape(b, 2 * h, 2 * w, self.features)
    raise ValueError(f"unknown upsample {self.kind!r}; choose one of {UPSAMPLES}")


class UNetGenerator(nn.Module):
  """pix2pix-style U-Net: `depth` stride-2 downsamplings, mirrored upsamplings, skips.

  Encoder level i: [activation unless i == 0] -> 4x4/2 conv -> [norm unless first or
  innermost]. Decoder level i: ReLU-like activation -> upsample -> [norm unless outermost]
  -> [dropout] -> concat the matching encoder output. The last layer maps to RGB with tanh,
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
    dropout: decoder dropout rate on the innermost half of the levels (0 turns it off).
    downsample: how the encoder's 4x4/2 convs are computed (`fast_layers.Downsample`):
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
  downsample: str = "conv"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    norm = make_norm(self.norm, train, self.dtype)
    conv = functools.partial(fast_layers.Downsample, kind=self.downsample, use_bias=False,
                             dtype=self.dtype)
    widths = [min(self.features * 2**i, self.max_features) for i in range(self.depth)]
    enc_act = "prelu" if self.activation == "prelu" else "leaky_relu"

    x = x.astype(self.dtype)
    skips = []
    for i, width in enumerate(widths):
      if i > 0:
        x = Activation(enc_act, name=f"enc{i}_act")(x)
      x = conv(width, name=f"enc{i}_conv")(x)
      if 0 < i < self.depth - 1:
        x = norm(name=f"enc{i}_norm")(x)
      skips.append(x)

    for i in reversed(range(self.depth)):
      if i < self.depth - 1:
        x = jnp.concatenate([skips[i], x], axis=-1)
      x = Activation(self.activation, name=f"dec{i}_act")(x)
      out = self.out_channels if i == 0 else widths[i - 1]
      x = Upsample(out, self.upsample, use_bias=(i == 0), dtype=self.dtype,
                   name=f"dec{i}_up")(x)
      if i > 0:
        x = norm(name=f"dec{i}_norm")(x)
        if self.dropout > 0 and i >= self.depth // 2:
          x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return jnp.tanh(x.astype(jnp.float32))


class PatchDiscriminator(nn.Module):
  """Conditional PatchGAN: sees line art (and hints) concatenated with a colour image.

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
    norm = make_norm(self.norm, train, self.dtype)
    conv = functools.partial(nn.Conv, kernel_size=(4, 4), padding=((1, 1), (1, 1)),
                             dtype=self.dtype, kernel_init=fast_layers.conv_init)
    down = functools.partial(fast_layers.Downsample, kind=self.downsample, dtype=self.dtype)
    x = jnp.concatenate([condition, image], axis=-1).astype(self.dtype)
    x = down(self.features, use_bias=True, name="conv0")(x)
    x = Activation(self.activation, name="act0")(x)
    for k in range(1, self.layers + 1):
      width = min(self.features * 2**k, self.max_features)
      if k < self.layers:
        x = down(width, use_bias=False, name=f"conv{k}")(x)
      else:
        x = conv(width, use_bias=False, name=f"conv{k}")(x)
      x = norm(name=f"norm{k}")(x)
      x = Activation(self.activation, name=f"act{k}")(x)
    x = conv(1, strides=(1, 1), use_bias=True, name="logits",
             conv_general_dilated=fast_layers.padded_output_conv)(x)
    return x.astype(jnp.float32)


def input_channels(config) -> int:
  """Generator input channels: line art (1) + hint colours (3) + hint mask (1) if hints."""
  return 1 + (4 if config.hints.mode == "sparse" else 0)


def create_models(config) -> tuple[UNetGenerator, PatchDiscriminator]:
  """Builds the generator and discriminator from `config.model` and `config.dtype`."""
  dtype = jnp.dtype(config.dtype)
  m = config.model
  # Configs written before `downsample` existed get nn.Conv, as they always did.
  downsample = m.get("downsample", "conv")
  gen = UNetGenerator(features=m.gen_features, max_features=m.gen_max_features,
                      depth=m.gen_depth, norm=m.norm, activation=m.activation,
                      upsample=m.gen_upsample, dropout=m.dropout, downsample=downsample,
                      dtype=dtype)
  disc = PatchDiscriminator(features=m.disc_features, layers=m.disc_layers,
                            norm=m.disc_norm, downsample=downsample, dtype=dtype)
  return gen, disc


def count_params(params) -> int:
  return sum(int(x.size) for x in jax.tree_util.tree_leaves(params))
