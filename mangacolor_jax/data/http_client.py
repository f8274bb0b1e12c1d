"""A polite HTTP client for the crawler: a global rate limit, time-outs, bounded retries.

Every attempt (retries included) waits its turn under the rate limit; 429, 5xx, time-outs,
dropped connections and short bodies are retried with exponential back-off (a Retry-After
header is honoured, capped); any other failure is a `FetchError` at once.
"""

import dataclasses
import http.client
import time
from typing import Callable, Optional
import urllib.error
import urllib.request

from absl import logging

USER_AGENT = ("mangacolor_jax/0.1 (line-art colorization data-set crawler; "
              "https://pypi.org/project/mangacolor_jax; python-urllib)")


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


def _retry_after(headers) -> Optional[float]:
  value = headers.get("Retry-After") if headers is not None else None
  try:
    return max(0.0, float(value)) if value is not None else None
  except ValueError:  # an HTTP date: fall back to our own back-off
    return None


def _set_read_timeout(response, seconds: float) -> None:
  """Bounds the next receive of `response` (an http.client.HTTPResponse) by `seconds`."""
  sock = getattr(getattr(response.fp, "raw", None), "_sock", None)
  if sock is not None:
    sock.settimeout(max(seconds, 1e-3))


@dataclasses.dataclass(eq=False, kw_only=True)
class HttpClient:
  """GETs with a global rate limit and bounded retries.

  Attributes:
    rate: at most this many requests (attempts, retries included) per second.
    timeout: seconds a connection may stay silent (connect or read) before it is retried.
    max_retries: retries after the first attempt, per request.
    backoff: first back-off in seconds; doubled on each retry.
    max_backoff: cap on one back-off (and on a Retry-After the server asks for).
    max_bytes: larger bodies are refused (not retried).
    max_seconds: a request still reading after this long is abandoned and retried.
    user_agent: the User-Agent header of every request.
    sleep: how to wait (the tests pass a fake).
    clock: monotonic seconds (the tests pass a fake).
    stats: requests (attempts) and retries so far.
  """
  rate: float = 1.0
  timeout: float = 30.0
  max_retries: int = 5
  backoff: float = 1.0
  max_backoff: float = 60.0
  max_bytes: int = 64 * 2**20
  max_seconds: float = 300.0
  user_agent: str = USER_AGENT
  sleep: Callable[[float], None] = time.sleep
  clock: Callable[[], float] = time.monotonic

  def __post_init__(self):
    if self.rate <= 0:
      raise ValueError(f"--rate={self.rate} must be > 0 requests per second")
    self.interval = 1.0 / self.rate
    self._next_start = -float("inf")
    self.stats = {"requests": 0, "retries": 0}

  def _wait_turn(self):
    now = self.clock()
    if now < self._next_start:
      self.sleep(self._next_start - now)
      now = self.clock()
    self._next_start = max(now, self._next_start) + self.interval

  def _get_once(self, url: str) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": self.user_agent})
    deadline = self.clock() + self.max_seconds
    try:
      with urllib.request.urlopen(request, timeout=self.timeout) as response:
        expected = response.headers.get("Content-Length")
        chunks, size = [], 0
        while True:
          remaining = deadline - self.clock()
          if remaining <= 0:
            raise _Retry(f"still reading after {self.max_seconds:g} s")
          _set_read_timeout(response, min(self.timeout, remaining))
          # read1: what one receive brings (at most 64 KiB), so a server that trickles a
          # byte at a time cannot hold a read, and with it the request, past the deadline.
          try:
            chunk = response.read1(1 << 16)
          except TimeoutError:
            if self.clock() >= deadline:
              raise _Retry(f"still reading after {self.max_seconds:g} s") from None
            raise
          if not chunk:
            break
          size += len(chunk)
          if size > self.max_bytes:
            raise FetchError(f"{url}: larger than {self.max_bytes} bytes; not downloaded")
          if self.clock() > deadline:
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
    self.sleep(delay)
