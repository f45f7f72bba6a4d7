"""Process-wide memory settings for the long-running, many-threaded processes (the edge
server's workers, the queue worker, the desktop app).

glibc gives each thread that allocates a malloc arena of its own, up to 8 per core, and
memory freed in one arena serves only the threads of that arena, so a process whose threads
decode photos of every size holds far more than it uses. Two arenas keep the prediction
throughput (the runtimes allocate their tensors themselves) and stop that growth
(bench/soak.py measures it).
"""

from __future__ import annotations

import ctypes
import logging
import os

log = logging.getLogger(__name__)

MALLOC_ARENAS = 2
_M_ARENA_MAX = -8  # glibc's malloc.h


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> None:
    """Cap glibc's malloc arenas for the threads created from now on (call it before the
    process starts its threads). An explicit ``MALLOC_ARENA_MAX`` wins, and other C
    libraries (macOS, musl, Windows) are left as they are."""
    if "MALLOC_ARENA_MAX" in os.environ or not _glibc():
        return
    if not ctypes.CDLL(None).mallopt(_M_ARENA_MAX, arenas):
        log.warning("glibc refused to limit its malloc arenas to %d", arenas)


def _glibc() -> bool:
    try:
        return bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (AttributeError, ValueError, OSError):  # no confstr (Windows), or not glibc
        return False
