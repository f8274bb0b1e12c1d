"""On the CPU the project's networks compile with Eigen's convolutions (mangacolor_jax/compile_lib.py)."""

import logging

import jax
import jax.numpy as jnp
import numpy as np

from configs import default as default_config
from mangacolor_jax.runtime import compile as compile_lib
from mangacolor_jax.perf import timing


def _conv(x, k):
  return jax.lax.conv_general_dilated(x, k, (1, 1), "SAME",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


_ARGS = (jnp.ones((2, 16, 16, 32), jnp.float32), jnp.ones((3, 3, 32, 32), jnp.float32))


def _ynn_fusion_calls(text: str) -> list[str]:
  """The computations that YNNPACK fusions call, in a compiled module's text."""
  return [line.split("calls=", 1)[1].split(",", 1)[0].split()[0]
          for line in text.splitlines() if '"__ynn_fusion"' in line and "calls=" in line]


def _root(text: str, computation: str) -> str:
  body = text.split(f"\n{computation} (", 1)[1].split("\n}\n", 1)[0]
  return next(line for line in body.splitlines() if line.lstrip().startswith("ROOT"))


def test_convolutions_leave_ynnpack_unless_the_config_asks():
  config = default_config.get_config()
  assert not config.cpu_ynnpack_convolutions
  eigen = compile_lib.jit(_conv, config).lower(*_ARGS).compile().as_text()
  config.cpu_ynnpack_convolutions = True
  ynn = compile_lib.jit(_conv, config).lower(*_ARGS).compile().as_text()
  assert len(_ynn_fusion_calls(eigen)) == 0
  assert len(_ynn_fusion_calls(ynn)) == 1  # XLA's default: the convolution is YNNPACK's
  # The same function either way (the libraries sum in different orders).
  k = jnp.asarray(np.random.default_rng(0).normal(size=(3, 3, 32, 32)), jnp.float32)
  x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 16, 16, 32)), jnp.float32)
  np.testing.assert_allclose(compile_lib.jit(_conv, default_config.get_config())(x, k),
                             compile_lib.jit(_conv, config)(x, k), rtol=1e-4, atol=1e-4)


def test_the_benchmarked_train_step_leaves_convolutions_to_eigen():
  config = default_config.get_config()
  config.batch_size = 8
  config.data.image_size = 32

  def ynn_convolutions():
    text = timing.TrainBench(config).compiled.as_text()
    assert " convolution(" in text
    return sum(" convolution(" in _root(text, name) for name in set(_ynn_fusion_calls(text)))

  assert ynn_convolutions() == 0
  config.cpu_ynnpack_convolutions = True
  assert ynn_convolutions() > 10  # XLA's default


def test_off_the_cpu_and_on_other_jaxlibs_the_defaults_stay(monkeypatch, caplog):
  config = default_config.get_config()
  assert compile_lib.compiler_options(config) == {compile_lib.YNN_OPTION:
                                              compile_lib.YNN_WITHOUT_CONVOLUTIONS}
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  assert compile_lib.compiler_options(config) is None
  monkeypatch.undo()
  # A jaxlib that renamed the option's values: a warning, then XLA's defaults, no failure.
  monkeypatch.setattr(compile_lib, "YNN_WITHOUT_CONVOLUTIONS", "LIBRARY_FUSION_TYPE_RENAMED")
  with caplog.at_level(logging.WARNING):
    assert compile_lib.compiler_options(config) is None
  assert "LIBRARY_FUSION_TYPE_RENAMED" in caplog.text
  assert float(compile_lib.jit(lambda x: x * 2, config)(jnp.float32(2))) == 4.0
