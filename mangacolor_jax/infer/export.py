"""Exporting a trained generator so that it runs without JAX: a TF SavedModel or ONNX.

Both formats export one pure function, `colorize_fn(config, state)`:

  colour = f(lineart, hints)
    lineart  float32 [B, H, W, 1] in [0, 1]  (1 = paper, 0 = ink)
    hints    float32 [B, H, W, 4] in [0, 1]  (RGB of the painted colour; channel 3 is the
             mask: painted where >= 0.5, so an RGBA hint image / 255 can be passed as is,
             exactly as `nn.hints.hints_from_rgba` reads it; all zeros = no hints)
    colour   float32 [B, H, W, 3] in [0, 1]

B, H and W are symbolic in both exports (any batch, any size and aspect). The function
maps to the model's ranges as `infer.colorizer.Colorizer` does (line art and colour in
[-1, 1], the hint colour zero where unpainted), pads H and W up to a multiple of
2**config.model.gen.depth (line art with paper, hints with 0), runs the generator with the
run's EMA weights when it keeps them (`Networks.generate`) and crops back. The parameters
are baked in: constants of the StableHLO module in the SavedModel, initializers in ONNX.
What `Colorizer`'s callers do before it, `read_lineart`'s level stretch (`normalize`), is
not part of the export: give the model clean line art.

* SavedModel (`export_saved_model`): `jax2tf.convert` with native serialization (the
  StableHLO module inside one XlaCallModule op), lowered for the CPU and CUDA. Plain
  TensorFlow runs it:
      m = tf.saved_model.load(OUT)
      rgb = m.serve(lineart, hints)                       # the tf.function
      rgb = m.signatures["serving_default"](lineart=..., hints=...)["colour"]
  The whole computation is that one XlaCallModule op, which tf2onnx has no handler for
  (its maintainers do not convert TF's XLA ops; not tried here, tf2onnx is not
  installed), hence the separate ONNX path from the JAX function itself.
* ONNX (`export_onnx`): `jax2onnx.to_onnx` on the same JAX function (opset 23), run with
  onnxruntime: `sess.run(None, {"lineart": ..., "hints": ...})[0]`. The file records in
  its metadata that this module wrote it (`written_by_export`).

Symbolic sizes: the project's layers pick how to arrange a convolution's multiply-adds
from its input's size (`nn.conv_forms`: matrix products on small inputs, space-to-depth on
large ones), a comparison that a symbolic size cannot answer. All arrangements compute
the same function with the same parameters, so the export builds the generator with
`config.model.downsample = "conv"` and routes `Downsample`, `PhaseConvTranspose` and
`Upsample(kind="transpose")`'s ConvTranspose through their plain size-independent forms
(`_plain_layers`): the same function, for any size. Three more choices are jax2onnx
0.12.5's needs, and the same function too: the leaky ReLU's slope passed by keyword,
padding as a constant pad then a crop, and crops as `lax.slice` (jnp indexing with
symbolic bounds becomes a gather that it cannot lower).

tensorflow and jax2onnx are imported inside the functions that need them: importing this
module is cheap.
"""

import contextlib
import io
import logging
import os
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mangacolor_jax.data import staging
from mangacolor_jax.infer import colorizer
from mangacolor_jax.nn import conv_forms
from mangacolor_jax.nn import layers
from mangacolor_jax.nn import resampling
from mangacolor_jax.training import state as state_lib
from mangacolor_jax.utils import files

COMMAND = "export"
FORMATS = ("saved_model", "onnx")
INPUT_NAMES = ("lineart", "hints")
OUTPUT_NAME = "colour"
ONNX_OPSET = 23
# Platforms the SavedModel's StableHLO is lowered for (TF picks the one it runs on).
SAVED_MODEL_PLATFORMS = ("cpu", "cuda")
# layers.Activation's leaky ReLU slope (see `_interceptor`; were layers' to change, the
# tests' comparison with Colorizer would fail).
LEAKY_SLOPE = 0.2
# The metadata entry (key, value) of an ONNX file this module wrote.
_ONNX_MARK = ("written_by", f"mangacolor_jax {COMMAND}")


# ------------------------------------------------------------------ the exported function


def _plain_downsample(module: resampling.Downsample, x):
  """`Downsample`'s function as the plain strided convolution (any input size)."""
  kernel = module.get_variable("params", "kernel")
  bias = module.get_variable("params", "bias") if module.use_bias else None
  x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=module.dtype)
  y = conv_forms.strided_conv(x, kernel)
  return y if bias is None else y + bias


def _plain_phase_transpose(module: resampling.PhaseConvTranspose, x):
  """`PhaseConvTranspose`'s function in its size-independent form (any input size)."""
  kernel = module.get_variable("params", "kernel")
  bias = module.get_variable("params", "bias") if module.use_bias else None
  x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=module.dtype)
  # The four 2x2 phase convolutions (dense, no input dilation): jax2onnx 0.12.5 lowers
  # lax.conv_transpose with symbolic sizes to the wrong output size.
  y = conv_forms._phase_conv_transpose(x, kernel)  # pylint: disable=protected-access
  return y if bias is None else y + bias


def _is_pix2pix_transpose(module) -> bool:
  """Whether `module` is `Upsample(kind="transpose")`'s nn.ConvTranspose, the function
  that `PhaseConvTranspose` computes with the same parameters (jax2onnx 0.12.5's own
  ConvTranspose needs constant sizes)."""
  return (type(module) is nn.ConvTranspose and  # pylint: disable=unidiomatic-typecheck
          tuple(module.kernel_size) == (4, 4) and tuple(module.strides or ()) == (2, 2) and
          module.padding == "SAME" and not module.transpose_kernel and
          module.kernel_dilation in (None, 1, (1, 1)) and module.mask is None)


def _interceptor(next_fun, args, kwargs, context):
  module = context.module
  if (context.method_name == "__call__" and isinstance(module, layers.Activation) and
      module.kind == "leaky_relu"):
    # The same function as Activation's `nn.leaky_relu(x, 0.2)`, with the slope passed by
    # keyword: jax2onnx 0.12.5 binds a positional slope as a second operand and fails.
    return jax.nn.leaky_relu(*args, negative_slope=LEAKY_SLOPE)
  if context.method_name == "__call__" and isinstance(module, resampling.Downsample):
    return _plain_downsample(module, *args, **kwargs)
  if context.method_name == "__call__" and (
      isinstance(module, resampling.PhaseConvTranspose) or _is_pix2pix_transpose(module)):
    return _plain_phase_transpose(module, *args, **kwargs)
  return next_fun(*args, **kwargs)


def _plain_layers():
  """Runs the resampling layers in their size-independent forms and the leaky ReLU with
  its slope by keyword (see the module docstring)."""
  return nn.intercept_methods(_interceptor)


def export_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`config` with the generator's downsampling as the plain strided convolution (the same
  function and parameters as "auto" / "space_to_depth", without their size tests)."""
  config = ml_collections.ConfigDict(config.to_dict())
  config.model.downsample = "conv"
  return config


def _padded(n, multiple: int):
  """n rounded up to a multiple of `multiple` (works for symbolic n)."""
  return multiple * ((n + multiple - 1) // multiple)


def _pad_to(x, h, w, value: float, most: int):
  """x [B, h0, w0, C] padded at the bottom and right to [B, h, w, C] with `value`, where
  h - h0 and w - w0 are at most `most`: a constant pad by `most`, then a crop (jax2onnx
  lowers only constant pads, but slices to symbolic sizes)."""
  x = jnp.pad(x, ((0, 0), (0, most), (0, most), (0, 0)), constant_values=value)
  return _crop(x, h, w)


def _crop(x, h, w):
  """x[:, :h, :w] as a `lax.slice` (jnp indexing with symbolic bounds becomes a gather,
  which jax2onnx 0.12.5 cannot always lower)."""
  return jax.lax.slice(x, (0, 0, 0, 0), (x.shape[0], h, w, x.shape[3]))


def colorize_fn(config: ml_collections.ConfigDict, state: state_lib.GANState
                ) -> Callable[[jax.Array, jax.Array], jax.Array]:
  """The exported function (lineart [0, 1], hints [0, 1]) -> colour [0, 1], with the
  state's generator weights (EMA when kept) and batch statistics closed over."""
  nets = state_lib.create_networks(export_config(config))
  # Only what inference reads, as numpy arrays (baked in as constants): the weights
  # `Networks.generate` picks (the EMA when kept) and the batch statistics.
  weights = state.g_params if state.g_ema is None else state.g_ema
  gen_state = state_lib.GANState(
      step=None, g_params=jax.tree_util.tree_map(np.asarray, weights),
      g_batch_stats=jax.tree_util.tree_map(np.asarray, state.g_batch_stats),
      g_opt_state=None, d_params=None, d_batch_stats=None, d_opt_state=None, rng=None,
      g_ema=None)
  multiple = 2**config.model.gen.depth

  def colorize(lineart, hints):
    lineart = jnp.asarray(lineart, jnp.float32)
    hints = jnp.asarray(hints, jnp.float32)
    h, w = lineart.shape[1], lineart.shape[2]
    hp, wp = _padded(h, multiple), _padded(w, multiple)
    # As nn.hints.hints_from_rgba: colour in [-1, 1] where painted (mask >= 0.5), else 0.
    rgb = jax.lax.slice_in_dim(hints, 0, 3, axis=3)
    mask = (jax.lax.slice_in_dim(hints, 3, 4, axis=3) >= 0.5).astype(jnp.float32)
    hint_tensor = jnp.concatenate([(rgb * 2.0 - 1.0) * mask, mask], axis=-1)
    g_lineart = _pad_to(lineart * 2.0 - 1.0, hp, wp, 1.0, multiple - 1)  # paper
    g_hints = _pad_to(hint_tensor, hp, wp, 0.0, multiple - 1)
    with _plain_layers():
      out = nets.generate(gen_state, g_lineart, g_hints)
    out = jnp.clip(_crop(out, h, w), -1.0, 1.0)
    return (out + 1.0) * 0.5

  return colorize


def load(workdir: str, checkpoint: str | int = "best"):
  """(config, state, step) of `workdir`'s checkpoint, as `Colorizer` loads them."""
  return colorizer.load_config_and_state(workdir, checkpoint)


# ------------------------------------------------------------------ outputs


def written_by_export(path: str) -> bool:
  """Whether the ONNX file at `path` was written by this module (its metadata says so)."""
  try:
    # onnx is the optional `export` extra: imported only where an ONNX file is read.
    import onnx  # pylint: disable=g-import-not-at-top
    model = onnx.load(path, load_external_data=False)
  except Exception:  # pylint: disable=broad-except  # not ONNX, unreadable, no onnx
    return False
  return any((p.key, p.value) == _ONNX_MARK for p in model.metadata_props)


def check_output(output: str, fmt: str, flag: str = "--output") -> None:
  """Refuses an `output` that exists and was not written by an export of `fmt`.

  A SavedModel is a folder: it may replace a missing or empty folder, or an earlier
  export's holding only the files that export wrote (its marker lists them). ONNX is one
  file: it may replace only an earlier export's ONNX file.

  Raises:
    ValueError: for an unknown `fmt`.
    files.OutputError: naming `flag`, for an output that may not be replaced.
  """
  if fmt not in FORMATS:
    raise ValueError(f"--format={fmt} is not one of {FORMATS}")
  if not os.path.lexists(output):
    return
  if fmt == "onnx":
    if os.path.isdir(output):
      raise files.OutputError(f"{flag}={output} is a folder: give the path of the .onnx "
                              "file to write")
    if not written_by_export(output):
      raise files.OutputError(f"{flag}={output} exists and was not written by {COMMAND}: "
                              f"give a new path ({COMMAND} never overwrites a file it did "
                              "not write)")
    return
  staging.check_replaceable(None, output, COMMAND, f"was not written by {COMMAND}: give a "
                            "new or empty folder (a SavedModel is a folder)", flag)


# ------------------------------------------------------------------ the two formats


def saved_model_from_state(config, state, output: str,
                           platforms: Sequence[str] = SAVED_MODEL_PLATFORMS) -> None:
  """Writes `colorize_fn(config, state)` as a TF SavedModel folder at `output`
  (replacing an earlier export's whole; call `check_output` first)."""
  # TensorFlow and jax2tf only when a SavedModel is written: they take seconds to import.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from jax.experimental import jax2tf  # pylint: disable=g-import-not-at-top

  fn = jax2tf.convert(colorize_fn(config, state),
                      polymorphic_shapes=["(b, h, w, 1)", "(b, h, w, 4)"],
                      native_serialization_platforms=tuple(platforms),
                      with_gradient=False)
  specs = [tf.TensorSpec([None, None, None, 1], tf.float32, INPUT_NAMES[0]),
           tf.TensorSpec([None, None, None, 4], tf.float32, INPUT_NAMES[1])]
  module = tf.Module()
  module.serve = tf.function(fn, input_signature=specs, autograph=False)
  signature = tf.function(lambda lineart, hints: {OUTPUT_NAME: module.serve(lineart, hints)},
                          input_signature=specs, autograph=False)
  with staging.build_beside(output, COMMAND) as stage:  # swapped in whole, or not at all
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(stage, 0o777 & ~umask)  # a folder as mkdir makes it, not mkdtemp's 0700
    tf.saved_model.save(module, stage, signatures={"serving_default": signature})


def onnx_model_from_state(config, state, opset: int = ONNX_OPSET):
  """`colorize_fn(config, state)` as an `onnx.ModelProto` (B, H, W symbolic), marked as
  this module's (`written_by_export`)."""
  # jax2onnx is the optional `export` extra: only the ONNX format needs it.
  import jax2onnx  # pylint: disable=g-import-not-at-top
  # Its flax Conv plugin prints DEBUG lines, and onnx_ir warns of every shape constant.
  serde_log = logging.getLogger("onnx_ir.serde")
  level = serde_log.level
  serde_log.setLevel(logging.ERROR)
  try:
    with contextlib.redirect_stdout(io.StringIO()):
      model = jax2onnx.to_onnx(
          colorize_fn(config, state), inputs=[("B", "H", "W", 1), ("B", "H", "W", 4)],
          model_name="mangacolor_jax_generator", opset=opset,
          input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME])
  finally:
    serde_log.setLevel(level)
  mark = model.metadata_props.add()
  mark.key, mark.value = _ONNX_MARK
  return model


def export_saved_model(workdir: str, checkpoint: str | int, output: str,
                       platforms: Sequence[str] = SAVED_MODEL_PLATFORMS) -> int:
  """Exports `workdir`'s checkpoint as a SavedModel folder at `output`; returns its step.

  Raises:
    files.OutputError: for an `output` that this module did not write (`check_output`).
  """
  check_output(output, "saved_model")
  config, state, step = load(workdir, checkpoint)
  saved_model_from_state(config, state, output, platforms)
  return step


def export_onnx(workdir: str, checkpoint: str | int, output: str,
                opset: int = ONNX_OPSET) -> int:
  """Exports `workdir`'s checkpoint as one ONNX file at `output` (written atomically);
  returns its step.

  Raises:
    files.OutputError: for an `output` that this module did not write (`check_output`).
  """
  check_output(output, "onnx")
  config, state, step = load(workdir, checkpoint)
  write_onnx(onnx_model_from_state(config, state, opset), output)
  return step


def write_onnx(model, output: str) -> None:
  """Writes an ONNX model as one file, atomically (its folder made when missing)."""
  os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
  files.write_bytes(output, model.SerializeToString())


def export(workdir: str, checkpoint: str | int, fmt: str, output: str) -> int:
  """`export_saved_model` or `export_onnx`, by `fmt` (one of FORMATS)."""
  if fmt not in FORMATS:
    raise ValueError(f"--format={fmt} is not one of {FORMATS}")
  return (export_saved_model if fmt == "saved_model" else export_onnx)(
      workdir, checkpoint, output)
