"""The crawl: pages of posts from a board, filtered, downloaded, verified and recorded.

`crawl(CrawlOptions(...))` fills `out/images/` and `out/manifest.jsonl` until the manifest
holds `limit` images or the board has no more posts. It resumes where the last run stopped
(`crawl_state.json`) and downloads nothing twice; see `mangacolor_jax.data.crawl` for the
command and what it promises.
"""

import dataclasses
import hashlib
import json
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

from absl import logging

from mangacolor_jax.data import boards
from mangacolor_jax.data import http_client
from mangacolor_jax.utils import files

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
MANIFEST = "manifest.jsonl"
STATE = "crawl_state.json"
REPORT = "crawl_report.json"
IMAGES = "images"
COMMAND = "crawl"

# The temporary name `files.write_bytes` gives a file before renaming it into place:
# `.{name}.{pid}-{8 hex digits}.tmp`. A run killed in between leaves one behind.
_TEMPORARY = re.compile(r"\..+\.[0-9]+-[0-9a-f]{8}\.tmp")


def _write_json_durable(path: str, obj) -> None:
  """`files.write_json`'s format (indent 2, sorted keys, final newline), fsynced: the
  crawl's state must survive a power cut as its downloads do."""
  text = json.dumps(obj, indent=2, sort_keys=True) + "\n"
  files.write_bytes(path, text.encode("utf-8"), durable=True)


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
      files.write_bytes(path, "".join(line + "\n" for line in lines).encode("utf-8"),
                        durable=True)
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
  unknown = [r for r in names if r not in boards.RATINGS]
  if unknown:
    raise ValueError(f"--rating={rating!r}: unknown {unknown}; use a comma-separated list of "
                     f"safe (= general), {', '.join(boards.RATINGS)}, or any")
  return tuple(names)


@dataclasses.dataclass
class CrawlOptions:
  """What to crawl, and where to (the command's flags, but for the HTTP client's).

  Attributes:
    site: a key of `boards.SITES`.
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
    allow_any_host: download file URLs on any http(s) host; by default only the API's host
      and the site's known file hosts (`boards.Site.file_hosts`).
  """
  site: str
  tags: str
  limit: int
  out: str
  exclude_tags: Sequence[str] = ()
  rating: str = "safe"
  min_side: int = 256
  base_url: Optional[str] = None
  page_size: int = 100
  max_pages: int = 1000
  md5_attempts: int = 2
  allow_any_host: bool = False


def crawl(opts: CrawlOptions, client: Optional[http_client.HttpClient] = None) -> dict:
  """Crawls until `opts.out`'s manifest holds `opts.limit` images or the site has no more.

  Args:
    opts: what to crawl, and where to.
    client: the HTTP client (default: `HttpClient()` with its defaults).

  Returns:
    The report (also written to `out/crawl_report.json`).

  Raises:
    ValueError: a bad option, naming its flag.
    files.OutputError: an `out` folder that crawl did not make.
    boards.CrawlError: when an API page keeps failing or the site rejects the query; what
      was downloaded so far stays, and re-running continues from the same page.
  """
  return Crawler(opts, client or http_client.HttpClient()).run()


class Crawler:
  """One run of a crawl: its checked settings, the output folder and the report so far."""

  def __init__(self, opts: CrawlOptions, client: http_client.HttpClient):
    if opts.site not in boards.SITES:
      raise ValueError(f"--site={opts.site!r} is not one of {sorted(boards.SITES)}")
    self.board = boards.SITES[opts.site]
    if opts.limit < 1:
      raise ValueError(f"--limit={opts.limit} must be >= 1")
    if not opts.tags.strip():
      raise ValueError("--tags is empty: give the search, e.g. --tags \"1girl solo\"")
    self.accepted = parse_ratings(opts.rating)
    self.exclude = set(opts.exclude_tags)
    if opts.page_size > self.board.max_page_size:
      logging.warning("--page_size=%d is over %s's maximum; using %d", opts.page_size,
                      opts.site, self.board.max_page_size)
    self.page_size = max(1, min(opts.page_size, self.board.max_page_size))
    self.base = (opts.base_url or self.board.default_base_url).rstrip("/")
    self.opts, self.client = opts, client
    self.query = {"site": opts.site, "base_url": self.base, "tags": opts.tags,
                  "exclude_tags": sorted(self.exclude),
                  "rating": sorted(self.accepted) if self.accepted else "any",
                  "min_side": opts.min_side, "page_size": self.page_size}
    self.report = {"query": self.query, "limit": opts.limit, "downloaded": 0,
                   "recovered": 0, "already_had": 0, "skipped": {}, "failed": {},
                   "pages": 0, "stopped_because": ""}
    self.state_path = os.path.join(opts.out, STATE)
    self.images_dir = os.path.join(opts.out, IMAGES)
    self.manifest: Optional[Manifest] = None  # opened by `run`, once `out` is claimed

  def run(self) -> dict:
    """Crawls page after page until the limit, the last post or `max_pages`."""
    self._open_output()
    page, pages_this_run = self._first_page(), 0
    while True:
      if self._full():
        self.report["stopped_because"] = "limit"
        break
      if pages_this_run >= self.opts.max_pages:
        self.report["stopped_because"] = "max_pages"
        break
      page_ids = self._crawl_page(page)
      pages_this_run += 1
      if not page_ids:
        self.report["stopped_because"] = "no_more_posts"
        break
      if self._full():
        # The rest of this page has not been looked at: a run with a higher limit starts
        # here again (known posts are skipped without a request).
        _write_json_durable(self.state_path, {"query": self.query, "next_page": page})
        self.report["stopped_because"] = "limit"
        break
      page = self.board.next_page(page, page_ids)
      _write_json_durable(self.state_path, {"query": self.query, "next_page": page})
      logging.info("page done: %d / %d images, %d requests, %d retries", len(self.manifest),
                   self.opts.limit, self.client.stats["requests"],
                   self.client.stats["retries"])
    self.report.update(images_in_manifest=len(self.manifest),
                       requests=self.client.stats["requests"],
                       retries=self.client.stats["retries"])
    _write_json_durable(os.path.join(self.opts.out, REPORT), self.report)
    logging.info("crawl of %s: %s", self.opts.out, json.dumps(self.report, sort_keys=True))
    return self.report

  def _open_output(self) -> None:
    """Claims `out`, removes a killed run's temporary files and reads the manifest."""
    files.claim_folder(self.opts.out, COMMAND, "--out")
    os.makedirs(self.images_dir, exist_ok=True)
    for name in os.listdir(self.images_dir):
      if _TEMPORARY.fullmatch(name):
        os.remove(os.path.join(self.images_dir, name))
    self.manifest = Manifest(os.path.join(self.opts.out, MANIFEST))

  def _first_page(self) -> boards.PageToken:
    """Where the last run of the same query stopped, else the board's first page."""
    if os.path.exists(self.state_path):
      with open(self.state_path, encoding="utf-8") as f:
        state = json.load(f)
      if state.get("query") == self.query:
        logging.info("Resuming %s at page %s with %d images in the manifest.", self.opts.out,
                     state["next_page"], len(self.manifest))
        return state["next_page"]
      logging.info("%s was crawled with another query (%s); starting at the first page "
                   "(images already in the manifest are not downloaded again).",
                   self.opts.out, state.get("query"))
    return self.board.first_page

  def _full(self) -> bool:
    return len(self.manifest) >= self.opts.limit

  def _count(self, kind: str, reason: str, n: int = 1) -> None:
    self.report[kind][reason] = self.report[kind].get(reason, 0) + n

  def _crawl_page(self, page: boards.PageToken) -> List[int]:
    """Fetches one API page and takes its posts; returns the ids of all its entries."""
    url = self.board.list_url(self.base, self.opts.tags, page, self.page_size)
    payload = self._fetch_page(url)
    try:
      posts, missing = self.board.posts(payload, self.base)
    except ValueError as e:
      raise boards.CrawlError(f"{url}: unexpected JSON: {e}") from None
    self.report["pages"] += 1
    if missing:
      self._count("skipped", "no_file", missing)
    page_ids = self.board.entry_ids(payload)
    if page_ids:
      for post in posts:
        if self._full():
          break
        self._take(post)
    return page_ids

  def _fetch_page(self, url: str):
    """The decoded JSON of an API page ([] for an empty body)."""
    # A malformed page is retried like a 5xx: proxies and overloaded boards send HTML
    # error pages or cut bodies with a 200.
    for attempt in range(self.client.max_retries + 1):
      try:
        body = self.client.get(url)
      except http_client.FetchError as e:
        raise boards.CrawlError(f"API page failed: {e}") from None
      text = body.decode("utf-8", "replace").strip()
      if not text:
        return []  # Safebooru answers an empty body past the last page.
      try:
        return json.loads(text)
      except ValueError as e:
        if attempt == self.client.max_retries:
          raise boards.CrawlError(f"{url}: not JSON after {attempt + 1} attempts ({e}); "
                                  f"body starts {text[:120]!r}") from None
        logging.warning("%s: malformed JSON (%s); retrying", url, e)
        self.client.pause(attempt)
    raise AssertionError("unreachable")

  def _take(self, post: boards.Post) -> None:
    """Records `post` in the manifest unless it is known, filtered out or fails."""
    if f"{self.opts.site}_{post.id}" in self.manifest:
      self.report["already_had"] += 1
      return
    reason = self._skip_reason(post)
    if reason:
      self._count("skipped", reason)
      return
    entry = self._download(post)
    if entry is not None:
      self.manifest.append(entry)

  def _skip_reason(self, post: boards.Post) -> Optional[str]:
    if not boards.url_allowed(post.file_url, self.base, self.board.file_hosts,
                              any_host=self.opts.allow_any_host):
      logging.warning("post %s: file URL %s is not on %s's hosts; not downloaded (see "
                      "--allow_any_host)", post.id, post.file_url, self.opts.site)
      return "url_not_allowed"
    if post.extension not in IMAGE_EXTENSIONS:
      return "file_type"
    if self.accepted is not None and post.rating not in self.accepted:
      return "rating"
    if self.exclude.intersection(post.tags):
      return "excluded_tag"
    if post.width and post.height and min(post.width, post.height) < self.opts.min_side:
      return "too_small"
    return None

  def _download(self, post: boards.Post) -> Optional[dict]:
    """The manifest entry of `post` once its file is in place with its md5, else None."""
    image_id = f"{self.opts.site}_{post.id}"
    path = os.path.join(self.images_dir, image_id + post.extension)
    entry = {"id": image_id, "site": self.opts.site, "post_id": post.id, "md5": post.md5,
             "tags": post.tags, "character_tags": post.character_tags,
             "rating": post.rating, "width": post.width, "height": post.height,
             "file": f"{IMAGES}/{image_id}{post.extension}", "source_url": post.file_url,
             "post_url": post.post_url, "source": post.source}
    if os.path.exists(path):  # a run killed between the rename and the manifest line
      with open(path, "rb") as f:
        if hashlib.md5(f.read()).hexdigest() == post.md5:
          self.report["recovered"] += 1
          return entry
    for attempt in range(self.opts.md5_attempts):
      try:
        body = self.client.get(post.file_url)
      except http_client.FetchError as e:
        logging.warning("post %s: download failed: %s", post.id, e)
        self._count("failed", "download" if e.status is None else f"http_{e.status}")
        return None
      got = hashlib.md5(body).hexdigest()
      if got == post.md5:
        files.write_bytes(path, body, durable=True)
        self.report["downloaded"] += 1
        return entry
      logging.warning("post %s: md5 %s of %d bytes from %s, the API says %s (attempt %d of "
                      "%d)", post.id, got, len(body), post.file_url, post.md5, attempt + 1,
                      self.opts.md5_attempts)
    self._count("failed", "md5_mismatch")
    return None
