"""Replacing an output folder as a whole: checked first, built beside it, swapped in.

`clean` and `prepare` write their whole output anew on every run. `check_replaceable`
refuses, before any work, an output that overlaps the input or holds anything the command
did not write (`mangacolor_jax.utils.files`); `build_beside` gives a new hidden folder
beside the output and swaps it in only once the work is done, so the output always holds
one whole result, the old one or the new one.
"""

import contextlib
import os
import shutil
import tempfile
from typing import Iterator, Optional

from mangacolor_jax.utils import files


def check_replaceable(input_dir: Optional[str], output: str, command: str,
                      refusal: str, flag: str = "--output") -> Optional[dict]:
  """Checks that `command` may replace `output`; returns its marker there, if any.

  `output` may be replaced only when it is missing, empty, or an earlier output of
  `command` holding nothing but the files that `command` wrote (its marker lists them).

  Args:
    input_dir: the command's --input, which is never written to (None: no input folder).
    output: the command's output folder, given as `flag`.
    command: the command's name, e.g. "clean".
    refusal: the end of the message for a folder that `command` did not write, after
      "--output=... is not empty and ".

  Raises:
    ValueError: when `output` is `input_dir`, inside it or holds it.
    files.OutputError: when `output` is a file, or holds anything `command` did not write.
  """
  out_abs = os.path.realpath(output)
  in_abs = os.path.realpath(input_dir) if input_dir is not None else None
  if in_abs is not None and (out_abs == in_abs or out_abs.startswith(in_abs + os.sep) or
                             in_abs.startswith(out_abs + os.sep)):
    raise ValueError(f"{flag}={output} must be outside --input={input_dir} (and not "
                     "contain it): the input is never written to")
  if not os.path.lexists(out_abs):
    return None
  if not os.path.isdir(out_abs):
    raise files.OutputError(f"{flag}={output} exists and is not a folder")
  if not os.listdir(out_abs):
    return None
  marker = files.read_marker(out_abs)
  if marker is None or marker["command"] != command:
    raise files.OutputError(f"{flag}={output} is not empty and {refusal}")
  foreign = files.foreign_files(out_abs, marker)
  if foreign:
    raise files.OutputError(
        f"{flag}={output} holds {len(foreign)} file(s) that {command} did not write (e.g. "
        f"{foreign[0]}); move them out, or give a new folder: {command} replaces its output "
        "as a whole")
  return marker


@contextlib.contextmanager
def build_beside(output: str, command: str) -> Iterator[str]:
  """A new empty folder beside `output` that replaces it when the block ends well.

  On success the folder is marked as `command`'s, listing every file in it, and swapped in
  for `output`; on any exception it is removed and `output` stays as it was.
  """
  out_abs = os.path.realpath(output)
  parent = os.path.dirname(out_abs)
  os.makedirs(parent, exist_ok=True)
  stage = tempfile.mkdtemp(prefix=f".{os.path.basename(out_abs)}.partial-", dir=parent)
  try:
    yield stage
    files.write_marker(stage, command, files.list_files(stage))
    if os.path.exists(out_abs):
      old = tempfile.mkdtemp(prefix=f".{os.path.basename(out_abs)}.old-", dir=parent)
      os.replace(out_abs, os.path.join(old, "x"))
      os.replace(stage, out_abs)
      shutil.rmtree(old)
    else:
      os.replace(stage, out_abs)
  except BaseException:
    shutil.rmtree(stage, ignore_errors=True)
    raise
