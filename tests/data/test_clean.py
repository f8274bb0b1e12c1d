"""Tests of `mangacolor_jax.data.clean` on a folder the test makes: every bad kind of file
the cleaner must drop, beside good images in every colour mode it must convert."""

import hashlib
import io
import json
import os
from pathlib import Path
import struct
import zlib

import numpy as np
from PIL import Image
from PIL import ImageDraw
from PIL import ImageOps
import pytest

from mangacolor_jax.data import cleaner
from mangacolor_jax.data import inputs
from mangacolor_jax.data import similarity


def drawing(seed: int, h: int = 96, w: int = 128) -> np.ndarray:
  """A distinct flat-colour 'illustration': outlined ellipses filling the frame."""
  rng = np.random.default_rng(seed)
  image = Image.new("RGB", (w, h), tuple(int(c) for c in rng.integers(150, 256, 3)))
  draw = ImageDraw.Draw(image)
  for _ in range(6):
    cx, cy = rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * h
    rx, ry = rng.uniform(0.15, 0.4) * w, rng.uniform(0.15, 0.4) * h
    draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry],
                 fill=tuple(int(c) for c in rng.integers(0, 256, 3)), outline=(20, 20, 20),
                 width=2)
  return np.asarray(image)


def _bomb_png() -> bytes:
  """A valid PNG header claiming 10000 x 8000 pixels, with almost no data.

  80 Mpx: over the cleaner's 50 Mpx default, under PIL's own limit (89 Mpx), so only the
  cleaner's check can catch it.
  """
  def chunk(kind, data):
    return (struct.pack(">I", len(data)) + kind + data +
            struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
  ihdr = struct.pack(">IIBBBBB", 10000, 8000, 8, 2, 0, 0, 0)
  return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) +
          chunk(b"IDAT", zlib.compress(b"\x00" * 100)) + chunk(b"IEND", b""))


def make_folder(root: Path):
  """Writes the test folder; returns ({good file: its expected RGB}, {bad file: reason})."""
  root.mkdir(parents=True)
  (root / "sub").mkdir()
  good, bad = {}, {}

  def save(name, pil, expected, **kwargs):
    pil.save(root / name, **kwargs)
    good[name] = expected

  rgb = drawing(1)
  save("good_rgb.png", Image.fromarray(rgb), rgb)
  jpeg = drawing(2)
  Image.fromarray(jpeg).save(root / "good_jpeg.jpg", quality=95)
  good["good_jpeg.jpg"] = np.asarray(Image.open(root / "good_jpeg.jpg").convert("RGB"))
  # RGBA: the left half is transparent and must come out white.
  rgba = np.concatenate([drawing(3), np.full((96, 128, 1), 255, np.uint8)], -1)
  rgba[:, :64, 3] = 0
  expected = rgba[..., :3].copy()
  expected[:, :64] = 255
  save("good_rgba.png", Image.fromarray(rgba), expected)
  # Palette with a transparent index.
  pal = Image.fromarray(drawing(4)).quantize(16)
  pal.info["transparency"] = 0
  save("good_palette.png", pal, np.asarray(pal.convert("RGBA").convert("RGB")), transparency=0)
  transparent = np.asarray(pal) == 0
  good["good_palette.png"] = good["good_palette.png"].copy()
  good["good_palette.png"][transparent] = 255
  cmyk = Image.fromarray(drawing(5)).convert("CMYK")
  cmyk.save(root / "good_cmyk.jpg", quality=95)
  good["good_cmyk.jpg"] = np.asarray(Image.open(root / "good_cmyk.jpg").convert("RGB"))
  # 16-bit grayscale: must be scaled down, not clipped to white.
  gray8 = np.asarray(Image.fromarray(drawing(6)).convert("L"))
  gray16 = gray8.astype(np.uint16) * 257
  Image.fromarray(gray16).save(root / "good_gray16.png")
  assert Image.open(root / "good_gray16.png").mode.startswith("I")
  good["good_gray16.png"] = np.repeat(gray8[..., None], 3, -1)
  gray = np.asarray(Image.fromarray(drawing(7)).convert("L"))
  save("sub/good_gray.png", Image.fromarray(gray), np.repeat(gray[..., None], 3, -1))
  la = Image.fromarray(drawing(8)).convert("LA")
  save("good_la.png", la, np.asarray(la.convert("RGB")))
  webp = drawing(9)
  save("good_lossless.webp", Image.fromarray(webp), webp, lossless=True)
  # EXIF orientation 6: stored sideways, shown rotated 90 degrees clockwise.
  exif = Image.Exif()
  exif[0x0112] = 6
  stored = drawing(10)
  Image.fromarray(stored).save(root / "good_exif.jpg", quality=95, exif=exif)
  good["good_exif.jpg"] = np.asarray(ImageOps.exif_transpose(Image.open(root / "good_exif.jpg")))
  assert good["good_exif.jpg"].shape == (128, 96, 3)

  (root / "bad_empty.jpg").write_bytes(b"")
  bad["bad_empty.jpg"] = "undecodable"
  (root / "bad_html.png").write_text("<html><body>404 Not Found</body></html>")
  bad["bad_html.png"] = "undecodable"
  buffer = io.BytesIO()
  Image.fromarray(drawing(11)).save(buffer, format="JPEG", quality=95)
  (root / "bad_truncated.jpg").write_bytes(buffer.getvalue()[:len(buffer.getvalue()) // 2])
  bad["bad_truncated.jpg"] = "undecodable"
  (root / "bad_bomb.png").write_bytes(_bomb_png())
  bad["bad_bomb.png"] = "decompression_bomb"
  Image.fromarray(drawing(12, 40, 50)).save(root / "bad_tiny.png")
  bad["bad_tiny.png"] = "too_small"
  # Exact duplicates sort after their originals: a byte copy, and a lossless re-encode.
  (root / "zz_copy.jpg").write_bytes((root / "good_jpeg.jpg").read_bytes())
  bad["zz_copy.jpg"] = "exact_duplicate"
  Image.fromarray(webp).save(root / "zz_reencoded.png")
  bad["zz_reencoded.png"] = "exact_duplicate"
  # A slightly brighter, smaller copy: a near duplicate (the larger image is kept).
  near = Image.fromarray(np.clip(rgb.astype(int) + 6, 0, 255).astype(np.uint8))
  near.resize((115, 86), Image.Resampling.LANCZOS).save(root / "sub/aa_near.jpg", quality=90)
  bad["sub/aa_near.jpg"] = "near_duplicate"
  noise = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
  Image.fromarray(noise).save(root / "zz_intricate.png")
  bad["zz_intricate.png"] = "too_intricate"
  canvas = np.full((200, 200, 3), 255, np.uint8)
  canvas[150:180, 20:45] = drawing(13, 30, 25)
  Image.fromarray(canvas).save(root / "zz_small_character.png")
  bad["zz_small_character.png"] = "small_character"
  (root / "notes.txt").write_text("not an image, not a candidate")
  Image.fromarray(drawing(14)).save(root / ".hidden.png")  # e.g. a crawler's temp file
  return good, bad


def _snapshot(root: Path):
  return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(),
                                     p.stat().st_mtime_ns)
          for p in sorted(root.rglob("*")) if p.is_file()}


def _manifest(out: Path):
  return [json.loads(line) for line in (out / inputs.MANIFEST).read_text().splitlines()]


def test_clean_keeps_every_good_image_and_drops_every_bad_one(tmp_path):
  good, bad = make_folder(tmp_path / "in")
  before = _snapshot(tmp_path / "in")
  out = tmp_path / "out"
  report = cleaner.clean(str(tmp_path / "in"), str(out), cleaner.Options(workers=2))
  assert _snapshot(tmp_path / "in") == before  # nothing under --input changed
  kept = {e["source"]: e for e in _manifest(out)}
  assert sorted(kept) == sorted(good)
  dropped = {json.loads(line)["source"]: json.loads(line)["reason"]
             for line in (out / "dropped.jsonl").read_text().splitlines()}
  assert dropped == bad
  counts = report["counts"]
  assert counts["kept"] == len(good) and counts["files"] == len(good) + len(bad)
  assert counts["ignored_non_image_files"] == 1  # notes.txt; .hidden.png is not looked at
  for reason in inputs.REASONS:
    assert counts["dropped"][reason] == sum(r == reason for r in bad.values()), reason
  # Every kept image is an RGB PNG with the expected pixels.
  for source, expected in good.items():
    with Image.open(out / kept[source]["file"]) as im:
      assert im.format == "PNG" and im.mode == "RGB", source
      got = np.asarray(im)
    assert got.shape == expected.shape, source
    np.testing.assert_allclose(got, expected, atol=1, err_msg=source)
  assert sorted(os.listdir(out / "images")) == sorted(e["file"][7:] for e in kept.values())
  # The report a person looks at: sheets for kept, densest, every reason; the histogram.
  sheets = set(os.listdir(out / "sheets"))
  assert {"kept.png", "kept_densest.png"} <= sheets
  assert {f"dropped_{r}.png" for r in set(bad.values())} <= sheets
  with Image.open(out / "line_density.png") as im:
    assert im.size == (640, 240)
  assert "too_intricate | 1" in (out / "report.md").read_text()
  density = json.loads((out / "report.json").read_text())["line_density"]
  assert density["count"] == len(good) + 3  # decodable, big enough, not an exact copy
  assert max(e["line_density"] for e in kept.values()) < 0.35
  assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no staging left


def test_clean_reruns_and_refuses_unsafe_outputs(tmp_path):
  inp = tmp_path / "in"
  inp.mkdir()
  for i in range(3):
    Image.fromarray(drawing(20 + i)).save(inp / f"{i}.png")
  out = tmp_path / "out"
  cleaner.clean(str(inp), str(out), cleaner.Options(workers=1))
  first = _manifest(out)
  (out / "images" / "0.png").unlink()  # the output is replaced whole: mended
  cleaner.clean(str(inp), str(out), cleaner.Options(workers=1))
  assert _manifest(out) == first
  assert (out / "images" / "0.png").exists()
  with pytest.raises(ValueError, match="outside --input"):
    cleaner.clean(str(inp), str(inp / "cleaned"))
  other = tmp_path / "precious"
  other.mkdir()
  (other / "thesis.txt").write_text("do not delete")
  with pytest.raises(ValueError, match="not the output of an earlier clean"):
    cleaner.clean(str(inp), str(other))
  assert (other / "thesis.txt").read_text() == "do not delete"


def test_balance_caps_images_per_character(tmp_path):
  inp = tmp_path / "in"
  (inp / "images").mkdir(parents=True)
  lines = []
  for i in range(6):
    Image.fromarray(drawing(30 + i)).save(inp / "images" / f"safebooru_{i}.png")
    lines.append(json.dumps({"id": f"safebooru_{i}", "file": f"images/safebooru_{i}.png",
                             "tags": ["1girl", f"char_{i % 2}" if i < 5 else "other"],
                             "character_tags": [f"char_{i % 2}"] if i < 5 else []}))
  (inp / "manifest.jsonl").write_text("\n".join(lines) + "\n")
  report = cleaner.clean(str(inp), str(tmp_path / "out"), cleaner.Options(max_per_tag=2))
  kept = _manifest(tmp_path / "out")
  per_char = {}
  for e in kept:
    for t in e["character_tags"]:
      per_char[t] = per_char.get(t, 0) + 1
  assert per_char == {"char_0": 2, "char_1": 2}
  assert report["counts"]["dropped"]["balance"] == 1  # 3 x char_0, 2 x char_1, 1 other
  assert {e["id"] for e in kept} >= {"safebooru_5"}
  assert all(e["tags"] for e in kept)  # the crawl's metadata travels on
  # Tags named on the command line instead: cap "1girl" at 4.
  report = cleaner.clean(str(inp), str(tmp_path / "out2"),
                       cleaner.Options(max_per_tag=4, balance_tags=("1girl",)))
  assert report["counts"]["kept"] == 4
  with pytest.raises(ValueError, match="--balance_tags"):
    no_chars = tmp_path / "plain"
    no_chars.mkdir()
    Image.fromarray(drawing(40)).save(no_chars / "a.png")
    cleaner.clean(str(no_chars), str(tmp_path / "out3"), cleaner.Options(max_per_tag=1))


def test_near_duplicate_pairs_need_close_hashes_and_colours():
  hashes = np.array([0b0, 0b11, 0b1111, 0b11 << 40], np.uint64)
  colours = np.zeros((4, 8, 8, 3), np.float32)
  colours[3] = 0.5
  assert similarity.near_duplicate_pairs(hashes, colours, 2, 0.06) == [(0, 1), (1, 2)]
  assert similarity.near_duplicate_pairs(hashes, colours, 4, 0.06) == [(0, 1), (0, 2), (1, 2)]
  # Hash 3 is 2 bits from 0 but a different colour: not a near copy.
  assert (0, 3) not in similarity.near_duplicate_pairs(hashes, colours, 4, 0.06)
  assert (0, 3) in similarity.near_duplicate_pairs(hashes, colours, 4, 0.6)
  # Blocks do not change the answer.
  rng = np.random.default_rng(0)
  many = rng.integers(0, 2**63, 300, dtype=np.uint64) & np.uint64(0xFFFF)
  col = np.zeros((300, 8, 8, 3), np.float32)
  assert (similarity.near_duplicate_pairs(many, col, 3, 1.0, block=7) ==
          similarity.near_duplicate_pairs(many, col, 3, 1.0))


def test_phash_survives_resizing_and_separates_drawings():
  a = drawing(50, 192, 256)
  small = np.asarray(Image.fromarray(a).resize((128, 96), Image.Resampling.LANCZOS))
  assert similarity.hamming(np.uint64(similarity.phash(a)),
                            np.uint64(similarity.phash(small))) <= 4
  assert similarity.hamming(np.uint64(similarity.phash(a)),
                            np.uint64(similarity.phash(drawing(51)))) > 12


def test_phash_is_the_imagehash_recipe():
  # imagehash.phash: 32x32 LANCZOS gray, scipy DCT-II on both axes, the 8x8 low
  # frequencies against their median, bits row-major with the first the highest.
  from scipy import fftpack  # pylint: disable=g-import-not-at-top
  for seed in (60, 61, 62):
    rgb = drawing(seed)
    gray = np.asarray(Image.fromarray(rgb).convert("L").resize(
        (32, 32), Image.Resampling.LANCZOS), np.float64)
    low = fftpack.dct(fftpack.dct(gray, axis=0), axis=1)[:8, :8]
    bits = (low > np.median(low)).ravel()
    assert similarity.phash(rgb) == int("".join("1" if b else "0" for b in bits), 2)

