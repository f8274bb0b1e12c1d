"""Command line: a local web page to colour line art with a trained model.

  python -m mangacolor_jax.serve --workdir runs/faces [--port 7860] [--checkpoint best]

Open http://127.0.0.1:7860: upload line art (any size; a colour picture is first turned
into line art with evaluation's XDoG), paint colour hints with the brush (the painted
layers are the RGBA hint image of `colorize --hints`), press Colorize, download the PNG.
The model is loaded once, at start. The page works offline: no analytics, no share link,
system fonts, nothing fetched from elsewhere. Needs gradio: pip install -e ".[app]".
"""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app
from absl import flags
from absl import logging

from mangacolor_jax.utils import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Training workdir holding checkpoints/.")
flags.DEFINE_string("checkpoint", "best", "best | latest | a step number.")
flags.DEFINE_string("host", "127.0.0.1", "Address to listen on (0.0.0.0: the whole "
                    "network can reach the page).")
flags.DEFINE_integer("port", 7860, "Port to listen on.")
flags.mark_flags_as_required(["workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError("Too many command-line arguments.")
  with cli.user_errors():
    try:
      import gradio  # pylint: disable=unused-import
    except ImportError as e:
      raise ValueError(f'gradio is not installed ({e}): pip install -e ".[app]"') from e
    if not os.path.isdir(FLAGS.workdir):
      raise ValueError(f"--workdir {FLAGS.workdir} does not exist")
    if not 0 < FLAGS.port < 65536:
      raise ValueError(f"--port {FLAGS.port} is not a port number (1 to 65535)")
    # Imported here, after the checks above, so that --help and those mistakes (gradio,
    # an optional extra, not installed; a bad --workdir or --port) answer without JAX.
    from mangacolor_jax.infer import app as app_lib
    from mangacolor_jax.infer import colorizer as colorizer_lib
    colorizer = colorizer_lib.Colorizer(FLAGS.workdir, FLAGS.checkpoint)
  logging.info("serving step %d of %s", colorizer.step, FLAGS.workdir)
  print(f"serve: step {colorizer.step} of {FLAGS.workdir} on "
        f"http://{FLAGS.host}:{FLAGS.port}", flush=True)
  app_lib.launch(app_lib.build_app(colorizer), host=FLAGS.host, port=FLAGS.port)


if __name__ == "__main__":
  cli.run(main)
