"""Reading ``torch.save`` files without torch: a zip of one pickle plus raw tensor storages.

The unpickler is restricted like ``torch.load(weights_only=True)``, only tighter: the globals
that rebuild a tensor become numpy, ``OrderedDict`` is allowed, and every other global is
refused, so opening a file never runs code from it. Writing stays torch's ``torch.save``.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

# torch's storage classes, named as torch.save pickles them, and the dtype of their bytes.
_STORAGE_DTYPES = {
    "DoubleStorage": "f8",
    "FloatStorage": "f4",
    "HalfStorage": "f2",
    "LongStorage": "i8",
    "IntStorage": "i4",
    "ShortStorage": "i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}


class UnsafePthFile(pickle.UnpicklingError):
    """The file needs a global outside the allowed tensor-rebuild ones."""


@dataclass(frozen=True)
class _StorageType:
    dtype: str


def _rebuild_tensor(
    storage: np.ndarray,
    offset: int,
    size: tuple[int, ...],
    stride: tuple[int, ...],
    requires_grad: bool,
    backward_hooks: Any,
    metadata: Any = None,
) -> np.ndarray:
    """``torch._utils._rebuild_tensor_v2`` in numpy: a copied strided view of the storage."""
    if any(s < 0 for s in stride) or offset < 0:
        raise UnsafePthFile("negative tensor stride or offset")
    needed = offset + 1 + sum((n - 1) * s for n, s in zip(size, stride, strict=True) if n)
    if all(size) and needed > storage.size:
        raise UnsafePthFile("a tensor reaches past its storage")
    view = np.lib.stride_tricks.as_strided(
        storage[offset:],
        shape=tuple(size),
        strides=tuple(s * storage.itemsize for s in stride),
        writeable=False,
    )
    return np.array(view)


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, storage: Callable[[str, str], np.ndarray]) -> None:
        super().__init__(io.BytesIO(data))
        self._storage = storage

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        raise UnsafePthFile(f"the file refers to {module}.{name}, which a model never needs")

    def persistent_load(self, pid: Any) -> np.ndarray:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise UnsafePthFile(f"unknown persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType):
            raise UnsafePthFile(f"unknown storage type {storage_type!r}")
        array = self._storage(str(key), storage_type.dtype)
        if array.size != numel:
            raise UnsafePthFile(f"storage {key} has {array.size} values, not {numel}")
        return array


def load_pth(data: bytes) -> Any:
    """The object ``torch.save`` wrote, with every tensor as a numpy array.

    Raises :class:`UnsafePthFile` (a ``pickle.UnpicklingError``) for anything but plain data
    and tensors, and ``zipfile.BadZipFile``/``KeyError`` for a file that is not torch's.
    """
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        pickles = [name for name in archive.namelist() if name.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise zipfile.BadZipFile("not a torch.save file (no single data.pkl)")
        root = pickles[0][: -len("data.pkl")]
        names = set(archive.namelist())
        order = (
            archive.read(f"{root}byteorder").decode().strip()
            if f"{root}byteorder" in names
            else "little"
        )
        prefix = "<" if order == "little" else ">"

        def storage(key: str, dtype: str) -> np.ndarray:
            return np.frombuffer(archive.read(f"{root}data/{key}"), dtype=prefix + dtype)

        return _Unpickler(archive.read(pickles[0]), storage).load()
