"""Image boards the crawler speaks: the URL of a page of posts and the shape of its JSON.

Two APIs: Safebooru's (Gelbooru 0.2: a numbered `pid`) and Danbooru's (page 1, then a
`b<id>` cursor). Each `Site` turns a decoded page into `Post`s, the metadata the crawl
needs whatever the site; `SITES` holds one of each by name.
"""

import dataclasses
import os
from typing import Dict, List, Sequence, Tuple, Union
import urllib.parse

RATINGS = ("general", "sensitive", "questionable", "explicit")

PageToken = Union[int, str]


class CrawlError(Exception):
  """The crawl cannot go on (an API that keeps failing, a rejected query)."""


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


def _int(value) -> int:
  try:
    return int(value)
  except (TypeError, ValueError):
    return 0


def _post_id(value):
  """A post's id as an int, or None where the site sent something else ("12a", 1.5)."""
  if isinstance(value, bool):
    return None
  if isinstance(value, int):
    return value
  if isinstance(value, str) and value.strip().isdigit():
    return int(value)
  return None


def url_allowed(url: str, base: str, file_hosts: Sequence[str],
                any_host: bool = False) -> bool:
  """Whether a download URL from the API's JSON may be fetched: http(s) only, and (unless
  `any_host`) on the API's host or one of the site's file hosts, or a subdomain of one."""
  parts = urllib.parse.urlparse(url)
  if parts.scheme not in ("http", "https") or not parts.hostname:
    return False
  if any_host:
    return True
  host = parts.hostname.lower()
  allowed = [urllib.parse.urlparse(base).hostname or "", *file_hosts]
  return any(host == h or host.endswith("." + h) for h in allowed if h)


class Site:
  """Base class: one board API."""
  name = ""
  default_base_url = ""
  first_page: PageToken = 0
  max_page_size = 100
  # Hosts (and their subdomains) the site serves files from besides the API's own.
  file_hosts: Tuple[str, ...] = ()

  def list_url(self, base: str, tags: str, page: PageToken, page_size: int) -> str:
    raise NotImplementedError

  def posts(self, payload, base: str) -> Tuple[List[Post], int]:
    """(posts, number of entries without a downloadable file) from a decoded page."""
    raise NotImplementedError

  def next_page(self, page: PageToken, ids: Sequence[int]) -> PageToken:
    """The page after `page`, whose entries had these post ids (downloadable or not)."""
    raise NotImplementedError

  def entry_ids(self, payload) -> List[int]:
    """The id of every entry of a decoded page, restricted posts too: a cursor past them
    must not fetch them again."""
    entries = payload.get("post", []) if isinstance(payload, dict) else payload
    if not isinstance(entries, list):
      return []
    ids = [_post_id(p.get("id")) for p in entries if isinstance(p, dict)]
    return [i for i in ids if i is not None]


class Safebooru(Site):
  """Gelbooru 0.2 API (safebooru.org): pid is a 0-based page number."""
  name = "safebooru"
  default_base_url = "https://safebooru.org"
  first_page = 0
  max_page_size = 1000
  file_hosts = ("safebooru.org", "gelbooru.com")
  # Safebooru said "safe" before it adopted Danbooru's four ratings in 2023.
  _RATINGS = {"safe": "general", "general": "general", "g": "general", "s": "general",
              "sensitive": "sensitive", "questionable": "questionable", "q": "questionable",
              "explicit": "explicit", "e": "explicit"}

  def list_url(self, base, tags, page, page_size):
    query = urllib.parse.urlencode({"page": "dapi", "s": "post", "q": "index", "json": 1,
                                    "limit": page_size, "pid": page, "tags": tags})
    return f"{base}/index.php?{query}"

  def posts(self, payload, base):
    if isinstance(payload, dict):
      # Gelbooru proper wraps the list ({"@attributes": {...}, "post": [...]}, no "post"
      # past the last page); any other object is an error report, not an empty page.
      if "post" not in payload and "@attributes" not in payload:
        raise CrawlError(f"the API answered an error: {payload.get('message', payload)}")
      payload = payload.get("post", [])
    if not isinstance(payload, list):
      raise ValueError(f"expected a JSON list of posts, got {type(payload).__name__}")
    posts, missing = [], 0
    for p in payload:
      if not isinstance(p, dict) or _post_id(p.get("id")) is None:
        missing += 1  # not a post (a string, a number) or one without a usable id
        continue
      md5 = str(p.get("hash") or p.get("md5") or "").lower()
      url = p.get("file_url") or ""
      if not url and p.get("directory") is not None and p.get("image"):
        url = f"{base}/images/{p['directory']}/{p['image']}"
      if not md5 or not url:
        missing += 1
        continue
      posts.append(Post(
          id=_post_id(p["id"]), md5=md5, file_url=urllib.parse.urljoin(base + "/", str(url)),
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
  file_hosts = ("donmai.us",)
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
      # Restricted or banned posts come without md5 and file_url; entries that are not
      # posts or have no usable id are skipped the same way.
      if (not isinstance(p, dict) or _post_id(p.get("id")) is None or not p.get("md5")
          or not p.get("file_url")):
        missing += 1
        continue
      posts.append(Post(
          id=_post_id(p["id"]), md5=str(p["md5"]).lower(),
          file_url=urllib.parse.urljoin(base + "/", str(p["file_url"])),
          tags=str(p.get("tag_string", "")).split(),
          rating=self._RATINGS.get(str(p.get("rating", "")).lower(), ""),
          width=_int(p.get("image_width")), height=_int(p.get("image_height")),
          character_tags=str(p.get("tag_string_character", "")).split(),
          source=str(p.get("source") or ""), post_url=f"{base}/posts/{p['id']}"))
    return posts, missing

  def next_page(self, page, ids):
    return f"b{min(ids)}"


SITES: Dict[str, Site] = {s.name: s for s in (Safebooru(), Danbooru())}
