"""``pg.save`` / ``pg.load``: state dicts to safetensors files, written atomically (temporary file, fsync, rename),
so an interrupted save never destroys the previous checkpoint."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

from picograd.errors import CheckpointError
from picograd.frontend.tensor import Tensor

_META_KEY = "picograd.meta"


def _flatten(prefix: str, obj: Any, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Any:
    """Arrays/tensors go to ``arrays`` under dotted keys (made unique: ``{"a.b": x, "a": {"b": y}}`` gives two);
    the rest (numbers, strings, None) stays in the JSON skeleton. Raises ``TypeError`` naming the entry for what
    neither can hold."""
    if isinstance(obj, Tensor):
        obj = obj.numpy()
    if isinstance(obj, np.ndarray):
        key, n = prefix, 1
        while key in arrays:  # two paths that print alike: the second array must not overwrite the first
            key, n = f"{prefix}#{n}", n + 1
        arrays[key] = obj.copy(order="C")
        return {"__array__": key}
    if isinstance(obj, np.generic):  # a numpy scalar (np.float32(0.1), np.int64(3)): its Python value
        obj = obj.item()
    if isinstance(obj, dict):
        items = []
        for k, v in obj.items():
            if not isinstance(k, str | int) or isinstance(k, bool):
                raise TypeError(
                    f"pg.save: the dict at {_where(prefix)} has a key {k!r} of type {type(k).__name__}; "
                    "keys must be strings or ints"
                )
            items.append([_key(k), _flatten(f"{prefix}.{k}" if prefix else str(k), v, arrays, meta)])
        return {"__dict__": items}
    if isinstance(obj, list | tuple):
        return {
            "__list__": [_flatten(f"{prefix}.{i}", v, arrays, meta) for i, v in enumerate(obj)],
            "tuple": isinstance(obj, tuple),
        }
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(
        f"pg.save: cannot store {type(obj).__name__} at {_where(prefix)}: a checkpoint holds tensors, "
        "arrays, numbers, strings, None, and dicts, lists and tuples of them"
    )


def _where(prefix: str) -> str:
    return repr(prefix) if prefix else "the top level"


def _key(k: Any) -> Any:
    return k if isinstance(k, str) else {"__int__": k}


def _unflatten(obj: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(obj, dict):
        if "__array__" in obj:
            return arrays[obj["__array__"]]
        if "__dict__" in obj:
            return {(k["__int__"] if isinstance(k, dict) else k): _unflatten(v, arrays) for k, v in obj["__dict__"]}
        if "__list__" in obj:
            items = [_unflatten(v, arrays) for v in obj["__list__"]]
            return tuple(items) if obj["tuple"] else items
    return obj


_TMP_INFIX = ".tmp-"


def _temp_prefix(path: str) -> str:
    """The prefix of the temporary files of a save to ``path``: ``.<name>.tmp-<pid>-``."""
    return f".{os.path.basename(path)}{_TMP_INFIX}{os.getpid()}-"


def _remove_stale_temps(path: str) -> None:
    """Delete temporary files that earlier saves to ``path`` left behind when they were killed mid-write: those of
    processes that are gone (a save in progress elsewhere keeps its own)."""
    directory = os.path.dirname(os.path.abspath(path))
    start = f".{os.path.basename(path)}{_TMP_INFIX}"
    for name in os.listdir(directory):
        if not name.startswith(start):
            continue
        pid = name[len(start) :].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
            continue
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(directory, name))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def save(obj: Any, path: str | os.PathLike) -> None:
    """Write a state dict (nested dicts/lists of tensors, arrays, numbers, strings) to ``path`` as safetensors,
    atomically: a crash leaves either the old file or the new one (its temporary file, ``.<name>.tmp-<pid>-...``,
    is removed by the next save to ``path``). Raises ``FileNotFoundError`` naming ``path`` when its directory does
    not exist, and ``OSError`` naming ``path`` when it cannot be written."""
    arrays: dict[str, np.ndarray] = {}
    skeleton = _flatten("", obj, arrays, {})
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"pg.save: cannot write {path}: the directory {directory} does not exist")
    _remove_stale_temps(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=_temp_prefix(path), suffix=".safetensors")
    except OSError as e:
        raise type(e)(f"pg.save: cannot write {path}: {e.strerror or e}") from None
    os.close(fd)
    try:
        save_file(arrays, tmp, metadata={_META_KEY: json.dumps(skeleton)})
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise type(e)(f"pg.save: cannot write {path}: {e.strerror or e}") from None
        raise


def load(path: str | os.PathLike) -> Any:
    """Read what ``save`` wrote: the same structure, with numpy arrays where tensors were. Raises
    ``FileNotFoundError`` for a missing file and ``CheckpointError`` naming the file and the problem for one that
    is empty, truncated, not safetensors, or a safetensors file without picograd's metadata."""
    from safetensors import SafetensorError, safe_open

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"pg.load: no checkpoint at {path}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"pg.load: {path} is a directory, not a checkpoint file")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"pg.load: {path} is empty (a save that never finished?)")
    try:
        with safe_open(path, framework="numpy") as f:
            meta = f.metadata() or {}
        arrays = load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        with open(path, "rb") as head:
            magic = head.read(4)
        if magic == b"PK\x03\x04" and _is_npz(path):
            raise CheckpointError(
                f"pg.load: {path} is a numpy .npz archive; picograd reads its own safetensors files: read it with "
                "numpy.load and pass the arrays to load_state_dict"
            ) from None
        if magic == b"PK\x03\x04":  # a zip archive: torch.save's format (safetensors starts with its header length)
            raise CheckpointError(
                f"pg.load: {path} looks like a PyTorch checkpoint (torch.save); picograd reads its own safetensors "
                "files: load it with torch.load and pass the arrays (t.numpy()) to load_state_dict"
            ) from None
        raise CheckpointError(f"pg.load: {path} is truncated or not a safetensors file ({e})") from None
    if _META_KEY not in meta:
        raise CheckpointError(
            f"pg.load: {path} is a safetensors file that picograd did not write (no '{_META_KEY}' metadata; its "
            f"arrays: {sorted(arrays)[:5]}); read it with safetensors.numpy.load_file"
        )
    try:
        return _unflatten(json.loads(meta[_META_KEY]), arrays)
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"pg.load: {path} has damaged picograd metadata ({type(e).__name__}: {e})") from None


def _is_npz(path: str) -> bool:
    """Whether the zip archive at ``path`` is numpy's ``.npz`` (every member a ``.npy``; torch.save's has a pickle)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return bool(names) and all(n.endswith(".npy") for n in names)
