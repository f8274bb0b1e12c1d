"""Up- and downsampling layers: pix2pix's 4x4 stride-2 convolution and its transpose, and
the generator's other upsampling kinds.

`Downsample` and `PhaseConvTranspose` have the parameters of `nn.Conv` / `nn.ConvTranspose`
(kernel [4, 4, c_in, features], bias) and compute the same function, so checkpoints load
across kinds; which arrangement of the multiply-adds computes them on this device is
`conv_forms`' business.
"""

import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from mangacolor_jax.nn import conv_forms
from mangacolor_jax.nn import layers as layers_lib

DOWNSAMPLES = ("conv", "space_to_depth", "auto")
UPSAMPLES = ("resize", "transpose", "subpixel", "phase")


class Downsample(nn.Module):
  """pix2pix's 4x4 stride-2 convolution with padding 1, computed one of three ways.

  `conv` is a strided convolution (nn.Conv's); `space_to_depth` is
  `conv_forms.space_to_depth_conv` (the same function); parameters are nn.Conv's either
  way (`kernel` [4, 4, c_in, features], `bias`), so checkpoints load across kinds. `auto`
  is `conv` off the CPU (the fastest on an H200 GPU; TPUs not measured), `space_to_depth`
  there for inputs of at most `conv_forms.GPU_S2D_MAX_CHANNELS` channels, and on the CPU
  the fastest under XLA:CPU: `space_to_depth` on inputs of side at least
  `conv_forms.CPU_S2D_MIN_SIDE`; below that the strided convolution with its input
  gradient computed by `conv_forms.strided_conv_phase_grad` (XLA's own input gradient is
  an input-dilated convolution, 20% slower at 128x128 and 7x slower on a 4x4 input); and
  one matrix product (`conv_forms.im2col_conv`) on small inputs (sides at most
  `conv_forms.AUTO_GEMM_MAX_SIDE`, or `AUTO_GEMM_WIDE_MAX_SIDE` for wide kernels), where
  the convolution library's kernel repacking costs more than the arithmetic. Odd sides
  always take the plain strided convolution.
  """
  features: int
  kind: str = "conv"
  use_bias: bool = False
  dtype: Any = jnp.float32
  kernel_init: Callable[..., Any] = layers_lib.conv_init

  @nn.compact
  def __call__(self, x):
    if self.kind not in DOWNSAMPLES:
      raise ValueError(f"unknown downsample {self.kind!r}; choose one of {DOWNSAMPLES}")
    c, f = x.shape[-1], self.features
    # Named and shaped as nn.Conv's, so checkpoints of either kind load into the other.
    kernel = self.param("kernel", self.kernel_init, (4, 4, c, f), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (f,), jnp.float32) if self.use_bias \
        else None
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    even = x.shape[1] % 2 == 0 and x.shape[2] % 2 == 0
    # Off the CPU, `auto` is the plain strided convolution: cuDNN runs it and its gradients
    # natively (5.9% faster per step than the CPU layers on an H200); 1-4 channel inputs
    # as space-to-depth (8.7% faster there).
    on_cpu = jax.default_backend() == "cpu"
    cpu_auto = self.kind == "auto" and on_cpu
    small = conv_forms.small_enough_for_products(
        x, f, conv_forms.AUTO_GEMM_MAX_SIDE, conv_forms.AUTO_GEMM_WIDE_MAX_SIDE,
        conv_forms.AUTO_GEMM_WIDE_MIN_WEIGHTS)
    gpu_narrow = self.kind == "auto" and not on_cpu and c <= conv_forms.GPU_S2D_MAX_CHANNELS
    cpu_large = cpu_auto and min(x.shape[1:3]) >= conv_forms.CPU_S2D_MIN_SIDE
    if even and (self.kind == "space_to_depth" or gpu_narrow or cpu_large):
      y = conv_forms.space_to_depth_conv(x, kernel)
    elif even and cpu_auto and small:
      y = conv_forms.im2col_conv(x, kernel)
    elif even and cpu_auto:
      y = conv_forms.strided_conv_phase_grad(x, kernel)
    else:
      y = conv_forms.strided_conv(x, kernel)
    if bias is not None:
      y = y + bias
    return y


class PhaseConvTranspose(nn.Module):
  """pix2pix's 4x4/2 "SAME" ConvTranspose, computed as four dense stride-1 convolutions.

  Output pixel (2m + a, 2n + b) of the transposed convolution sees only the 2x2 input
  window starting at (m - 1 + a, n - 1 + b), through the taps kernel[a::2, b::2]; so each
  of the four output phases (a, b) is a 2x2 convolution of the input (padded by 1 - a, a
  rows and 1 - b, b columns), and the phases are interleaved. Same function, same
  multiply-adds, same parameters (`kernel` [4, 4, c_in, features], `bias`) as
  `nn.ConvTranspose(features, (4, 4), strides=(2, 2), padding="SAME")`, so either one's
  weights load into the other; but no input dilation, whose gradients XLA:CPU computes
  20-50x slower than a dense convolution's. One 2x2 convolution giving all four phases at
  once, cropped, was slower on both the CPU (15.5x, its backward pass) and an H200 (1.27x).

  Narrow outputs (at most `conv_forms.PHASE_FUSED_MAX_FEATURES` channels, e.g. the
  generator's RGB layer) go through `conv_forms.phase_conv_transpose_3x3` instead: one 3x3
  convolution to all four phases. It does 9/4 of the multiply-adds, but a 3-channel
  convolution leaves XLA:CPU's convolution library mostly idle, and 12 channels run 2.4x
  faster (fwd + bwd, 256x256).
  """
  features: int
  use_bias: bool = False
  dtype: Any = jnp.float32
  kernel_init: Callable[..., Any] = layers_lib.conv_init

  @nn.compact
  def __call__(self, x):
    b, h, w, c = x.shape
    f = self.features
    kernel = self.param("kernel", self.kernel_init, (4, 4, c, f), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (f,), jnp.float32) if self.use_bias \
        else None
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    y = conv_forms.phase_conv_transpose(x, kernel)
    if bias is not None:
      y = y + bias
    return y


class Upsample(nn.Module):
  """Doubles height and width and maps to `features` channels.

  `resize` (nearest neighbour + 3x3 conv) avoids the checkerboard artefacts of transposed
  convolutions and is much faster than `transpose` under XLA:CPU; `transpose` is pix2pix's
  4x4/2 ConvTranspose; `subpixel` is a 3x3 conv to 4x channels + depth-to-space; `phase` is
  the same map as `transpose` with the same weights, computed without input dilation
  (`PhaseConvTranspose`): pix2pix's layer at dense-convolution speed.
  """
  features: int
  kind: str = "resize"
  use_bias: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(nn.Conv, use_bias=self.use_bias, dtype=self.dtype,
                             kernel_init=layers_lib.conv_init)
    if self.kind == "transpose":
      return nn.ConvTranspose(self.features, (4, 4), strides=(2, 2), padding="SAME",
                              use_bias=self.use_bias, dtype=self.dtype,
                              kernel_init=layers_lib.conv_init, name="conv")(x)
    if self.kind == "phase":
      return PhaseConvTranspose(
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
