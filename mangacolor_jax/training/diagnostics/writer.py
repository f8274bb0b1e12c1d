"""See inside training: TensorBoard diagnostics every `config.diagnostics_every_steps` steps.

The trainer calls, on a diagnostic step only (nothing here runs, compiles or is imported when
`config.diagnostics_every_steps` is 0):

  diagnostics = Diagnostics(nets, mesh, writer, probe_batch, workdir=workdir)
  before = diagnostics.snapshot(state)   # a copy: the step donates (deletes) `state`
  state, metrics = p_train_step(state, batch)
  diagnostics.write(step, before, state, batch)

and `write` adds to TensorBoard (the series' part 4):

* ``weights/{gen,disc}/LAYER/{kernel,bias,...}``: histograms of every parameter.
* ``preact/{gen,disc}/LAYER``: histograms of the input of every activation module (the
  pre-activation) on a fixed validation batch, plus the input of each network's output
  non-linearity (G's pre-tanh ``dec0_up``, D's ``logits``); ``dead_units/...``: the share of
  channels whose pre-activation is <= 0 at every position of every example (a dead ReLU;
  for leaky ReLU / PReLU, a unit that only ever passes the leak).
* ``grad_norm/{gen,disc}/LAYER``: the L2 norm of each layer's gradient in the step, exactly
  the gradient the step applied: recovered from Adam's first moment before and after the
  step, g = (m_after - b1 m_before) / (1 - b1), so no second backward pass is compiled or
  run (`step_gradients`; optimisers without Adam's `mu` fall back to `loss_gradients`).
* ``update_ratio/{gen,disc}/LAYER``: |dW| / |W| of the step, per layer, and its median per
  network (the series: about 1e-3 is healthy).
* ``filters/...``: the first layer's kernels of G and D as image grids (line-art input
  channel in gray, colour inputs in RGB); ``top_patches/NET/LAYER``: for a few feature maps
  (rows) of the layers in `config.diagnostics.patch_layers`, the 9 validation patches (the
  receptive field, found by back-propagating one unit to the input) that activate them most.
* ``inputs/...``: histograms of the step's training inputs and of G's outputs, and
  ``inputs/train_batch``: line art | target of the step's batch (batches should differ from
  one diagnostic step to the next).
* Train against validation on one chart: the run directories ``WORKDIR/train`` and
  ``WORKDIR/eval`` get the same tags (``l1``, ``d_loss``, ``d_real_acc``, ``d_fake_acc``),
  measured the same way (G at inference, D as in training) on the step's training batch and
  on the fixed validation batch; TensorBoard overlays a tag across runs, never two tags of one
  run, which is why the trainer's ``train_g_l1`` and ``eval_l1`` stay on separate charts.

Per-layer panels go to a summary writer of their own in the workdir (no log lines: the
logging writer would print every histogram); the log gets one summary line per diagnostic
step and an absl warning for vanishing or exploding gradients, gradients that shrink by more
than a factor from the output layer to the input layer, a median update ratio outside
[update_ratio_min, update_ratio_max], dead layers, and non-finite values. Bounds come from
`config.diagnostics` (set in configs/default.py).

The doctor (`debug/`) reuses the pure functions below: `loss_gradients`, `capture`,
`layer_norms`, `dead_fraction`, `call_order`, `gradient_warnings`.
"""

import math
import os
from typing import Any

from absl import logging
from clu import metric_writers
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from mangacolor_jax.nn import hints as hints_lib
from mangacolor_jax.nn import layers as layers_lib
from mangacolor_jax.nn import losses
from mangacolor_jax.nn import models
from mangacolor_jax.runtime import compile as compile_lib
from mangacolor_jax.runtime import mesh as mesh_lib
from mangacolor_jax.runtime import seeds
from mangacolor_jax.training import objective
from mangacolor_jax.utils import images

NETS = ("gen", "disc")
# The module whose output feeds each network's output non-linearity (tanh / the logits).
OUTPUT_LAYERS = {"gen": "dec0_up", "disc": "logits"}
# Values kept per activation histogram (a strided subsample of the validation batch's).
HISTOGRAM_VALUES = 1 << 15
TOP_K = 9
_TILE = 48  # about the pixels of one filter / patch tile in the image grids


def options(config) -> dict[str, Any]:
  """The warning bounds and patch settings of `config.diagnostics`, as a dict."""
  return config.diagnostics.to_dict()


# ------------------------------------------------------------------- pure, jit-able parts


def layer_of(path) -> str:
  """"enc1_conv" for the parameter path ('enc1_conv', 'kernel'): the owning module."""
  return jax.tree_util.keystr(tuple(path[:-1]), simple=True, separator="/")


def layer_sq_sums(tree) -> dict[str, jax.Array]:
  """Sum of squares of the parameters of each layer (module) of a parameter tree."""
  out = {}
  for path, x in jax.tree_util.tree_leaves_with_path(tree):
    v = jnp.sum(jnp.square(x.astype(jnp.float32)))
    name = layer_of(path)
    out[name] = out[name] + v if name in out else v
  return out


def layer_norms(tree) -> dict[str, jax.Array]:
  """L2 norm of each layer's parameters (or gradients, or updates)."""
  return {k: jnp.sqrt(v) for k, v in layer_sq_sums(tree).items()}


def layer_sizes(tree) -> dict[str, int]:
  out = {}
  for path, x in jax.tree_util.tree_leaves_with_path(tree):
    out[layer_of(path)] = out.get(layer_of(path), 0) + int(np.prod(x.shape))
  return out


def dead_fraction(pre: jax.Array) -> jax.Array:
  """Share of channels whose pre-activation is <= 0 at every position of every example."""
  return jnp.mean(jnp.all(pre <= 0, axis=tuple(range(pre.ndim - 1))).astype(jnp.float32))


def loss_gradients(nets, state, batch) -> tuple[Any, Any]:
  """(G gradients, D gradients) of the training step's objective at `state` on `batch`.

  The same keys, hints, dropout, losses and weights as `step.train_step`. One difference:
  the step takes G's adversarial term against D after that step's D update; here D is the
  one of `state` (so D's gradients are exactly the step's, and G's are when there is no
  GAN).
  """
  lc = nets.config.loss
  keys = seeds.step_keys(state.rng, state.step)
  lineart, target = batch["lineart"], batch["target"]
  g_in = nets.generator_input(lineart, objective.step_hints(nets, keys, target, lineart))

  def g_forward(g_params):
    return nets.generate_for_training(g_params, state.g_batch_stats, g_in, keys.dropout)[0]

  d_grads = jax.tree_util.tree_map(jnp.zeros_like, state.d_params)
  if nets.use_gan:
    fake = jax.lax.stop_gradient(g_forward(state.g_params))
    d_grads = jax.grad(lambda p: objective.discriminator_loss(
        nets, p, state.d_batch_stats, lineart, fake, target, keys.penalty)[0])(state.d_params)

  def g_loss_fn(g_params):
    total, _ = objective.generator_loss(nets, g_forward(g_params), target, lineart,
                                        state.d_params, state.d_batch_stats)
    if lc.l2_weight > 0:
      total = total + lc.l2_weight * losses.l2_penalty(g_params)
    return total

  return jax.grad(g_loss_fn)(state.g_params), d_grads


def adam_gradient(opt_before, opt_after, b1: float):
  """The gradient an Adam step applied, from its first moment before and after the step:
  m_t = b1 m_(t-1) + (1 - b1) g_t (after clipping, when config.optim.grad_clip is set: the
  gradient Adam saw). Exact up to float32 rounding (the cancellation costs about
  log10(|m| / |g|) digits). None when the state holds no (single) Adam `mu`; frozen
  parameters (`optax.multi_transform`) have no moment and are left out."""
  try:
    mu0 = optax.tree_utils.tree_get(opt_before, "mu")
    mu1 = optax.tree_utils.tree_get(opt_after, "mu")
  except KeyError:  # several Adam states: ambiguous
    return None
  if mu0 is None or mu1 is None or not 0.0 <= b1 < 1.0:
    return None
  return jax.tree_util.tree_map(lambda a, b: (b - b1 * a) / (1.0 - b1), mu0, mu1)


def step_gradients(nets, before, after, batch) -> tuple[Any, Any]:
  """(G, D) gradients of the step from `before` to `after` on `batch`: from Adam's moments
  (`adam_gradient`), else recomputed by `loss_gradients`."""
  b1 = float(nets.config.optim.b1)
  g = adam_gradient(before.g_opt_state, after.g_opt_state, b1)
  d = adam_gradient(before.d_opt_state, after.d_opt_state, b1)
  if g is None or d is None:
    g_loss, d_loss = loss_gradients(nets, before, batch)
    g = g_loss if g is None else g
    d = d_loss if d is None else d
  return g, d


def capture(nets, state, lineart, target, train: bool = False
            ) -> tuple[dict[str, jax.Array], jax.Array]:
  """Pre-activations of every activation module, and G's output, on one batch.

  G runs as at inference (running statistics, no dropout, no hints), or with `train` as in
  training (batch statistics, dropout with a fixed key); D as in training (batch statistics)
  on the real pair. No model change is needed: a flax method interceptor records the input
  of each `layers.Activation` and the output of `OUTPUT_LAYERS`.

  Returns:
    ({"gen/enc1_act": [B, h, w, C], ..., "disc/logits": ...}, G's output [B, H, W, 3]).
  """
  records = {}

  def recorder(net):
    def intercept(next_fun, args, kwargs, context):
      out = next_fun(*args, **kwargs)
      if context.method_name == "__call__":
        name = "/".join(context.module.path)
        if isinstance(context.module, layers_lib.Activation):
          records[f"{net}/{name}"] = args[0]
        elif name == OUTPUT_LAYERS[net]:
          records[f"{net}/{name}"] = out
      return out
    return intercept

  with nn.intercept_methods(recorder("gen")):
    if train:
      fake, _ = nets.generate_for_training(
          state.g_params, state.g_batch_stats,
          nets.generator_input(lineart, hints_lib.no_hints(lineart)), jax.random.key(0))
    else:
      fake = nets.generate(state, lineart, hints_lib.no_hints(lineart))
  if nets.use_gan:
    with nn.intercept_methods(recorder("disc")):
      nets.discriminate(state.d_params, state.d_batch_stats, lineart, target)
  return records, fake


def curve_terms(nets, state, batch) -> dict[str, jax.Array]:
  """The train-against-validation scalars, computed alike on any batch: G's L1 at
  inference and, with a GAN, D's loss and accuracies (D as in training)."""
  lineart, target = batch["lineart"], batch["target"]
  fake = nets.generate(state, lineart, hints_lib.no_hints(lineart))
  out = {"l1": losses.l1_loss(fake, target)}
  if nets.use_gan:
    def d(image):
      return nets.discriminate(state.d_params, state.d_batch_stats, lineart, image)[0]
    real_logits, fake_logits = d(target), d(fake)
    kind = nets.config.loss.gan
    out["d_loss"] = losses.d_loss(real_logits, fake_logits, kind)
    out["d_real_acc"], out["d_fake_acc"] = losses.discriminator_accuracy(
        real_logits, fake_logits, kind)
  return out


def _subsample(x: jax.Array, n: int) -> jax.Array:
  """About n values of x, strided with a stride coprime to the channel count (so every
  channel is sampled, not one channel in stride)."""
  flat = x.reshape(-1)
  stride = max(1, flat.size // n)
  while math.gcd(stride, x.shape[-1]) != 1:
    stride += 1
  return flat[::stride][:n]


def call_order(module, *args, **kwargs) -> list[str]:
  """Module paths ("enc0_conv", "dec2_up/conv", ...) in the order a forward pass calls
  them: input side first. Traced abstractly (no compute)."""
  order = []

  def intercept(next_fun, a, k, context):
    name = "/".join(context.module.path)
    if name and name not in order:
      order.append(name)
    return next_fun(*a, **k)

  with nn.intercept_methods(intercept):
    jax.eval_shape(lambda: module.init(jax.random.key(0), *args, **kwargs))
  return order


# ------------------------------------------------------------------------ host-side parts


def gradient_warnings(net: str, norms: dict[str, float], sizes: dict[str, int],
                      order: list[str], opts: dict[str, Any]) -> list[str]:
  """Warnings for vanishing / exploding per-layer gradient norms, and for gradients whose
  RMS shrinks by more than `grad_shrink_factor` from the output layer to the input layer."""
  out = []
  for layer, g in norms.items():
    if not math.isfinite(g):
      out.append(f"non-finite gradient in {net}/{layer}")
    elif g < opts["grad_norm_min"]:
      out.append(f"vanishing gradient in {net}/{layer}: norm {g:.3g} < "
                 f"{opts['grad_norm_min']:g} (config.diagnostics.grad_norm_min)")
    elif g > opts["grad_norm_max"]:
      out.append(f"exploding gradient in {net}/{layer}: norm {g:.3g} > "
                 f"{opts['grad_norm_max']:g} (config.diagnostics.grad_norm_max)")
  ordered = [name for name in order if name in norms]
  if len(ordered) >= 2:
    first, last = ordered[0], ordered[-1]
    rms_in = norms[first] / math.sqrt(sizes[first])
    rms_out = norms[last] / math.sqrt(sizes[last])
    if math.isfinite(rms_in) and math.isfinite(rms_out) and rms_out > 0 and (
        rms_in == 0 or rms_out / rms_in > opts["grad_shrink_factor"]):
      ratio = rms_out / rms_in if rms_in > 0 else math.inf
      out.append(f"gradients of {net} shrink {ratio:.3g}x from its output layer {last} "
                 f"(RMS {rms_out:.3g}) to its input layer {first} (RMS {rms_in:.3g}): more "
                 f"than config.diagnostics.grad_shrink_factor={opts['grad_shrink_factor']:g}")
  return out


def update_ratio_warning(net: str, ratios: dict[str, float], opts: dict[str, Any]
                         ) -> str | None:
  """A warning when the median |dW| / |W| over the layers leaves the configured range."""
  values = [r for r in ratios.values() if math.isfinite(r)]
  if not values:
    return None
  median = float(np.median(values))
  lo, hi = opts["update_ratio_min"], opts["update_ratio_max"]
  if median < lo:
    return (f"median update ratio |dW|/|W| of {net} is {median:.3g} < {lo:g}: the weights "
            "barely move (learning rate too low, or vanishing gradients)")
  if median > hi:
    return (f"median update ratio |dW|/|W| of {net} is {median:.3g} > {hi:g}: the weights "
            "move too fast (learning rate too high)")
  return None


def _tile_grid(tiles: np.ndarray, columns: int, pad: int = 2) -> np.ndarray:
  """[N, h, w, 3] float in [0, 1] -> one uint8 grid image, `columns` tiles a row."""
  n, h, w, _ = tiles.shape
  rows = -(-n // columns)
  grid = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, 3), 0.5, np.float32)
  for i in range(n):
    r, c = divmod(i, columns)
    grid[pad + r * (h + pad):pad + r * (h + pad) + h,
         pad + c * (w + pad):pad + c * (w + pad) + w] = tiles[i]
  return np.rint(np.clip(grid, 0, 1) * 255).astype(np.uint8)


def _upscale(tiles: np.ndarray, size: int) -> np.ndarray:
  factor = max(1, size // max(tiles.shape[1], tiles.shape[2]))
  return tiles.repeat(factor, axis=1).repeat(factor, axis=2)


def filter_grids(kernel: np.ndarray, prefix: str) -> dict[str, np.ndarray]:
  """First-layer kernels [kh, kw, c_in, c_out] as image grids, one per input group.

  Input channel 0 is the line art (gray); the next three, when present, a colour image
  (RGB: D's image, G's hint colours); any further one (G's hint mask) gray. Each filter is
  scaled by its own largest |weight|, with 0 at mid-gray.
  """
  kernel = np.asarray(kernel, np.float32)
  c_in = kernel.shape[2]
  groups = [("lineart", [0])]
  if c_in >= 4:
    groups.append(("rgb", [1, 2, 3]))
  groups += [(f"channel{c}", [c]) for c in range(4 if c_in >= 4 else 1, c_in)]
  out = {}
  for name, channels in groups:
    tiles = kernel[:, :, channels, :].transpose(3, 0, 1, 2)  # [c_out, kh, kw, c]
    scale = np.max(np.abs(tiles), axis=(1, 2, 3), keepdims=True)
    tiles = 0.5 + 0.5 * tiles / np.where(scale > 0, scale, 1.0)
    if tiles.shape[-1] == 1:
      tiles = np.repeat(tiles, 3, axis=-1)
    out[f"{prefix}_{name}"] = _tile_grid(_upscale(tiles, _TILE), columns=8)
  return out


def patch_grid(source: np.ndarray, positions: np.ndarray, layer_hw: tuple[int, int],
               field: tuple[int, ...]) -> np.ndarray:
  """Rows of the input patches that most activate a feature map.

  Args:
    source: the images the network saw, [B, H, W, C] in [-1, 1] (C = 1 or 3).
    positions: [F, K] flat indices into the layer's [B, h, w] positions, best first.
    layer_hw: the layer's (h, w).
    field: (stride_y, stride_x, offset_y, offset_x, size_y, size_x) of the receptive field:
      unit (y, x) sees input rows offset_y + y * stride_y ... + size_y - 1.

  Returns:
    A uint8 grid: one row per feature map, K patches each (white beyond the image).
  """
  sy, sx, oy, ox, hy, hx = field
  h, w = layer_hw
  if source.shape[-1] == 1:
    source = np.repeat(source, 3, axis=-1)
  pad = max(hy, hx) + max(abs(oy), abs(ox))
  padded = np.pad(source, ((0, 0), (pad, pad), (pad, pad), (0, 0)), constant_values=1.0)
  tiles = []
  for row in positions:
    for flat in row:
      b, rem = divmod(int(flat), h * w)
      y, x = divmod(rem, w)
      top, left = pad + oy + y * sy, pad + ox + x * sx
      tiles.append(padded[b, top:top + hy, left:left + hx])
  tiles = (np.stack(tiles) + 1.0) * 0.5
  return _tile_grid(_upscale(tiles, _TILE), columns=positions.shape[1])


def sample_rows(lineart: np.ndarray, target: np.ndarray, num: int) -> np.ndarray:
  rows = [np.concatenate([images.to_uint8(np.repeat(lineart[i], 3, axis=-1)),
                          images.to_uint8(target[i])], axis=1)
          for i in range(min(num, lineart.shape[0]))]
  return np.concatenate(rows, axis=0)


# ---------------------------------------------------------------------------- the writer


class Diagnostics:
  """Writes the diagnostics of a training step (see the module docstring)."""

  def __init__(self, nets, mesh, writer, probe_batch: dict[str, jax.Array], *,
               workdir: str | None = None):
    self.nets = nets
    self.mesh = mesh
    self.writer = writer
    self.probe = probe_batch
    self.opts = options(nets.config)
    self.freeze = tuple(nets.config.model.freeze)
    self.is_chief = jax.process_index() == 0
    repl = mesh_lib.replicated(mesh)
    data = mesh_lib.data_sharded(mesh)

    # Per-layer panels: a non-logging summary writer in the workdir (else `writer`);
    # train/eval pairs: two run directories with the same tags.
    self.panel_writer, self.curve_writers = writer, None
    if workdir is not None and self.is_chief:
      self.panel_writer = metric_writers.SummaryWriter(workdir)
      self.curve_writers = {split: metric_writers.SummaryWriter(os.path.join(workdir, split))
                            for split in ("train", "eval")}

    config = nets.config
    h, w = nets.image_hw
    lineart = jnp.zeros((1, h, w, models.input_channels(config)), jnp.float32)
    self.order = {"gen": call_order(nets.gen, lineart, train=False)}
    if nets.use_gan:
      self.order["disc"] = call_order(nets.disc, lineart[..., :1], jnp.zeros((1, h, w, 3)),
                                      train=False)
    abstract = jax.eval_shape(nets.create_state, jax.random.key(0))
    self.sizes = {"gen": layer_sizes(abstract.g_params), "disc": layer_sizes(abstract.d_params)}
    self.first_kernel = {}
    for net, params in (("gen", abstract.g_params), ("disc", abstract.d_params)):
      kernels = {layer_of(p) for p, x in jax.tree_util.tree_leaves_with_path(params)
                 if getattr(p[-1], "key", None) == "kernel" and len(x.shape) == 4}
      first = [name for name in self.order.get(net, []) if name in kernels]
      if first:
        self.first_kernel[net] = first[0]

    records, _ = jax.eval_shape(lambda s, b: capture(nets, s, b["lineart"], b["target"]),
                                abstract, probe_batch)
    self.activation_shapes = {k: v.shape for k, v in records.items()}
    self.patch_layers = []
    for name in self.opts["patch_layers"]:
      if name in records and name.split("/")[-1] not in OUTPUT_LAYERS.values():
        self.patch_layers.append(name)
      else:
        logging.info("diagnostics: no activation layer %r for top patches; have %s", name,
                     sorted(records))
    self.fields = None  # receptive fields of patch_layers, found at the first write
    # A replicated host copy of the probe (every process can read it, multi-host too).
    self.probe_host = jax.device_get(jax.jit(lambda p: p, out_shardings=repl)(probe_batch))

    self._p_snapshot = jax.jit(lambda s: jax.tree_util.tree_map(jnp.copy, s),
                               out_shardings=repl)
    self._p_diagnose = compile_lib.jit(self._diagnose, nets.config,
                                   in_shardings=(repl, repl, data, data), out_shardings=repl)

  # -------------------------------------------------------------------- device side

  def _frozen(self, layer: str) -> bool:
    """True for a layer under config.model.freeze (left out of the update-ratio median)."""
    return any(layer == f or layer.startswith(f + "/") or f.startswith(layer + "/")
               for f in self.freeze)

  def snapshot(self, state):
    """A copy of the state before the step (optimiser moments included: the gradients are
    recovered from them), so that donating `state` to the step leaves it intact."""
    return self._p_snapshot(state)

  def _diagnose(self, before, after, batch, probe) -> dict[str, Any]:
    nets = self.nets
    out = {}
    g_grads, d_grads = step_gradients(nets, before, after, batch)
    out["grad_norm"] = {"gen": layer_norms(g_grads), "disc": layer_norms(d_grads)}
    delta = lambda a, b: jax.tree_util.tree_map(lambda x, y: x - y, a, b)
    out["weight_norm"] = {"gen": layer_norms(before.g_params),
                          "disc": layer_norms(before.d_params)}
    out["update_norm"] = {"gen": layer_norms(delta(after.g_params, before.g_params)),
                          "disc": layer_norms(delta(after.d_params, before.d_params))}
    records, fake = capture(nets, after, probe["lineart"], probe["target"])
    acts = {}
    for name, pre in records.items():
      pre = pre.astype(jnp.float32)
      acts[name] = {"hist": _subsample(pre, HISTOGRAM_VALUES), "mean": jnp.mean(pre),
                    "std": jnp.std(pre), "finite": jnp.all(jnp.isfinite(pre))}
      if name.split("/")[-1] not in OUTPUT_LAYERS.values():
        acts[name]["dead"] = dead_fraction(pre)
    out["act"] = acts
    n = int(self.opts["patch_features"])
    out["patches"] = {}
    for name in self.patch_layers:
      pre = records[name].astype(jnp.float32)
      b, h, w, c = pre.shape
      flat = pre[..., :min(n, c)].reshape(b * h * w, -1).T
      out["patches"][name] = jax.lax.top_k(flat, min(TOP_K, b * h * w))[1]
    out["output"] = _subsample(fake, HISTOGRAM_VALUES)
    out["batch_rows"] = {k: batch[k][:4] for k in ("lineart", "target")}  # for the grid
    out["inputs"] = {"lineart": _subsample(batch["lineart"], HISTOGRAM_VALUES),
                     "target": _subsample(batch["target"], HISTOGRAM_VALUES)}
    # Both batches through one vmapped trace (one copy to compile instead of two); vmap
    # keeps D's batch statistics per batch, as two calls would.
    pair = {k: jnp.stack([batch[k], probe[k]]) for k in ("lineart", "target")}
    curves = jax.vmap(lambda b: curve_terms(nets, after, b))(pair)
    out["curves"] = {split: {k: v[i] for k, v in curves.items()}
                     for i, split in enumerate(("train", "eval"))}
    return out

  def _receptive_fields(self, state) -> dict[str, tuple[int, ...]]:
    """Receptive field of each patch layer, from the input support of one unit's gradient
    (G at inference, D with running statistics: both local maps then)."""
    nets = self.nets
    h, w = nets.image_hw
    fields = {}
    probe = self.probe_host
    for name in self.patch_layers:
      net, layer = name.split("/", 1)
      _, lh, lw, _ = self.activation_shapes[name]
      cy, cx = lh // 2, lw // 2

      def unit(x, state, net=net, layer=layer, cy=cy, cx=cx):
        records = {}

        def intercept(next_fun, args, kwargs, context):
          if context.method_name == "__call__" and "/".join(context.module.path) == layer:
            records["x"] = args[0]
          return next_fun(*args, **kwargs)

        with nn.intercept_methods(intercept):
          if net == "gen":
            g_in = jnp.concatenate([x, jnp.zeros(x.shape[:-1] + (
                models.input_channels(nets.config) - 1,))], axis=-1)
            nets.gen.apply({"params": state.g_params, "batch_stats": state.g_batch_stats},
                            g_in, train=False)
          else:
            nets.disc.apply({"params": state.d_params, "batch_stats": state.d_batch_stats},
                             jnp.asarray(probe["lineart"][:1]), x, train=False)
        return jnp.sum(records["x"][0, cy, cx, :])

      x = jnp.asarray(probe["lineart"][:1] if net == "gen" else probe["target"][:1])
      grad = np.asarray(jax.jit(jax.grad(unit))(x, state))[0]
      ys, xs = np.nonzero(np.any(grad != 0, axis=-1))
      if ys.size == 0:
        logging.info("diagnostics: %s has no receptive field (zero gradient): no patches",
                     name)
        continue
      sy, sx = h // lh, w // lw
      fields[name] = (sy, sx, int(ys.min()) - cy * sy, int(xs.min()) - cx * sx,
                      int(ys.max() - ys.min()) + 1, int(xs.max() - xs.min()) + 1)
    return fields

  # ---------------------------------------------------------------------- host side

  def write(self, step: int, before, state, batch) -> dict[str, Any]:
    """Computes and writes the diagnostics of the step that took `before` to `state` on
    `batch`; logs warnings. Returns the scalars written (for tests and tools)."""
    out = jax.device_get(self._p_diagnose(before, state, batch, self.probe))
    if self.fields is None:
      self.fields = self._receptive_fields(state)
    if not self.is_chief:
      return {}
    opts = self.opts
    scalars, histograms, images, warnings = {}, {}, {}, []

    params = jax.device_get({"gen": state.g_params, "disc": state.d_params})
    for net in NETS:
      for path, x in jax.tree_util.tree_leaves_with_path(params[net]):
        histograms[f"weights/{net}/{jax.tree_util.keystr(path, simple=True, separator='/')}"] \
            = np.asarray(x)
      grads = {k: float(v) for k, v in out["grad_norm"][net].items()}
      ratios = {}
      for layer, w_norm in out["weight_norm"][net].items():
        if float(w_norm) > 0 and not self._frozen(f"{net}/{layer}"):
          ratios[layer] = float(out["update_norm"][net][layer]) / float(w_norm)
      for layer, g in grads.items():
        scalars[f"grad_norm/{net}/{layer}"] = g
      for layer, r in ratios.items():
        scalars[f"update_ratio/{net}/{layer}"] = r
      if grads:
        warnings += gradient_warnings(net, grads, self.sizes[net], self.order.get(net, []),
                                      opts)
      if ratios:
        scalars[f"update_ratio_median/{net}"] = float(np.median(list(ratios.values())))
        warning = update_ratio_warning(net, ratios, opts)
        if warning:
          warnings.append(warning)

    for name, act in out["act"].items():
      histograms[f"preact/{name}"] = np.asarray(act["hist"])
      scalars[f"preact_std/{name}"] = float(act["std"])
      if not bool(act["finite"]):
        warnings.append(f"non-finite pre-activations in {name}")
      if "dead" in act:
        dead = float(act["dead"])
        scalars[f"dead_units/{name}"] = dead
        if dead > opts["dead_max"]:
          warnings.append(f"{dead:.0%} of the units of {name} are dead (pre-activation <= 0 "
                          "for every validation example): more than "
                          f"config.diagnostics.dead_max={opts['dead_max']:g}")
    histograms["inputs/lineart"] = np.asarray(out["inputs"]["lineart"])
    histograms["inputs/target"] = np.asarray(out["inputs"]["target"])
    histograms["inputs/generator_output"] = np.asarray(out["output"])

    for net, layer in self.first_kernel.items():
      kernel = params[net]
      for key in layer.split("/") + ["kernel"]:
        kernel = kernel[key]
      for tag, grid in filter_grids(kernel, f"filters/{net}_{layer.replace('/', '_')}"
                                    ).items():
        images[tag] = grid
    probe = self.probe_host
    for name, positions in out["patches"].items():
      if name not in self.fields:
        continue
      source = probe["lineart"] if name.startswith("gen/") else probe["target"]
      _, lh, lw, _ = self.activation_shapes[name]
      images[f"top_patches/{name}"] = patch_grid(np.asarray(source), np.asarray(positions),
                                                 (lh, lw), self.fields[name])
    images["inputs/train_batch"] = sample_rows(out["batch_rows"]["lineart"],
                                               out["batch_rows"]["target"], 4)

    self.panel_writer.write_scalars(step, scalars)
    self.panel_writer.write_histograms(step, histograms)
    self.panel_writer.write_images(step, {k: v[None] for k, v in images.items()})
    self.panel_writer.flush()
    curves = {split: {k: float(v) for k, v in values.items()}
              for split, values in out["curves"].items()}
    if self.curve_writers is not None:
      for split, values in curves.items():
        self.curve_writers[split].write_scalars(step, values)
        self.curve_writers[split].flush()
    else:
      self.writer.write_scalars(step, {f"diag_{split}_{k}": v for split, values in
                                       curves.items() for k, v in values.items()})

    summary = {f"update_ratio_median/{net}": scalars.get(f"update_ratio_median/{net}")
               for net in NETS if f"update_ratio_median/{net}" in scalars}
    dead = [v for k, v in scalars.items() if k.startswith("dead_units/")]
    logging.info("diagnostics at step %d: median update ratio %s, max dead-unit share %.3f, "
                 "train l1 %.4f, validation l1 %.4f (%d warnings)", step,
                 {k.split("/")[-1]: f"{v:.2e}" for k, v in summary.items()},
                 max(dead, default=0.0), curves["train"]["l1"], curves["eval"]["l1"],
                 len(warnings))
    for warning in warnings:
      logging.warning("diagnostics at step %d: %s", step, warning)
    scalars.update({f"{split}/{k}": v for split, values in curves.items()
                    for k, v in values.items()})
    scalars["warnings"] = warnings
    return scalars
