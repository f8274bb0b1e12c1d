"""What the data-set commands share on the command line: the check of their arguments."""

from typing import Sequence

from absl import app
from absl import flags


def check_args(argv: Sequence[str], required: Sequence[str], *,
               empty_is_missing: bool = True) -> None:
  """Refuses positional arguments and required flags left unset, with the usage text.

  Args:
    argv: `main`'s arguments (the program name, then what absl did not parse).
    required: names of flags that must be given.
    empty_is_missing: whether an empty value (e.g. `--input ""`) counts as not given;
      without it only an unset flag does, and the command checks the value itself.

  Raises:
    app.UsageError: naming the first problem.
  """
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  for name in required:
    value = flags.FLAGS[name].value
    if value is None or (empty_is_missing and not value):
      raise app.UsageError(f"--{name} is required")
