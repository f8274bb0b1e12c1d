"""The user-facing commands: colorize, evaluate, benchmark, train's command line."""

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from mangacolor_jax.infer import colorizer as colorizer_lib
from mangacolor_jax.infer import evaluation as infer_eval
from mangacolor_jax.infer import sketches
from mangacolor_jax.perf import timing
from mangacolor_jax.nn import hints as hints_lib
from mangacolor_jax.utils import scalars

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sha256(path):
  return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_colorize_real_sketch_any_size(hint_workdir, anime_faces, tmp_path):
  sketch = str(anime_faces / "real_sketches" / "s2p_v1_test09.jpg")
  before = sha256(sketch)
  with Image.open(sketch) as im:
    w, h = im.size
  # A large, non-square real sketch whose sides are not both multiples of 2**depth.
  assert h != w and (h % 8 or w % 8), (w, h)
  colorizer = colorizer_lib.Colorizer(hint_workdir)
  out = str(tmp_path / "out.png")
  sketches.colorize_file(colorizer, sketch, out, None, max_side=0, normalize=True)
  with Image.open(out) as im:
    assert im.size == (w, h) and im.mode == "RGB"  # padded, never squashed or cropped
  assert sha256(sketch) == before
  assert not [p for p in os.listdir(tmp_path) if ".tmp" in p]
  # --max_side works at a smaller scale and still returns the input's size.
  sketches.colorize_file(colorizer, sketch, out, None, max_side=256, normalize=True)
  with Image.open(out) as im:
    assert im.size == (w, h)


def test_colorize_hints_change_the_output(hint_workdir):
  colorizer = colorizer_lib.Colorizer(hint_workdir)
  assert colorizer.takes_hints
  rng = np.random.default_rng(0)
  lineart = np.where(rng.uniform(size=(40, 56, 1)) < 0.1, -1.0, 1.0).astype(np.float32)
  rgba = np.zeros((40, 56, 4), np.uint8)
  rgba[::4, ::4] = (255, 0, 0, 255)
  plain = colorizer(lineart)
  hinted = colorizer(lineart, hints_lib.hints_from_rgba(rgba))
  assert plain.shape == hinted.shape == (40, 56, 3)
  assert np.any(plain != hinted)
  with pytest.raises(ValueError, match="same size"):
    colorizer(lineart, hints_lib.hints_from_rgba(rgba[:20]))


def test_colorize_command_on_a_folder(hint_workdir, tmp_path):
  src = tmp_path / "sketches"
  src.mkdir()
  for name, size in (("a.png", (50, 30)), ("b.jpg", (33, 71))):
    Image.fromarray(np.full(size[::-1], 255, np.uint8)).save(src / name)
  dst = tmp_path / "coloured"
  subprocess.run([sys.executable, "-m", "mangacolor_jax.colorize", "--workdir", hint_workdir,
                  "--input", str(src), "--output", str(dst), "--checkpoint", "latest"],
                 check=True, cwd=REPO, capture_output=True, timeout=300)
  assert sorted(n for n in os.listdir(dst) if not n.startswith(".")) == ["a.png", "b.png"]
  with Image.open(dst / "b.png") as im:
    assert im.size == (33, 71)


def test_a_folder_is_coloured_in_batches_of_one_size_as_one_by_one(hint_workdir, tmp_path,
                                                                   monkeypatch):
  rng = np.random.default_rng(0)
  pairs = []
  for i, size in enumerate([(30, 50)] * 3 + [(41, 23)]):
    src = tmp_path / f"s{i}.png"
    Image.fromarray(rng.integers(0, 255, size, np.uint8)).save(src)
    pairs.append((str(src), str(tmp_path / f"batched{i}.png")))
  colorizer = colorizer_lib.Colorizer(hint_workdir, "latest")
  batches = []
  real = colorizer.predict_batch
  monkeypatch.setattr(colorizer, "predict_batch",
                      lambda x, h=None: batches.append(x.shape) or real(x, h))
  done = list(sketches.colorize_files(colorizer, pairs, max_side=0, normalize=True))
  assert [e for _, e in done] == [None] * 4
  assert sorted(b[0] for b in batches) == [1, 3]  # the three 30x50 sketches together
  for i, (src, dst) in enumerate(pairs):
    sketches.colorize_file(colorizer, src, str(tmp_path / f"single{i}.png"), None, 0, True)
    batched, single = (np.asarray(Image.open(p), np.int16)
                       for p in (dst, tmp_path / f"single{i}.png"))
    assert batched.shape == single.shape
    assert np.max(np.abs(batched - single)) <= 1


def test_evaluate_reports_hint_and_no_hint_metrics(hint_workdir, ci_faces, tmp_path):
  result = infer_eval.evaluate_run(hint_workdir, image_dir=str(ci_faces),
                        save_images=str(tmp_path / "eval"))
  assert result["images"] == 64
  for key in ("psnr", "ssim", "lab_l1", "colourfulness"):
    assert np.isfinite(result[key]) and np.isfinite(result[f"{key}_hints"])
  assert result["colourfulness_target"] > 0
  names = sorted(os.listdir(ci_faces))
  expected = sorted(os.path.splitext(n)[0] + ".png" for n in names)
  assert sorted(os.listdir(tmp_path / "eval" / "outputs")) == expected
  assert sorted(os.listdir(tmp_path / "eval" / "triptychs")) == expected
  with Image.open(tmp_path / "eval" / "triptychs" / expected[0]) as im:
    assert im.size == (3 * 48, 32)  # line art | output | target at the 32x48 crop


def test_evaluate_mirrors_nested_folders_and_refuses_colliding_names(hint_workdir, tmp_path):
  src = tmp_path / "faces"
  (src / "more").mkdir(parents=True)
  rng = np.random.default_rng(0)
  for name in ("a.png", "more/a.png"):
    Image.fromarray(rng.integers(0, 255, (32, 48, 3), np.uint8)).save(src / name)
  infer_eval.evaluate_run(hint_workdir, image_dir=str(src), save_images=str(tmp_path / "e"))
  for kind in ("outputs", "triptychs"):  # one file each, nothing written over another
    assert os.path.isfile(tmp_path / "e" / kind / "a.png")
    assert os.path.isfile(tmp_path / "e" / kind / "more" / "a.png")
  Image.fromarray(rng.integers(0, 255, (32, 48, 3), np.uint8)).save(src / "a.jpg")
  with pytest.raises(ValueError, match="a.jpg and .*a.png would both be saved as a.png"):
    infer_eval.evaluate_run(hint_workdir, image_dir=str(src),
                            save_images=str(tmp_path / "e2"))


def test_evaluate_skips_a_file_that_does_not_decode_and_names_it(hint_workdir, ci_faces):
  (ci_faces / "sub").mkdir()
  (ci_faces / "sub" / "page.jpg").write_bytes(b"<html>404</html>")
  result = infer_eval.evaluate_run(hint_workdir, image_dir=str(ci_faces))
  assert result["images"] == 64 and np.isfinite(result["psnr"])
  assert result["skipped_files"] == [os.path.join("sub", "page.jpg")]


def test_evaluate_gives_the_trainers_own_numbers_on_the_validation_split(hint_workdir):
  """Without --image_dir, evaluate scores the checkpoint on the validation split exactly as
  the trainer's evaluation did at that step (its TensorBoard scalars)."""
  result = infer_eval.evaluate_run(hint_workdir, checkpoint="latest")
  assert result["images"] == 16 and result["image_dir"] == "validation split"
  assert json.dumps(result)
  logged = scalars.read_scalars(hint_workdir)
  step = result["step"]
  for key in ("psnr", "ssim", "l1", "lab_l1", "colourfulness", "psnr_hints", "l1_hints"):
    np.testing.assert_allclose(result[key], logged[f"eval_{key}"][step], rtol=1e-5,
                               err_msg=key)


def test_benchmark_reports_speed_and_memory(tiny_config):
  result = timing.benchmark(tiny_config, steps=2, warmup=1, input_batches=2)
  for key in ("train_images_per_sec", "inference_images_per_sec", "input_images_per_sec",
              "compile_seconds", "peak_host_memory_mb", "input_images_per_sec_per_core",
              "device_lineart_ms", "device_lineart_gflop"):
    assert result[key] > 0, key
  assert result["device_count"] == 8 and result["device_kind"]


# A user's mistakes, each with the words its one error line must hold: the field, flag, file
# or variable to fix. Before any long work, each command prints `error: ...` and exits 2.
MISTAKES = {
    "config_field_typo": (["mangacolor_jax.train", "--config", "configs/tiny.py", "--workdir",
                           "{tmp}/run", "--config.model.norm=batch"], "--config.model.norm"),
    "bad_config_value": (["mangacolor_jax.train", "--config", "configs/tiny.py", "--workdir",
                          "{tmp}/run", "--config.model.gen.norm=group"], "config.model.gen.norm"),
    "value_not_a_number": (["mangacolor_jax.train", "--config", "configs/tiny.py",
                            "--workdir", "{tmp}/run", "--config.batch_size=16x"],
                           "--config.batch_size"),
    "config_file_missing": (["mangacolor_jax.train", "--config", "{tmp}/nope.py", "--workdir",
                             "{tmp}/run"], "nope.py"),
    "workdir_missing": (["mangacolor_jax.train", "--config", "configs/tiny.py"], "--workdir"),
    "cluster_half_given": (["mangacolor_jax.train", "--config", "configs/tiny.py", "--workdir",
                            "{tmp}/run", "@JAX_COORDINATOR_ADDRESS=127.0.0.1:1"],
                           "JAX_NUM_PROCESSES"),
    "benchmark_typo": (["mangacolor_jax.benchmark", "--config", "configs/tiny.py",
                        "--config.optim.lr=1"], "--config.optim.lr"),
    "doctor_bad_value": (["mangacolor_jax.doctor", "--config", "configs/tiny.py", "--workdir",
                          "{tmp}/doc", "--config.model.gen.norm=group"], "config.model.gen.norm"),
    "tune_bad_value": (["mangacolor_jax.tune", "lr_range", "--config", "configs/tiny.py",
                        "--workdir", "{tmp}/tune", "--config.model.gen.norm=group"],
                       "config.model.gen.norm"),
    "quality_bad_value": (["mangacolor_jax.quality", "--config", "configs/tiny.py",
                           "--workdir", "{tmp}/q", "--config.model.gen.norm=group"],
                          "config.model.gen.norm"),
    "evaluate_no_run": (["mangacolor_jax.evaluate", "--workdir", "{tmp}/none"], "{tmp}/none"),
    "crawl_bad_rate": (["mangacolor_jax.data.crawl", "--tags", "x", "--limit", "1", "--out",
                        "{tmp}/crawl", "--rate=-1"], "--rate"),
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_a_users_mistake_is_one_line_naming_what_to_fix(mistake, tmp_path):
  args, words = MISTAKES[mistake]
  args = [a.format(tmp=tmp_path) for a in args]
  env = dict(os.environ)
  env.update(a[1:].split("=", 1) for a in args if a.startswith("@"))
  result = subprocess.run([sys.executable, "-m"] + [a for a in args if a[0] != "@"],
                          cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
  assert result.returncode == 2, result.stderr[-3000:]
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith("error: ") and words.format(tmp=tmp_path) in last, last
  assert not os.path.exists(tmp_path / "run" / "checkpoints")


def test_colorize_a_folder_reports_a_bad_file_at_the_end_and_resumes(hint_workdir, tmp_path):
  src, dst = tmp_path / "sketches", tmp_path / "coloured"
  (src / "sub").mkdir(parents=True)
  for name in ("a.png", "sub/c.png"):
    Image.fromarray(np.full((40, 24), 255, np.uint8)).save(src / name)
  (src / "b.png").write_bytes(b"not an image")
  base = [sys.executable, "-m", "mangacolor_jax.colorize", "--workdir", hint_workdir,
          "--input", str(src), "--output", str(dst), "--checkpoint", "latest"]
  first = subprocess.run(base, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert first.returncode == 2 and "Traceback" not in first.stderr, first.stderr[-3000:]
  errors = [l for l in first.stderr.splitlines() if l.startswith("error: ")]
  assert len(errors) == 1 and "b.png" in errors[0], first.stderr[-3000:]
  assert (dst / "a.png").is_file() and (dst / "sub" / "c.png").is_file()  # not stopped by b
  (src / "b.png").unlink()
  kept = os.path.getmtime(dst / "a.png")
  os.utime(src / "sub" / "c.png")  # an input changed after its output was written
  again = subprocess.run(base, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert again.returncode == 0, again.stderr[-3000:]
  assert "1 of 2 outputs are newer" in again.stderr
  assert os.path.getmtime(dst / "a.png") == kept  # skipped: up to date
  assert os.path.getmtime(dst / "sub" / "c.png") >= os.path.getmtime(src / "sub" / "c.png")


def test_quality_table_only_needs_no_config(tmp_path):
  """`--table_only` lists the finished runs without a --config (an optional config flag
  left out is not a config that failed to load)."""
  result = subprocess.run([sys.executable, "-m", "mangacolor_jax.quality", "--workdir",
                           str(tmp_path), "--table_only"], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert (tmp_path / "results.md").read_text().startswith("| run |")
