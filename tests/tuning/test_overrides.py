"""Config overrides of tuning runs."""

import pytest

from mangacolor_jax.tuning import overrides


def test_set_field_keeps_types(tiny_config):
  assert overrides.set_field(tiny_config, "model.gen.features", 11.6) == 12
  assert tiny_config.model.gen.features == 12
  assert overrides.set_field(tiny_config, "optim.g_lr", 3) == 3.0
  with pytest.raises(ValueError, match="not a number"):
    overrides.set_field(tiny_config, "model.gen.norm", 1.0)


def test_config_args_from_argv_keeps_the_config_overrides_only():
  argv = ["sweep", "--config", "configs/tiny.py", "--config.optim.g_lr", "1e-4",
          "--config.num_train_steps=5", "--workdir", "w", "--param", "optim.g_lr=1:2:lin:2"]
  assert overrides.config_args_from_argv(argv) == ["--config.optim.g_lr=1e-4",
                                                   "--config.num_train_steps=5"]
