"""Config checks and the upgrade of configs saved with older checkpoints."""

import jax
import ml_collections
import pytest

from mangacolor_jax.training import config_check
from mangacolor_jax.training import state as state_lib


def test_a_config_saved_before_nested_model_fields_builds_the_same_networks(tiny_config):
  saved = tiny_config.to_dict()
  model = saved["model"]
  flat = {"gen_features": model["gen"]["features"],
          "gen_max_features": model["gen"]["max_features"],
          "gen_depth": model["gen"]["depth"], "gen_upsample": model["gen"]["upsample"],
          "norm": model["gen"]["norm"], "activation": model["gen"]["activation"],
          "dropout": model["gen"]["dropout"], "disc_features": model["disc"]["features"],
          "disc_layers": model["disc"]["layers"], "disc_norm": model["disc"]["norm"]}
  old = dict(saved, model=flat)  # no downsample field yet either
  old["data"] = dict(saved["data"], tfds_name="mangacolor_images")
  upgraded = config_check.upgrade_saved_config(old)
  assert upgraded["model"]["gen"] == model["gen"]
  assert upgraded["model"]["disc"] == model["disc"]
  assert upgraded["model"]["downsample"] == "conv"  # what those runs computed
  assert "tfds_name" not in upgraded["data"]
  nets = state_lib.create_networks(ml_collections.ConfigDict(upgraded))
  shapes = lambda n: jax.tree_util.tree_map(
      lambda x: x.shape, jax.eval_shape(n.create_state, jax.random.key(0)).g_params)
  assert shapes(nets) == shapes(state_lib.create_networks(tiny_config))


@pytest.mark.parametrize("field, value, message", [
    ("model.gen.norm", "group", "config.model.gen.norm"),
    ("model.disc.layers", 0, "config.model.disc.layers"),
    ("optim.schedule", "step", "config.optim.schedule"),
    ("hints.drop_prob", 2.0, "config.hints.drop_prob"),
    ("loss.gan", "wgan", "config.loss.gan"),
    ("loss.chroma_weight", -1.0, "config.loss.chroma_weight"),
    ("dtype", "float16", "config.dtype"),
])
def test_each_part_names_its_field(tiny_config, field, value, message):
  *path, last = field.split(".")
  node = tiny_config
  for p in path:
    node = node[p]
  node[last] = value
  with pytest.raises(ValueError, match=message):
    config_check.validate_config(tiny_config)
