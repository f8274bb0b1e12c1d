"""Normalisations and activations of the networks, chosen by name from the config."""

import functools
from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp

NORMS = ("batch", "instance", "layer", "none")
ACTIVATIONS = ("relu", "leaky_relu", "prelu")
# pix2pix initialisation: N(0, 0.02) kernels, zero biases (every convolution of the project).
conv_init = nn.initializers.normal(0.02)
# BatchNorm's running statistics: new = MOMENTUM * old + (1 - MOMENTUM) * batch's.
BATCH_NORM_MOMENTUM = 0.9


def make_norm(kind: str, train: bool, dtype: Any) -> Callable[..., nn.Module]:
  """Returns a constructor for the normalisation layer `kind` (called with `name=`)."""
  if kind == "batch":
    return functools.partial(nn.BatchNorm, use_running_average=not train,
                             momentum=BATCH_NORM_MOMENTUM,
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


class SelfAttention2D(nn.Module):
  """A residual self-attention layer over the positions of a feature map [B, H, W, C].

  x + W_o softmax(Q K^T / sqrt(d)) V, with Q, K, V read from a LayerNorm of x, in heads of
  `head_width` channels. W_o starts at zero, so the layer starts as the identity and
  the network it sits in computes what it would without it. Memory grows with (H W)^2:
  on a 64x64 image at 1/8 of its side there are 64 positions, on a 1024x1024 one 16,384.
  """
  head_width: int = 64
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    b, h, w, c = x.shape
    y = nn.LayerNorm(epsilon=1e-5, dtype=self.dtype, name="norm")(x).reshape(b, h * w, c)
    y = nn.MultiHeadDotProductAttention(
        num_heads=max(1, c // self.head_width), dtype=self.dtype,
        out_kernel_init=nn.initializers.zeros, name="attention")(y)
    return x + y.reshape(b, h, w, c)
