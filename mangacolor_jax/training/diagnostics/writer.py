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

The measurements are in `stats` (pure functions the doctor reuses too) and the image grids
in `panels`; this module holds the writer.
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

from mangacolor_jax.nn import models
from mangacolor_jax.runtime import compile as compile_lib
from mangacolor_jax.runtime import mesh as mesh_lib
from mangacolor_jax.training.diagnostics import panels
from mangacolor_jax.training.diagnostics import stats

NETS = ("gen", "disc")
# Values kept per activation histogram (a strided subsample of the validation batch's).
HISTOGRAM_VALUES = 1 << 15
TOP_K = 9


def options(config) -> dict[str, Any]:
  """The warning bounds and patch settings of `config.diagnostics`, as a dict."""
  return config.diagnostics.to_dict()


def _subsample(x: jax.Array, n: int) -> jax.Array:
  """About n values of x, strided with a stride coprime to the channel count (so every
  channel is sampled, not one channel in stride)."""
  flat = x.reshape(-1)
  stride = max(1, flat.size // n)
  while math.gcd(stride, x.shape[-1]) != 1:
    stride += 1
  return flat[::stride][:n]


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
    self.order = {"gen": stats.call_order(nets.gen, lineart, train=False)}
    if nets.use_gan:
      self.order["disc"] = stats.call_order(nets.disc, lineart[..., :1],
                                            jnp.zeros((1, h, w, 3)), train=False)
    abstract = jax.eval_shape(nets.create_state, jax.random.key(0))
    self.sizes = {"gen": stats.layer_sizes(abstract.g_params),
                  "disc": stats.layer_sizes(abstract.d_params)}
    self.first_kernel = {}
    for net, params in (("gen", abstract.g_params), ("disc", abstract.d_params)):
      kernels = {stats.layer_of(p) for p, x in jax.tree_util.tree_leaves_with_path(params)
                 if getattr(p[-1], "key", None) == "kernel" and len(x.shape) == 4}
      first = [name for name in self.order.get(net, []) if name in kernels]
      if first:
        self.first_kernel[net] = first[0]

    records, _ = jax.eval_shape(lambda s, b: stats.capture(nets, s, b["lineart"], b["target"]),
                                abstract, probe_batch)
    self.activation_shapes = {k: v.shape for k, v in records.items()}
    self.patch_layers = []
    for name in self.opts["patch_layers"]:
      if name in records and name.split("/")[-1] not in stats.OUTPUT_LAYERS.values():
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
    g_grads, d_grads = stats.step_gradients(nets, before, after, batch)
    out["grad_norm"] = {"gen": stats.layer_norms(g_grads), "disc": stats.layer_norms(d_grads)}
    delta = lambda a, b: jax.tree_util.tree_map(lambda x, y: x - y, a, b)
    out["weight_norm"] = {"gen": stats.layer_norms(before.g_params),
                          "disc": stats.layer_norms(before.d_params)}
    out["update_norm"] = {"gen": stats.layer_norms(delta(after.g_params, before.g_params)),
                          "disc": stats.layer_norms(delta(after.d_params, before.d_params))}
    records, fake = stats.capture(nets, after, probe["lineart"], probe["target"])
    acts = {}
    for name, pre in records.items():
      pre = pre.astype(jnp.float32)
      acts[name] = {"hist": _subsample(pre, HISTOGRAM_VALUES), "mean": jnp.mean(pre),
                    "std": jnp.std(pre), "finite": jnp.all(jnp.isfinite(pre))}
      if name.split("/")[-1] not in stats.OUTPUT_LAYERS.values():
        acts[name]["dead"] = stats.dead_fraction(pre)
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
    curves = jax.vmap(lambda b: stats.curve_terms(nets, after, b))(pair)
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
    params = jax.device_get({"gen": state.g_params, "disc": state.d_params})
    scalars, histograms, warnings = self._layer_panels(out, params)
    act_scalars, act_histograms, act_warnings = self._activation_panels(out)
    scalars.update(act_scalars)
    histograms.update(act_histograms)
    warnings += act_warnings
    images = self._image_panels(out, params)
    self.panel_writer.write_scalars(step, scalars)
    self.panel_writer.write_histograms(step, histograms)
    self.panel_writer.write_images(step, {k: v[None] for k, v in images.items()})
    self.panel_writer.flush()
    curves = self._write_curves(step, out)
    _log_summary(step, scalars, curves, warnings)
    scalars.update({f"{split}/{k}": v for split, values in curves.items()
                    for k, v in values.items()})
    scalars["warnings"] = warnings
    return scalars

  def _layer_panels(self, out, params) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """(scalars, histograms, warnings) per layer: weights, gradient norms, update ratios."""
    scalars, histograms, warnings = {}, {}, []
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
        warnings += stats.gradient_warnings(net, grads, self.sizes[net],
                                            self.order.get(net, []), self.opts)
      if ratios:
        scalars[f"update_ratio_median/{net}"] = float(np.median(list(ratios.values())))
        warning = stats.update_ratio_warning(net, ratios, self.opts)
        if warning:
          warnings.append(warning)
    return scalars, histograms, warnings

  def _activation_panels(self, out) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """(scalars, histograms, warnings) of the pre-activations, dead units and inputs."""
    opts = self.opts
    scalars, histograms, warnings = {}, {}, []
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
    return scalars, histograms, warnings

  def _image_panels(self, out, params) -> dict[str, np.ndarray]:
    """The first layers' filters, the top patches and the step's batch, as images."""
    images = {}
    for net, layer in self.first_kernel.items():
      kernel = params[net]
      for key in layer.split("/") + ["kernel"]:
        kernel = kernel[key]
      for tag, grid in panels.filter_grids(
          kernel, f"filters/{net}_{layer.replace('/', '_')}").items():
        images[tag] = grid
    probe = self.probe_host
    for name, positions in out["patches"].items():
      if name not in self.fields:
        continue
      source = probe["lineart"] if name.startswith("gen/") else probe["target"]
      _, lh, lw, _ = self.activation_shapes[name]
      images[f"top_patches/{name}"] = panels.patch_grid(
          np.asarray(source), np.asarray(positions), (lh, lw), self.fields[name])
    images["inputs/train_batch"] = panels.sample_rows(out["batch_rows"]["lineart"],
                                                      out["batch_rows"]["target"], 4)
    return images

  def _write_curves(self, step: int, out) -> dict[str, dict[str, float]]:
    """Writes the train/eval curve terms (to their run directories when there are any);
    returns them as {split: {tag: value}}."""
    curves = {split: {k: float(v) for k, v in values.items()}
              for split, values in out["curves"].items()}
    if self.curve_writers is not None:
      for split, values in curves.items():
        self.curve_writers[split].write_scalars(step, values)
        self.curve_writers[split].flush()
    else:
      self.writer.write_scalars(step, {f"diag_{split}_{k}": v for split, values in
                                       curves.items() for k, v in values.items()})
    return curves


def _log_summary(step: int, scalars: dict[str, Any], curves: dict[str, dict[str, float]],
                 warnings: list[str]) -> None:
  """One log line for the diagnostic step, then an absl warning per warning."""
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
