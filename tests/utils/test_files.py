"""No command deletes or overwrites a file it did not write (`mangacolor_jax.utils.files`).

Each command that writes a folder refuses one that holds someone else's files, before any
long work, and leaves every file there as it was. Refused cases are checked through each
command's library entry point (and one through the command line, for the one-line error).
"""

import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from mangacolor_jax.infer import evaluation as infer_eval
from mangacolor_jax.infer import sketches
from mangacolor_jax.tuning import grid
from mangacolor_jax.tuning import lr_range as lr_range_lib
from mangacolor_jax.tuning import sweep as sweep_lib
from mangacolor_jax.data import cleaner
from mangacolor_jax.data import crawler
from mangacolor_jax.data import http_client
from mangacolor_jax.data import inspection
from mangacolor_jax.data import preparer
from mangacolor_jax.utils import files


def _precious(folder, name="thesis.tex", text="three years of work"):
  folder.mkdir(parents=True, exist_ok=True)
  (folder / name).write_text(text)
  return folder / name


def _snapshot(folder):
  return {p: (folder / p).read_bytes() for p in files.list_files(str(folder))}


def _images(folder, n=4):
  folder.mkdir(parents=True)
  rng = np.random.default_rng(0)
  for i in range(n):
    image = rng.integers(0, 256, (72, 80, 3), dtype=np.uint8)
    image[::8] = 0  # some lines
    Image.fromarray(image).save(folder / f"{i}.png")
  return folder


def test_claim_folder_marks_new_folders_and_refuses_others(tmp_path):
  new = tmp_path / "a" / "new"
  assert files.claim_folder(str(new), "crawl", "--out") is None
  assert files.read_marker(str(new))["command"] == "crawl"
  assert files.claim_folder(str(new), "crawl", "--out")["command"] == "crawl"  # its own
  with pytest.raises(files.OutputError, match="--out=.*output of crawl, not of inspect"):
    files.claim_folder(str(new), "inspect", "--out")
  precious = _precious(tmp_path / "mine")
  with pytest.raises(files.OutputError, match="--output=.*not empty"):
    files.claim_folder(str(tmp_path / "mine"), "inspect", "--output")
  assert precious.read_text() == "three years of work"
  assert not (tmp_path / "mine" / files.MARKER).exists()
  with pytest.raises(files.OutputError, match="not a folder"):
    files.claim_folder(str(precious), "inspect", "--output")
  empty = tmp_path / "empty"
  empty.mkdir()
  assert files.claim_folder(str(empty), "tune", "--workdir") is None


def test_clean_never_deletes_a_file_it_did_not_write(tmp_path):
  inp = _images(tmp_path / "in")
  # The reported fault: a folder holding a file named report.json was taken for an
  # earlier clean and deleted whole.
  out = tmp_path / "out"
  _precious(out, "report.json", "{}")
  thesis = _precious(out)
  before = _snapshot(out)
  with pytest.raises(files.OutputError, match="not the output of an earlier clean"):
    cleaner.clean(str(inp), str(out), cleaner.Options(workers=1))
  assert _snapshot(out) == before and thesis.exists()
  # Its own output is replaced on a rerun...
  mine = tmp_path / "cleaned"
  cleaner.clean(str(inp), str(mine), cleaner.Options(workers=1))
  cleaner.clean(str(inp), str(mine), cleaner.Options(workers=1))
  assert files.foreign_files(str(mine), files.read_marker(str(mine))) == []
  # ... but not once someone else's file was put in it.
  notes = _precious(mine / "images", "notes.txt")
  with pytest.raises(files.OutputError, match=r"1 file\(s\) that clean did not write "
                     r"\(e.g. images/notes.txt\)"):
    cleaner.clean(str(inp), str(mine), cleaner.Options(workers=1))
  assert notes.read_text() == "three years of work"
  assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no staging left


def test_clean_command_prints_one_line_and_exits_2(tmp_path):
  inp = _images(tmp_path / "in")
  _precious(tmp_path / "out")
  run = subprocess.run([sys.executable, "-m", "mangacolor_jax.data.clean", "--input",
                        str(inp), "--output", str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=120)
  assert run.returncode == 2, run.stderr
  lines = [l for l in run.stderr.splitlines() if l.strip()]
  assert len(lines) == 1 and lines[0].startswith("error: --output="), run.stderr
  assert (tmp_path / "out" / "thesis.tex").exists()


def test_prepare_refuses_foreign_folders_and_never_trusts_a_half_written_one(tmp_path):
  inp = _images(tmp_path / "in", n=12)
  foreign = tmp_path / "foreign"
  _precious(foreign, preparer.REPORT, "{}")
  _precious(foreign)
  before = _snapshot(foreign)
  with pytest.raises(files.OutputError, match="not a data set that prepare built"):
    preparer.prepare(str(inp), str(foreign))
  assert _snapshot(foreign) == before
  out = tmp_path / "tfds"
  report = preparer.prepare(str(inp), str(out))
  assert preparer.prepare(str(inp), str(out)) == report  # up to date
  # A data set that lost its files (a half-written or damaged folder) is built again,
  # not reported as up to date on the strength of its report.
  for name in os.listdir(out / "mangacolor_images" / "1.0.0"):
    if "train" in name:
      os.remove(out / "mangacolor_images" / "1.0.0" / name)
  marker = files.read_marker(str(out))
  marker["files"] = files.list_files(str(out))  # as if prepare had written it so
  files.write_json(str(out / files.MARKER), marker)
  rebuilt = preparer.prepare(str(inp), str(out))
  assert rebuilt["splits"] == report["splits"]
  assert any("train" in n for n in os.listdir(out / "mangacolor_images" / "1.0.0"))
  _precious(out / "mangacolor_images", "notes.txt")
  with pytest.raises(files.OutputError, match="prepare did not write"):
    preparer.prepare(str(inp), str(out), seed=5, overwrite=True)
  assert (out / "mangacolor_images" / "notes.txt").exists()


def test_crawl_inspect_evaluate_tune_refuse_foreign_folders(tmp_path, tiny_config):
  precious = _precious(tmp_path / "mine")

  class NoNetwork(http_client.HttpClient):
    def get(self, url):
      raise AssertionError(f"requested {url} before checking --out")

  with pytest.raises(files.OutputError, match="--out="):
    crawler.crawl(crawler.CrawlOptions("safebooru", "1girl", 5, str(tmp_path / "mine")),
                  client=NoNetwork())
  with pytest.raises(files.OutputError, match="--output="):
    inspection.inspect_data(tiny_config, str(tmp_path / "mine"))
  # Refused before the (missing) run is even looked at.
  with pytest.raises(files.OutputError, match="--save_images="):
    infer_eval.evaluate_run(str(tmp_path / "no_run"), save_images=str(tmp_path / "mine"))
  with pytest.raises(files.OutputError, match="--save_images="):
    infer_eval.evaluate_ensemble([(str(tmp_path / "no_run"), "best")],
                          save_images=str(tmp_path / "mine"))
  with pytest.raises(files.OutputError, match="--workdir="):
    lr_range_lib.lr_range(tiny_config, str(tmp_path / "mine"), steps=2)
  with pytest.raises(files.OutputError, match="--workdir="):
    sweep_lib.Sweep(tiny_config, str(tmp_path / "mine"), [grid.parse_param("optim.g_lr=1e-4:1e-3:log:2")])
  assert os.listdir(tmp_path / "mine") == ["thesis.tex"]
  assert precious.read_text() == "three years of work"


def test_colorize_overwrites_only_its_own_outputs(tmp_path):
  sketch = tmp_path / "sketch.png"
  Image.fromarray(np.full((16, 16), 255, np.uint8)).save(sketch)
  photo = tmp_path / "photo.png"
  Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(photo)
  with pytest.raises(files.OutputError, match="--output=.*not written by colorize"):
    sketches.plan_outputs(str(sketch), str(photo), None)
  jpeg = tmp_path / "photo.jpg"
  Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(jpeg)
  with pytest.raises(files.OutputError):
    sketches.plan_outputs(str(sketch), str(jpeg), None)
  for name in ("out.png", "out.jpg"):  # what colorize wrote, it may write again
    files.save_image(str(tmp_path / name), np.zeros((8, 8, 3), np.uint8), sketches.COMMAND)
    assert sketches.plan_outputs(str(sketch), str(tmp_path / name), None) == [
        (str(sketch), str(tmp_path / name))]
  folder = tmp_path / "sketches"
  folder.mkdir()
  Image.fromarray(np.full((16, 16), 255, np.uint8)).save(folder / "a.png")
  _precious(tmp_path / "results")
  with pytest.raises(files.OutputError, match="--output=.*not empty"):
    sketches.plan_outputs(str(folder), str(tmp_path / "results"), None)
  assert sketches.plan_outputs(str(folder), str(tmp_path / "new"), None) == [
      (str(folder / "a.png"), str(tmp_path / "new" / "a.png"))]


def test_atomic_writes_leave_no_temporary_files(tmp_path):
  files.write_json(str(tmp_path / "a.json"), {"b": 1})
  files.save_image(str(tmp_path / "c.png"), np.zeros((4, 4, 3), np.uint8), "evaluate")
  assert sorted(os.listdir(tmp_path)) == ["a.json", "c.png"]
  assert files.written_by(str(tmp_path / "c.png"), "evaluate")
  assert not files.written_by(str(tmp_path / "c.png"), "colorize")
  assert not files.written_by(str(tmp_path / "a.json"), "evaluate")


def test_colorize_mirrors_a_folder_tree_and_refuses_colliding_outputs(tmp_path):
  src = tmp_path / "sketches"
  (src / "chapter1").mkdir(parents=True)
  for name in ("a.png", "chapter1/a.png", "chapter1/b.jpg"):
    Image.fromarray(np.full((16, 16), 255, np.uint8)).save(src / name)
  dst = tmp_path / "coloured"
  assert sketches.plan_outputs(str(src), str(dst), None) == [
      (str(src / "a.png"), str(dst / "a.png")),
      (str(src / "chapter1" / "a.png"), str(dst / "chapter1" / "a.png")),
      (str(src / "chapter1" / "b.jpg"), str(dst / "chapter1" / "b.png"))]
  Image.fromarray(np.full((16, 16), 255, np.uint8)).save(src / "chapter1" / "b.png")
  with pytest.raises(ValueError, match="b.jpg and .*b.png would both be written to"):
    sketches.plan_outputs(str(src), str(tmp_path / "other"), None)
  assert not (tmp_path / "other").exists()  # refused before anything was written


def test_colorize_never_writes_over_its_input_through_a_link(tmp_path):
  sketch = tmp_path / "sketch.png"
  Image.fromarray(np.full((16, 16), 255, np.uint8)).save(sketch)
  os.link(sketch, tmp_path / "hard.png")
  os.symlink(sketch, tmp_path / "soft.png")
  for alias in ("hard.png", "soft.png"):
    with pytest.raises(ValueError, match="must differ from --input"):
      sketches.plan_outputs(str(sketch), str(tmp_path / alias), None)
  os.symlink(tmp_path, tmp_path / "same_folder")
  with pytest.raises(ValueError, match="must differ from --input"):
    sketches.plan_outputs(str(tmp_path), str(tmp_path / "same_folder"), None)
