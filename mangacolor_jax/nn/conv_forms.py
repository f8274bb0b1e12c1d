"""The arrangements of multiply-adds that compute pix2pix's 4x4 stride-2 convolution and its
transpose fast on each device (the layers are `resampling.Downsample` and
`resampling.PhaseConvTranspose`).

Each form computes the same function as `lax.conv_general_dilated` with the same kernel
[4, 4, c_in, features]; only how the multiply-adds are arranged differs. XLA:CPU computes
input-dilated convolutions (a transposed convolution, and the input gradient of a strided
one) up to 20-50x slower than dense ones, and on small inputs its convolutions spend their
time repacking kernels, so on the CPU:

* upsampling is four dense 2x2 convolutions, one per output phase
  (`phase_conv_transpose`); one 3x3 convolution for narrow outputs; matrix products for
  small inputs; gradients through the strided convolution it transposes on large inputs;
* downsampling is space-to-depth on large inputs, a strided convolution whose input
  gradient is a phase transposed convolution on middle-sized ones, one matrix product on
  small ones.

Off the CPU (a GPU's cuDNN has other strengths), upsampling is `dgrad_conv_transpose`
(cuDNN's backward-data convolution), inputs of 1-4 channels are downsampled through
`space_to_depth_conv`, and narrow outputs are computed with zero filters added
(`padded_output_conv`): the GPU_ settings below.

Every choice and threshold was measured (docs/performance.md has the table: change,
expected, measured, kept), and tests/nn/test_resampling.py checks each form against
`nn.Conv` / `nn.ConvTranspose`, values and gradients.
"""

import jax
import jax.numpy as jnp

# `auto` downsampling: one matrix product (`im2col_conv`) for inputs of at most this side,
# and for inputs up to AUTO_GEMM_WIDE_MAX_SIDE whose kernels have at least
# AUTO_GEMM_WIDE_MIN_WEIGHTS in x out weights per tap (pix2pix's 256 -> 512 and wider).
AUTO_GEMM_MAX_SIDE = 8
AUTO_GEMM_WIDE_MAX_SIDE = 16
AUTO_GEMM_WIDE_MIN_WEIGHTS = 256 * 512

# `auto` downsampling on the CPU: inputs of at least this side go through space-to-depth
# (one dense 2x2 convolution; with Eigen's convolutions, runtime/compile.py, 4-6% faster
# per step at 128 and 256 than the strided form).
CPU_S2D_MIN_SIDE = 64
# PhaseConvTranspose: outputs this narrow use one 3x3 convolution for all four phases.
PHASE_FUSED_MAX_FEATURES = 8
# PhaseConvTranspose: inputs at least this big get their gradients through a strided conv.
PHASE_STRIDED_GRAD_MIN_SIDE = 16
# PhaseConvTranspose: inputs at most this big are matrix products (`gemm_conv_transpose`),
# and so are inputs up to PHASE_GEMM_WIDE_MAX_SIDE whose kernels have at least
# PHASE_GEMM_WIDE_MIN_WEIGHTS taps' worth of in x out weights (pix2pix's 1024 -> 512).
PHASE_GEMM_MAX_SIDE = 4
PHASE_GEMM_WIDE_MAX_SIDE = 8
PHASE_GEMM_WIDE_MIN_WEIGHTS = 1024 * 512
# Off the CPU (measured on an H200):
# * phase upsampling of outputs wider than PHASE_FUSED_MAX_FEATURES is
#   `dgrad_conv_transpose`, cuDNN's backward-data convolution (GPU_DGRAD_UPSAMPLING);
# * convolutions with very few channels leave the GPU's matrix units idle (cuDNN falls
#   back to generic kernels), so `auto` downsampling of inputs with at most
#   GPU_S2D_MAX_CHANNELS channels goes through `space_to_depth_conv` (4x the channels),
#   and narrow outputs are computed with zero filters added up to a multiple of
#   GPU_PAD_OUTPUT_CHANNELS (`padded_output_conv`; 0 turns it off).
GPU_DGRAD_UPSAMPLING = True
GPU_S2D_MAX_CHANNELS = 4
GPU_PAD_OUTPUT_CHANNELS = 8


def padded_output_conv(lhs, rhs, *args, **kwargs):
  """`lax.conv_general_dilated` (NHWC, HWIO) with the kernel's outputs padded by zero
  filters to a multiple of GPU_PAD_OUTPUT_CHANNELS off the CPU, the extra outputs cut
  off: the same function and gradients (the zero filters are constants)."""
  f = rhs.shape[-1]
  pad = -f % GPU_PAD_OUTPUT_CHANNELS if GPU_PAD_OUTPUT_CHANNELS and \
      jax.default_backend() != "cpu" else 0
  if pad:
    rhs = jnp.concatenate([rhs, jnp.zeros(rhs.shape[:-1] + (pad,), rhs.dtype)], axis=-1)
  y = jax.lax.conv_general_dilated(lhs, rhs, *args, **kwargs)
  return y[..., :f] if pad else y


def phase_conv_transpose_3x3(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """The phase transposed convolution as one 3x3 convolution (padding 1) to 4 x features.

  Output phase (a, b) reads input rows m - 1 + a + u (u = 0, 1) through kernel[2u + a]:
  in the 3x3 window centred on m (r = 0, 1, 2 for rows m - 1, m, m + 1) that is row
  r = a + u with tap kernel[2r - a]; the other window rows get zeros. The 4 phases become
  channels (a, b, f) of one convolution, then are interleaved into the 2x larger output.
  """
  b, h, w, c = x.shape
  f = kernel.shape[-1]
  zeros = jnp.zeros((c, f), kernel.dtype)

  def tap(r, s, a, bb):
    ok = 0 <= r - a <= 1 and 0 <= s - bb <= 1
    return kernel[2 * r - a, 2 * s - bb] if ok else zeros

  k3 = jnp.stack([jnp.stack([
      jnp.stack([tap(r, s, a, bb) for a in (0, 1) for bb in (0, 1)], axis=1).reshape(c, 4 * f)
      for s in range(3)]) for r in range(3)])  # [3, 3, c, (a, b, f)]
  y = padded_output_conv(x, k3, (1, 1), ((1, 1), (1, 1)),
                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
  y = y.reshape(b, h, w, 2, 2, f).transpose(0, 1, 3, 2, 4, 5)
  return y.reshape(b, 2 * h, 2 * w, f)


def small_enough_for_products(x: jax.Array, features: int, max_side: int,
                               wide_max_side: int, wide_min_weights: int) -> bool:
  """Whether a 4x4/2 layer on `x` is cheaper as matrix products than as a convolution:
  inputs of side <= max_side, or <= wide_max_side when in x out channels reach
  wide_min_weights (measured on the CPU)."""
  side = max(x.shape[1:3])
  return side <= max_side or (side <= wide_max_side and
                              x.shape[-1] * features >= wide_min_weights)


def gemm_conv_transpose(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """The phase transposed convolution as 16 matrix products, one per kernel tap, for
  small inputs, where the convolution library spends its time repacking kernels.

  Tap (t, u) of input pixel (h, w) lands on row 2h + 2 - t and column 2w + 2 - u of the
  output (the 4x4/2 "SAME" transposed convolution), so every tap is a [pixels, c] x [c, f]
  product, all 16 run as one batched product reading the kernel in its own layout (no
  copy), and the results are added where they land, phase by phase (col2im). Same
  multiply-adds as the four 2x2 convolutions.
  """
  b, h, w, c = x.shape
  f = kernel.shape[-1]
  pixels = jnp.broadcast_to(x.reshape(1, b * h * w, c), (16, b * h * w, c))
  z = jax.lax.dot_general(pixels, kernel.reshape(16, c, f), (((2,), (1,)), ((0,), (0,))))
  z = z.reshape(4, 4, b, h, w, f)
  # In the output padded by one row and column on each side, tap t of pixel h lands on row
  # 2h + 3 - t = 2(h + p) + q with 3 - t = 2p + q: block row h + p, phase q.
  rows = []
  for q in (0, 1):
    cols = []
    for r in (0, 1):
      acc = 0
      for p in (0, 1):
        for s in (0, 1):
          tap = z[3 - 2 * p - q, 3 - 2 * s - r]
          acc = acc + jnp.pad(tap, ((0, 0), (p, 1 - p), (s, 1 - s), (0, 0)))
      cols.append(acc)  # [b, h + 1, w + 1, f]: phase (q, r) of the padded output
    rows.append(jnp.stack(cols, axis=3))
  padded = jnp.stack(rows, axis=2).reshape(b, 2 * h + 2, 2 * w + 2, f)
  return padded[:, 1:-1, 1:-1, :]


def phase_conv_transpose(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """The 4x4/2 "SAME" transposed convolution of NHWC `x` by HWIO `kernel`, without input
  dilation (`resampling.PhaseConvTranspose`): four 2x2 convolutions, or one 3x3 for narrow
  outputs, or matrix products on small inputs (side <= PHASE_GEMM_MAX_SIDE, or <=
  PHASE_GEMM_WIDE_MAX_SIDE for the widest kernels: on 8x8 inputs the products were 25%
  faster than the four convolutions for 1024 -> 512 and 34% slower for 1024 -> 256). On
  inputs of side >=
  PHASE_STRIDED_GRAD_MIN_SIDE, the gradients of the four-2x2 form come from
  `_phase_conv_transpose_grads`."""
  f = kernel.shape[-1]
  if f <= PHASE_FUSED_MAX_FEATURES:
    return phase_conv_transpose_3x3(x, kernel)
  if GPU_DGRAD_UPSAMPLING and jax.default_backend() != "cpu":
    return dgrad_conv_transpose(x, kernel)
  if small_enough_for_products(x, f, PHASE_GEMM_MAX_SIDE, PHASE_GEMM_WIDE_MAX_SIDE,
                                PHASE_GEMM_WIDE_MIN_WEIGHTS):
    return gemm_conv_transpose(x, kernel)
  if min(x.shape[1:3]) >= PHASE_STRIDED_GRAD_MIN_SIDE:
    return _phase_conv_transpose_strided_grads(x, kernel)
  return _phase_conv_transpose(x, kernel)


@jax.custom_vjp
def _phase_conv_transpose_strided_grads(x, kernel):
  return _phase_conv_transpose(x, kernel)


def _phase_conv_transpose_grads(res, g):
  """Gradients of y = phase_conv_transpose(x, k) through the strided convolution S_K that
  it is the transpose of (K = k flipped, in and out channels swapped; see
  `strided_conv_phase_grad`): y = S_K^T x, so dx = S_K g, and dK is S_K's kernel
  gradient for input g and cotangent x. XLA:CPU runs these two ops 17-25% faster than
  the four phases' own gradients on inputs of side >= 16, and no faster below."""
  x, kernel = res
  flipped = jnp.flip(kernel, (0, 1)).swapaxes(2, 3)
  dx, kernel_vjp = jax.vjp(lambda k: strided_conv(g, k), flipped)
  (d_flipped,) = kernel_vjp(x)
  return dx.astype(x.dtype), jnp.flip(d_flipped, (0, 1)).swapaxes(2, 3)


def _phase_conv_transpose_fwd(x, kernel):
  return _phase_conv_transpose(x, kernel), (x, kernel)


_phase_conv_transpose_strided_grads.defvjp(_phase_conv_transpose_fwd,
                                           _phase_conv_transpose_grads)


def _phase_conv_transpose(x, kernel):
  b, h, w, c = x.shape
  f = kernel.shape[-1]
  taps = kernel.reshape(2, 2, 2, 2, c, f)  # [u, a, v, b]: kernel[2u + a, 2v + b]
  rows = []
  for a in (0, 1):
    phases = [jax.lax.conv_general_dilated(
        x, taps[:, a, :, bb], (1, 1), ((1 - a, a), (1 - bb, bb)),
        dimension_numbers=("NHWC", "HWIO", "NHWC")) for bb in (0, 1)]
    rows.append(jnp.stack(phases, axis=3))  # [b, h, w, 2 (column phase), f]
  return jnp.stack(rows, axis=2).reshape(b, 2 * h, 2 * w, f)


@jax.custom_vjp
def dgrad_conv_transpose(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """`phase_conv_transpose`'s function written as what it is, the transpose of the strided
  convolution S_K (K = kernel flipped, in and out channels swapped): the pattern that
  XLA:GPU hands to cuDNN as a backward-data convolution (an input-dilated convolution
  whose kernel is a `reverse`), with no phase interleaving. Its gradients are S_K's
  forward and kernel-gradient convolutions (`_phase_conv_transpose_grads`).

  The flip is a gather, not `lax.rev`: the transpose rule reverses the kernel again, and
  the compiler may cancel two reverses, leaving an input-dilated convolution with a plain
  kernel, which cuDNN does not run (nn.ConvTranspose's form: 1.45x slower per step on
  an H200).
  """
  return _transpose_ofstrided_conv(x, kernel)


def _transpose_ofstrided_conv(x, kernel):
  b, h, w, _ = x.shape
  rev = jnp.arange(kernel.shape[0] - 1, -1, -1)
  flipped = jnp.take(jnp.take(kernel, rev, axis=0), rev, axis=1).swapaxes(2, 3)
  out = jax.ShapeDtypeStruct((b, 2 * h, 2 * w, kernel.shape[-1]), x.dtype)
  (y,) = jax.linear_transpose(lambda z: strided_conv(z, flipped), out)(x)
  return y


dgrad_conv_transpose.defvjp(lambda x, k: (_transpose_ofstrided_conv(x, k), (x, k)),
                            _phase_conv_transpose_grads)


def space_to_depth_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """4x4 stride-2 convolution with padding 1 of NHWC `x` (even sides), HWIO `kernel`.

  With the input padded by 1, block k of its 2x2 space-to-depth holds input rows 2k - 1
  and 2k, so output row o = sum_t x[2o - 1 + t] kernel[t] (t = 0..3) is a 2x2 stride-1
  VALID convolution of the blocks o, o + 1 with taps kernel[2u + r] (block u, row r in the
  block): the same function and multiply-adds as the strided convolution, but its
  gradients are dense convolutions too.
  """
  b, h, w, c = x.shape
  f = kernel.shape[-1]
  x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  hb, wb = h // 2 + 1, w // 2 + 1
  x = x.reshape(b, hb, 2, wb, 2, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, hb, wb, 4 * c)
  # kernel[2u + r, 2v + s] -> [u, v, (r, s, c), f], matching the blocks' channel order.
  k = kernel.reshape(2, 2, 2, 2, c, f).transpose(0, 2, 1, 3, 4, 5).reshape(2, 2, 4 * c, f)
  return jax.lax.conv_general_dilated(x, k, (1, 1), "VALID",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


def im2col_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """4x4 stride-2 convolution with padding 1 of NHWC `x` (even sides) as one matrix
  product, for small inputs, where the convolution library spends its time repacking
  kernels: the 16 strided views of the padded input, side by side ([pixels, 16 c]), times
  the kernel read as a [16 c, f] matrix, which is its own layout (no copy). Its gradients
  are matrix products too. Same function and multiply-adds as the strided convolution.
  """
  b, h, w, c = x.shape
  f = kernel.shape[-1]
  ho, wo = h // 2, w // 2
  x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  cols = jnp.stack([x[:, i:i + 2 * ho:2, j:j + 2 * wo:2, :]
                    for i in range(4) for j in range(4)], axis=3)  # [b, ho, wo, (i, j), c]
  y = cols.reshape(b * ho * wo, 16 * c) @ kernel.reshape(16 * c, f)
  return y.reshape(b, ho, wo, f)


def strided_conv(x, kernel):
  """The plain 4x4 stride-2 convolution with padding 1 (XLA's own, NHWC / HWIO)."""
  return jax.lax.conv_general_dilated(x, kernel, (2, 2), ((1, 1), (1, 1)),
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


@jax.custom_vjp
def strided_conv_phase_grad(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """4x4 stride-2 convolution with padding 1 (even sides) whose input gradient is computed
  as `phase_conv_transpose` rather than XLA's input-dilated convolution.

  With y[o] = sum_t x[2o - 1 + t] k[t], the gradient is dx[2m] = g[m - 1] k[3] + g[m] k[1]
  and dx[2m + 1] = g[m] k[2] + g[m + 1] k[0]: the 4x4/2 "SAME" transposed convolution of g
  by the spatially flipped kernel with input and output channels swapped. The kernel
  gradient is XLA's own.
  """
  return strided_conv(x, kernel)


def _strided_conv_fwd(x, kernel):
  return strided_conv(x, kernel), (x, kernel)


def _strided_conv_bwd(res, g):
  x, kernel = res
  dx = phase_conv_transpose(g, jnp.flip(kernel, (0, 1)).swapaxes(2, 3))
  _, kernel_vjp = jax.vjp(lambda k: strided_conv(x, k), kernel)
  return dx.astype(x.dtype), kernel_vjp(g)[0]


strided_conv_phase_grad.defvjp(_strided_conv_fwd, _strided_conv_bwd)
