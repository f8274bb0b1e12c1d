r"""Command line: download illustrations by tag from a Safebooru / Danbooru-style image board.

  python -m mangacolor_jax.data.crawl --site safebooru --tags "1girl solo" --limit 500 \
      --out data/raw [--exclude_tags "comic monochrome"] [--rating safe] [--min_side 256] \
      [--rate 1.0] [--base_url URL]

Talks to the boards' public JSON APIs: Safebooru (Gelbooru 0.2:
`/index.php?page=dapi&s=post&q=index&json=1&tags=..&limit=..&pid=..`) and Danbooru
(`/posts.json?tags=..&limit=..&page=..`). `--base_url` points either at another host that
speaks the same API (a mirror, or the fake server of the tests).

Polite: at most `--rate` requests per second (API pages and image downloads together), a
User-Agent naming the project, exponential back-off on 429 and 5xx (a Retry-After header is
honoured, capped at `--max_backoff`), time-outs, and at most `--max_retries` retries per
request.

`--out` must be a new or empty folder, or one that crawl made (its marker,
`.mangacolor_jax.json`): crawl never writes into a folder of someone else's.

Safe and resumable: each image is downloaded into memory, its md5 checked against the one the
API gives, written to a hidden temporary name and renamed into place; a short, corrupt or
mismatched download is never kept. `--out/manifest.jsonl` gets one JSON line per image kept
(id, site, post id, md5, tags, character tags when the site gives them, rating, width,
height, file, source URL). Re-running with the same `--out` continues where the last run
stopped (the page it was on is in `crawl_state.json`) and downloads nothing twice: posts in
the manifest are skipped, and a file that is already in place with the right md5 (a run
killed between the rename and the manifest line) is recorded without downloading it again.
`--limit` counts the images in the manifest, so re-running a finished crawl does nothing and
raising the limit downloads only the difference.

Filters run on the API's metadata, before any download: `--rating` (comma-separated
general / sensitive / questionable / explicit; `safe` means general, `any` turns the filter
off), `--exclude_tags` (a post with any of them is skipped), `--min_side` (the shorter side
in pixels) and the file type (JPEG, PNG and WebP only: no GIF, video or archives). Counts of
what was skipped, and why, go to `crawl_report.json` and the log.
"""

import dataclasses
import hashlib
import http.client
import json
import os
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union
import urllib.error
import urllib.parse
import urllib.request

from absl import app
from absl import flags
from absl import logging

from mangacolor_jax.utils import files

USER_AGENT = ("mangacolor_jax/0.1 (line-art colorization data-set crawler; "
              "https://pypi.org/project/mangacolor_jax; python-urllib)")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
RATINGS = ("general", "sensitive", "questionable", "explicit")
MANIFEST = "manifest.jsonl"
STATE = "crawl_state.json"
REPORT = "crawl_report.json"
IMAGES = "images"
COMMAND = "crawl"

PageToken = Union[int, str]


class CrawlError(Exception):
  """The crawl cannot go on (an API that keeps failing, a rejected query)."""


class FetchError(Exception):
  """A request failed for good (a 4xx, or retries exhausted)."""

  def __init__(self, message: str, status: Optional[int] = None):
    super().__init__(message)
    self.status = status


class _Retry(Exception):
  """A failure worth retrying (429, 5xx, time-out, short body, dropped connection)."""

  def __init__(self, message: str, retry_after: Optional[float] = None):
    super().__init__(message)
    self.retry_after = retry_after


# ----------------------------------------------------------------------------------------
# Sites: URL of a page of posts and the shape of its JSON.


@dataclasses.dataclass
class Post:
  """The metadata of one post that the crawl needs, whatever the site."""
  id: int
  md5: str
  file_url: str
  tags: List[str]
  rating: str  # one of RATINGS, or "" if the site gave none we know
  width: int
  height: int
  character_tags: List[str] = dataclasses.field(default_factory=list)
  source: str = ""
  post_url: str = ""

  @property
  def extension(self) -> str:
    return os.path.splitext(urllib.parse.urlparse(self.file_url).path)[1].lower()


class Site:
  """Base class: one board API."""
  name = ""
  default_base_url = ""
  first_page: PageToken = 0
  max_page_size = 100

  def list_url(self, base: str, tags: str, page: PageToken, page_size: int) -> str:
    raise NotImplementedError

  def posts(self, payload, base: str) -> Tuple[List[Post], int]:
    """(posts, number of entries without a downloadable file) from a decoded page."""
    raise NotImplementedError

  def next_page(self, page: PageToken, ids: Sequence[int]) -> PageToken:
    """The page after `page`, whose entries had these post ids (downloadable or not)."""
    raise NotImplementedError


def _int(value) -> int:
  try:
    return int(value)
  except (TypeError, ValueError):
    return 0


class Safebooru(Site):
  """Gelbooru 0.2 API (safebooru.org): pid is a 0-based page number."""
  name = "safebooru"
  default_base_url = "https://safebooru.org"
  first_page = 0
  max_page_size = 1000
  # Safebooru said "safe" before it adopted Danbooru's four ratings in 2023.
  _RATINGS = {"safe": "general", "general": "general", "g": "general", "s": "general",
              "sensitive": "sensitive", "questionable": "questionable", "q": "questionable",
              "explicit": "explicit", "e": "explicit"}

  def list_url(self, base, tags, page, page_size):
    query = urllib.parse.urlencode({"page": "dapi", "s": "post", "q": "index", "json": 1,
                                    "limit": page_size, "pid": page, "tags": tags})
    return f"{base}/index.php?{query}"

  def posts(self, payload, base):
    if isinstance(payload, dict):  # Gelbooru proper wraps the list
      payload = payload.get("post", [])
    if not isinstance(payload, list):
      raise ValueError(f"expected a JSON list of posts, got {type(payload).__name__}")
    posts, missing = [], 0
    for p in payload:
      md5 = str(p.get("hash") or p.get("md5") or "").lower()
      url = p.get("file_url") or ""
      if not url and p.get("directory") is not None and p.get("image"):
        url = f"{base}/images/{p['directory']}/{p['image']}"
      if not md5 or not url or "id" not in p:
        missing += 1
        continue
      posts.append(Post(
          id=int(p["id"]), md5=md5, file_url=urllib.parse.urljoin(base + "/", url),
          tags=str(p.get("tags", "")).split(),
          rating=self._RATINGS.get(str(p.get("rating", "")).lower(), ""),
          width=_int(p.get("width")), height=_int(p.get("height")),
          source=str(p.get("source") or ""),
          post_url=f"{base}/index.php?page=post&s=view&id={p['id']}"))
    return posts, missing

  def next_page(self, page, ids):
    return int(page) + 1


class Danbooru(Site):
  """Danbooru API: page 1 first, then the cursor b<id> (posts below that id).

  The cursor does not shift when new posts arrive, and it is not subject to the cap
  Danbooru puts on numbered pages (1000 for anonymous users).
  """
  name = "danbooru"
  default_base_url = "https://danbooru.donmai.us"
  first_page = 1
  max_page_size = 200
  _RATINGS = {"g": "general", "s": "sensitive", "q": "questionable", "e": "explicit"}

  def list_url(self, base, tags, page, page_size):
    query = urllib.parse.urlencode({"tags": tags, "limit": page_size, "page": page})
    return f"{base}/posts.json?{query}"

  def posts(self, payload, base):
    if isinstance(payload, dict):
      # Danbooru reports errors as {"success": false, "message": ...} (e.g. too many tags).
      raise CrawlError(f"the API answered an error: {payload.get('message', payload)}")
    if not isinstance(payload, list):
      raise ValueError(f"expected a JSON list of posts, got {type(payload).__name__}")
    posts, missing = [], 0
    for p in payload:
      # Restricted or banned posts come without md5 and file_url.
      if not p.get("md5") or not p.get("file_url") or "id" not in p:
        missing += 1
        continue
      posts.append(Post(
          id=int(p["id"]), md5=str(p["md5"]).lower(),
          file_url=urllib.parse.urljoin(base + "/", p["file_url"]),
          tags=str(p.get("tag_string", "")).split(),
          rating=self._RATINGS.get(str(p.get("rating", "")).lower(), ""),
          width=_int(p.get("image_width")), height=_int(p.get("image_height")),
          character_tags=str(p.get("tag_string_character", "")).split(),
          source=str(p.get("source") or ""), post_url=f"{base}/posts/{p['id']}"))
    return posts, missing

  def next_page(self, page, ids):
    return f"b{min(ids)}"


SITES: Dict[str, Site] = {s.name: s for s in (Safebooru(), Danbooru())}


# ----------------------------------------------------------------------------------------
# HTTP: rate limit, time-outs, retries with back-off.


def _retry_after(headers) -> Optional[float]:
  value = headers.get("Retry-After") if headers is not None else None
  try:
    return max(0.0, float(value)) if value is not None else None
  except ValueError:  # an HTTP date: fall back to our own back-off
    return None


class HttpClient:
  """GETs with a global rate limit and bounded retries.

  Args:
    rate: at most this many requests (attempts, retries included) per second.
    timeout: seconds a connection may stay silent (connect or read) before it is retried.
    max_retries: retries after the first attempt, per request.
    backoff: first back-off in seconds; doubled on each retry.
    max_backoff: cap on one back-off (and on a Retry-After the server asks for).
    max_bytes: larger bodies are refused (not retried).
    max_seconds: a request still reading after this long is abandoned and retried.
  """

  def __init__(self, *, rate: float = 1.0, timeout: float = 30.0, max_retries: int = 5,
               backoff: float = 1.0, max_backoff: float = 60.0,
               max_bytes: int = 64 * 2**20, max_seconds: float = 300.0,
               user_agent: str = USER_AGENT,
               sleep: Callable[[float], None] = time.sleep,
               clock: Callable[[], float] = time.monotonic):
    if rate <= 0:
      raise ValueError(f"--rate={rate} must be > 0 requests per second")
    self.interval = 1.0 / rate
    self.timeout, self.max_retries = timeout, max_retries
    self.backoff, self.max_backoff = backoff, max_backoff
    self.max_bytes, self.max_seconds = max_bytes, max_seconds
    self.user_agent = user_agent
    self._sleep, self._clock = sleep, clock
    self._next_start = -float("inf")
    self.stats = {"requests": 0, "retries": 0}

  def _wait_turn(self):
    now = self._clock()
    if now < self._next_start:
      self._sleep(self._next_start - now)
      now = self._clock()
    self._next_start = max(now, self._next_start) + self.interval

  def _get_once(self, url: str) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": self.user_agent})
    deadline = self._clock() + self.max_seconds
    try:
      with urllib.request.urlopen(request, timeout=self.timeout) as response:
        expected = response.headers.get("Content-Length")
        chunks, size = [], 0
        while True:
          chunk = response.read(1 << 16)
          if not chunk:
            break
          size += len(chunk)
          if size > self.max_bytes:
            raise FetchError(f"{url}: larger than {self.max_bytes} bytes; not downloaded")
          if self._clock() > deadline:
            raise _Retry(f"still reading after {self.max_seconds:g} s")
          chunks.append(chunk)
    except urllib.error.HTTPError as e:
      if e.code == 429 or 500 <= e.code < 600:
        raise _Retry(f"HTTP {e.code}", _retry_after(e.headers)) from None
      try:
        detail = e.read(2000).decode("utf-8", "replace").strip()
      except Exception:  # pylint: disable=broad-except
        detail = ""
      raise FetchError(f"{url}: HTTP {e.code} {e.reason}" + (f": {detail}" if detail else ""),
                       status=e.code) from None
    except (http.client.HTTPException, OSError) as e:  # time-outs, resets, refused
      raise _Retry(f"{type(e).__name__}: {e}") from None
    body = b"".join(chunks)
    # A connection closed early yields a short body without an exception.
    if expected is not None and expected.isdigit() and len(body) != int(expected):
      raise _Retry(f"short body: {len(body)} of {expected} bytes")
    return body

  def get(self, url: str) -> bytes:
    """The body of `url`.

    Raises:
      FetchError: on a status that retrying cannot fix (4xx other than 429), a body over
        `max_bytes`, or when every retry failed.
    """
    for attempt in range(self.max_retries + 1):
      self._wait_turn()
      self.stats["requests"] += 1
      try:
        return self._get_once(url)
      except _Retry as e:
        if attempt == self.max_retries:
          raise FetchError(f"{url}: gave up after {attempt + 1} attempts, last: {e}") from None
        logging.warning("%s: %s; retry %d of %d", url, e, attempt + 1, self.max_retries)
        self.pause(attempt, e.retry_after)
    raise AssertionError("unreachable")

  def pause(self, attempt: int, retry_after: Optional[float] = None) -> None:
    """Sleeps the back-off before retry number `attempt` + 1 (and counts the retry)."""
    delay = min(self.max_backoff, self.backoff * 2**attempt)
    if retry_after is not None:
      delay = min(self.max_backoff, max(delay, retry_after))
    self.stats["retries"] += 1
    self._sleep(delay)


# ----------------------------------------------------------------------------------------
# Output files.


def _write_atomic(path: str, data: bytes) -> None:
  """Writes `data` to a hidden temporary file beside `path`, then renames it into place."""
  folder, name = os.path.split(path)
  tmp = os.path.join(folder, f".{name}.part-{os.getpid()}")
  with open(tmp, "wb") as f:
    f.write(data)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def write_json_atomic(path: str, obj) -> None:
  _write_atomic(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8"))


class Manifest:
  """The JSONL manifest: one line per kept image, appended and fsynced as each lands.

  A run killed in the middle of a line leaves a partial last line; it is dropped (with a
  warning) when the manifest is next opened, so appends never glue onto it.
  """

  def __init__(self, path: str):
    self.path = path
    self.entries: Dict[str, dict] = {}
    if not os.path.exists(path):
      return
    with open(path, "rb") as f:
      text = f.read().decode("utf-8", "replace")
    lines = text.split("\n")
    if lines and lines[-1]:
      logging.warning("%s: dropping a partial last line (an interrupted run): %r", path,
                      lines[-1][:80])
      lines = lines[:-1]
      _write_atomic(path, "".join(line + "\n" for line in lines).encode("utf-8"))
    for number, line in enumerate(lines, 1):
      if not line.strip():
        continue
      try:
        entry = json.loads(line)
        self.entries[entry["id"]] = entry
      except (ValueError, KeyError, TypeError):
        logging.warning("%s:%d is not a manifest entry; ignored", path, number)

  def __contains__(self, image_id: str) -> bool:
    return image_id in self.entries

  def __len__(self) -> int:
    return len(self.entries)

  def append(self, entry: dict) -> None:
    with open(self.path, "a", encoding="utf-8") as f:
      f.write(json.dumps(entry, sort_keys=True) + "\n")
      f.flush()
      os.fsync(f.fileno())
    self.entries[entry["id"]] = entry


def parse_ratings(rating: str) -> Optional[Tuple[str, ...]]:
  """`--rating` to the set of accepted ratings (None: any)."""
  names = [r.strip().lower() for r in rating.split(",") if r.strip()]
  if not names or names == ["any"]:
    return None
  names = ["general" if r == "safe" else r for r in names]
  unknown = [r for r in names if r not in RATINGS]
  if unknown:
    raise ValueError(f"--rating={rating!r}: unknown {unknown}; use a comma-separated list of "
                     f"safe (= general), {', '.join(RATINGS)}, or any")
  return tuple(names)


# ----------------------------------------------------------------------------------------
# The crawl.


def crawl(site: str,
          tags: str,
          limit: int,
          out: str,
          *,
          exclude_tags: Sequence[str] = (),
          rating: str = "safe",
          min_side: int = 256,
          base_url: Optional[str] = None,
          page_size: int = 100,
          max_pages: int = 1000,
          md5_attempts: int = 2,
          client: Optional[HttpClient] = None) -> dict:
  """Crawls until `out`'s manifest holds `limit` images or the site has no more posts.

  Args:
    site: a key of `SITES`.
    tags: the search, space-separated, as typed on the site.
    limit: images wanted in the manifest (counting those of earlier runs).
    out: output folder (created): images/, manifest.jsonl, crawl_state.json,
      crawl_report.json.
    exclude_tags: posts with any of these tags are skipped.
    rating: see `parse_ratings`.
    min_side: posts whose shorter side (per the API) is smaller are skipped.
    base_url: the API host; default the site's own.
    page_size: posts per API page (capped at the site's maximum).
    max_pages: pages fetched by this run at most (a bound for filters that skip a lot).
    md5_attempts: downloads of one file before a wrong md5 makes the post count as failed.
    client: the HTTP client (default: `HttpClient()` with its defaults).

  Returns:
    The report (also written to `out/crawl_report.json`).

  Raises:
    CrawlError: when an API page keeps failing or the site rejects the query; what was
      downloaded so far stays, and re-running continues from the same page.
  """
  if site not in SITES:
    raise ValueError(f"--site={site!r} is not one of {sorted(SITES)}")
  board = SITES[site]
  if limit < 1:
    raise ValueError(f"--limit={limit} must be >= 1")
  if not tags.strip():
    raise ValueError("--tags is empty: give the search, e.g. --tags \"1girl solo\"")
  accepted = parse_ratings(rating)
  exclude = set(exclude_tags)
  if page_size > board.max_page_size:
    logging.warning("--page_size=%d is over %s's maximum; using %d", page_size, site,
                    board.max_page_size)
  page_size = max(1, min(page_size, board.max_page_size))
  base = (base_url or board.default_base_url).rstrip("/")
  client = client or HttpClient()
  files.claim_folder(out, COMMAND, "--out")
  images_dir = os.path.join(out, IMAGES)
  os.makedirs(images_dir, exist_ok=True)
  for name in os.listdir(images_dir):  # temporary files of a run that was killed
    if name.startswith(".") and ".part-" in name:
      os.remove(os.path.join(images_dir, name))
  manifest = Manifest(os.path.join(out, MANIFEST))
  query = {"site": site, "base_url": base, "tags": tags, "exclude_tags": sorted(exclude),
           "rating": sorted(accepted) if accepted else "any", "min_side": min_side,
           "page_size": page_size}
  state_path = os.path.join(out, STATE)
  page: PageToken = board.first_page
  if os.path.exists(state_path):
    with open(state_path, encoding="utf-8") as f:
      state = json.load(f)
    if state.get("query") == query:
      page = state["next_page"]
      logging.info("Resuming %s at page %s with %d images in the manifest.", out, page,
                   len(manifest))
    else:
      logging.info("%s was crawled with another query (%s); starting at the first page "
                   "(images already in the manifest are not downloaded again).", out,
                   state.get("query"))
  report = {"query": query, "limit": limit, "downloaded": 0, "recovered": 0,
            "already_had": 0, "skipped": {}, "failed": {}, "pages": 0, "stopped_because": ""}

  def count(kind, reason):
    report[kind][reason] = report[kind].get(reason, 0) + 1

  def fetch_page(url):
    # A malformed page is retried like a 5xx: proxies and overloaded boards send HTML
    # error pages or cut bodies with a 200.
    for attempt in range(client.max_retries + 1):
      try:
        body = client.get(url)
      except FetchError as e:
        raise CrawlError(f"API page failed: {e}") from None
      text = body.decode("utf-8", "replace").strip()
      if not text:
        return []  # Safebooru answers an empty body past the last page.
      try:
        return json.loads(text)
      except ValueError as e:
        if attempt == client.max_retries:
          raise CrawlError(f"{url}: not JSON after {attempt + 1} attempts ({e}); body "
                           f"starts {text[:120]!r}") from None
        logging.warning("%s: malformed JSON (%s); retrying", url, e)
        client.pause(attempt)
    raise AssertionError("unreachable")

  def download(post: Post) -> Optional[dict]:
    image_id = f"{site}_{post.id}"
    path = os.path.join(images_dir, image_id + post.extension)
    entry = {"id": image_id, "site": site, "post_id": post.id, "md5": post.md5,
             "tags": post.tags, "character_tags": post.character_tags,
             "rating": post.rating, "width": post.width, "height": post.height,
             "file": f"{IMAGES}/{image_id}{post.extension}", "source_url": post.file_url,
             "post_url": post.post_url, "source": post.source}
    if os.path.exists(path):
      with open(path, "rb") as f:
        if hashlib.md5(f.read()).hexdigest() == post.md5:
          report["recovered"] += 1
          return entry
    for attempt in range(md5_attempts):
      try:
        body = client.get(post.file_url)
      except FetchError as e:
        logging.warning("post %s: download failed: %s", post.id, e)
        count("failed", "download" if e.status is None else f"http_{e.status}")
        return None
      got = hashlib.md5(body).hexdigest()
      if got == post.md5:
        _write_atomic(path, body)
        report["downloaded"] += 1
        return entry
      logging.warning("post %s: md5 %s of %d bytes from %s, the API says %s (attempt %d of "
                      "%d)", post.id, got, len(body), post.file_url, post.md5, attempt + 1,
                      md5_attempts)
    count("failed", "md5_mismatch")
    return None

  def skip_reason(post: Post) -> Optional[str]:
    if post.extension not in IMAGE_EXTENSIONS:
      return "file_type"
    if accepted is not None and post.rating not in accepted:
      return "rating"
    if exclude.intersection(post.tags):
      return "excluded_tag"
    if post.width and post.height and min(post.width, post.height) < min_side:
      return "too_small"
    return None

  pages_this_run = 0
  while True:
    if len(manifest) >= limit:
      report["stopped_because"] = "limit"
      break
    if pages_this_run >= max_pages:
      report["stopped_because"] = "max_pages"
      break
    url = board.list_url(base, tags, page, page_size)
    payload = fetch_page(url)
    try:
      posts, missing = board.posts(payload, base)
    except ValueError as e:
      raise CrawlError(f"{url}: unexpected JSON: {e}") from None
    pages_this_run += 1
    report["pages"] += 1
    if missing:
      report["skipped"]["no_file"] = report["skipped"].get("no_file", 0) + missing
    # Every entry's id, restricted posts too: a cursor past them must not fetch them again.
    entries = payload.get("post", []) if isinstance(payload, dict) else payload
    page_ids = [_int(p.get("id")) for p in entries if isinstance(p, dict) and "id" in p]
    if not page_ids:
      report["stopped_because"] = "no_more_posts"
      break
    for post in posts:
      if len(manifest) >= limit:
        break
      image_id = f"{site}_{post.id}"
      if image_id in manifest:
        report["already_had"] += 1
        continue
      reason = skip_reason(post)
      if reason:
        count("skipped", reason)
        continue
      entry = download(post)
      if entry is not None:
        manifest.append(entry)
    if len(manifest) >= limit:
      # The rest of this page has not been looked at: a run with a higher limit starts
      # here again (known posts are skipped without a request).
      write_json_atomic(state_path, {"query": query, "next_page": page})
      report["stopped_because"] = "limit"
      break
    page = board.next_page(page, page_ids)
    write_json_atomic(state_path, {"query": query, "next_page": page})
    logging.info("page done: %d / %d images, %d requests, %d retries", len(manifest), limit,
                 client.stats["requests"], client.stats["retries"])

  report.update(images_in_manifest=len(manifest), requests=client.stats["requests"],
                retries=client.stats["retries"])
  write_json_atomic(os.path.join(out, REPORT), report)
  logging.info("crawl of %s: %s", out, json.dumps(report, sort_keys=True))
  return report


FLAGS = flags.FLAGS


def define_flags():
  """The command's flags; defined only when it runs, so that the module imports cleanly
  beside the other commands (several define --input / --output)."""
  flags.DEFINE_enum("site", "safebooru", sorted(SITES), "Which board API to speak.")
  flags.DEFINE_string("tags", None, "The search, space-separated (e.g. \"1girl solo\").")
  flags.DEFINE_string("exclude_tags", "", "Space-separated tags; posts with any are skipped.")
  flags.DEFINE_integer("limit", None, "Images wanted in --out's manifest (earlier runs count).")
  flags.DEFINE_string("out", None, "Output folder: images/, manifest.jsonl and reports.")
  flags.DEFINE_string("rating", "safe",
                      "Comma-separated ratings to keep: safe (= general), sensitive, "
                      "questionable, explicit; or any.")
  flags.DEFINE_integer("min_side", 256, "Skip posts whose shorter side is smaller (pixels).")
  flags.DEFINE_float("rate", 1.0, "At most this many requests per second.")
  flags.DEFINE_string("base_url", None, "API host (default: the site's own).")
  flags.DEFINE_integer("page_size", 100, "Posts per API page (Safebooru <= 1000, Danbooru "
                       "<= 200).")
  flags.DEFINE_integer("max_pages", 1000, "API pages fetched by one run at most.")
  flags.DEFINE_float("timeout", 30.0, "Seconds a connection may stay silent before a retry.")
  flags.DEFINE_integer("max_retries", 5, "Retries per request (429, 5xx, time-outs, short "
                       "bodies, malformed JSON).")
  flags.DEFINE_float("backoff", 2.0, "First back-off in seconds, doubled on each retry.")
  flags.DEFINE_float("max_backoff", 120.0, "Longest back-off, Retry-After included (s).")
  flags.DEFINE_integer("max_file_mb", 64, "Larger files are not downloaded.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  for name in ("tags", "limit", "out"):
    if FLAGS[name].value is None:
      raise app.UsageError(f"--{name} is required")
  client = HttpClient(rate=FLAGS.rate, timeout=FLAGS.timeout, max_retries=FLAGS.max_retries,
                      backoff=FLAGS.backoff, max_backoff=FLAGS.max_backoff,
                      max_bytes=FLAGS.max_file_mb * 2**20)
  try:
    report = crawl(FLAGS.site, FLAGS.tags, FLAGS.limit, FLAGS.out,
                   exclude_tags=FLAGS.exclude_tags.split(), rating=FLAGS.rating,
                   min_side=FLAGS.min_side, base_url=FLAGS.base_url,
                   page_size=FLAGS.page_size, max_pages=FLAGS.max_pages, client=client)
  except (CrawlError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print(json.dumps(report, sort_keys=True))


if __name__ == "__main__":
  define_flags()
  app.run(main)
