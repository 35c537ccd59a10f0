"""Tensor-core, TMA and mbarrier instructions of the ptx dialect: verifier, printer, ptxas, SASS and the emulator.

Each kernel here is built with the dialect's Python API, printed, assembled by ``ptxas`` (``--warn-on-spills
-Werror``; sm_90, or sm_90a for wgmma and setmaxnreg) and run on the PTX emulator (``tests/_ptx_emulator.py``)
on small shapes against numpy in float64.

Inputs are bf16 (random normals rounded to nearest even) or tf32 (f32 with the low 13 mantissa bits dropped, as
the tensor cores read them); products are exact and accumulation is f32. Documented tolerance, for a dot product
of length K: ``|D - D64| <= K * 2**-23 * (|A| @ |B|)`` (K roundings of f32 at most; the emulator rounds once per
instruction, the GPU at most once per addition).

The mma.sync fragment layout is the one verified on an H200 in ``../shared/reference/cuda/`` (its kernel is
rebuilt here and run on the emulator); the wgmma one comes from the PTX ISA's figures, the 128-byte swizzle from
CUTLASS's ``Swizzle<3,4,3>`` (the pattern of TMA's ``CU_TENSOR_MAP_SWIZZLE_128B``).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _ptx_emulator import EmulationError, Emulator, TensorMap, bf16_to_f32, fragment
from _ptx_emulator import swizzle as swizzle_address
from xdsl.builder import ImplicitBuilder
from xdsl.ir import SSAValue
from xdsl.parser import Parser
from xdsl.printer import Printer
from xdsl.utils.exceptions import VerifyException

from picograd.dialects import make_context, ptx
from picograd.errors import CompileError
from picograd.runtime import cuda
from picograd.target import ptxas
from picograd.target.ptx_printer import print_ptx

#: ``shared/reference/cuda`` beside the checkout (or in it), when there is one: the H200-verified facts.
REFERENCE = next(
    (
        p / "shared" / "reference" / "cuda"
        for p in Path(__file__).resolve().parents
        if (p / "shared" / "reference" / "cuda").is_dir()
    ),
    Path("/nonexistent"),
)

# ---------------------------------------------------------------------------------------------------------------
# Helpers: numbers and small PTX building blocks


def bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bf16 bit patterns (uint16), rounded to nearest even."""
    u = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def random_bf16(rng: np.random.Generator, shape: tuple[int, ...], dtype: str = "bf16") -> tuple[np.ndarray, np.ndarray]:
    """Random bf16 (or f16) numbers: (bits as uint16, float64 values)."""
    x = rng.standard_normal(shape).astype(np.float32)
    if dtype == "f16":
        h = x.astype(np.float16)
        return h.view(np.uint16), h.astype(np.float64)
    bits = bf16_bits(x)
    return bits, bf16_to_f32(bits).astype(np.float64)


def assert_close(d: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    """``d`` against ``a @ b`` in float64 within the documented tolerance, and not trivially (no zero results)."""
    ref = a @ b
    bound = a.shape[1] * 2.0**-23 * (np.abs(a) @ np.abs(b))
    err = np.abs(d.astype(np.float64) - ref)
    assert np.all(err <= bound), f"max error {err.max()}, bound there {bound.flat[np.argmax(err - bound)]}"


def imm(value: int | float, kind: str = "u32") -> SSAValue:
    return ptx.MovOp(value, kind).result


def u32_op(op: type[ptx.Instruction], a: SSAValue, b: int | SSAValue, kind: str = "u32") -> SSAValue:
    rhs = imm(b, kind) if isinstance(b, int) else b
    return op(a, rhs, kind).results[0]  # type: ignore[call-arg]


def byte_address(base: SSAValue, index: SSAValue, size: int) -> SSAValue:
    """``base + index * size``: a 64-bit global address from a 32-bit index."""
    offset = ptx.MulOp(index, imm(size), "u32", mode="wide").result
    return ptx.AddOp(base, offset, "s64").result


def kernel(name: str, params: int, target: str = "sm_90", threads: int = 128) -> tuple[ptx.ModuleOp, ptx.FuncOp]:
    module = ptx.ModuleOp(target=target)
    func = ptx.FuncOp(name, ["u64"] * params, maxntid=(threads, 1, 1))
    module.add_op(func)
    return module, func


def lane_ids() -> tuple[SSAValue, SSAValue, SSAValue, SSAValue]:
    """tid, warp, lane, (g = lane >> 2, t = lane & 3) registers."""
    tid = ptx.SregOp("tid.x").result
    return tid, u32_op(ptx.ShrOp, tid, 5), u32_op(ptx.AndOp, tid, 31, "b32"), tid


def assemble(module: ptx.ModuleOp) -> ptxas.AssemblyResult:
    return ptxas.assemble(print_ptx(module), module.target.data, strict=True)


def copy_to_shared(func_args: SSAValue, smem: SSAValue, tid: SSAValue, nbytes: int, threads: int) -> None:
    """Each thread copies 16-byte chunks ``tid, tid + threads, ...`` of a global buffer to shared memory."""
    g = ptx.CvtaOp(func_args).result
    for c in range(0, nbytes // 16, threads):
        chunk = u32_op(ptx.AddOp, tid, c) if c else tid
        src = byte_address(g, chunk, 16)
        dst = ptx.MadOp(chunk, imm(16), smem, "u32", mode="lo").result
        vals = ptx.LdOp(src, "b32", vec=4).values
        ptx.StOp(dst, list(vals), "b32", "shared")


# ---------------------------------------------------------------------------------------------------------------
# Fragment layouts against the H200-verified reference


#: ../shared/reference/cuda/README.md, verbatim: the m16n8k16 bf16 fragments verified on an H200.
REFERENCE_LAYOUT = (
    "- mma.sync m16n8k16 bf16 fragments (g = lane>>2, t = lane&3): a0 = A[g][2t..2t+1], a1 = A[g+8][2t..], "
    "a2 = A[g][2t+8..],\n  a3 = A[g+8][2t+8..]; b0 = B[2t..2t+1][g], b1 = B[2t+8..][g]; d0,d1 = D[g][2t..2t+1], "
    "d2,d3 = D[g+8][2t..2t+1]."
)


def test_mma_fragment_layout_is_the_reference_layout() -> None:
    if REFERENCE.is_dir():
        assert REFERENCE_LAYOUT in (REFERENCE / "README.md").read_text(), "the reference changed: update this test"
    a, b, c = (fragment("m16n8k16", "bf16", x) for x in "abc")
    for lane in range(32):
        g, t = lane >> 2, lane & 3
        rows_a = [g, g + 8, g, g + 8]
        cols_a = [2 * t, 2 * t, 2 * t + 8, 2 * t + 8]
        for i in range(4):
            assert a[lane, i].tolist() == [[rows_a[i], cols_a[i]], [rows_a[i], cols_a[i] + 1]]
            assert c[lane, i, 0].tolist() == [g + 8 * (i // 2), 2 * t + i % 2]
        for i in range(2):
            assert b[lane, i].tolist() == [[2 * t + 8 * i, g], [2 * t + 8 * i + 1, g]]
    for shape, t in ptx.MMA_SHAPES:  # every element of every operand is held by exactly one lane and register
        m, n, k = (int(x) for x in shape[1:].replace("n", " ").replace("k", " ").split())
        for x, (rows, cols) in zip("abc", ((m, k), (k, n), (m, n)), strict=True):
            pos = fragment(shape, t, x).reshape(-1, 2)
            assert sorted(map(tuple, pos.tolist())) == [(r, q) for r in range(rows) for q in range(cols)]


def build_reference_mma() -> ptx.ModuleOp:
    """``mma_bf16_m16n8k16.ptx`` of the reference, instruction for instruction: D (16x8) = A (16x16) @ Bt.T."""
    module, func = kernel("mma_bf16_16x8x16", 3, threads=32)
    with ImplicitBuilder(func.body):
        pa, pbt, pd = (ptx.CvtaOp(ptx.LdParamOp(p).result).result for p in func.args)
        lane = ptx.SregOp("laneid").result
        g, t = u32_op(ptx.ShrOp, lane, 2), u32_op(ptx.AndOp, lane, 3, "b32")
        t2 = u32_op(ptx.ShlOp, t, 1, "b32")
        idx = u32_op(ptx.AddOp, u32_op(ptx.ShlOp, g, 4, "b32"), t2)
        a_addr, b_addr = byte_address(pa, idx, 2), byte_address(pbt, idx, 2)
        a = [ptx.LdOp(a_addr, "b32", offset=off).result for off in (0, 256, 16, 272)]
        b = [ptx.LdOp(b_addr, "b32", offset=off).result for off in (0, 16)]
        d = ptx.MmaOp("m16n8k16", "bf16", a, b, regs("f32", 4)).d
        d_addr = byte_address(pd, u32_op(ptx.AddOp, u32_op(ptx.ShlOp, g, 3, "b32"), t2), 4)
        ptx.StOp(d_addr, list(d[:2]))
        ptx.StOp(d_addr, list(d[2:]), offset=256)
        ptx.RetOp()
    return module


def test_reference_mma_kernel_runs_on_the_emulator(rng: np.random.Generator) -> None:
    module = build_reference_mma()
    assemble(module)
    if REFERENCE.is_dir():  # the same instruction sequence as the verified kernel
        ours = [ln.split()[0] for ln in print_ptx(module).splitlines() if ln.startswith("\t") and "." in ln]
        theirs = (REFERENCE / "mma_bf16_m16n8k16.ptx").read_text()
        for opcode in ("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32", "ld.global.b32", "st.global.v2.f32"):
            assert opcode in ours and opcode in theirs
    a_bits, a = random_bf16(rng, (16, 16))
    bt_bits, bt = random_bf16(rng, (8, 16))
    emu = Emulator(module)
    pa, pb, pd = emu.heap.alloc(512), emu.heap.alloc(256), emu.heap.alloc(512, 0xFF)
    emu.heap.put(pa, a_bits)
    emu.heap.put(pb, bt_bits)
    emu.launch("mma_bf16_16x8x16", (1,), (32,), [pa, pb, pd])
    assert_close(emu.heap.get(pd, (16, 8), np.dtype(np.float32)), a, bt.T)


# ---------------------------------------------------------------------------------------------------------------
# mma.sync with ldmatrix: a 64x64x32 bf16 tile, 4 warps of 32x32


def build_mma_gemm(b_layout: str, dtype: str = "bf16") -> ptx.ModuleOp:
    """C (64x64 f32) = A (64x32 bf16, row-major) @ B, B given as Bt (64x32, ``"nk"``: ldmatrix) or as B (32x64,
    ``"kn"``: ldmatrix.trans). Shared memory holds both row-major; warp w computes rows 32(w/2).., columns
    32(w%2)..: 2x4 m16n8k16 tiles per k-step of 16."""
    module, func = kernel(f"mma_gemm_{b_layout}", 3)
    sa, sb = ptx.SharedOp("sa", 4096, 128), ptx.SharedOp("sb", 4096, 128)
    with ImplicitBuilder(func.body):
        func.body.block.add_op(sa)
        func.body.block.add_op(sb)
        pa, pb, pc = (ptx.LdParamOp(p).result for p in func.args)
        tid, warp, lane, _ = lane_ids()
        a_smem, b_smem = ptx.SharedAddrOp("sa").result, ptx.SharedAddrOp("sb").result
        copy_to_shared(pa, a_smem, tid, 4096, 128)
        copy_to_shared(pb, b_smem, tid, 4096, 128)
        ptx.BarSyncOp(0)
        wm, wn = u32_op(ptx.ShrOp, warp, 1), u32_op(ptx.AndOp, warp, 1, "b32")
        l7, l15 = u32_op(ptx.AndOp, lane, 7, "b32"), u32_op(ptx.AndOp, lane, 15, "b32")
        l3, l4 = u32_op(ptx.AndOp, u32_op(ptx.ShrOp, lane, 3), 1, "b32"), u32_op(ptx.ShrOp, lane, 4)

        def smem_address(base: SSAValue, row: SSAValue, col: SSAValue, pitch: int) -> SSAValue:
            return u32_op(
                ptx.AddOp, ptx.MadOp(row, imm(pitch), base, "u32", mode="lo").result, u32_op(ptx.ShlOp, col, 1, "b32")
            )

        # A: lane gives row (l & 15), column 8 (l >> 4) of each 16x16 tile
        a_row = ptx.MadOp(wm, imm(32), l15, "u32", mode="lo").result
        a_lane = smem_address(a_smem, a_row, u32_op(ptx.ShlOp, l4, 3, "b32"), 64)
        if b_layout == "nk":  # Bt rows are n: row n0 + (l & 7) + 8 (l >> 4), column kk + 8 ((l >> 3) & 1)
            b_row = ptx.MadOp(wn, imm(32), ptx.MadOp(l4, imm(8), l7, "u32", mode="lo").result, "u32", mode="lo").result
            b_lane = smem_address(b_smem, b_row, u32_op(ptx.ShlOp, l3, 3, "b32"), 64)
        else:  # B rows are k: row kk + (l & 7) + 8 ((l >> 3) & 1), column n0 + 8 (l >> 4)
            b_col = ptx.MadOp(wn, imm(32), u32_op(ptx.ShlOp, l4, 3, "b32"), "u32", mode="lo").result
            b_lane = smem_address(b_smem, ptx.MadOp(l3, imm(8), l7, "u32", mode="lo").result, b_col, 128)
        acc = [[[ptx.MovOp(0.0, "f32").result for _ in range(4)] for _ in range(4)] for _ in range(2)]
        for kk in (0, 16):
            a = [ptx.LdmatrixOp(a_lane, 4, offset=mi * 16 * 64 + kk * 2).values for mi in range(2)]
            b: list[list[SSAValue]] = []
            for p in range(2):  # one x4 load gives the B fragments of two n8 tiles
                off = p * 16 * 64 + kk * 2 if b_layout == "nk" else kk * 128 + p * 16 * 2
                regs = ptx.LdmatrixOp(b_lane, 4, trans=b_layout == "kn", offset=off).values
                b += [list(regs[:2]), list(regs[2:])]
            for mi in range(2):
                for nj in range(4):
                    acc[mi][nj] = list(ptx.MmaOp("m16n8k16", dtype, a[mi], b[nj], acc[mi][nj]).d)
        g, t = u32_op(ptx.ShrOp, lane, 2), u32_op(ptx.AndOp, lane, 3, "b32")
        row = ptx.MadOp(wm, imm(32), g, "u32", mode="lo").result
        col = ptx.MadOp(wn, imm(32), u32_op(ptx.ShlOp, t, 1, "b32"), "u32", mode="lo").result
        c_lane = byte_address(ptx.CvtaOp(pc).result, ptx.MadOp(row, imm(64), col, "u32", mode="lo").result, 4)
        for mi in range(2):
            for nj in range(4):
                off = (16 * mi * 64 + 8 * nj) * 4
                ptx.StOp(c_lane, acc[mi][nj][:2], offset=off)
                ptx.StOp(c_lane, acc[mi][nj][2:], offset=off + 8 * 64 * 4)
        ptx.RetOp()
    return module


MMA_CASES = [("nk", "bf16"), ("kn", "bf16"), ("nk", "f16")]


@pytest.mark.parametrize(("b_layout", "dtype"), MMA_CASES)
def test_mma_sync_gemm_tile_with_ldmatrix(b_layout: str, dtype: str, rng: np.random.Generator) -> None:
    module = build_mma_gemm(b_layout, dtype)
    resources = assemble(module).kernels[f"mma_gemm_{b_layout}"]
    assert resources.spill_stores == 0 and resources.stack_frame == 0
    a_bits, a = random_bf16(rng, (64, 32), dtype)
    b_bits, b = random_bf16(rng, (32, 64), dtype)
    emu = Emulator(module)
    pa, pb, pc = emu.heap.alloc(4096), emu.heap.alloc(4096), emu.heap.alloc(64 * 64 * 4, 0xFF)
    emu.heap.put(pa, a_bits)
    emu.heap.put(pb, b_bits.T.copy() if b_layout == "nk" else b_bits)
    emu.launch(f"mma_gemm_{b_layout}", (1,), (128,), [pa, pb, pc])
    assert_close(emu.heap.get(pc, (64, 64), np.dtype(np.float32)), a, b)


def test_mma_sync_tf32_m16n8k8(rng: np.random.Generator) -> None:
    """One warp: D (16x8) = A (16x8) @ B (8x8) in tf32; A and B loaded straight into their fragments."""
    module, func = kernel("mma_tf32", 3, threads=32)
    with ImplicitBuilder(func.body):
        pa, pb, pd = (ptx.CvtaOp(ptx.LdParamOp(p).result).result for p in func.args)
        lane = ptx.SregOp("laneid").result
        g, t = u32_op(ptx.ShrOp, lane, 2), u32_op(ptx.AndOp, lane, 3, "b32")
        a_at = byte_address(pa, ptx.MadOp(g, imm(8), t, "u32", mode="lo").result, 4)  # A[g][t], row-major 16x8
        a = [ptx.LdOp(a_at, "b32", offset=off).result for off in (0, 8 * 32, 16, 8 * 32 + 16)]
        b_at = byte_address(pb, ptx.MadOp(t, imm(8), g, "u32", mode="lo").result, 4)  # B[t][g], row-major 8x8
        b = [ptx.LdOp(b_at, "b32", offset=off).result for off in (0, 4 * 32)]
        c = [ptx.MovOp(0.5, "f32").result for _ in range(4)]
        d = ptx.MmaOp("m16n8k8", "tf32", a, b, c).d
        d_at = byte_address(pd, ptx.MadOp(g, imm(8), u32_op(ptx.ShlOp, t, 1, "b32"), "u32", mode="lo").result, 4)
        ptx.StOp(d_at, list(d[:2]))
        ptx.StOp(d_at, list(d[2:]), offset=8 * 32)
        ptx.RetOp()
    assemble(module)
    a32 = rng.standard_normal((16, 8)).astype(np.float32)
    b32 = rng.standard_normal((8, 8)).astype(np.float32)

    def tf32(x: np.ndarray) -> np.ndarray:
        return (x.view(np.uint32) & np.uint32(0xFFFFE000)).view(np.float32).astype(np.float64)

    emu = Emulator(module)
    pa, pb, pd = emu.heap.alloc(512), emu.heap.alloc(256), emu.heap.alloc(512, 0xFF)
    emu.heap.put(pa, a32)
    emu.heap.put(pb, b32)
    emu.launch("mma_tf32", (1,), (32,), [pa, pb, pd])
    d = emu.heap.get(pd, (16, 8), np.dtype(np.float32))
    assert_close(d - np.float32(0.5), tf32(a32), tf32(b32))
    assert not np.allclose(d, a32.astype(np.float64) @ b32 + 0.5, rtol=0, atol=1e-6)  # the tf32 truncation shows


# ---------------------------------------------------------------------------------------------------------------
# ldmatrix / stmatrix distribution


@pytest.mark.parametrize(("num", "trans"), [(1, False), (2, True), (4, False), (4, True)])
def test_ldmatrix_and_stmatrix_distribution(num: int, trans: bool, rng: np.random.Generator) -> None:
    """A 32x8 b16 matrix in shared memory; lane l gives row l's address; ldmatrix.x{num} registers go to global
    memory per lane, and stmatrix (no .trans) writes them back to a second buffer at the same row addresses."""
    module, func = kernel("ldst_matrix", 3, threads=32)
    with ImplicitBuilder(func.body):
        ptx.SharedOp("src", 512, 16)
        ptx.SharedOp("dst", 512, 16)
        pin, pregs, pout = (ptx.LdParamOp(p).result for p in func.args)
        lane = ptx.SregOp("laneid").result
        src, dst = ptx.SharedAddrOp("src").result, ptx.SharedAddrOp("dst").result
        copy_to_shared(pin, src, lane, 512, 32)
        ptx.BarSyncOp(0)
        row = u32_op(ptx.ShlOp, lane, 4, "b32")
        values = ptx.LdmatrixOp(u32_op(ptx.AddOp, src, row), num, trans=trans).values
        at = byte_address(ptx.CvtaOp(pregs).result, u32_op(ptx.ShlOp, lane, 2, "b32"), 4)
        for i, r in enumerate(values):
            ptx.StOp(at, r, offset=4 * i)
        ptx.StmatrixOp(u32_op(ptx.AddOp, dst, row), list(values))
        ptx.BarSyncOp(0)
        out = byte_address(ptx.CvtaOp(pout).result, lane, 16)
        ptx.StOp(out, list(ptx.LdOp(u32_op(ptx.AddOp, dst, row), "b32", "shared", vec=4).values), "b32")
        ptx.RetOp()
    assemble(module)
    x = rng.integers(0, 1 << 16, (32, 8), dtype=np.uint16)
    emu = Emulator(module)
    pin, pregs, pout = emu.heap.alloc(512), emu.heap.alloc(32 * 4 * 4, 0), emu.heap.alloc(512, 0)
    emu.heap.put(pin, x)
    emu.launch("ldst_matrix", (1,), (32,), [pin, pregs, pout])
    got = emu.heap.get(pregs, (32, 4, 2), np.dtype(np.uint16))[:, :num]
    for i in range(num):
        m = x[8 * i : 8 * i + 8].T if trans else x[8 * i : 8 * i + 8]
        for lane in range(32):
            r, c = lane // 4, lane % 4
            assert got[lane, i].tolist() == [m[r, 2 * c], m[r, 2 * c + 1]]
    back = emu.heap.get(pout, (32, 8), np.dtype(np.uint16))[: 8 * num]
    want = np.concatenate([x[8 * i : 8 * i + 8].T if trans else x[8 * i : 8 * i + 8] for i in range(num)])
    np.testing.assert_array_equal(back, want)


# ---------------------------------------------------------------------------------------------------------------
# TMA + mbarrier + wgmma: D (64x64 f32) = A (M x K bf16) @ Bt.T (Bt: 64 x K bf16), one warpgroup


def wgmma_box(swizzle: int) -> tuple[int, int]:
    """The TMA box (elements along K, rows) of ``build_wgmma``: one swizzle width of K per row (8 elements, one
    16-byte core-matrix row, without swizzle), 64 rows."""
    return (swizzle // 2 if swizzle else 8), 64


def build_wgmma(k: int, *, swizzle: int = 128, dtype: str = "bf16", store_a00: str = "none", parity_offset: int = 0,
                wgmma_fence: bool = True, tx_error: int = 0) -> ptx.ModuleOp:  # fmt: skip
    """One warpgroup computes D (64x64 f32) = A (64 x k) @ Bt.T (Bt: 64 x k), K-major tiles loaded by TMA.

    Per slice of K, thread 0 arms the mbarrier with the slice's bytes and issues the TMA box loads of A and Bt into
    two tiles, reused by every slice; all threads wait for the phase (parity = slice & 1), run the slice's
    ``wgmma.mma_async.m64n64k16``, and wait for them before the tiles are refilled. With a W-byte ``swizzle`` a box
    is W bytes of K by 64 rows (rows W bytes apart, 8-row groups 8W apart: the stride byte offset), and each k16
    advances the descriptor's start address by 32 bytes. Without swizzle a slice is k16, two boxes of 8 elements
    (one 16-byte core-matrix row) by 64 rows placed 1024 bytes apart (the leading byte offset; 8-row groups 128
    apart). ``store_a00`` = ``"fenced"``/``"unfenced"``: thread 0 also writes A[0][0] = 1.0 with st.shared after
    the first wait (with/without fence.proxy.async). ``parity_offset`` 1 waits on the wrong phases,
    ``wgmma_fence`` False leaves out the wgmma.fence before each slice's mmas, ``tx_error`` announces that many
    bytes too many to the mbarrier (all wrong)."""
    module, func = kernel("wgmma_tma", 3, target="sm_90a")
    module.add_op(ptx.SharedOp("tile_a", 8192, 1024))
    module.add_op(ptx.SharedOp("tile_b", 8192, 1024))
    module.add_op(ptx.SharedOp("bar", 8, 8))
    box_k, rows = wgmma_box(swizzle)
    if swizzle:
        slice_k, boxes, desc_bits = box_k, 1, ptx.wgmma_descriptor(0, 16, 8 * swizzle, swizzle)
    else:
        slice_k, boxes, desc_bits = 16, 2, ptx.wgmma_descriptor(0, 1024, 128, 0)
    slice_bytes = 2 * boxes * box_k * rows * 2  # A and Bt
    with ImplicitBuilder(func.body):
        tmap_a, tmap_b, pd = (ptx.LdParamOp(p).result for p in func.args)
        tid, warp, lane, _ = lane_ids()
        sa, sb, bar = (ptx.SharedAddrOp(n).result for n in ("tile_a", "tile_b", "bar"))
        leader = ptx.SetpOp("ne", tid, imm(0)).result
        ptx.BraOp("INIT_DONE", guard=leader)
        ptx.MbarrierInitOp(bar, 1)
        ptx.FenceProxyAsyncOp()
        ptx.LabelOp("INIT_DONE")
        ptx.BarSyncOp(0)

        def descriptor(addr: SSAValue) -> SSAValue:
            wide = ptx.CvtOp(addr, "u64", "u32").result
            field = ptx.AndOp(ptx.ShrOp(wide, imm(4), "u64").result, imm(0x3FFF, "b64"), "b64").result
            return ptx.OrOp(field, imm(desc_bits, "b64"), "b64").result

        da, db = descriptor(sa), descriptor(sb)
        acc = regs("f32", 32)
        for s in range(k // slice_k):
            ptx.BraOp(f"ISSUED_{s}", guard=leader)
            ptx.MbarrierArriveOp(bar, slice_bytes + tx_error)
            for j in range(boxes):
                col = imm(slice_k * s + box_k * j, "s32")
                for tile, tmap in ((sa, tmap_a), (sb, tmap_b)):
                    dst = u32_op(ptx.AddOp, tile, 1024 * j) if j else tile
                    ptx.CpAsyncBulkTensorOp(dst, tmap, [col, imm(0, "s32")], bar)
            ptx.LabelOp(f"ISSUED_{s}")
            parity = imm((s + parity_offset) & 1)
            ptx.LabelOp(f"WAIT_{s}")
            done = ptx.MbarrierTryWaitOp(bar, parity).result
            ptx.BraOp(f"WAIT_{s}", guard=done, negate=True)
            if s == 0 and store_a00 != "none":
                ptx.BraOp("STORED", guard=leader)
                ptx.StOp(sa, imm(0x3F80 if dtype == "bf16" else 0x3C00, "b16"), "b16", "shared")
                if store_a00 == "fenced":
                    ptx.FenceProxyAsyncOp()
                ptx.LabelOp("STORED")
                ptx.BarSyncOp(0)
            if wgmma_fence:
                ptx.WgmmaFenceOp()
            scale_d = ptx.SetpOp("ne", imm(s), imm(0)).result  # the first k16 of the first slice ignores D
            for kk in range(slice_k // 16):
                step = imm(2 * kk, "b64")  # 32 bytes >> 4
                desc_a = ptx.AddOp(da, step, "s64").result if kk else da
                desc_b = ptx.AddOp(db, step, "s64").result if kk else db
                pred = scale_d if kk == 0 else ptx.SetpOp("eq", imm(0), imm(0)).result
                ptx.WgmmaMmaAsyncOp(64, dtype, acc, desc_a, desc_b, pred)
            ptx.WgmmaCommitGroupOp()
            ptx.WgmmaWaitGroupOp(0)
            ptx.BarSyncOp(0)  # every warp is done reading the tiles before they are refilled
        # D: thread (warp w, g, t) holds rows 16w + g (+8), columns 8j + 2t (+1)
        g, t = u32_op(ptx.ShrOp, lane, 2), u32_op(ptx.AndOp, lane, 3, "b32")
        row = ptx.MadOp(warp, imm(16), g, "u32", mode="lo").result
        index = ptx.MadOp(row, imm(64), u32_op(ptx.ShlOp, t, 1, "b32"), "u32", mode="lo").result
        at = byte_address(ptx.CvtaOp(pd).result, index, 4)
        for j in range(16):
            ptx.StOp(at, acc[2 * j : 2 * j + 2], offset=(8 * (j & 1) * 64 + 8 * (j >> 1)) * 4)
        ptx.RetOp()
    return module


def run_wgmma(module: ptx.ModuleOp, a_bits: np.ndarray, bt_bits: np.ndarray, swizzle: int = 128) -> np.ndarray:
    emu = Emulator(module)
    maps = []
    for x in (a_bits, bt_bits):
        addr = emu.heap.alloc(x.nbytes)
        emu.heap.put(addr, x)
        rows, cols = x.shape
        tmap = TensorMap(addr, np.dtype(np.uint16), (cols, rows), (cols * 2,), wgmma_box(swizzle), swizzle)
        maps.append(emu.tensor_map(tmap))
    pd = emu.heap.alloc(64 * 64 * 4, 0xFF)
    emu.launch("wgmma_tma", (1,), (128,), [*maps, pd])
    return emu.heap.get(pd, (64, 64), np.dtype(np.float32))


#: (M, K, swizzle, dtype): 64x64x64, an odd edge (50 rows, K = 96: the rest of the boxes zero-filled by TMA, two
#: mbarrier phases, the tiles reused), the 64- and 32-byte swizzles, and no swizzle (core matrices LBO apart).
WGMMA_CASES = [(64, 64, 128, "bf16"), (50, 96, 128, "bf16"), (64, 64, 64, "f16"), (64, 32, 32, "bf16"),
               (40, 32, 0, "bf16")]  # fmt: skip


def wgmma_k(k: int, swizzle: int) -> int:
    """K rounded up to whole slices of ``build_wgmma``."""
    step = swizzle // 2 if swizzle else 16
    return -(-k // step) * step


@pytest.mark.parametrize(("m", "k", "swizzle", "dtype"), WGMMA_CASES)
def test_wgmma_from_tma_swizzled_shared_memory(m: int, k: int, swizzle: int, dtype: str, rng: np.random.Generator
                                               ) -> None:  # fmt: skip
    module = build_wgmma(wgmma_k(k, swizzle), swizzle=swizzle, dtype=dtype)
    assemble(module)
    a_bits, a = random_bf16(rng, (m, k), dtype)
    bt_bits, bt = random_bf16(rng, (64, k), dtype)
    d = run_wgmma(module, a_bits, bt_bits, swizzle)
    assert_close(d[:m], a, bt.T)
    assert np.all(d[m:] == 0)


def test_wgmma_kernel_sass_has_hgmma_and_no_local_memory() -> None:
    if ptxas.find_cuobjdump() is None:
        pytest.skip("cuobjdump not installed (pip install nvidia-cuda-cuobjdump)")
    sass = ptxas.dump_sass(assemble(build_wgmma(128)).cubin)
    assert "HGMMA.64x64x16.F32.BF16" in sass
    assert "UTMALDG" in sass and "SYNCS" in sass  # the TMA load and the mbarrier
    assert not any(op in sass for op in ("LDL", "STL")), "local-memory traffic in the wgmma kernel"
    sass = ptxas.dump_sass(assemble(build_mma_gemm("kn")).cubin)
    assert "HMMA.16816.F32.BF16" in sass and "LDSM.16.MT88.4" in sass  # mma.sync and ldmatrix.trans
    assert not any(op in sass for op in ("LDL", "STL"))


def test_wgmma_reads_after_generic_stores_need_a_proxy_fence(rng: np.random.Generator) -> None:
    a_bits, a = random_bf16(rng, (64, 64))
    bt_bits, bt = random_bf16(rng, (64, 64))
    unfenced = build_wgmma(64, store_a00="unfenced")
    assemble(unfenced)
    with pytest.raises(EmulationError, match="fence.proxy.async"):
        run_wgmma(unfenced, a_bits, bt_bits)
    d = run_wgmma(build_wgmma(64, store_a00="fenced"), a_bits, bt_bits)
    a[0, 0] = 1.0
    assert_close(d, a, bt.T)


def test_wgmma_needs_wgmma_fence(rng: np.random.Generator) -> None:
    a_bits, _ = random_bf16(rng, (64, 64))
    bt_bits, _ = random_bf16(rng, (64, 64))
    with pytest.raises(EmulationError, match="without a wgmma.fence"):
        run_wgmma(build_wgmma(64, wgmma_fence=False), a_bits, bt_bits)


@pytest.mark.parametrize(("tx_error", "message"), [(16, "deadlock"), (-16, "more than mbarrier.expect_tx announced")])
def test_mbarrier_transaction_bytes_must_match_the_copies(
    tx_error: int, message: str, rng: np.random.Generator
) -> None:
    a_bits, _ = random_bf16(rng, (64, 64))
    bt_bits, _ = random_bf16(rng, (64, 64))
    with pytest.raises(EmulationError, match=message):
        run_wgmma(build_wgmma(64, tx_error=tx_error), a_bits, bt_bits)


def test_mbarrier_wait_on_the_wrong_parity_reads_the_tiles_too_early(rng: np.random.Generator) -> None:
    """Each slice waits on the other parity: slice 0 on parity 1 (the phase before phase 0, complete at once), so
    wgmma reads the tiles before the TMA data lands (the emulator lands it only when a wait needs it, and shared
    memory starts as 0xFF bytes, NaN in bf16), then thread 0 arrives on a phase that is still open: wrong numbers,
    a deadlock or too many arrivals, never the right answer."""
    a_bits, _ = random_bf16(rng, (64, 128))
    bt_bits, _ = random_bf16(rng, (64, 128))
    try:
        d = run_wgmma(build_wgmma(128, parity_offset=1), a_bits, bt_bits)
    except EmulationError as e:
        assert "deadlock" in str(e) or "more arrivals" in str(e)
    else:
        assert np.isnan(d).any()


Step = tuple[Any, ...]


def build_phases(programs: dict[int, list[Step]], bars: int = 1) -> ptx.ModuleOp:
    """Threads of a 64-thread block (keys of ``programs``; the others exit) run their steps on ``bars`` mbarriers
    of one arrival a phase: ``("arrive", b)``, ``("wait", b, parity)`` (``mbarrier.try_wait.parity`` in a spin
    loop) and ``("sync",)`` (``bar.sync 0`` among the threads still running)."""
    module, func = kernel("phases", 0, threads=64)
    module.add_op(ptx.SharedOp("bars", 8 * bars, 8))
    with ImplicitBuilder(func.body):
        tid = ptx.SregOp("tid.x").result
        base = ptx.SharedAddrOp("bars").result
        addrs = [u32_op(ptx.AddOp, base, 8 * b) if b else base for b in range(bars)]
        ptx.BraOp("INIT_DONE", guard=ptx.SetpOp("ne", tid, imm(0)).result)
        for addr in addrs:
            ptx.MbarrierInitOp(addr, 1)
        ptx.LabelOp("INIT_DONE")
        ptx.BarSyncOp(0)
        for t, steps in programs.items():
            ptx.BraOp(f"NOT_{t}", guard=ptx.SetpOp("ne", tid, imm(t)).result)
            for i, step in enumerate(steps):
                if step[0] == "arrive":
                    ptx.MbarrierArriveOp(addrs[step[1]])
                elif step[0] == "sync":
                    ptx.BarSyncOp(0)
                else:
                    ptx.LabelOp(f"WAIT_{t}_{i}")
                    done = ptx.MbarrierTryWaitOp(addrs[step[1]], imm(step[2])).result
                    ptx.BraOp(f"WAIT_{t}_{i}", guard=done, negate=True)
            ptx.RetOp()
            ptx.LabelOp(f"NOT_{t}")
        ptx.RetOp()
    return module


def run_phases(programs: dict[int, list[Step]], bars: int = 1) -> None:
    module = build_phases(programs, bars)
    assemble(module)
    Emulator(module).launch("phases", (1,), (64,), [])


def test_mbarrier_parity_wait_two_phases_ahead_is_flagged() -> None:
    """A thread completes phase 0 and waits for it, then waits with parity 0 again: it means phase 2, two phases
    past its last wait, while phase 1 is current, where the hardware's one-bit compare returns at once (PTX ISA 8.0
    section 9.7.12.15.16: a parity wait is valid for the current or the immediately preceding phase only). Waiting
    for phase 1 first is right."""
    run_phases({0: [("arrive", 0), ("wait", 0, 0), ("arrive", 0), ("wait", 0, 1)]})
    with pytest.raises(EmulationError, match=r"thread 0: .*parity 0 .* a wait for phase 2, two phases ahead"):
        run_phases({0: [("arrive", 0), ("wait", 0, 0), ("wait", 0, 0)]})


def test_mbarrier_phases_skipped_on_what_another_thread_saw() -> None:
    """Thread 32 skips phases 0 and 1 of mbarrier 0, which thread 0 waited for, and waits (parity 0) for phase 2:
    right when thread 0 arrives on mbarrier 1 after its waits and thread 32 waits on that first (the arrival
    releases what thread 0 knew), or when they meet at ``bar.sync``, as the ping-pong matmul's consumer warpgroups
    take turns; flagged when thread 0 arrives on mbarrier 1 before its waits: thread 32 then knows nothing of
    mbarrier 0, its parity names phase 0, and the mbarrier is already in phase 2."""
    waits = [("arrive", 0), ("wait", 0, 0), ("arrive", 0), ("wait", 0, 1)]
    run_phases({0: [*waits, ("arrive", 1), ("arrive", 0)], 32: [("wait", 1, 0), ("wait", 0, 0)]}, bars=2)
    run_phases({0: [*waits, ("sync",), ("arrive", 0)], 32: [("sync",), ("wait", 0, 0)]})
    with pytest.raises(EmulationError, match=r"thread 32: .*knows phase -1 complete, so the parity names phase 0, "
                       r"but the mbarrier is in phase 2"):  # fmt: skip
        run_phases({0: [("arrive", 1), *waits, ("arrive", 0)], 32: [("wait", 1, 0), ("wait", 0, 0)]}, bars=2)


def test_mbarrier_producer_starts_on_the_phase_before_the_first() -> None:
    """A producer's first pass over a ring waits on fresh ``empty`` mbarriers with parity 1: the phase before phase
    0, complete from ``mbarrier.init`` on (the wait returns at once); then parity 0 for phase 0, which the consumer
    completes."""
    run_phases({0: [("wait", 0, 1), ("arrive", 1), ("wait", 0, 0)], 32: [("wait", 1, 0), ("arrive", 0)]}, bars=2)


def test_tma_swizzle_is_the_128_byte_pattern() -> None:
    """Row r of a 128-byte-wide box lands at 16-byte chunk c ^ (r % 8), as CUTLASS's Swizzle<3,4,3>."""
    for r in range(16):
        for c in range(8):
            assert swizzle_address(r * 128 + c * 16, 128) == r * 128 + ((c ^ (r % 8)) * 16)
    assert swizzle_address(200, 0) == 200
    assert ptx.wgmma_descriptor(0x400, 16, 1024) == 0x40 | 1 << 16 | 64 << 32 | 1 << 62


# ---------------------------------------------------------------------------------------------------------------
# Verifier, target rules, MLIR round trip


def build_all_ops(target: str = "sm_90a", arch_specific: bool = True) -> ptx.ModuleOp:
    """Every new instruction in one kernel; without ``arch_specific``, only those of plain sm_90 (no wgmma and
    setmaxnreg)."""
    module, func = kernel("all_ops", 2, target=target)
    with ImplicitBuilder(func.body):
        ptx.SharedOp("tile", 8192, 1024)
        out, tm = (ptx.LdParamOp(p).result for p in func.args)
        s = ptx.SharedAddrOp("tile").result
        ptx.MbarrierInitOp(s, 1)
        ptx.FenceProxyAsyncOp()
        ptx.MbarrierArriveOp(s, 8192)
        ptx.CpAsyncBulkTensorOp(s, tm, [imm(0, "s32"), imm(0, "s32")], s)
        done = ptx.MbarrierTryWaitOp(s, imm(0)).result
        a = ptx.LdmatrixOp(s, 4).values
        b = ptx.LdmatrixOp(s, 2, trans=True, offset=16).values
        d = ptx.MmaOp("m16n8k16", "bf16", a, b, [ptx.MovOp(0.0, "f32").result for _ in range(4)]).d
        d = ptx.MmaOp("m16n8k8", "tf32", a, b, d).d
        ptx.StmatrixOp(s, a[:1], trans=True)
        acc = [ptx.MovOp(0.0, "f32").result for _ in range(8)]
        if arch_specific:
            desc = imm(ptx.wgmma_descriptor(0, 16, 1024), "b64")
            ptx.WgmmaFenceOp()
            ptx.WgmmaMmaAsyncOp(16, "bf16", acc, desc, desc, done)
            ptx.WgmmaCommitGroupOp()
            ptx.WgmmaWaitGroupOp(0)
            ptx.SetmaxnregOp("dec", 40)
        for v in [*acc, *d]:
            ptx.StOp(ptx.CvtaOp(out).result, v)
        ptx.RetOp()
    return module


def test_new_ops_round_trip_through_mlir_text_and_assemble() -> None:
    module = build_all_ops()
    text = io.StringIO()
    Printer(stream=text).print_op(module)
    assert '"shared::cta.b64"' in text.getvalue()  # modifiers with '::' are quoted in MLIR
    parsed = Parser(make_context(), text.getvalue()).parse_module()
    assert print_ptx(parsed) == print_ptx(module)
    result = assemble(module)
    assert result.kernels["all_ops"].spill_stores == 0
    ptx_text = print_ptx(module)
    for line in (
        "ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16",
        "stmatrix.sync.aligned.m8n8.x1.trans.shared.b16",
        "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes",
        "mbarrier.arrive.expect_tx.shared::cta.b64",
        "mbarrier.try_wait.parity.shared::cta.b64",
        "wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16",
        "setmaxnreg.dec.sync.aligned.u32 \t40;",
    ):
        assert line in ptx_text


def test_sm_90a_instructions_are_rejected_on_sm_90() -> None:
    with pytest.raises(VerifyException, match="needs target sm_90a"):
        build_all_ops("sm_90").verify()
    assemble(build_all_ops("sm_90", arch_specific=False))  # TMA, mbarrier, ldmatrix/stmatrix, mma.sync: plain sm_90
    module, func = kernel("old", 1, target="sm_75")
    with ImplicitBuilder(func.body):
        ptx.MbarrierInitOp(imm(0), 1)
        ptx.RetOp()
    with pytest.raises(VerifyException, match="mbarrier.init.shared::cta.b64 needs target sm_80"):
        module.verify()


def _in_kernel(build: Callable[[], object], target: str = "sm_90a") -> None:
    module, func = kernel("k", 0, target=target)
    with ImplicitBuilder(func.body):
        build()
        ptx.RetOp()
    module.verify()


def regs(kind: str, n: int) -> list[SSAValue]:
    return [ptx.MovOp(0 if kind != "f32" else 0.0, kind).result for _ in range(n)]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: ptx.MmaOp("m16n8k16", "bf16", regs("b32", 2), regs("b32", 2), regs("f32", 4)), "A needs 4"),
        (lambda: ptx.MmaOp("m16n8k16", "tf32", regs("b32", 4), regs("b32", 2), regs("f32", 4)), "no mma.sync"),
        (lambda: ptx.MmaOp("m16n8k16", "bf16", regs("b32", 4), regs("b32", 2), regs("u32", 4)), "needs .f32"),
        (
            lambda: ptx.WgmmaMmaAsyncOp(
                64, "bf16", regs("f32", 16), *regs("b64", 2), ptx.SetpOp("eq", *regs("u32", 2)).result
            ),
            "accumulator needs 32",
        ),  # fmt: skip
        (
            lambda: ptx.WgmmaMmaAsyncOp(
                8, "bf16", regs("f32", 4), *regs("u32", 2), ptx.SetpOp("eq", *regs("u32", 2)).result
            ),
            "64-bit",
        ),  # fmt: skip
        (
            lambda: ptx.WgmmaMmaAsyncOp(
                8, "bf16", regs("f32", 4), *regs("b64", 2), ptx.SetpOp("eq", *regs("u32", 2)).result, scale_a=2
            ),
            "imm-scale",
        ),  # fmt: skip
        (
            lambda: ptx.WgmmaMmaAsyncOp(
                8, "tf32", regs("f32", 4), *regs("b64", 2), ptx.SetpOp("eq", *regs("u32", 2)).result, trans_b=1
            ),
            "K-major only",
        ),  # fmt: skip
        (lambda: ptx.SetmaxnregOp("inc", 100), "multiple of 8"),
        (lambda: ptx.WgmmaWaitGroupOp(9), "0..7"),
        (lambda: ptx.StmatrixOp(regs("u32", 1)[0], regs("u64", 2)), "needs .b32"),
        (
            lambda: ptx.CpAsyncBulkTensorOp(*regs("u32", 1), *regs("u64", 1), regs("f32", 2), *regs("u32", 1)),
            "coordinates",
        ),  # fmt: skip
        (lambda: ptx.MbarrierInitOp(regs("f32", 1)[0], 1), "address"),
    ],
)
def test_verifier_rejects_bad_tensor_core_ops(build: Callable[[], object], message: str) -> None:
    with pytest.raises(VerifyException, match=message):
        _in_kernel(build)


def test_ptxas_rejects_wgmma_for_sm_90() -> None:
    """The PTX of an sm_90a module does not assemble for plain sm_90 (the check a schedule's target relies on)."""
    with pytest.raises(CompileError, match="sm_90a"):
        ptxas.assemble(print_ptx(build_all_ops()), "sm_90", strict=True)


# ---------------------------------------------------------------------------------------------------------------
# GPU (``-m gpu``; skipped without one): the same kernels on the device, against float64 and the emulator. Written
# without a GPU at hand (2026-12-05): the first run on an H100/H200 checks the emulator's model of the hardware.


def run_on_gpu(
    module: ptx.ModuleOp, name: str, block: int, arrays: list[np.ndarray], tmaps: dict[int, tuple[int, int]]
) -> list:
    """Launch kernel ``name`` (one block) with a device copy of each array as a pointer parameter, and return the
    arrays copied back. ``tmaps`` maps a parameter index to (index of a 2-D 16-bit array, swizzle bytes): that
    parameter is then a tensor map of the array's device copy (box ``wgmma_box(swizzle)``), in global memory,
    made by ``cuTensorMapEncodeTiled``."""
    import ctypes

    from cuda.bindings import driver
    from cuda.core import Buffer, Device, LaunchConfig, Program, ProgramOptions, launch

    dev = Device(0)
    dev.set_current()
    stream = dev.create_stream()
    target = "90a" if module.target.data == "sm_90a" else dev.arch
    code = Program(print_ptx(module), code_type="ptx", options=ProgramOptions(arch=f"sm_{target}")).compile("cubin")
    host = [np.ascontiguousarray(a) for a in arrays]
    device = [dev.allocate(a.nbytes, stream=stream) for a in host]
    for h, d in zip(host, device, strict=True):
        d.copy_from(Buffer.from_handle(h.ctypes.data, h.nbytes, owner=h), stream=stream)
    params: list[Any] = list(device)
    swizzles = {0: "NONE", 32: "32B", 64: "64B", 128: "128B"}
    for param, (index, swizzle) in tmaps.items():
        rows, cols = host[index].shape
        err, tmap = driver.cuTensorMapEncodeTiled(
            driver.CUtensorMapDataType.CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, int(device[index].handle),
            [driver.cuuint64_t(cols), driver.cuuint64_t(rows)], [driver.cuuint64_t(cols * 2)],
            [driver.cuuint32_t(b) for b in wgmma_box(swizzle)], [driver.cuuint32_t(1)] * 2,
            driver.CUtensorMapInterleave.CU_TENSOR_MAP_INTERLEAVE_NONE,
            getattr(driver.CUtensorMapSwizzle, f"CU_TENSOR_MAP_SWIZZLE_{swizzles[swizzle]}"),
            driver.CUtensorMapL2promotion.CU_TENSOR_MAP_L2_PROMOTION_NONE,
            driver.CUtensorMapFloatOOBfill.CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE,
        )  # fmt: skip
        assert err == driver.CUresult.CUDA_SUCCESS, err
        raw = np.frombuffer(ctypes.string_at(tmap.getPtr(), 128), dtype=np.uint8).copy()
        buf = dev.allocate(128, stream=stream)
        buf.copy_from(Buffer.from_handle(raw.ctypes.data, 128, owner=raw), stream=stream)
        host.append(raw)
        params[param] = buf
    launch(stream, LaunchConfig(grid=1, block=block), code.get_kernel(name), *params)
    out = [np.empty_like(h) for h in host[: len(arrays)]]
    for o, d in zip(out, device, strict=True):
        d.copy_to(Buffer.from_handle(o.ctypes.data, o.nbytes, owner=o), stream=stream)
    stream.sync()
    return out


gpu_only = pytest.mark.skipif(not cuda.available(), reason="needs an NVIDIA GPU")


@pytest.mark.parametrize(("b_layout", "dtype"), MMA_CASES)
@pytest.mark.gpu
@gpu_only
def test_mma_sync_gemm_tile_on_gpu(b_layout: str, dtype: str, rng: np.random.Generator) -> None:
    a_bits, a = random_bf16(rng, (64, 32), dtype)
    b_bits, b = random_bf16(rng, (32, 64), dtype)
    b_in = b_bits.T.copy() if b_layout == "nk" else b_bits
    c = np.full((64, 64), np.nan, np.float32)
    _, _, d = run_on_gpu(build_mma_gemm(b_layout, dtype), f"mma_gemm_{b_layout}", 128, [a_bits, b_in, c], {})
    assert_close(d, a, b)


@pytest.mark.parametrize(("m", "k", "swizzle", "dtype"), WGMMA_CASES)
@pytest.mark.gpu
@gpu_only
def test_wgmma_from_tma_on_gpu(m: int, k: int, swizzle: int, dtype: str, rng: np.random.Generator) -> None:
    """Needs sm_90 (H100/H200): the TMA + mbarrier + wgmma kernel against float64 and the emulator."""
    a_bits, a = random_bf16(rng, (m, k), dtype)
    bt_bits, bt = random_bf16(rng, (64, k), dtype)
    module = build_wgmma(wgmma_k(k, swizzle), swizzle=swizzle, dtype=dtype)
    d = np.full((64, 64), np.nan, np.float32)
    _, _, got = run_on_gpu(module, "wgmma_tma", 128, [a_bits, bt_bits, d], {0: (0, swizzle), 1: (1, swizzle)})
    assert_close(got[:m], a, bt.T)
    assert np.all(got[m:] == 0)
    emulated = run_wgmma(module, a_bits, bt_bits, swizzle)
    np.testing.assert_allclose(got, emulated, rtol=0, atol=float(k * 2.0**-22 * np.abs(a).max() * np.abs(bt).max()))
