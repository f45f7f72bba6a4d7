"""Load torch's native libraries without freezing the window.

The first ``import torch`` loads about 2 GB of shared libraries (libtorch_cpu, and with a CUDA
build libtorch_cuda and the CUDA runtime) and runs their static initialisers: 0.5-1 s. Python
does that ``dlopen`` holding the GIL, so the GUI thread froze for as long, although the import
ran on a pool thread. A ctypes call into ``dlopen`` releases the GIL: made first, it leaves the
import only torch's own module set-up to do, in short steps the GUI thread gets between.

:func:`install` arranges that for whichever code imports torch first (a classification, a
submission, a retrain request), so no call site has to remember it.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.abc
import importlib.machinery
import importlib.util
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

log = logging.getLogger(__name__)

# libtorch depends on everything torch's extension module needs but Python itself.
LIBTORCH = {"linux": "libtorch.so", "darwin": "libtorch.dylib"}.get(sys.platform)


def preload_torch_libraries() -> None:
    """Load libtorch and what it links to with the GIL released; torch itself is not imported.
    Does nothing where there is no POSIX ``dlopen`` or torch is not installed."""
    spec = importlib.util.find_spec("torch")
    if LIBTORCH is None or spec is None or not spec.submodule_search_locations:
        return
    path = Path(spec.submodule_search_locations[0]) / "lib" / LIBTORCH  # also in the bundle
    dlopen = ctypes.CDLL(None).dlopen  # a foreign call: ctypes releases the GIL around it
    dlopen.argtypes, dlopen.restype = [ctypes.c_char_p, ctypes.c_int], ctypes.c_void_p
    # The handle is kept open on purpose: the import loads the same file, found loaded.
    if not dlopen(os.fsencode(path), os.RTLD_NOW):
        log.debug("could not preload %s; the import of torch will load it", path)


class _PreloadBeforeTorch(importlib.abc.MetaPathFinder):
    """Asked first for every import; on the first of torch, preloads its libraries, then
    lets the ordinary finders import it."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname == "torch":
            # Python's lock on the module makes this run once, in the importing thread.
            with contextlib.suppress(ValueError):
                sys.meta_path.remove(self)
            preload_torch_libraries()
        return None


def install() -> None:
    """Preload torch's libraries on its first import in this process (once is enough)."""
    if "torch" not in sys.modules and not any(
        isinstance(finder, _PreloadBeforeTorch) for finder in sys.meta_path
    ):
        sys.meta_path.insert(0, _PreloadBeforeTorch())
