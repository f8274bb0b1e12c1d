"""Writing files without losing any: atomic writes, and output folders a command owns.

Two rules hold for every command of the project:

* A file appears whole or not at all. `write_bytes`, `write_text` and `write_json` write
  a hidden temporary file beside the target and rename it into place, so a crash or a
  kill leaves the old file or the new one, never half of one.
* A command never deletes or overwrites a file it did not write. A command that writes a
  folder first claims it with `claim_folder`: a missing or empty folder is created and
  marked with `MARKER`, a small JSON file naming the command and the package version; a
  folder with that command's marker is the command's own and may be written again;
  anything else -- a folder holding files but no marker, or another command's marker --
  is refused with an `OutputError` that names the flag. A command that replaces a folder
  as a whole (`clean`, `prepare`) also lists in the marker every file it wrote, and
  refuses to replace a folder holding any file not on that list (`foreign_files`).
  Single image files carry the mark inside them (`save_image`, `written_by`).
"""

import io
import json
import os
import secrets
from typing import Any, Iterable

import numpy as np
from PIL import Image
from PIL import PngImagePlugin

from mangacolor_jax import __version__

MARKER = ".mangacolor_jax.json"
# Where an output image records the command that wrote it: PNG text chunk / JPEG comment.
_SOFTWARE = "Software"


class OutputError(ValueError):
  """An output path the command may not write; the message names the flag."""


# ------------------------------------------------------------------------ atomic writes


def shared_output(pairs) -> tuple[str, str, str] | None:
  """(first input, second input, output) of the first two (input, output) pairs that name
  one output, or None when every output is named once."""
  taken = {}
  for src, dst in pairs:
    if dst in taken:
      return taken[dst], src, dst
    taken[dst] = src
  return None


def write_bytes(path: str, data: bytes, *, durable: bool = False) -> None:
  """Writes `data` to `path` atomically (a hidden temporary file, then a rename).

  Args:
    path: the file; its folder must exist.
    data: the contents.
    durable: also fsync before the rename, so the file survives a power cut (the
      crawler's downloads); a kill is survived either way.
  """
  folder, name = os.path.split(os.path.abspath(path))
  tmp = os.path.join(folder, f".{name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
  try:
    with open(tmp, "xb") as f:
      f.write(data)
      if durable:
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def write_text(path: str, text: str) -> None:
  write_bytes(path, text.encode("utf-8"))


def write_json(path: str, obj: Any, indent: int = 2) -> None:
  """Strict JSON (sorted keys, a final newline), written atomically."""
  write_text(path, json.dumps(obj, indent=indent, sort_keys=True) + "\n")


def save_image(path: str, image: np.ndarray, command: str = "") -> None:
  """Writes a uint8 image atomically, in the format of `path`'s extension.

  With `command`, PNG and JPEG files record it (a text chunk / a comment), so that the
  command can later tell its own outputs from a user's files (`written_by`).
  """
  ext = os.path.splitext(path)[1].lower()
  fmt = Image.registered_extensions().get(ext, "PNG")
  kwargs = {}
  mark = _mark(command) if command else ""
  if mark and fmt == "PNG":
    info = PngImagePlugin.PngInfo()
    info.add_text(_SOFTWARE, mark)
    kwargs["pnginfo"] = info
  elif mark and fmt == "JPEG":
    kwargs["comment"] = mark.encode("utf-8")
  buf = io.BytesIO()
  Image.fromarray(np.asarray(image)).save(buf, format=fmt, **kwargs)
  write_bytes(path, buf.getvalue())


def _mark(command: str) -> str:
  return f"mangacolor_jax {command}"


def written_by(path: str, command: str) -> bool:
  """Whether the image at `path` carries `command`'s mark (see `save_image`)."""
  try:
    with Image.open(path) as im:
      found = im.info.get(_SOFTWARE) or im.info.get("comment") or ""
  except (OSError, ValueError):
    return False
  if isinstance(found, bytes):
    found = found.decode("utf-8", "replace")
  return found == _mark(command)


# ------------------------------------------------------------------------ output folders


def read_marker(folder: str) -> dict | None:
  """The marker of `folder`, or None where there is none (or it is not one)."""
  try:
    with open(os.path.join(folder, MARKER), encoding="utf-8") as f:
      marker = json.load(f)
  except (OSError, ValueError):
    return None
  return marker if isinstance(marker, dict) and "command" in marker else None


def write_marker(folder: str, command: str, files: Iterable[str] | None = None) -> None:
  """Marks `folder` as `command`'s output; `files` lists what it wrote there (relative)."""
  marker = {"command": command, "version": __version__}
  if files is not None:
    marker["files"] = sorted(set(files) - {MARKER})
  write_json(os.path.join(folder, MARKER), marker)


def list_files(folder: str) -> list[str]:
  """Every file under `folder`, as sorted relative paths with "/" separators."""
  out = []
  for root, dirs, files in os.walk(folder):
    dirs.sort()
    for name in files:
      out.append(os.path.relpath(os.path.join(root, name), folder).replace(os.sep, "/"))
  return sorted(out)


def foreign_files(folder: str, marker: dict | None) -> list[str]:
  """Files under `folder` that its marker does not list as written by its command."""
  own = set((marker or {}).get("files", ())) | {MARKER}
  return [f for f in list_files(folder) if f not in own]


def claim_folder(folder: str, command: str, flag: str) -> dict | None:
  """Makes `folder` `command`'s output folder, or refuses to.

  Args:
    folder: the output folder (created with its parents when missing).
    command: the command's name, e.g. "clean".
    flag: the flag that named the folder, for the message, e.g. "--output".

  Returns:
    The marker already there (the command's own earlier output), or None for a new or
    empty folder, which is now marked.

  Raises:
    OutputError: when `folder` is a file, or holds anything without `command`'s marker.
  """
  if os.path.lexists(folder) and not os.path.isdir(folder):
    raise OutputError(f"{flag}={folder} exists and is not a folder")
  if os.path.isdir(folder) and os.listdir(folder):
    marker = read_marker(folder)
    if marker is None:
      raise OutputError(
          f"{flag}={folder} is not empty and was not written by {command} (it has no "
          f"{MARKER}): give a new or empty folder; {command} never writes into a folder "
          "it did not make")
    if marker["command"] != command:
      raise OutputError(f"{flag}={folder} is the output of {marker['command']}, not of "
                        f"{command}: give a new or empty folder")
    return marker
  os.makedirs(folder, exist_ok=True)
  write_marker(folder, command)
  return None
