"""The training process's host memory on the CPU: reuse each step's scratch buffer.

A compiled training step on the CPU allocates one temporary buffer for its intermediate
values (525 MB for the pix2pix 256x256 step at batch 4) and frees it when it finishes.
glibc's malloc serves a block that large with a fresh `mmap` and unmaps it on `free`, so
every step the kernel maps and zero-fills the whole buffer again: about 148,000 page faults
and 230 ms of kernel time per 256x256 step, 15% of it (docs/performance.md).
Two process-wide settings keep the buffer from one step to the next:

* Synchronous CPU dispatch (`jax_cpu_enable_async_dispatch=False`): XLA then runs a
  single-device step, and allocates its buffer, on the calling thread, from glibc's main
  heap (an XLA worker thread's arena would `mmap` a block that large anyway). JAX reads
  this when it creates its CPU client, so it must be set before the first computation.
* Once the step has compiled, `mallopt`: no `mmap` for large blocks, and no trimming of
  the heap below 2 GB, so a freed buffer stays mapped for the next step. Set only after
  compiling (and after returning the compiler's freed heap to the OS): set before, the
  compiler's memory would stay resident too (peak 1.9-2.0 GB instead of 1.7 at 256).

`config.cpu_reuse_step_memory` (default True) turns both on. They apply to single-device
steps on the CPU backend with glibc (Linux) and do nothing elsewhere; the numbers computed
are the same bit for bit (tests/runtime/test_host_memory.py).
"""

import ctypes

from absl import logging
import jax

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_TRIM_THRESHOLD = 2**31 - 1  # bytes of free heap top kept mapped: all of it in practice


def _glibc():
  """glibc as a ctypes library, or None (macOS, musl, Windows)."""
  try:
    libc = ctypes.CDLL("libc.so.6")
    libc.gnu_get_libc_version  # pylint: disable=pointless-statement
    return libc
  except (OSError, AttributeError):
    return None


def release_free_memory() -> None:
  """Returns the heap's free pages to the OS (glibc `malloc_trim`), e.g. what compilation
  freed, so that it does not count in the process's resident memory; a no-op elsewhere."""
  libc = _glibc()
  if libc is not None:
    libc.malloc_trim(0)


def _backends_exist() -> bool:
  """Whether JAX has created its backends (no public API asks; False if it cannot tell)."""
  try:
    from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top
    return bool(xla_bridge.backends_are_initialized())
  except (ImportError, AttributeError):
    return False


_sync_dispatch = False  # set when this process's CPU client was created synchronous


def request_synchronous_cpu_dispatch() -> bool:
  """Step 1, before any computation: single-device CPU steps run on the calling thread.

  JAX reads the setting once, when it creates its CPU client: returns False (and changes
  nothing) if the backends already exist and were not created this way.
  """
  global _sync_dispatch
  if not _backends_exist():
    jax.config.update("jax_cpu_enable_async_dispatch", False)
    _sync_dispatch = True
  return _sync_dispatch


def keep_freed_memory() -> bool:
  """Step 2, once the step has compiled: freed large blocks stay mapped for reuse.

  Applies (and returns True) on the CPU backend with glibc, one local device and
  synchronous dispatch (step 1 in time); otherwise the step's buffer comes from an XLA
  worker thread, which maps it afresh whatever malloc is told, and this changes nothing.
  Trims the heap first, so that only what is allocated from now on stays resident.
  """
  libc = _glibc()
  if libc is None or jax.default_backend() != "cpu":
    return False
  if not _sync_dispatch or jax.local_device_count() != 1:
    logging.info("host memory: each step's scratch buffer is mapped afresh (%s)",
                 "several CPU devices" if _sync_dispatch else
                 "JAX's CPU client existed before synchronous dispatch was requested")
    return False
  release_free_memory()
  applied = (libc.mallopt(_M_MMAP_MAX, 0) == 1 and
             libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD) == 1)
  logging.info("host memory: each step's scratch buffer is reused%s",
               "" if applied else " (mallopt refused: left as it was)")
  return applied


def prepare(config) -> bool:
  """Step 1 if `config.cpu_reuse_step_memory` (default True); returns that setting."""
  reuse = bool(config.cpu_reuse_step_memory)
  if reuse:
    request_synchronous_cpu_dispatch()
  return reuse


def after_compiling(reuse: bool) -> None:
  """Step 2 if `reuse`; in any case the compiler's freed heap goes back to the OS."""
  if not (reuse and keep_freed_memory()):
    release_free_memory()
