"""Assemble PTX text into a cubin and report what ptxas says: the check that every PTX picograd emits is valid, and
the one place that runs the assembler (the CUDA runtime loads what this gives) and reads its log.

Two assemblers, tried in this order (``backend="auto"``):

1. ``ptxas`` from the CUDA toolkit: on ``PATH``, else ``$CUDA_HOME/bin`` or ``$CUDA_PATH/bin``. Run as
   ``ptxas -arch=sm_90 -v in.ptx -o out.cubin`` (plus ``--warn-on-spills -Werror`` when ``strict``).
2. ``cuda.core``'s ``Linker``: nvJitLink (``pip install nvidia-nvjitlink-cu12``), which runs the same ptxas inside
   the library with the same options passed as ``ptxas_options`` and needs no GPU and no driver; else the driver's
   ``cuLink*`` (``CU_JIT_LOG_VERBOSE`` gives the same log lines), which needs a current CUDA context
   (``backend="linker"``, as the CUDA runtime asks for it, takes whichever of the two the Linker has).

``assemble`` raises ``picograd.errors.CompileError`` with ptxas's full log when the PTX is invalid (or, with
``strict``, when a kernel spills registers), and ``CompileError("no PTX assembler: ...")`` when neither assembler is
there (``NoAssembler``, a ``CompileError``). The ``-v`` report is parsed into ``KernelResources`` per kernel
(registers, spills, shared memory); ``target_of`` reads the ``.target`` directive.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from picograd.errors import CompileError

NO_ASSEMBLER = "no PTX assembler: install the CUDA toolkit's ptxas or nvidia-nvjitlink-cu12"
STRICT_OPTIONS = ("--warn-on-spills", "-Werror")
BACKENDS = ("auto", "ptxas", "nvjitlink", "linker")


class NoAssembler(CompileError):
    """Neither assembler is installed (or not the one asked for)."""


@dataclass(frozen=True)
class KernelResources:
    """What ``ptxas -v`` reports for one kernel; None where the log does not say (shared memory is 0 when the
    register line is there without an ``smem`` figure)."""

    name: str
    registers: int | None = None
    spill_stores: int | None = None
    spill_loads: int | None = None
    stack_frame: int | None = None  # per-thread local memory (spills, local arrays)
    shared_bytes: int | None = None  # static shared memory
    barriers: int | None = None


@dataclass(frozen=True)
class AssemblyResult:
    """A successful assembly: the ptxas log (``-v`` output and warnings), the cubin, and per-kernel resources."""

    info_log: str
    cubin: bytes
    backend: str  # "ptxas" or "nvjitlink"
    arch: str
    kernels: dict[str, KernelResources] = field(default_factory=dict)

    @property
    def spills(self) -> bool:
        return any(k.spill_stores or k.spill_loads for k in self.kernels.values())


def find_ptxas() -> str | None:
    """Path of the ``ptxas`` executable: ``PATH``, then ``$CUDA_HOME/bin``, then ``$CUDA_PATH/bin``."""
    found = shutil.which("ptxas")
    if found:
        return found
    for var in ("CUDA_HOME", "CUDA_PATH"):
        root = os.environ.get(var)
        if root:
            candidate = Path(root) / "bin" / "ptxas"
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    return None


def linker_backend() -> str | None:
    """The backend ``cuda.core``'s Linker would use: ``"nvjitlink"`` (the pip package ``nvidia-nvjitlink-cu12``),
    ``"driver"`` (the CUDA driver's ``cuLink*``), or None (no cuda-python, or neither library found)."""
    try:
        from cuda.core import Linker

        chosen = Linker.which_backend()
    except Exception:
        return None
    name = str(getattr(chosen, "value", chosen)).lower()
    return "nvjitlink" if "nvjitlink" in name else "driver"


def nvjitlink_available() -> bool:
    """Whether ``cuda.core``'s Linker can use nvJitLink (the pip package ``nvidia-nvjitlink-cu12``)."""
    return linker_backend() == "nvjitlink"


def parse_resources(log: str) -> dict[str, KernelResources]:
    """Per-kernel resources from a ``ptxas -v`` log."""
    kernels: dict[str, dict[str, int | str]] = {}
    current: dict[str, int | str] | None = None
    for line in log.splitlines():
        m = re.search(r"(?:Compiling entry function|Function properties for) '?([\w$]+)'?", line)
        if m:
            current = kernels.setdefault(m.group(1), {"name": m.group(1)})
            continue
        if current is None:
            continue
        for pattern, key in (
            (r"(\d+) bytes stack frame", "stack_frame"),
            (r"(\d+) bytes spill stores", "spill_stores"),
            (r"(\d+) bytes spill loads", "spill_loads"),
            (r"Used (\d+) registers", "registers"),
            (r"used (\d+) barriers", "barriers"),
            (r"(\d+) bytes smem", "shared_bytes"),
        ):
            m = re.search(pattern, line)
            if m:
                current[key] = int(m.group(1))
    for values in kernels.values():
        if "registers" in values:
            values.setdefault("shared_bytes", 0)
    return {name: KernelResources(**values) for name, values in kernels.items()}  # type: ignore[arg-type]


_COMMENTS = re.compile(r"//[^\n]*|/\*.*?\*/", re.DOTALL)
_TARGET = re.compile(r"^\s*\.target\s+([A-Za-z0-9_]+)", re.MULTILINE)


def target_of(ptx_text: str) -> str | None:
    """The arch of the PTX's ``.target`` directive (``sm_90``, ``sm_90a``; comments skipped), or None."""
    m = _TARGET.search(_COMMENTS.sub("", ptx_text))
    return m.group(1) if m else None


def assemble(ptx_text: str, arch: str = "sm_90", strict: bool = False, backend: str = "auto") -> AssemblyResult:
    """Assemble ``ptx_text`` for ``arch`` (``sm_90``, ``sm_90a``) and return the log, cubin and resources.

    ``strict`` also fails on register spills (``--warn-on-spills -Werror``). ``backend`` is ``"auto"`` (ptxas, else
    nvJitLink), ``"ptxas"``, ``"nvjitlink"`` or ``"linker"`` (cuda.core's Linker: nvJitLink, else the driver, which
    needs a current CUDA context). Raises ``CompileError`` with the assembler's full log on invalid PTX (also as its
    ``log`` attribute, and ``arch``), and ``NoAssembler`` when the requested assembler is missing.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown PTX assembler backend '{backend}', expected {', '.join(BACKENDS)}")
    ptxas = find_ptxas() if backend in ("auto", "ptxas") else None
    if ptxas is not None:
        result = _assemble_ptxas(ptxas, ptx_text, arch, strict)
    elif backend != "ptxas" and nvjitlink_available():
        result = _assemble_linker(ptx_text, arch, strict, "nvjitlink")
    elif backend == "linker" and linker_backend() == "driver":
        result = _assemble_linker(ptx_text, arch, strict, "driver")
    else:
        raise NoAssembler(NO_ASSEMBLER)
    if strict and result.spills:
        spilling = [k.name for k in result.kernels.values() if k.spill_stores or k.spill_loads]
        raise CompileError(f"ptxas ({arch}): kernels {spilling} spill registers (strict mode)\n{result.info_log}")
    return result


def _error(arch: str, backend: str, log: str, ptx_text: str) -> CompileError:
    target = target_of(ptx_text)
    hint = ""
    if target is not None and target != arch and target.endswith("a") and not arch.endswith("a"):
        hint = f" (the PTX targets {target}, which -arch={arch} rejects)"
    log = log.replace(chr(0), "").strip()
    lines = ptx_text.count("\n") + 1
    error = CompileError(f"{backend} rejected the PTX for {arch}{hint} ({lines} lines):\n{log}")
    error.log = log  # type: ignore[attr-defined]
    error.arch = arch  # type: ignore[attr-defined]
    return error


def _assemble_ptxas(ptxas: str, ptx_text: str, arch: str, strict: bool) -> AssemblyResult:
    with tempfile.TemporaryDirectory(prefix="picograd-ptxas-") as tmp:
        src = Path(tmp) / "kernel.ptx"
        out = Path(tmp) / "kernel.cubin"
        src.write_text(ptx_text, encoding="utf-8")
        cmd = [ptxas, f"-arch={arch}", "-v", *(STRICT_OPTIONS if strict else ()), str(src), "-o", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        log = (proc.stdout + proc.stderr).replace(str(src), "kernel.ptx")
        if proc.returncode != 0:
            raise _error(arch, "ptxas", log, ptx_text)
        cubin = out.read_bytes()
    return AssemblyResult(log, cubin, "ptxas", arch, parse_resources(log))


def _assemble_linker(ptx_text: str, arch: str, strict: bool, which: str) -> AssemblyResult:
    from cuda.core import Linker, LinkerOptions, ObjectCode

    if which == "nvjitlink":  # ptxas's own -v lines land in the info log
        options = LinkerOptions(arch=arch, ptxas_options=["-v", *(STRICT_OPTIONS if strict else ())])
    else:  # the driver's cuLink*: CU_JIT_LOG_VERBOSE gives the same info lines (strict checks the log afterwards)
        options = LinkerOptions(arch=arch, verbose=True)
    name = "nvJitLink" if which == "nvjitlink" else "the CUDA driver's linker"
    linker = None
    try:
        # bytes: ObjectCode.from_ptx takes a str as a file path
        linker = Linker(ObjectCode.from_ptx(ptx_text.encode("utf-8"), name="kernel.ptx"), options=options)
        cubin = linker.link("cubin")
        log = str(linker.get_info_log() or "").rstrip("\x00").strip()
    except Exception as e:  # nvJitLinkError carries the ptxas log in its message
        if not type(e).__module__.startswith("cuda."):
            raise
        message = str(e)
        try:
            extra = str(linker.get_error_log() or "").rstrip("\x00").strip() if linker is not None else ""
        except Exception:
            extra = ""
        if extra and extra not in message:
            message = f"{message}\n{extra}"
        raise _error(arch, name, message, ptx_text) from None
    finally:
        if linker is not None:
            try:
                linker.close()
            except Exception:
                pass
    code = cubin.code
    return AssemblyResult(log, bytes(code) if not isinstance(code, bytes) else code, which, arch, parse_resources(log))


def find_cuobjdump() -> str | None:
    """Path of ``cuobjdump`` (disassembles cubins to SASS; no GPU needed): ``PATH``, ``$CUDA_HOME/bin``, then the
    PyPI package ``nvidia-cuda-cuobjdump`` (``nvidia/cu*/bin/cuobjdump`` in site-packages)."""
    found = shutil.which("cuobjdump")
    if found:
        return found
    roots = [Path(os.environ[v]) / "bin" for v in ("CUDA_HOME", "CUDA_PATH") if os.environ.get(v)]
    try:
        import nvidia  # namespace package of NVIDIA's PyPI wheels

        roots += [Path(p) / sub / "bin" for p in nvidia.__path__ for sub in ("cu13", "cu12", "cuda_cuobjdump")]
    except ImportError:
        pass
    for root in roots:
        candidate = root / "cuobjdump"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def dump_sass(cubin: bytes) -> str:
    """The SASS of a cubin (``cuobjdump --dump-sass``), to check which machine instructions a kernel became
    (``HGMMA`` for wgmma, ``HMMA`` for mma.sync, ``LDL``/``STL`` for local memory). Raises ``CompileError`` when
    cuobjdump is missing (``pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm``) or fails."""
    tool = find_cuobjdump()
    if tool is None:
        raise CompileError("no cuobjdump: install the CUDA toolkit or nvidia-cuda-cuobjdump")
    with tempfile.TemporaryDirectory(prefix="picograd-sass-") as tmp:
        path = Path(tmp) / "kernel.cubin"
        path.write_bytes(cubin)
        # cuobjdump runs nvdisasm, found on PATH: the pip wheels put both in one bin folder that is not on it
        env = dict(os.environ, PATH=os.pathsep.join([str(Path(tool).parent), os.environ.get("PATH", "")]))
        proc = subprocess.run([tool, "--dump-sass", str(path)], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise CompileError(f"cuobjdump failed:\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def main(argv: list[str] | None = None) -> int:
    """``python -m picograd.target.ptxas kernel.ptx [--arch sm_90] [--strict]``: assemble, print ptxas's report."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m picograd.target.ptxas", description=main.__doc__)
    ap.add_argument("input", help="PTX file ('-' for stdin)")
    ap.add_argument("--arch", default=None, help="target architecture (default: the PTX's .target, else sm_90)")
    ap.add_argument("--strict", action="store_true", help="fail on register spills")
    ap.add_argument("--backend", default="auto", choices=BACKENDS)
    args = ap.parse_args(argv)
    text = sys.stdin.read() if args.input == "-" else Path(args.input).read_text(encoding="utf-8")
    try:
        result = assemble(text, args.arch or target_of(text) or "sm_90", args.strict, args.backend)
    except CompileError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    reports = [
        f"{k.name}: {k.registers} registers, {(k.spill_stores or 0) + (k.spill_loads or 0)} spill bytes, "
        f"{k.shared_bytes} bytes smem"
        for k in result.kernels.values()
    ]
    print(f"[{result.backend}] {result.arch}: " + ", ".join(reports))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
