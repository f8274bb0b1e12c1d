"""Config overrides of a tuning run: setting a swept field, and the command's --config.*."""

from typing import Any, Sequence


def set_field(config, name: str, value) -> Any:
  """Sets the dotted config field `name`, keeping its type (ints are rounded).

  Returns the value set. Raises ValueError naming the field when it does not exist or is
  not numeric.
  """
  node = config
  *path, leaf = name.split(".")
  try:
    for part in path:
      node = node[part]
    old = node[leaf]
  except (KeyError, AttributeError, TypeError) as e:
    raise ValueError(f"config.{name} does not exist in this config") from e
  if isinstance(old, bool) or not isinstance(old, (int, float)):
    raise ValueError(f"config.{name}={old!r} is not a number: only numeric fields sweep")
  value = int(round(value)) if isinstance(old, int) else float(value)
  node[leaf] = value
  return value


def config_args_from_argv(argv: Sequence[str]) -> list[str]:
  """The --config.FIELD overrides of a command line, as `--config.FIELD=VALUE` strings."""
  out, i = [], 0
  while i < len(argv):
    arg = argv[i]
    if arg.startswith("--config.") and "=" not in arg and i + 1 < len(argv):
      out.append(f"{arg}={argv[i + 1]}")
      i += 1
    elif arg.startswith("--config."):
      out.append(arg)
    i += 1
  return out
