"""``torch.save`` files without torch: a zip of one pickle plus raw tensor storages.

The unpickler is restricted like ``torch.load(weights_only=True)``, only tighter: the globals
that rebuild a tensor become numpy, ``OrderedDict`` is allowed, and every other global is
refused, so opening a file never runs code from it. The writer (:func:`save_pth`) writes
numpy arrays as the tensors ``torch.save`` would, so a process without torch (the desktop
bundle) saves models that ``torch.load(weights_only=True)`` reads.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

# torch's storage classes, named as torch.save pickles them, and the dtype of their bytes.
_STORAGE_DTYPES: dict[str, str] = {
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


# --- Writing ------------------------------------------------------------------------------

_STORAGE_NAMES = {
    np.dtype(dtype).newbyteorder("<"): name for name, dtype in _STORAGE_DTYPES.items()
}
ARCHIVE = "archive"  # torch.save's top-level folder in the zip
ARCHIVE_VERSION = "3\n"  # the zip layout version torch.save writes


@dataclass(frozen=True)
class _Global:
    """A global pickled by name (``GLOBAL module name``), never imported here."""

    module: str
    name: str

    def __call__(self, *args: Any) -> Any:  # pickle requires a reducer's function be callable
        raise TypeError(f"{self.module}.{self.name} is only written, never called")


_REBUILD_TENSOR = _Global("torch._utils", "_rebuild_tensor_v2")


@dataclass(frozen=True)
class _Storage:
    key: str
    storage_type: _Global
    numel: int


def _save_named(pickler: Any, obj: _Global) -> None:
    """Pickle ``obj`` as the global it names (the stubs do not declare these methods)."""
    pickler.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
    pickler.memoize(obj)


class _Pickler(pickle._Pickler):  # the pure-Python pickler: its dispatch table is extensible
    dispatch: ClassVar[dict[type, Callable[[Any, Any], None]]] = {
        **pickle._Pickler.dispatch,
        _Global: _save_named,
    }

    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file, protocol=2)  # torch.save's protocol
        self.storages: list[bytes] = []

    def reducer_override(self, obj: Any) -> Any:
        if not isinstance(obj, np.ndarray):
            return NotImplemented
        array = np.array(obj, dtype=obj.dtype.newbyteorder("<"), order="C")  # keeps 0-d
        if array.dtype not in _STORAGE_NAMES:
            raise pickle.PicklingError(f"no torch storage for arrays of {obj.dtype}")
        storage = _Storage(
            str(len(self.storages)), _Global("torch", _STORAGE_NAMES[array.dtype]), array.size
        )
        self.storages.append(array.tobytes())
        strides = tuple(step // array.itemsize for step in array.strides)
        args: tuple[Any, ...] = (storage, 0, array.shape, strides, False, OrderedDict())
        return _REBUILD_TENSOR, args

    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, _Storage):
            return ("storage", obj.storage_type, obj.key, "cpu", obj.numel)
        return None


def save_pth(value: Any) -> bytes:
    """``value`` (plain data, numpy arrays as tensors) as the bytes ``torch.save`` writes."""
    pickled = io.BytesIO()
    pickler = _Pickler(pickled)
    pickler.dump(value)
    output = io.BytesIO()
    with zipfile.ZipFile(output, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(f"{ARCHIVE}/data.pkl", pickled.getvalue())
        archive.writestr(f"{ARCHIVE}/byteorder", "little")
        for key, data in enumerate(pickler.storages):
            archive.writestr(f"{ARCHIVE}/data/{key}", data)
        archive.writestr(f"{ARCHIVE}/version", ARCHIVE_VERSION)
    return output.getvalue()
