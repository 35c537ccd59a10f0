"""The Python values a traced step read from the user's objects, and the guards that make a compiled step trace
again when one of them changes (entries of dicts and lists, attributes of plain objects and classes).

A trace bakes every Python value the step reads into the graph (a scalar as a constant, a flag as the branch it
took), so a compiled step is only right while those values are what they were. ``@pg.compile`` already guards the
names a step binds (globals, closure cells; ``compile._Bindings``), attribute assignments on modules (a counter),
``training`` and ``.grad``; this module records what the user's code reached *through* those names while it was
traced: every access chain ``root.attr[key].attr...`` in the bytecode of each user function that ran (the chains are
read from the code once, the way torch.compile's guards name sources), evaluated on the frame's values when the
function returns. A chain becomes a guard from its first object that nothing else guards (steps through a module's
own attributes are the module counter's business) to the value it reached: Python scalars compare by type and
value, other objects by identity; a container (dict, list, tuple), plain object or small numpy array the chain
ends at also guards its contents, a few levels and ``_SNAPSHOT_LIMIT`` entries deep (``for s in scales`` reads
them all).

Cost: while a trace function is set, CPython 3.11 runs all Python code on its slower tracing path, so tracing
takes two to three times as long (tens of milliseconds for a 12-layer MLP step, about 1% of its compile); a call
checks the few guards that remain after module attributes are left to the module counter.

Library code (picograd's, the standard library's, installed packages') is not recorded: what of the user's objects
it reads that shapes a graph it declares itself, through ``TraceContext.checks`` (the optimizers' settings).
Evaluation never runs user code: attributes are read from instance and class dictionaries (a property or other
descriptor ends the chain) and items only from dicts, lists and tuples.

Not seen: values reached through calls (``getattr(o, name)``, ``o.method()``), through a local variable rebound in a
loop (the last binding is checked), or held by numpy arrays over ``_ARRAY_LIMIT_BYTES`` (changed in place)."""

from __future__ import annotations

import contextlib
import dis
import functools
import inspect
import os
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from picograd.frontend.graph import in_package

BY_VALUE = (int, float, complex, bool, str, bytes, type(None))  # guarded by type and value; other objects by identity

_MISSING = object()  # a key or attribute that is not there
_OPAQUE = object()  # a step that cannot be taken without running code (a property, a custom __getitem__)
_SNAPSHOT_LIMIT = 256  # entries of a container's contents compared at most (a larger one: its length only)
_SNAPSHOT_DEPTH = 3  # containers nested in containers followed
_ARRAY_LIMIT_BYTES = 1 << 16  # numpy arrays up to this size are guarded by their bytes (larger ones by identity)
_READING_METHODS = frozenset({"items", "values", "keys", "copy", "count", "index", "__iter__", "__len__"})


def same(now: Any, then: Any) -> bool:
    """Whether ``now`` stands for what ``then`` stood for when traced: the same object, or a Python scalar of the
    same type and value."""
    return now is then or (type(now) is type(then) and isinstance(then, BY_VALUE) and now == then)


@functools.lru_cache(maxsize=4096)
def access_chains(code: types.CodeType) -> tuple[tuple[str, str, tuple[tuple[str, Any], ...], bool], ...]:
    """The access chains in ``code`` (not in code nested in it: that runs as frames of its own): ``(root kind,
    root name, steps, whole)``, the root a local (``"fast"``, zero steps not kept), a closure variable
    (``"deref"``) or a global (``"global"``), each step ``("attr", name)``, ``("item", constant key)`` or
    ``("get", constant key)`` (``d.get(key, ...)``); ``whole``: whether the value reached is read whole (iterated,
    passed on), not only called a method of that may change it (``log.append(...)``)."""
    instrs = list(dis.get_instructions(code))
    chains: dict[tuple, None] = {}
    i, n = 0, len(instrs)
    while i < n:
        ins = instrs[i]
        kind = {"LOAD_FAST": "fast", "LOAD_DEREF": "deref", "LOAD_GLOBAL": "global"}.get(ins.opname)
        i += 1
        if kind is None:
            continue
        steps: list[tuple[str, Any]] = []
        whole = True
        while i < n:
            op = instrs[i].opname
            if op == "LOAD_ATTR" and not _method(instrs[i]):
                steps.append(("attr", instrs[i].argval))
                i += 1
            elif op == "LOAD_CONST" and i + 1 < n and instrs[i + 1].opname == "BINARY_SUBSCR" and _key(instrs[i]):
                steps.append(("item", instrs[i].argval))
                i += 2
            elif _method(instrs[i]) and instrs[i].argval == "get" and i + 1 < n and _key(instrs[i + 1]):
                steps.append(("get", instrs[i + 1].argval))
                i += 2
                break
            else:
                whole = _read_whole(instrs, i)
                break
        if steps or kind != "fast":
            chains[(kind, ins.argval, tuple(steps), whole)] = None
    return tuple(chains)


def _read_whole(instrs: list[dis.Instruction], i: int) -> bool:
    """Whether the value a chain reaches, followed by ``instrs[i]``, is read whole (iterated, passed on, returned),
    not only written (``o.x = v``, ``o.x += 1``, ``d[k] = v``, ``del``), dropped, or called a method of that is not
    a read (``log.append(v)``): the contents of what is only written are the step's side effects, not its inputs."""
    op = instrs[i].opname
    if _method(instrs[i]):
        return instrs[i].argval in _READING_METHODS
    if op in ("COPY", "STORE_ATTR", "DELETE_ATTR", "POP_TOP"):
        return False
    after = instrs[i + 1].opname if i + 1 < len(instrs) else ""
    return not (op.startswith("LOAD_") and after in ("STORE_SUBSCR", "DELETE_SUBSCR", "COPY"))


def _method(ins: dis.Instruction) -> bool:
    """Whether ``ins`` loads a method to call (``LOAD_METHOD``; from CPython 3.12, ``LOAD_ATTR`` with its low bit)."""
    return ins.opname == "LOAD_METHOD" or (ins.opname == "LOAD_ATTR" and sys.version_info >= (3, 12) and ins.arg & 1)


def _key(ins: dis.Instruction) -> bool:
    return ins.opname == "LOAD_CONST" and isinstance(ins.argval, int | str | bytes | tuple | float | bool)


def _attr(obj: Any, name: str) -> Any:
    """``obj.name`` when it is a plain value of the instance's (or module's, or class's) dictionary, else
    ``_OPAQUE`` (a property, method or slot: reading it may run code) or ``_MISSING``."""
    d = getattr(obj, "__dict__", None)
    if isinstance(d, dict) and name in d and not isinstance(obj, type):
        return d[name]
    try:
        value = inspect.getattr_static(obj, name)
    except AttributeError:
        return _MISSING
    if isinstance(value, types.FunctionType | property | staticmethod | classmethod) or hasattr(type(value), "__get__"):
        return _OPAQUE
    return value


def _item(obj: Any, key: Any, default_missing: bool) -> Any:
    """``obj[key]`` for a dict, list or tuple (a dict's ``__missing__`` is not called), else ``_OPAQUE``."""
    if isinstance(obj, dict):
        return dict.get(obj, key, _MISSING)
    if isinstance(obj, list | tuple) and not default_missing and isinstance(key, int) and not isinstance(key, bool):
        return obj[key] if -len(obj) <= key < len(obj) else _MISSING
    return _OPAQUE


def walk(obj: Any, steps: tuple[tuple[str, Any], ...]) -> Any:
    """The value ``steps`` reach from ``obj`` (``_OPAQUE`` where one cannot be taken safely)."""
    for kind, key in steps:
        if obj is _MISSING or obj is _OPAQUE:
            return obj
        obj = _attr(obj, key) if kind == "attr" else _item(obj, key, kind == "get")
    return obj


def _is_plain(obj: Any) -> bool:
    """Whether ``obj`` is an object of the user's own classes whose attributes live in its ``__dict__``."""
    from picograd.frontend.tensor import Tensor

    if isinstance(obj, BY_VALUE) or isinstance(obj, types.ModuleType | type | types.FunctionType | Tensor):
        return False
    cls_file = getattr(sys.modules.get(type(obj).__module__), "__file__", None)
    return isinstance(getattr(obj, "__dict__", None), dict) and is_user_file(cls_file) and not _is_module(obj)


def _is_module(obj: Any) -> bool:
    from picograd.frontend.nn.modules import Module

    return isinstance(obj, Module)


def snapshot(obj: Any) -> list[Any] | None:
    """The contents of a container or plain object (``None`` for anything else): its entries, nested containers'
    entries down to ``_SNAPSHOT_DEPTH``, at most ``_SNAPSHOT_LIMIT`` (past that, the length stands for them)."""
    if isinstance(obj, np.ndarray):  # baked into the trace as a constant when the step makes a tensor of it
        return [_array_key(obj)] if obj.nbytes <= _ARRAY_LIMIT_BYTES else None
    if not isinstance(obj, dict | list | tuple) and not _is_plain(obj):
        return None
    out: list[Any] = []

    def add(o: Any, depth: int) -> None:
        if isinstance(o, dict):
            items: Any = list(o.items())
        elif isinstance(o, list | tuple):
            items = list(enumerate(o))
        elif _is_plain(o):
            items = list(vars(o).items())
        else:
            if isinstance(o, np.ndarray) and o.nbytes <= _ARRAY_LIMIT_BYTES:
                out.append(_array_key(o))
            return
        out.append(len(items))
        if len(out) + 2 * len(items) > _SNAPSHOT_LIMIT:
            return
        for k, v in items:
            out.append(k)
            out.append(v)
            if depth < _SNAPSHOT_DEPTH and not isinstance(v, BY_VALUE):
                add(v, depth + 1)

    add(obj, 0)
    return out


def _array_key(a: np.ndarray) -> bytes:
    """An array's dtype, shape and bytes, as one value."""
    return f"{a.dtype.str}{a.shape}".encode() + a.tobytes()


def snapshot_holds(obj: Any, then: list[Any]) -> bool:
    now = snapshot(obj)
    return now is not None and len(now) == len(then) and all(same(a, b) for a, b in zip(now, then, strict=True))


@dataclass
class Reads:
    """Guards on what a trace reached through the user's objects: ``(root, steps, value, contents)`` each."""

    paths: dict[tuple[int, tuple], tuple[Any, tuple, Any, list[Any] | None]] = field(default_factory=dict)

    def hold(self) -> bool:
        for root, steps, value, contents in self.paths.values():
            now = walk(root, steps) if steps else root
            if not same(now, value) or (contents is not None and not snapshot_holds(now, contents)):
                return False
        return True

    def failed(self) -> str | None:
        """The first guard that fails, in words (``dict['scale']``, ``the contents of a list``), or None."""
        for root, steps, value, contents in self.paths.values():
            now = walk(root, steps) if steps else root
            path = type(root).__name__ + "".join(f".{k}" if kind == "attr" else f"[{k!r}]" for kind, k in steps)
            if not same(now, value):
                return path if steps else f"a {path}"
            if contents is not None and not snapshot_holds(now, contents):
                return f"the contents of {path}" if steps else f"the contents of a {path}"
        return None

    def add(self, root: Any, steps: tuple[tuple[str, Any], ...], whole: bool = True) -> None:
        """Guard the chain ``steps`` from ``root``, from its first step that no other guard covers, and the contents
        of the value it reaches if that is read ``whole``."""
        from picograd.frontend.tensor import Tensor

        values, taken, obj = [root], [], root
        for kind, key in steps:
            if isinstance(obj, Tensor) or obj is _MISSING:  # a tensor's attributes are the trace's business
                break
            nxt = _attr(obj, key) if kind == "attr" else _item(obj, key, kind == "get")
            if nxt is _OPAQUE:
                break
            taken.append((kind, key))
            obj = nxt
            values.append(obj)
        start = 0  # steps through a module's own attributes are guarded by the module counter
        while start < len(taken) and taken[start][0] == "attr" and _is_module(values[start]):
            if taken[start][1] not in vars(values[start]):
                break
            start += 1
        rest = tuple(taken[start:])
        contents = snapshot(obj) if whole or len(taken) < len(steps) else None
        if not rest and contents is None:
            return  # a binding or module attribute, which other guards cover
        base = values[start]
        key = (id(base), rest)
        if key not in self.paths:
            self.paths[key] = (base, rest, obj, contents)

    def record_frame(self, frame: types.FrameType) -> None:
        """Add the access chains of ``frame``'s code, evaluated on its variables as it returns."""
        local = frame.f_locals
        for kind, name, steps, whole in access_chains(frame.f_code):
            scope = frame.f_globals if kind == "global" else local
            root = scope.get(name, _MISSING)
            if (
                root is _MISSING
                or isinstance(root, types.ModuleType)
                and (not steps or not is_user_file(getattr(root, "__file__", None)))
            ):
                continue  # a library module's attributes are not the user's to rebind
            self.add(root, steps, whole)


@contextlib.contextmanager
def recording() -> Iterator[Reads]:
    """Record, while the body runs, the access chains of the user's functions as they return: through a trace
    function that traces only the user's frames, and only their returns (``sys.settrace``); under a debugger or a
    coverage tool (a trace function already set), through a profile hook, which is called for every call and
    costs more."""
    reads = Reads()

    def record(frame: types.FrameType) -> None:
        try:
            reads.record_frame(frame)
        except Exception:  # noqa: BLE001 - a guard that cannot be evaluated is left out, never an error
            pass

    if sys.gettrace() is None:

        def on_return(frame: types.FrameType, event: str, arg: Any) -> Any:
            if event == "return":
                record(frame)
            return on_return

        def on_call(frame: types.FrameType, event: str, arg: Any) -> Any:
            if event == "call" and is_user_file(frame.f_code.co_filename):
                frame.f_trace_lines = False
                return on_return
            return None

        sys.settrace(on_call)
        try:
            yield reads
        finally:
            sys.settrace(None)
        return
    previous = sys.getprofile()

    def hook(frame: types.FrameType, event: str, arg: Any) -> None:
        if previous is not None:
            previous(frame, event, arg)  # type: ignore[arg-type]
        if event == "return" and is_user_file(frame.f_code.co_filename):
            record(frame)

    sys.setprofile(hook)
    try:
        yield reads
    finally:
        sys.setprofile(previous)


def _library_dirs() -> tuple[str, ...]:
    """The standard library's and installed packages' directories, symlinks resolved, each with a trailing
    separator."""
    import sysconfig

    paths = sysconfig.get_paths()
    dirs = {os.path.realpath(p) for k, p in paths.items() if k in ("stdlib", "platstdlib", "purelib", "platlib")}
    return tuple(os.path.join(d, "") for d in dirs)


_LIBRARY_DIRS = _library_dirs()


@functools.lru_cache(maxsize=4096)
def is_user_file(filename: str | None) -> bool:
    """Whether ``filename`` is the user's code (not picograd's, the standard library's or an installed package's),
    however its path is spelt (``bench/../picograd/...``, a symlink)."""
    if filename is None or in_package(filename) or filename.startswith("<"):
        return False
    return not os.path.realpath(filename).startswith(_LIBRARY_DIRS)
