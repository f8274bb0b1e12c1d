"""`validate_config`: every check of a run's config, before anything compiles or is read
in bulk, so that a typo costs seconds. Each part of the config is checked by the module
that uses it; the run-level fields here."""

import json

import ml_collections

from mangacolor_jax.input_pipeline import config_check as data_check
from mangacolor_jax.nn import hints
from mangacolor_jax.nn import losses
from mangacolor_jax.nn import models
from mangacolor_jax.training import optim

DTYPES = ("float32", "bfloat16")
# Model fields of configs saved before config.model.gen / config.model.disc existed.
_FLAT_MODEL_FIELDS = {"gen_features": ("gen", "features"),
                      "gen_max_features": ("gen", "max_features"),
                      "gen_depth": ("gen", "depth"), "gen_upsample": ("gen", "upsample"),
                      "norm": ("gen", "norm"), "activation": ("gen", "activation"),
                      "dropout": ("gen", "dropout"), "disc_features": ("disc", "features"),
                      "disc_layers": ("disc", "layers"), "disc_norm": ("disc", "norm")}


def upgrade_saved_config(config: dict) -> dict:
  """A config saved with an older checkpoint, in today's fields (so that its model loads):
  flat model fields nested under gen / disc, `downsample` "conv" where it was not yet a
  field (what those runs computed), the data set name no longer a field."""
  config = json.loads(json.dumps(config))
  model = config.get("model", {})
  for old, (net, field) in _FLAT_MODEL_FIELDS.items():
    if old in model:
      model.setdefault(net, {})[field] = model.pop(old)
  model.setdefault("downsample", "conv")
  model.setdefault("freeze", [])
  model.setdefault("ema_decay", 0.0)
  model.setdefault("ema_bn_batches", 0)  # older runs kept the running statistics
  model.setdefault("gen", {}).setdefault("hint_pyramid", False)
  model["gen"].setdefault("head_features", 0)
  model["gen"].setdefault("res_blocks", 0)
  model["gen"].setdefault("attention_levels", ())
  model["gen"].setdefault("subpixel_levels", ())
  config.get("data", {}).pop("tfds_name", None)
  config.get("data", {}).setdefault("lineart_on", "host")
  config.get("data", {}).setdefault("file_check", "auto")
  config.get("hints", {}).setdefault("guided_share", 0.0)
  config.get("loss", {}).setdefault("chroma_weight", 0.0)
  return config


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the config field for values that cannot work."""
  if config.dtype not in DTYPES:
    raise ValueError(f"config.dtype={config.dtype!r} is not one of {DTYPES}")
  for field in ("batch_size", "num_train_steps", "log_every_steps", "eval_every_steps",
                "checkpoint_every_steps", "keep_best_checkpoints"):
    if int(config[field]) <= 0:
      raise ValueError(f"config.{field}={config[field]} must be positive")
  for field in ("early_stopping_patience", "diagnostics_every_steps"):
    if int(config[field]) < 0:
      raise ValueError(f"config.{field}={config[field]} must be >= 0 (0 turns it off)")
  losses.validate_loss_config(config.loss)
  optim.validate_optim_config(config)
  hints.validate_hints_config(config.hints)
  data_check.validate_data_config(config)
  models.validate_model_config(config, data_check.image_hw(config))
