"""Tests of `mangacolor_jax.data.crawl` against a fake booru served on 127.0.0.1.

The fake speaks both APIs' response shapes (Safebooru / Gelbooru 0.2 and Danbooru) and can be
told to misbehave per request: 429, 500, a slow answer, a truncated body, a wrong md5,
malformed JSON, a 422 with an error message. No test touches the internet; every request is
bounded by short time-outs.
"""

import hashlib
import http.server
import io
import json
import os
import re
import threading
import time
import urllib.parse

import numpy as np
from PIL import Image
import pytest

from mangacolor_jax.input_pipeline import synthetic
from mangacolor_jax.data import boards
from mangacolor_jax.data import crawler
from mangacolor_jax.data import http_client
from mangacolor_jax.utils import files

_SLOW_SECONDS = 1.0  # longer than the client's time-out in these tests


def _png(seed: int) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(synthetic.render(0, seed, 24, 24)).save(buffer, format="PNG")
  return buffer.getvalue()


def make_posts(n, overrides=None):
  """n posts, newest (highest id) first, each with its own small PNG."""
  posts = []
  for i in range(n):
    body = _png(i)
    post = {"id": 100 + i, "body": body, "md5": hashlib.md5(body).hexdigest(), "ext": "png",
            "tags": ["1girl", "solo", f"char_{i % 3}"], "character": [f"char_{i % 3}"],
            "rating": "g", "width": 512, "height": 640, "restricted": False}
    post.update((overrides or {}).get(post["id"], {}))
    posts.append(post)
  return sorted(posts, key=lambda p: -p["id"])


class FakeBooru:
  """A threaded HTTP server with a Safebooru and a Danbooru API over the same posts.

  `faults` maps a request key -- ("api", page token as a string) or ("image", post id) -- to
  a list of faults, consumed one per request: "429", "500", "slow", "truncated",
  "bad_md5", "malformed", "422".
  """

  def __init__(self, posts, faults=None):
    self.posts = posts
    self.faults = {k: list(v) for k, v in (faults or {}).items()}
    self.log = []  # (arrival time, kind, key, user agent)
    self.lock = threading.Lock()
    fake = self

    class Handler(http.server.BaseHTTPRequestHandler):

      def log_message(self, *args):  # keep pytest output clean
        pass

      def do_GET(self):  # pylint: disable=invalid-name
        fake.handle(self)

    self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    self.server.daemon_threads = True
    self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
    self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

  def __enter__(self):
    self.thread.start()
    return self

  def __exit__(self, *exc):
    self.server.shutdown()
    self.server.server_close()

  def count(self, kind):
    return sum(1 for entry in self.log if entry[1] == kind)

  # -- responses

  def _send(self, handler, status, body: bytes, content_type="application/json",
            headers=(), declared_length=None):
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(declared_length or len(body)))
    for k, v in headers:
      handler.send_header(k, v)
    handler.end_headers()
    try:
      handler.wfile.write(body)
      handler.wfile.flush()
    except (BrokenPipeError, ConnectionResetError):
      pass  # the client gave up (a time-out test)

  def _safebooru_page(self, query):
    pid, limit = int(query["pid"][0]), int(query["limit"][0])
    chunk = self.posts[pid * limit:(pid + 1) * limit]
    if not chunk:
      return b""  # Safebooru's answer past the last page
    out = []
    for i, p in enumerate(chunk):
      item = {"id": p["id"], "hash": p["md5"], "directory": "7", "image": f"{p['id']}.png",
              "tags": " ".join(p["tags"]), "width": p["width"], "height": p["height"],
              "rating": {"g": "general", "s": "sensitive", "q": "questionable",
                         "e": "explicit"}[p["rating"]], "owner": "x", "score": 1}
      if i % 2:  # both shapes: with a file_url, and directory/image only
        item["file_url"] = f"{self.base_url}/images/7/{p['id']}.{p['ext']}"
      else:
        item["image"] = f"{p['id']}.{p['ext']}"
      out.append(item)
    return json.dumps(out).encode()

  def _danbooru_page(self, query):
    page, limit = query["page"][0], int(query["limit"][0])
    if page.startswith("b"):
      chunk = [p for p in self.posts if p["id"] < int(page[1:])][:limit]
    else:
      chunk = self.posts[(int(page) - 1) * limit:int(page) * limit]
    out = []
    for p in chunk:
      item = {"id": p["id"], "tag_string": " ".join(p["tags"]),
              "tag_string_character": " ".join(p["character"]), "rating": p["rating"],
              "image_width": p["width"], "image_height": p["height"], "file_ext": p["ext"]}
      if not p["restricted"]:  # restricted posts come without md5 and file_url
        item.update(md5=p["md5"], file_url=f"{self.base_url}/data/{p['id']}.{p['ext']}")
      out.append(item)
    return json.dumps(out).encode()

  def handle(self, handler):
    url = urllib.parse.urlparse(handler.path)
    query = urllib.parse.parse_qs(url.query)
    if url.path in ("/index.php", "/posts.json"):
      kind = "api"
      key = query["pid"][0] if "pid" in query else query["page"][0]
    else:
      kind = "image"
      key = int(re.search(r"(\d+)\.\w+$", url.path).group(1))
    with self.lock:
      self.log.append((time.monotonic(), kind, key, handler.headers.get("User-Agent")))
      pending = self.faults.get((kind, str(key) if kind == "api" else key), [])
      fault = pending.pop(0) if pending else None
    if fault == "429":
      return self._send(handler, 429, b"slow down", headers=[("Retry-After", "0")])
    if fault == "500":
      return self._send(handler, 500, b"oops")
    if fault == "422":
      return self._send(handler, 422, json.dumps(
          {"success": False, "message": "You cannot search for more than 2 tags"}).encode())
    if fault == "slow":
      time.sleep(_SLOW_SECONDS)
    if fault == "trickle":  # a byte every 0.1 s: never silent for a time-out
      handler.send_response(200)
      handler.send_header("Content-Length", "400")
      handler.end_headers()
      try:
        for _ in range(400):
          handler.wfile.write(b"x")
          handler.wfile.flush()
          time.sleep(0.1)
      except (BrokenPipeError, ConnectionResetError):
        pass
      return None
    if fault == "error_object":  # Gelbooru's shape of a refusal, answered with a 200
      return self._send(handler, 200, json.dumps(
          {"success": False, "message": "Search error: API limited"}).encode())
    if fault == "odd_entries":  # the page's posts after three entries that are not
      odd = ["not a post", 7, {"id": "12a", "hash": "0" * 32, "image": "x.png",
                               "directory": "1"}]
      return self._send(handler, 200, json.dumps(
          odd + json.loads(self._safebooru_page(query))).encode())
    if fault == "foreign_urls":
      return self._send(handler, 200, json.dumps(
          [{"id": 1, "hash": "0" * 32, "file_url": "file:///etc/passwd"},
           {"id": 2, "hash": "1" * 32, "file_url": "http://169.254.169.254/x.png"}]
          + json.loads(self._safebooru_page(query))).encode())
    if kind == "api":
      if fault == "malformed":
        return self._send(handler, 200, b'[{"id": 1, "hash": ')
      if url.path == "/index.php":
        return self._send(handler, 200, self._safebooru_page(query))
      return self._send(handler, 200, self._danbooru_page(query))
    post = next((p for p in self.posts if p["id"] == key), None)
    if post is None:
      return self._send(handler, 404, b"no such file", content_type="text/plain")
    body = post["body"]
    if fault == "bad_md5":
      body = body[:-1] + bytes([body[-1] ^ 0xFF])
    if fault == "truncated":
      return self._send(handler, 200, body[:len(body) // 2], content_type="image/png",
                        declared_length=len(body))
    return self._send(handler, 200, body, content_type="image/png")


def _client(**kwargs):
  args = dict(rate=500.0, timeout=0.3, max_retries=3, backoff=0.01, max_backoff=0.05)
  args.update(kwargs)
  return http_client.HttpClient(**args)


def _manifest(out):
  with open(os.path.join(out, crawler.MANIFEST), encoding="utf-8") as f:
    return [json.loads(line) for line in f]


def _check_files(out, entries):
  """Every manifest file is in place with its md5; no temporary file is left behind."""
  for entry in entries:
    with open(os.path.join(out, entry["file"]), "rb") as f:
      assert hashlib.md5(f.read()).hexdigest() == entry["md5"], entry["id"]
  names = sorted(os.listdir(os.path.join(out, crawler.IMAGES)))
  assert names == sorted(os.path.basename(e["file"]) for e in entries)


def test_safebooru_downloads_verifies_and_resumes(tmp_path):
  posts = make_posts(7)
  out = str(tmp_path / "raw")
  # A file already in place with the right md5 (a run killed before its manifest line).
  os.makedirs(os.path.join(out, "images"))
  files.write_marker(out, crawler.COMMAND)  # that run's
  recovered = posts[1]
  with open(os.path.join(out, "images", f"safebooru_{recovered['id']}.png"), "wb") as f:
    f.write(recovered["body"])
  with FakeBooru(posts) as server:
    report = crawler.crawl(crawler.CrawlOptions("safebooru", "1girl solo", 5, out, min_side=256,
                                                page_size=3, base_url=server.base_url),
                           client=_client())
    assert report["stopped_because"] == "limit"
    assert report["downloaded"] == 4 and report["recovered"] == 1
    entries = _manifest(out)
    assert [e["post_id"] for e in entries] == [p["id"] for p in posts[:5]]
    _check_files(out, entries)
    first = entries[0]
    assert first["tags"] == posts[0]["tags"] and first["rating"] == "general"
    assert (first["width"], first["height"]) == (512, 640)
    assert first["source_url"].startswith(server.base_url + "/images/7/")
    assert server.count("image") == 4  # not the recovered one
    assert all(entry[3] == http_client.USER_AGENT for entry in server.log)
    assert "mangacolor_jax" in http_client.USER_AGENT

    # Same limit again: nothing to do, not even an API request.
    requests = len(server.log)
    again = crawler.crawl(crawler.CrawlOptions("safebooru", "1girl solo", 5, out, min_side=256,
                                               page_size=3, base_url=server.base_url),
                          client=_client())
    assert len(server.log) == requests and again["downloaded"] == 0
    assert _manifest(out) == entries

    # A run killed mid-line leaves a partial line: it is dropped, the rest goes on.
    with open(os.path.join(out, crawler.MANIFEST), "a", encoding="utf-8") as f:
      f.write('{"id": "safebooru_9')
    more = crawler.crawl(crawler.CrawlOptions("safebooru", "1girl solo", 50, out, min_side=256,
                                              page_size=3, base_url=server.base_url),
                         client=_client())
    assert more["stopped_because"] == "no_more_posts"
    assert more["downloaded"] == 2  # only the two posts it did not have
    assert server.count("image") == 6
    entries = _manifest(out)
    assert sorted(e["post_id"] for e in entries) == sorted(p["id"] for p in posts)
    _check_files(out, entries)
    # It resumed on the page where the first run stopped (pid 1), not at pid 0.
    api_keys = [key for _, kind, key, _ in server.log if kind == "api"]
    assert api_keys == ["0", "1", "1", "2", "3"]


def test_a_killed_runs_temporary_files_are_removed_and_nothing_else(tmp_path):
  out = str(tmp_path / "raw")
  os.makedirs(os.path.join(out, "images"))
  files.write_marker(out, crawler.COMMAND)
  # What `files.write_bytes` leaves when killed before its rename, and a look-alike.
  temporary = os.path.join(out, "images", ".safebooru_100.png.4242-0123abcd.tmp")
  other = os.path.join(out, "images", ".safebooru_100.png.part-4242")
  for path in (temporary, other):
    with open(path, "wb") as f:
      f.write(b"half a file")
  with FakeBooru(make_posts(2)) as server:
    crawler.crawl(crawler.CrawlOptions("safebooru", "1girl", 2, out, min_side=0,
                                       base_url=server.base_url),
                  client=_client())
  assert not os.path.exists(temporary) and os.path.exists(other)
  assert len(_manifest(out)) == 2


def test_danbooru_shape_filters_and_cursor(tmp_path):
  posts = make_posts(9, {
      101: {"rating": "s"}, 102: {"rating": "e"},
      103: {"tags": ["1girl", "solo", "comic"]},
      104: {"width": 100},
      105: {"restricted": True},
      106: {"ext": "gif"},
  })
  out = str(tmp_path / "raw")
  with FakeBooru(posts) as server:
    report = crawler.crawl(crawler.CrawlOptions("danbooru", "1girl solo", 10, out,
                                                exclude_tags=["comic"], rating="safe",
                                                min_side=256, page_size=4,
                                                base_url=server.base_url),
                           client=_client())
  assert report["skipped"] == {"rating": 2, "excluded_tag": 1, "too_small": 1, "no_file": 1,
                               "file_type": 1}
  entries = _manifest(out)
  assert sorted(e["post_id"] for e in entries) == [100, 107, 108]
  _check_files(out, entries)
  assert all(e["rating"] == "general" for e in entries)
  assert {e["post_id"]: e["character_tags"] for e in entries}[107] == ["char_1"]
  # Page 1, then the b<id> cursor below the lowest id seen.
  api_keys = [key for _, kind, key, _ in server.log if kind == "api"]
  assert api_keys == ["1", "b105", "b101", "b100"]
  # Any rating, explicitly listed.
  assert crawler.parse_ratings("general,explicit") == ("general", "explicit")
  assert crawler.parse_ratings("any") is None
  with pytest.raises(ValueError, match="--rating"):
    crawler.parse_ratings("nsfw")


def test_crawl_survives_faults(tmp_path):
  posts = make_posts(6)
  ids = [p["id"] for p in posts]
  faults = {
      ("api", "0"): ["429", "malformed", "500"],
      ("image", ids[0]): ["500", "slow"],
      ("image", ids[1]): ["truncated"],
      ("image", ids[2]): ["bad_md5", "bad_md5"],  # twice: the post is given up
      ("image", ids[3]): ["bad_md5"],  # once: the second download is right
      ("image", ids[4]): ["429", "429"],
  }
  out = str(tmp_path / "raw")
  start = time.monotonic()
  with FakeBooru(posts, faults) as server:
    report = crawler.crawl(crawler.CrawlOptions("safebooru", "1girl", 10, out, min_side=0,
                                                page_size=10, base_url=server.base_url,
                                                md5_attempts=2),
                           client=_client())
  assert time.monotonic() - start < 10
  entries = _manifest(out)
  assert sorted(e["post_id"] for e in entries) == sorted(set(ids) - {ids[2]})
  _check_files(out, entries)  # nothing short, corrupt or temporary was kept
  assert report["failed"] == {"md5_mismatch": 1}
  # 429 + malformed + 500 on the page; 500 + time-out, short body, 2 x 429 on images.
  assert report["retries"] == 8
  assert report["stopped_because"] == "no_more_posts"


def test_crawl_stops_clearly_and_keeps_its_work(tmp_path):
  posts = make_posts(6)
  out = str(tmp_path / "raw")
  with FakeBooru(posts, {("api", "1"): ["malformed"] * 10}) as server:
    with pytest.raises(boards.CrawlError, match="not JSON") as info:
      crawler.crawl(crawler.CrawlOptions("safebooru", "1girl", 10, out, min_side=0, page_size=3,
                                         base_url=server.base_url),
                    client=_client(max_retries=2))
    assert "pid=1" in str(info.value)
  entries = _manifest(out)
  assert len(entries) == 3  # page 0 was kept
  _check_files(out, entries)
  with open(os.path.join(out, crawler.STATE), encoding="utf-8") as f:
    assert json.load(f)["next_page"] == 1  # a re-run starts at the failing page
  # A 4xx is not retried: its message is the error.
  with FakeBooru(posts, {("api", "1"): ["422"]}) as server:
    with pytest.raises(boards.CrawlError, match="more than 2 tags"):
      crawler.crawl(crawler.CrawlOptions("danbooru", "a b c", 10, str(tmp_path / "d"),
                                         min_side=0, base_url=server.base_url),
                    client=_client())
    assert server.count("api") == 1


def test_max_seconds_bounds_a_server_that_trickles(tmp_path):
  posts = make_posts(1)
  with FakeBooru(posts, {("image", posts[0]["id"]): ["trickle"]}) as server:
    client = _client(max_retries=0, max_seconds=0.5, timeout=5.0)
    start = time.monotonic()
    with pytest.raises(http_client.FetchError, match="still reading after 0.5 s"):
      client.get(f"{server.base_url}/data/{posts[0]['id']}.png")
    assert time.monotonic() - start < 2.0  # not the 40 s the whole body takes


def test_error_objects_are_errors_and_bad_entries_are_skipped(tmp_path):
  posts = make_posts(4)
  with FakeBooru(posts, {("api", "0"): ["error_object"]}) as server:
    with pytest.raises(boards.CrawlError, match="API limited"):
      crawler.crawl(crawler.CrawlOptions("safebooru", "1girl", 10, str(tmp_path / "a"),
                                         min_side=0, base_url=server.base_url),
                    client=_client())
  with FakeBooru(posts, {("api", "0"): ["odd_entries"]}) as server:
    report = crawler.crawl(crawler.CrawlOptions("safebooru", "1girl", 10,
                                                str(tmp_path / "b"), min_side=0,
                                                page_size=4, base_url=server.base_url),
                           client=_client())
  assert report["skipped"]["no_file"] == 3  # a string, a number, an id that is not one
  assert report["downloaded"] == 4  # the page's real posts were taken all the same


def test_download_urls_must_be_http_on_the_sites_hosts(tmp_path):
  posts = make_posts(2)
  with FakeBooru(posts, {("api", "0"): ["foreign_urls"]}) as server:
    report = crawler.crawl(crawler.CrawlOptions("safebooru", "1girl", 10,
                                                str(tmp_path / "a"), min_side=0,
                                                page_size=2, base_url=server.base_url),
                           client=_client())
    assert server.count("image") == 2  # only the board's own files were fetched
  assert report["skipped"]["url_not_allowed"] == 2
  assert report["downloaded"] == 2
  assert boards.url_allowed("https://cdn.donmai.us/a.png", "https://danbooru.donmai.us",
                            boards.SITES["danbooru"].file_hosts)
  assert not boards.url_allowed("https://evil.example/a.png", "https://danbooru.donmai.us",
                                boards.SITES["danbooru"].file_hosts)
  assert boards.url_allowed("https://evil.example/a.png", "https://danbooru.donmai.us", (),
                            any_host=True)
  assert not boards.url_allowed("file:///etc/passwd", "", (), any_host=True)


def test_rate_limit_spaces_every_request(tmp_path):
  # Exact, with a fake clock: 5 requests at 4 per second wait 4 x 0.25 s.
  now, slept = [0.0], []

  def sleep(s):
    slept.append(s)
    now[0] += s

  client = http_client.HttpClient(rate=4.0, sleep=sleep, clock=lambda: now[0])
  for _ in range(5):
    client._wait_turn()  # pylint: disable=protected-access
  assert sum(slept) == pytest.approx(1.0)
  # And for real, as the server sees it (retries included).
  posts = make_posts(3)
  with FakeBooru(posts, {("image", posts[0]["id"]): ["500"]}) as server:
    crawler.crawl(crawler.CrawlOptions("safebooru", "1girl", 3, str(tmp_path / "raw"), min_side=0,
                                       page_size=3, base_url=server.base_url),
                  client=_client(rate=20.0))
  times = np.array([entry[0] for entry in server.log])
  assert len(times) == 5  # 1 page, 3 images, 1 retry
  assert np.diff(times).min() > 0.5 / 20.0
  assert times[-1] - times[0] >= 0.9 * 4 / 20.0
  with pytest.raises(ValueError, match="--rate"):
    http_client.HttpClient(rate=0)
