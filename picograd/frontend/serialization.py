"""``pg.save`` / ``pg.load``: state dicts to safetensors files, written atomically (temporary file, fsync, rename),
so an interrupted save never destroys the previous checkpoint."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

from picograd.frontend.tensor import Tensor

_META_KEY = "picograd.meta"


def _flatten(prefix: str, obj: Any, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Any:
    """Arrays/tensors go to ``arrays`` under dotted keys; the rest (numbers, strings) stays in the JSON skeleton."""
    if isinstance(obj, Tensor):
        obj = obj.numpy()
    if isinstance(obj, np.ndarray):
        arrays[prefix] = obj.copy(order="C")
        return {"__array__": prefix}
    if isinstance(obj, dict):
        return {
            "__dict__": [
                [_key(k), _flatten(f"{prefix}.{k}" if prefix else str(k), v, arrays, meta)] for k, v in obj.items()
            ]
        }
    if isinstance(obj, list | tuple):
        return {
            "__list__": [_flatten(f"{prefix}.{i}", v, arrays, meta) for i, v in enumerate(obj)],
            "tuple": isinstance(obj, tuple),
        }
    return obj


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


def save(obj: Any, path: str | os.PathLike) -> None:
    """Write a state dict (nested dicts/lists of tensors, arrays, numbers, strings) to ``path`` as safetensors,
    atomically: a crash leaves either the old file or the new one."""
    arrays: dict[str, np.ndarray] = {}
    skeleton = _flatten("", obj, arrays, {})
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".safetensors")
    os.close(fd)
    try:
        save_file(arrays, tmp, metadata={_META_KEY: json.dumps(skeleton)})
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load(path: str | os.PathLike) -> Any:
    """Read what ``save`` wrote: the same structure, with numpy arrays where tensors were."""
    from safetensors import safe_open

    with safe_open(os.fspath(path), framework="numpy") as f:
        meta = f.metadata() or {}
    arrays = load_file(os.fspath(path))
    return _unflatten(json.loads(meta[_META_KEY]), arrays)
