"""The export command: a SavedModel and an ONNX file that run without mangacolor_jax and
colour like `Colorizer`, at any size."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from mangacolor_jax.infer import colorizer as colorizer_lib
from mangacolor_jax.infer import export as export_lib
from mangacolor_jax.utils import files

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Largest difference from Colorizer allowed, in [0, 1] (the colour's 8-bit step is 1/255).
TOLERANCE = 2 / 255

# Runs an export with plain TensorFlow / onnxruntime in a process that never imports
# mangacolor_jax: argv = format, model path, inputs .npz, output .npy.
_RUNNER = textwrap.dedent("""
    import sys
    import numpy as np
    fmt, path, inputs, out = sys.argv[1:5]
    data = np.load(inputs)
    if fmt == "saved_model":
      import tensorflow as tf
      model = tf.saved_model.load(path)
      got = model.serve(tf.constant(data["lineart"]), tf.constant(data["hints"])).numpy()
      named = model.signatures["serving_default"](
          lineart=tf.constant(data["lineart"]), hints=tf.constant(data["hints"]))["colour"]
      assert np.array_equal(got, named.numpy())
    else:
      import onnxruntime as ort
      session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
      assert [i.name for i in session.get_inputs()] == ["lineart", "hints"]
      got = session.run(None, {"lineart": data["lineart"], "hints": data["hints"]})[0]
    assert "mangacolor_jax" not in sys.modules, "the export must run without the project"
    np.save(out, got)
""")


def _inputs():
  """Two 37x53 sketches (sides not multiples of 8, not square), the second with a
  painted hint: lineart and hints in [0, 1]."""
  rng = np.random.default_rng(0)
  lineart = np.where(rng.uniform(size=(2, 37, 53, 1)) < 0.1, 0.0, 1.0).astype(np.float32)
  hints = np.zeros((2, 37, 53, 4), np.float32)
  hints[1, 5:12, 10:30] = (1.0, 0.2, 0.0, 1.0)  # a red stroke
  hints[1, 25:30, 40:50] = (0.0, 0.4, 1.0, 1.0)  # a blue one
  return lineart, hints


def _expected(workdir, lineart, hints):
  """Colorizer's colour of the same inputs, mapped to [0, 1]; the hints as
  nn.hints.hints_from_rgba makes them (colour in [-1, 1] where painted, the mask)."""
  colorizer = colorizer_lib.Colorizer(workdir, "latest")
  mask = (hints[..., 3:] >= 0.5).astype(np.float32)
  hint_tensor = np.concatenate([(hints[..., :3] * 2 - 1) * mask, mask], axis=-1)
  return (colorizer.predict_batch(lineart * 2 - 1, hint_tensor) + 1) / 2


def _run_plain(fmt, path, tmp_path):
  lineart, hints = _inputs()
  inputs, out = str(tmp_path / "inputs.npz"), str(tmp_path / "out.npy")
  np.savez(inputs, lineart=lineart, hints=hints)
  env = dict(os.environ, XLA_FLAGS="")  # one device: the export is not sharded
  result = subprocess.run([sys.executable, "-c", _RUNNER, fmt, path, inputs, out],
                          capture_output=True, text=True, env=env, cwd=str(tmp_path))
  assert result.returncode == 0, result.stderr[-3000:]
  return np.load(out)


def _check_matches_colorizer(workdir, got):
  lineart, hints = _inputs()
  expected = _expected(workdir, lineart, hints)
  assert got.shape == expected.shape == (2, 37, 53, 3)
  assert got.dtype == np.float32
  assert 0.0 <= got.min() and got.max() <= 1.0
  assert np.abs(got - expected).max() <= TOLERANCE
  # The hint is used: the hinted image differs from what the model paints without it.
  plain = _expected(workdir, lineart[1:], np.zeros_like(hints[1:]))
  assert np.abs(expected[1:] - plain).max() > TOLERANCE


def test_saved_model_command_runs_in_plain_tensorflow(hint_workdir, tmp_path):
  output = str(tmp_path / "generator")
  cmd = [sys.executable, "-m", "mangacolor_jax.export", "--workdir", hint_workdir,
         "--format", "saved_model", "--output", output, "--checkpoint", "latest"]
  result = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "export: step 2" in result.stdout
  assert os.path.isfile(os.path.join(output, "saved_model.pb"))
  assert files.read_marker(output)["command"] == "export"
  _check_matches_colorizer(hint_workdir, _run_plain("saved_model", output, tmp_path))
  # Its own earlier export is replaced as a whole; a file someone added there is not.
  again = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
  assert again.returncode == 0, again.stderr[-3000:]
  assert not [p for p in os.listdir(tmp_path) if p.startswith(".generator")]
  with open(os.path.join(output, "notes.txt"), "w") as f:
    f.write("mine")
  refused = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
  assert refused.returncode == 2
  assert "--output" in refused.stderr and "notes.txt" in refused.stderr
  assert open(os.path.join(output, "notes.txt")).read() == "mine"


def test_onnx_export_runs_in_onnxruntime(hint_workdir, tmp_path):
  pytest.importorskip("jax2onnx", reason="jax2onnx is not installed (pip install "
                      "-e '.[export]')")
  pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install "
                      "-e '.[export]')")
  output = str(tmp_path / "generator.onnx")
  assert export_lib.export_onnx(hint_workdir, "latest", output) == 2
  assert export_lib.written_by_export(output)
  assert not [p for p in os.listdir(tmp_path) if ".tmp" in p]
  _check_matches_colorizer(hint_workdir, _run_plain("onnx", output, tmp_path))
  export_lib.check_output(output, "onnx")  # its own file may be written again


def test_export_refuses_what_it_did_not_write(hint_workdir, tmp_path):
  user_file = tmp_path / "model.onnx"
  user_file.write_bytes(b"not mine")
  with pytest.raises(files.OutputError, match="--output"):
    export_lib.check_output(str(user_file), "onnx")
  with pytest.raises(files.OutputError, match="not a folder"):
    export_lib.check_output(str(user_file), "saved_model")
  with pytest.raises(files.OutputError, match="is a folder"):
    export_lib.check_output(str(tmp_path), "onnx")
  (tmp_path / "other").mkdir()
  (tmp_path / "other" / "a.txt").write_text("x")
  with pytest.raises(files.OutputError, match="not written by export"):
    export_lib.check_output(str(tmp_path / "other"), "saved_model")
  with pytest.raises(ValueError, match="--format"):
    export_lib.check_output(str(tmp_path / "new"), "tflite")
  export_lib.check_output(str(tmp_path / "new"), "saved_model")  # new paths are fine
  assert user_file.read_bytes() == b"not mine"


@pytest.mark.parametrize("args, message", [
    (["--format", "tflite"], "--format=tflite"),
    (["--workdir", "/nonexistent/run"], "--workdir=/nonexistent/run"),
    (["--output", "{file}"], "--output="),
])
def test_command_user_errors_are_one_line(hint_workdir, tmp_path, args, message):
  user_file = tmp_path / "mine.onnx"
  user_file.write_bytes(b"mine")
  flags = {"--workdir": hint_workdir, "--format": "onnx", "--output": str(tmp_path / "g")}
  for flag, value in zip(args[::2], args[1::2]):
    flags[flag] = value.format(file=user_file)
  cmd = [sys.executable, "-m", "mangacolor_jax.export"]
  for flag, value in flags.items():
    cmd += [flag, value]
  result = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
  assert result.returncode == 2, result.stderr[-2000:]
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith("error: ") and message in last, last
  assert user_file.read_bytes() == b"mine"
  assert not os.path.exists(tmp_path / "g")
