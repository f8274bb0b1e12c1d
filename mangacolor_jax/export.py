"""Command line: export a trained generator to run without JAX (TF SavedModel or ONNX).

  python -m mangacolor_jax.export --workdir runs/faces --format saved_model --output g_tf
  python -m mangacolor_jax.export --workdir runs/faces --format onnx --output g.onnx \
      [--checkpoint best|latest|STEP]

The exported model takes `lineart` float32 [B, H, W, 1] in [0, 1] (1 = paper) and `hints`
float32 [B, H, W, 4] in [0, 1] (the painted RGB and a mask channel, painted where >= 0.5:
an RGBA hint image / 255; zeros for none) and returns the colour float32 [B, H, W, 3] in
[0, 1], for any B, H and W (it pads to the generator's multiple and crops back itself).
The weights are baked in. Run it with:

  tf.saved_model.load(OUT).serve(lineart, hints)     # or .signatures["serving_default"]
  onnxruntime.InferenceSession(OUT).run(None, {"lineart": ..., "hints": ...})[0]

See mangacolor_jax.infer.export for what is exported and how. Nothing the command did not
write is overwritten: a SavedModel --output is a new or empty folder or an earlier
export's (its marker), replaced as a whole; an ONNX --output is a new path or an earlier
export's file (its metadata), replaced atomically.
"""

import os

from absl import app
from absl import flags

from mangacolor_jax.infer import export as export_lib
from mangacolor_jax.utils import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Training workdir holding checkpoints/.")
flags.DEFINE_string("format", None, f"What to write: {' | '.join(export_lib.FORMATS)}.")
flags.DEFINE_string("output", None, "The SavedModel folder, or the .onnx file.")
flags.DEFINE_string("checkpoint", "best", "best | latest | a step number.")
flags.mark_flags_as_required(["workdir", "format", "output"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError("Too many command-line arguments.")
  with cli.user_errors():
    if FLAGS.format not in export_lib.FORMATS:
      raise ValueError(f"--format={FLAGS.format} is not one of "
                       f"{', '.join(export_lib.FORMATS)}")
    if not os.path.isdir(FLAGS.workdir):
      raise ValueError(f"--workdir={FLAGS.workdir} does not exist")
    export_lib.check_output(FLAGS.output, FLAGS.format)
    config, state, step = export_lib.load(FLAGS.workdir, FLAGS.checkpoint)
  if FLAGS.format == "saved_model":
    export_lib.saved_model_from_state(config, state, FLAGS.output)
  else:
    export_lib.write_onnx(export_lib.onnx_model_from_state(config, state), FLAGS.output)
  print(f"export: step {step} of {FLAGS.workdir} -> {FLAGS.output} ({FLAGS.format})")


if __name__ == "__main__":
  cli.run(main)
