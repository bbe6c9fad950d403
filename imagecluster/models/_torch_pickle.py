"""Read a legacy (non-zip) PyTorch ``.pth`` state dict without PyTorch.

A legacy torch file is a chain of pickles followed by raw storage bytes::

    pickle 1   magic number 0x1950a86a20f9469cfc6c
    pickle 2   protocol version 1001
    pickle 3   sys info {"little_endian": True, ...}
    pickle 4   the state dict: OrderedDict of tensors, each rebuilt by
               torch._utils._rebuild_tensor_v2 from a persistent id
               ("storage", torch.FloatStorage, key, location, numel, None)
    pickle 5   the list of storage keys, in file order
    per key    int64 little-endian element count, then the raw elements

Pickles can run code, so nothing here calls :func:`pickle.load`: every pickle
goes through :class:`_RestrictedUnpickler`, which resolves only the handful of
names a state dict needs and maps them to harmless local stand-ins. Anything
else is refused before it is imported, and surfaces as
:class:`~imagecluster._exceptions.ModelError`.
"""

import collections
import logging
import os
import pickle
import struct
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .._exceptions import ModelError

__all__ = ["load_legacy_state_dict"]

logger = logging.getLogger(__name__)

_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_PROTOCOL_VERSION = 1001
_ZIP_MAGIC = b"PK\x03\x04"

# torch storage class name -> little-endian numpy dtype of one element
_STORAGE_DTYPES: dict[str, np.dtype] = {
    "DoubleStorage": np.dtype("<f8"),
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class _StorageType(NamedTuple):
    """Stand-in for a ``torch.*Storage`` class: a name and a dtype, not callable."""

    name: str
    dtype: np.dtype


class _Storage(NamedTuple):
    """A storage announced by a persistent id; its bytes come after the pickles."""

    key: str
    dtype: np.dtype
    numel: int


class _TensorRef(NamedTuple):
    """A tensor as a view into a storage that has not been read yet."""

    storage: _Storage
    offset: int
    size: tuple
    stride: tuple


def _is_int_tuple(value):
    return isinstance(value, tuple) and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
    )


def _rebuild_tensor_v2(
    storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
    metadata=None,
):
    """Local replacement for ``torch._utils._rebuild_tensor_v2``; checks every argument."""
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError("tensor storage is not a persistent storage reference")
    if not (isinstance(storage_offset, int) and storage_offset >= 0):
        raise pickle.UnpicklingError(f"bad storage offset {storage_offset!r}")
    if not (_is_int_tuple(size) and _is_int_tuple(stride) and len(size) == len(stride)):
        raise pickle.UnpicklingError(f"bad tensor size {size!r} or stride {stride!r}")
    return _TensorRef(storage, storage_offset, size, stride)


class _Rebuilder:
    """The callable handed out for ``_rebuild_tensor_v2``.

    A fresh, slot-less instance per lookup, whose ``__setstate__`` refuses,
    so a pickle cannot use BUILD to change attributes of our module function.
    """

    __slots__ = ()

    def __call__(self, *args):
        return _rebuild_tensor_v2(*args)

    def __setstate__(self, state):
        raise pickle.UnpicklingError("refusing to BUILD onto _rebuild_tensor_v2")


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that knows only what a torch state dict needs.

    ``find_class`` resolves ``collections.OrderedDict``,
    ``torch._utils._rebuild_tensor_v2`` (to a :class:`_Rebuilder`) and the
    ``torch.*Storage`` names (to :class:`_StorageType` values); any other
    global raises :class:`pickle.UnpicklingError` without being imported.
    """

    def __init__(self, file, storages):
        super().__init__(file)
        self._storages = storages

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _Rebuilder()
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name, _STORAGE_DTYPES[name])
        raise pickle.UnpicklingError(
            f"refusing to load global {module}.{name}: not part of a plain tensor state dict"
        )

    def persistent_load(self, pid):
        if not (
            isinstance(pid, tuple)
            and len(pid) in (5, 6)
            and pid[0] == "storage"
            and isinstance(pid[1], _StorageType)
            and isinstance(pid[2], str)
            and isinstance(pid[4], int)
            and pid[4] >= 0
            and (len(pid) == 5 or pid[5] is None)
        ):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid[:5]
        storage = self._storages.get(key)
        if storage is None:
            storage = self._storages[key] = _Storage(key, storage_type.dtype, numel)
        elif storage.dtype != storage_type.dtype or storage.numel != numel:
            raise pickle.UnpicklingError(f"storage {key} is declared twice, differently")
        return storage


def _unpickle(file, storages):
    return _RestrictedUnpickler(file, storages).load()


def _read_exact(file, n_bytes, remaining, what):
    if n_bytes > remaining:
        raise ModelError(f"file is truncated: {what} needs {n_bytes} bytes, {remaining} left")
    data = file.read(n_bytes)
    if len(data) != n_bytes:
        raise ModelError(f"file is truncated while reading {what}")
    return data


def _materialise(ref, arrays):
    """Copy one tensor out of its storage array, honouring offset, size and stride."""
    base = arrays[ref.storage.key]
    if 0 in ref.size:
        return np.zeros(ref.size, dtype=base.dtype.newbyteorder("="))
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride))
    if last >= base.size:
        raise ModelError(
            f"tensor view ends at element {last} beyond storage {ref.storage.key} "
            f"of {base.size} elements"
        )
    itemsize = base.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        base[ref.offset :],
        shape=ref.size,
        strides=tuple(s * itemsize for s in ref.stride),
        writeable=False,
    )
    return np.array(view, dtype=base.dtype.newbyteorder("="), copy=True)


def _load(file, total_size):
    storages: dict[str, _Storage] = {}
    if _unpickle(file, storages) != _MAGIC_NUMBER:
        raise ModelError("not a legacy torch file (wrong magic number)")
    version = _unpickle(file, storages)
    if version != _PROTOCOL_VERSION:
        raise ModelError(f"unsupported torch protocol version {version!r}")
    sys_info = _unpickle(file, storages)
    if not (isinstance(sys_info, dict) and sys_info.get("little_endian") is True):
        raise ModelError("only little-endian torch files are supported")
    result = _unpickle(file, storages)
    if not isinstance(result, dict):
        raise ModelError(f"file holds a {type(result).__name__}, not a state dict")
    keys = _unpickle(file, storages)
    if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)):
        raise ModelError("storage key list is malformed")

    arrays = {}
    for key in keys:
        storage = storages.get(key)
        if storage is None:
            raise ModelError(f"storage {key} is listed but used by no tensor")
        remaining = total_size - file.tell()
        (numel,) = struct.unpack("<q", _read_exact(file, 8, remaining, "a storage header"))
        if numel != storage.numel:
            raise ModelError(f"storage {key} has {numel} elements, expected {storage.numel}")
        n_bytes = numel * storage.dtype.itemsize
        raw = _read_exact(file, n_bytes, remaining - 8, f"storage {key}")
        arrays[key] = np.frombuffer(raw, dtype=storage.dtype)
    missing = set(storages) - set(arrays)
    if missing:
        raise ModelError(f"{len(missing)} storages have no data, e.g. {sorted(missing)[0]}")

    state = {}
    for name, ref in result.items():
        if not (isinstance(name, str) and isinstance(ref, _TensorRef)):
            raise ModelError(f"entry {name!r} is not a tensor")
        state[name] = _materialise(ref, arrays)
    return state


def load_legacy_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a legacy-format torch ``.pth`` state dict into numpy arrays.

    Only plain tensor state dicts are accepted; the pickles are read with a
    restricted unpickler that never imports or calls anything outside a short
    allow-list, so a malicious file is refused rather than executed.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.pth`` file, as written by ``torch.save(...,
        _use_new_zipfile_serialization=False)`` (the format of torch < 1.6).

    Returns
    -------
    state_dict : dict of str to numpy.ndarray
        Parameter name to a fresh, writable, native-byte-order array with the
        tensor's shape and dtype, in file order.

    Raises
    ------
    ModelError
        The file is missing, unreadable, truncated, in the zip format of newer
        torch versions, or contains anything but tensors.
    """
    path = Path(path)
    try:
        with open(path, "rb") as file:
            if file.read(4) == _ZIP_MAGIC:
                raise ModelError(
                    f"{path} is a zip-format torch file; only the legacy format is supported "
                    "(re-save it with torch.save(state_dict, path, "
                    "_use_new_zipfile_serialization=False))"
                )
            file.seek(0)
            return _load(file, os.fstat(file.fileno()).st_size)
    except FileNotFoundError as exc:
        raise ModelError(f"weights file not found: {path}") from exc
    except pickle.UnpicklingError as exc:
        raise ModelError(f"{path}: refused or malformed torch pickle: {exc}") from exc
    except ModelError as exc:
        if str(path) in str(exc):
            raise
        raise ModelError(f"{path}: {exc}") from exc
    except (OSError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, struct.error, MemoryError) as exc:
        raise ModelError(f"{path}: not a readable legacy torch state dict: {exc!r}") from exc
