"""What every command shares: a user's mistake is one line, `error: ...`, and exit 2.

A command is `cli.run(main)` (absl's `app.run` with its own flag parser) and checks its
inputs inside `with cli.user_errors():` before any long work starts:

* a bad flag, a missing required flag, a config file that does not load, or a config
  override that names no field (`--config.model.norm=...` for `model.gen.norm`) is
  reported while the flags are parsed;
* inside `user_errors`, the `ValueError` that the project's checks raise (each names the
  config field, flag or file; `files.OutputError` is one), or a `FileNotFoundError` for
  a path the user gave, becomes that one line.

Outside those two places nothing is caught: a real bug keeps its traceback.
"""

import contextlib
import sys

from absl import app
from absl import flags


def fail(message: str):
  """Prints `error: message` to stderr and exits with status 2."""
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


@contextlib.contextmanager
def user_errors():
  """The checks of a command's inputs: a ValueError (or FileNotFoundError) they raise is
  the user's mistake."""
  try:
    yield
  except (ValueError, FileNotFoundError) as e:
    fail(str(e))


def _unknown_override(argv: list[str], error: Exception) -> str:
  """The message for a `--config.a.b=v` whose path the config lacks."""
  name = str(error).strip("'\"")
  for arg in argv[1:]:
    path = arg.split("=", 1)[0]
    if path.startswith("--") and "." in path and name in path[2:].split(".")[1:]:
      parent = path[2:].rsplit(".", 1)[0]
      return (f"{path}: {parent} has no field {name!r} (see the config file for the "
              f"fields it defines)")
  return f"a config override names no field of the config: {name!r}"


def _one_line(message: str) -> str:
  """A loader's message that spans lines (e.g. the paths it tried), as its first and last."""
  lines = [line.strip() for line in message.splitlines() if line.strip()]
  return lines[0] if len(lines) < 2 else f"{lines[0]}: {lines[-1]}"


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with its errors (and those of config overrides) as one line."""
  try:
    args = flags.FLAGS(argv)
    for flag in set(flags.FLAGS._flags().values()):  # pylint: disable=protected-access
      if flag.present and hasattr(flag, "config_filename") and flag.value is not None:
        try:  # a config file that did not load raises on first use
          getattr(flag.value, "to_dict", None)
        except OSError as e:
          fail(f"--{flag.name}={flag.config_filename}: {str(e).strip().splitlines()[-1].strip()}")
    return args
  except SyntaxError as e:  # in the config file
    fail(f"{e.filename}:{e.lineno}: {e.msg}")
  except flags.Error as e:
    fail(_one_line(str(e)))
  except (AttributeError, KeyError) as e:  # ml_collections: an override of a missing field
    fail(_unknown_override(argv, e))
  except OSError as e:  # --config names a file that cannot be read
    fail(_one_line(str(e)))


def run(main) -> None:
  """`app.run(main)` whose flag errors are one line (`parse_flags`)."""
  app.run(main, flags_parser=parse_flags)
