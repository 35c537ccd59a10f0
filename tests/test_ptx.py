"""The ptx dialect, its printer and the PTX assembler check.

Kernels are built by hand with the dialect's Python API, printed, and assembled for sm_90 through
``picograd.target.ptxas`` (ptxas, else nvJitLink). These tests never skip for want of an assembler: with neither
installed, ``assemble`` raises ``CompileError`` and they fail. The ``gpu`` tests launch the kernels through
cuda.core and compare with numpy; they skip without a GPU.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from xdsl.builder import ImplicitBuilder
from xdsl.dialects.builtin import StringAttr
from xdsl.ir import SSAValue
from xdsl.parser import Parser
from xdsl.printer import Printer
from xdsl.utils.exceptions import VerifyException

from picograd.dialects import make_context, ptx
from picograd.errors import CompileError
from picograd.target import ptxas
from picograd.target.ptx_printer import print_ptx

LOG2E = 1.4426950408889634

# ---------------------------------------------------------------------------------------------------------------
# Kernels built with the Python API


def global_address(base: SSAValue, index: SSAValue, elem_bytes: int = 4) -> SSAValue:
    """``base + index * elem_bytes`` with a 32-bit unsigned ``index`` (mul.wide.u32 + add.s64)."""
    size = ptx.MovOp(elem_bytes, "u32").result
    offset = ptx.MulOp(index, size, "u32", mode="wide").result
    return ptx.AddOp(base, offset, "s64").result


def build_vecadd(with_locations: bool = False) -> ptx.ModuleOp:
    """``c[i] = a[i] + b[i]`` for ``i < n``; one thread per element."""
    module = ptx.ModuleOp(target="sm_90")
    if with_locations:
        module.add_op(ptx.FileOp(1, "model.py"))
    func = ptx.FuncOp("vecadd", ["u64", "u64", "u64", "u32"], maxntid=(256, 1, 1))
    module.add_op(func)
    with ImplicitBuilder(func.body):
        a, b, c = (ptx.LdParamOp(p).result for p in func.args[:3])
        n = ptx.LdParamOp(func.args[3]).result
        i = ptx.MadOp(
            ptx.SregOp("ctaid.x").result, ptx.SregOp("ntid.x").result, ptx.SregOp("tid.x").result, "u32", mode="lo"
        ).result
        done = ptx.SetpOp("ge", i, n).result
        ptx.BraOp("DONE", guard=done)
        pa = global_address(ptx.CvtaOp(a).result, i)
        pb = global_address(ptx.CvtaOp(b).result, i)
        pc = global_address(ptx.CvtaOp(c).result, i)
        x = ptx.LdOp(pa, "f32")
        y = ptx.LdOp(pb, "f32")
        s = ptx.AddOp(x.result, y.result)
        st = ptx.StOp(pc, s.result)
        ptx.LabelOp("DONE")
        ptx.RetOp()
    if with_locations:
        x.location = ptx.loc("model.py", 12, 3)
        y.location = ptx.loc("model.py", 12, 3)
        s.location = ptx.loc("model.py", 13)
        st.location = ptx.loc("train.py", 40, 1)
    return module


def build_rowsum() -> ptx.ModuleOp:
    """``out[row] = sum(x[row, :])`` for a row-major ``(rows, cols)`` f32 matrix: one block per row (a multiple of
    32 threads, at most 1024). A strided loop per thread, a shfl.down reduction per warp, partial sums through
    shared memory, then a shfl.bfly reduction in warp 0."""
    module = ptx.ModuleOp(target="sm_90")
    func = ptx.FuncOp("rowsum", ["u64", "u64", "u32"], maxntid=(1024, 1, 1))
    module.add_op(func)
    with ImplicitBuilder(func.body):
        ptx.SharedOp("partials", 32 * 4, align=16)
        x = ptx.CvtaOp(ptx.LdParamOp(func.args[0]).result).result
        out = ptx.CvtaOp(ptx.LdParamOp(func.args[1]).result).result
        cols = ptx.LdParamOp(func.args[2]).result
        row = ptx.SregOp("ctaid.x").result
        tid = ptx.SregOp("tid.x").result
        ntid = ptx.SregOp("ntid.x").result
        row_start = ptx.MulOp(row, cols, "u32", mode="lo").result
        base = global_address(x, row_start)

        # acc = sum of x[row, j] for j = tid, tid + ntid, ... < cols
        acc = ptx.MovOp(0.0, "f32").result
        j = ptx.MovOp(tid).result
        ptx.LabelOp("LOOP")
        past_end = ptx.SetpOp("ge", j, cols).result
        ptx.BraOp("LOOP_END", guard=past_end)
        v = ptx.LdOp(global_address(base, j), "f32").result
        ptx.AssignOp(acc, ptx.AddOp(acc, v).result)
        ptx.AssignOp(j, ptx.AddOp(j, ntid).result)
        ptx.BraOp("LOOP", uni=True)
        ptx.LabelOp("LOOP_END")

        # warp reduction: lane 0 of each warp ends with the warp's sum
        total = acc
        for offset in (16, 8, 4, 2, 1):
            total = ptx.AddOp(total, ptx.ShflOp("down", total, offset).result).result
        five = ptx.MovOp(5, "u32").result
        lane = ptx.AndOp(tid, ptx.MovOp(31, "u32").result, "b32").result
        warp = ptx.ShrOp(tid, five, "u32").result
        zero = ptx.MovOp(0, "u32").result
        lane0 = ptx.SetpOp("eq", lane, zero, "u32").result
        smem = ptx.SharedAddrOp("partials").result
        two = ptx.MovOp(2, "u32").result
        slot = ptx.AddOp(smem, ptx.ShlOp(warp, two, "b32").result, "u32").result
        ptx.StOp(slot, total, space="shared", guard=lane0)
        ptx.BarSyncOp(0)

        # warp 0 adds the partial sums of the ntid / 32 warps
        not_warp0 = ptx.SetpOp("ne", warp, zero, "u32").result
        ptx.BraOp("DONE", guard=not_warp0)
        nwarps = ptx.ShrOp(ntid, five, "u32").result
        part = ptx.MovOp(0.0, "f32").result
        has_part = ptx.SetpOp("lt", lane, nwarps, "u32").result
        ptx.BraOp("SKIP", guard=has_part, negate=True)
        lane_slot = ptx.AddOp(smem, ptx.ShlOp(lane, two, "b32").result, "u32").result
        ptx.AssignOp(part, ptx.LdOp(lane_slot, "f32", space="shared").result)
        ptx.LabelOp("SKIP")
        for offset in (16, 8, 4, 2, 1):
            part = ptx.AddOp(part, ptx.ShflOp("bfly", part, offset).result).result
        ptx.StOp(global_address(out, row), part, guard=lane0)
        ptx.LabelOp("DONE")
        ptx.RetOp()
    return module


#: The outputs of the math kernel: name, numpy reference on float64, absolute tolerance, relative tolerance.
MATH_OUTPUTS: list[tuple[str, object, float, float]] = [
    ("ex2", lambda x: np.exp2(x), 0.0, 2e-6),
    ("exp", lambda x: np.exp(x), 0.0, 2e-5),
    ("lg2", lambda x: np.log2(x), 2e-6, 1e-6),
    ("sin", lambda x: np.sin(x), 2e-6, 0.0),
    ("cos", lambda x: np.cos(x), 2e-6, 0.0),
    ("tanh", lambda x: np.tanh(x), 0.0, 1e-3),
    ("rcp", lambda x: 1 / x, 0.0, 1e-7),
    ("sqrt", lambda x: np.sqrt(x), 0.0, 1e-7),
    ("rsqrt", lambda x: 1 / np.sqrt(x), 0.0, 1e-6),
    ("div_rn", lambda x: x / 3, 0.0, 1e-7),
    ("div_approx", lambda x: x / 3, 0.0, 1e-6),
    ("div_full", lambda x: x / 3, 0.0, 1e-6),
    ("rsqrt_f64", lambda x: 1 / np.sqrt(x), 0.0, 1e-6),
    ("rcp_sqrt_f64", lambda x: 1 / np.sqrt(x), 0.0, 1e-7),
    ("trunc10", lambda x: np.trunc(np.float32(10) * x.astype(np.float32)), 0.0, 0.0),
    ("rint10", lambda x: np.rint(np.float32(10) * x.astype(np.float32)), 0.0, 0.0),
    ("floor10", lambda x: np.floor(np.float32(10) * x.astype(np.float32)), 0.0, 0.0),
    ("u16", lambda x: np.trunc(np.float32(10) * x.astype(np.float32)), 0.0, 0.0),
    ("fma", lambda x: x * x - x, 1e-6, 1e-6),
    ("relu", lambda x: np.maximum(x - 1, 0), 1e-7, 0.0),
    ("min", lambda x: np.minimum(x, 1), 0.0, 0.0),
    ("absneg", lambda x: np.abs(1 - x), 1e-7, 0.0),
    ("selp", lambda x: np.where(x > 1, x, -x), 0.0, 0.0),
    ("sqrt_f64", lambda x: np.sqrt(x), 0.0, 1e-7),
]


def build_math() -> ptx.ModuleOp:
    """``out[i, k] = f_k(x[i])`` for the functions of ``MATH_OUTPUTS``: every math instruction and conversion the
    lowering uses (f32 and, where PTX has them, f64). Inputs must lie in ``(0, pi]``."""
    module = ptx.ModuleOp(target="sm_90")
    func = ptx.FuncOp("math", ["u64", "u64", "u32"], maxntid=(128, 1, 1))
    module.add_op(func)
    k_count = len(MATH_OUTPUTS)
    with ImplicitBuilder(func.body):
        src = ptx.CvtaOp(ptx.LdParamOp(func.args[0]).result).result
        dst = ptx.CvtaOp(ptx.LdParamOp(func.args[1]).result).result
        n = ptx.LdParamOp(func.args[2]).result
        i = ptx.MadOp(
            ptx.SregOp("ctaid.x").result, ptx.SregOp("ntid.x").result, ptx.SregOp("tid.x").result, "u32", mode="lo"
        ).result
        ptx.BraOp("DONE", guard=ptx.SetpOp("ge", i, n).result)
        x = ptx.LdOp(global_address(src, i), "f32", nc=True).result
        row = global_address(dst, i, 4 * k_count)

        def f32(value: float) -> SSAValue:
            return ptx.MovOp(value, "f32").result

        three, ten, one = f32(3.0), f32(10.0), f32(1.0)
        xd = ptx.CvtOp(x, "f64").result
        ten_x = ptx.MulOp(x, ten, mode="rn").result
        neg_x = ptx.NegOp(x).result
        results = {
            "ex2": ptx.Ex2Op(x, approx=True).result,
            "exp": ptx.Ex2Op(ptx.MulOp(x, f32(LOG2E), mode="rn").result, approx=True, ftz=True).result,
            "lg2": ptx.Lg2Op(x, approx=True).result,
            "sin": ptx.SinOp(x, approx=True).result,
            "cos": ptx.CosOp(x, approx=True).result,
            "tanh": ptx.TanhOp(x, approx=True).result,
            "rcp": ptx.RcpOp(x, mode="rn").result,
            "sqrt": ptx.SqrtOp(x, mode="rn").result,
            "rsqrt": ptx.RsqrtOp(x, approx=True).result,
            "div_rn": ptx.DivOp(x, three, mode="rn").result,
            "div_approx": ptx.DivOp(x, three, mode="approx").result,
            "div_full": ptx.DivOp(x, three, mode="full").result,
            "rsqrt_f64": ptx.CvtOp(ptx.RsqrtOp(xd, approx=True).result, "f32", rnd="rn").result,
            "rcp_sqrt_f64": ptx.CvtOp(
                ptx.RcpOp(ptx.SqrtOp(xd, mode="rn").result, mode="rn").result, "f32", rnd="rn"
            ).result,
            "trunc10": ptx.CvtOp(ptx.CvtOp(ten_x, "s32", rnd="rzi").result, "f32", rnd="rn").result,
            "rint10": ptx.CvtOp(ten_x, "f32", rnd="rni").result,
            "floor10": ptx.CvtOp(ptx.CvtOp(ten_x, "s64", rnd="rmi").result, "f32", rnd="rn").result,
            "u16": ptx.CvtOp(
                ptx.CvtOp(ptx.CvtOp(ten_x, "u32", rnd="rzi").result, "u16").result, "f32", rnd="rn"
            ).result,
            "fma": ptx.FmaOp(x, x, neg_x, rnd="rn").result,
            "relu": ptx.MaxOp(ptx.SubOp(x, one).result, f32(0.0)).result,
            "min": ptx.MinOp(x, one).result,
            "absneg": ptx.AbsOp(ptx.AddOp(neg_x, one).result).result,
            "selp": ptx.SelpOp(x, neg_x, ptx.SetpOp("gt", x, one).result).result,
            "sqrt_f64": ptx.CvtOp(ptx.SqrtOp(xd, mode="rn").result, "f32", rnd="rn").result,
        }
        assert list(results) == [name for name, *_ in MATH_OUTPUTS]
        for k, value in enumerate(results.values()):
            ptx.StOp(row, value, offset=4 * k)
        ptx.LabelOp("DONE")
        ptx.RetOp()
    return module


def build_spilling(live: int = 300) -> ptx.ModuleOp:
    """A kernel that keeps ``live`` loaded values alive at once under ``.maxntid 1024`` (at most 64 registers per
    thread): ptxas must spill."""
    module = ptx.ModuleOp(target="sm_90")
    func = ptx.FuncOp("spill", ["u64"], maxntid=(1024, 1, 1))
    module.add_op(func)
    with ImplicitBuilder(func.body):
        p = ptx.CvtaOp(ptx.LdParamOp(func.args[0]).result).result
        base = global_address(p, ptx.SregOp("tid.x").result, 4 * live)
        values = [ptx.LdOp(base, "f32", offset=4 * k).result for k in range(live)]
        for k, v in enumerate(reversed(values)):
            ptx.StOp(base, v, offset=4 * k)
        ptx.RetOp()
    return module


# ---------------------------------------------------------------------------------------------------------------
# Assembly (must pass in CI: no skipping when an assembler is missing)


@pytest.mark.parametrize("build", [build_vecadd, build_rowsum, build_math], ids=["vecadd", "rowsum", "math"])
def test_kernels_assemble_for_sm90(build) -> None:
    module = build()
    module.verify()
    text = print_ptx(module)
    result = ptxas.assemble(text, arch="sm_90")
    name = module.funcs()[0].sym_name.data
    assert name in result.kernels, result.info_log
    assert result.kernels[name].registers > 0
    assert not result.spills
    assert len(result.cubin) > 0


@pytest.mark.parametrize("build", [build_vecadd, build_rowsum, build_math], ids=["vecadd", "rowsum", "math"])
def test_kernels_assemble_strict(build) -> None:
    ptxas.assemble(print_ptx(build()), arch="sm_90", strict=True)


def test_nvjitlink_backend_assembles() -> None:
    """nvJitLink is a test dependency (nvidia-nvjitlink-cu12): the fallback must work where ptxas is missing."""
    result = ptxas.assemble(print_ptx(build_rowsum()), backend="nvjitlink")
    assert result.backend == "nvjitlink"
    assert "rowsum" in result.kernels
    assert result.kernels["rowsum"].barriers == 1


def test_ptxas_backend_when_installed() -> None:
    if ptxas.find_ptxas() is None:
        pytest.skip("the CUDA toolkit's ptxas is not installed (the nvJitLink path is tested above)")
    result = ptxas.assemble(print_ptx(build_vecadd()), backend="ptxas")
    assert result.backend == "ptxas"
    assert result.cubin[:4] == b"\x7fELF"


def test_rowsum_uses_shared_memory_and_barrier() -> None:
    text = print_ptx(build_rowsum())
    assert "\t.shared .align 16 .b8 partials[128];" in text
    assert "bar.sync \t0;" in text
    assert "shfl.sync.down.b32" in text and "shfl.sync.bfly.b32" in text
    assert re.search(r"@!%p\d+ bra \tSKIP;", text)
    assert re.search(r"@%p\d+ st\.shared\.f32 \t\[%r\d+\], %f\d+;", text)
    result = ptxas.assemble(text)
    assert result.kernels["rowsum"].shared_bytes >= 128 or result.backend == "nvjitlink"


def test_math_kernel_has_every_instruction() -> None:
    text = print_ptx(build_math())
    for opcode in (
        "ex2.approx.f32",
        "ex2.approx.ftz.f32",
        "lg2.approx.f32",
        "sin.approx.f32",
        "cos.approx.f32",
        "tanh.approx.f32",
        "rcp.rn.f32",
        "sqrt.rn.f32",
        "rsqrt.approx.f32",
        "div.rn.f32",
        "div.approx.f32",
        "div.full.f32",
        "rsqrt.approx.f64",
        "sqrt.rn.f64",
        "rcp.rn.f64",
        "cvt.f64.f32",
        "cvt.rn.f32.f64",
        "cvt.rzi.s32.f32",
        "cvt.rn.f32.s32",
        "cvt.rni.f32.f32",
        "cvt.rmi.s64.f32",
        "cvt.rn.f32.s64",
        "cvt.u16.u32",
        "cvt.rn.f32.u16",
        "fma.rn.f32",
        "max.f32",
        "min.f32",
        "neg.f32",
        "abs.f32",
        "selp.f32",
        "ld.global.nc.f32",
    ):
        assert f"\t{opcode} \t" in text, opcode
    assert re.search(r"\tmov\.f32 \t%f\d+, 0f40400000;", text)  # 3.0
    assert re.search(rf"\tst\.global\.f32 \t\[%rd\d+\+{4 * (len(MATH_OUTPUTS) - 1)}\], %f\d+;", text)


def test_invalid_ptx_raises_compile_error_with_the_log() -> None:
    text = print_ptx(build_vecadd()).replace("ret;", "rett;")
    with pytest.raises(CompileError) as info:
        ptxas.assemble(text)
    message = str(info.value)
    assert "Not a name of any known instruction: 'rett'" in message
    assert "sm_90" in message


def test_invalid_ptx_through_nvjitlink() -> None:
    text = print_ptx(build_vecadd()).replace("add.f32", "add.f33")
    with pytest.raises(CompileError, match="Unknown modifier '.f33'"):
        ptxas.assemble(text, backend="nvjitlink")


def test_sm90a_ptx_is_rejected_for_sm90() -> None:
    module = build_vecadd()
    module.target = StringAttr("sm_90a")
    text = print_ptx(module)
    ptxas.assemble(text, arch="sm_90a")
    with pytest.raises(CompileError, match="sm_90a"):
        ptxas.assemble(text, arch="sm_90")


def test_strict_fails_on_spills() -> None:
    text = print_ptx(build_spilling())
    relaxed = ptxas.assemble(text)
    assert relaxed.spills, relaxed.info_log
    with pytest.raises(CompileError, match="spill"):
        ptxas.assemble(text, strict=True)


def test_no_assembler(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ptxas, "find_ptxas", lambda: None)
    monkeypatch.setattr(ptxas, "nvjitlink_available", lambda: False)
    with pytest.raises(
        CompileError, match="no PTX assembler: install the CUDA toolkit's ptxas or nvidia-nvjitlink-cu12"
    ):
        ptxas.assemble(print_ptx(build_vecadd()))


def test_parse_resources() -> None:
    log = (
        "ptxas info    : 0 bytes gmem\n"
        "ptxas info    : Compiling entry function 'k' for 'sm_90'\n"
        "ptxas info    : Function properties for k\n"
        "    8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads\n"
        "ptxas info    : Used 40 registers, used 1 barriers, 4224 bytes smem\n"
    )
    k = ptxas.parse_resources(log)["k"]
    assert (k.registers, k.spill_stores, k.spill_loads, k.stack_frame, k.shared_bytes, k.barriers) == (
        40,
        4,
        12,
        8,
        4224,
        1,
    )


# ---------------------------------------------------------------------------------------------------------------
# Printer


def test_vecadd_text() -> None:
    text = print_ptx(build_vecadd())
    assert text.startswith("//")
    assert "\n.version 8.0\n.target sm_90\n.address_size 64\n" in text
    assert ".visible .entry vecadd(\n\t.param .u64 vecadd_param_0,\n" in text
    assert "\t.param .u32 vecadd_param_3\n)\n.maxntid 256, 1, 1\n{\n" in text
    assert "\t.reg .pred \t%p<2>;\n\t.reg .b32 \t%r<9>;\n\t.reg .b64 \t%rd<13>;\n\t.reg .f32 \t%f<4>;\n" in text
    assert "\tmov.u32 \t%r2, %ctaid.x;\n" in text
    assert "\t@%p1 bra \tDONE;\n" in text
    assert "\nDONE:\n\tret;\n}\n" in text


def test_loc_lines_reference_the_file_and_line() -> None:
    module = build_vecadd(with_locations=True)
    lines = print_ptx(module).splitlines()
    assert '.file 1 "model.py"' in lines
    assert '.file 2 "train.py"' in lines  # not in the table: added after its entries
    first = lines.index("\t.loc\t1 12 3")
    assert lines[first + 1].startswith("\tld.global.f32")
    assert lines[first + 2].startswith("\tld.global.f32")  # same location: no second .loc
    assert lines[first + 3] == "\t.loc\t1 13 0"
    assert lines[first + 4].startswith("\tadd.f32")
    assert lines[first + 5] == "\t.loc\t2 40 1"
    assert lines[first + 6].startswith("\tst.global.f32")
    assert sum(1 for line in lines if ".loc" in line) == 3
    ptxas.assemble("\n".join(lines))


def test_float_immediates_are_exact_hex() -> None:
    assert ptx.ptx_float(1.0, "f32") == "0f3F800000"
    assert ptx.ptx_float(0.1, "f32") == "0f3DCCCCCD"
    assert ptx.ptx_float(-math.inf, "f32") == "0fFF800000"
    assert ptx.ptx_float(1.0, "f64") == "0d3FF0000000000000"
    assert ptx.ptx_float(math.nan, "f32").startswith("0f7FC")


def test_registers_are_declared_per_class() -> None:
    module = ptx.ModuleOp()
    func = ptx.FuncOp("k", [])
    module.add_op(func)
    with ImplicitBuilder(func.body):
        a = ptx.MovOp(1, "s16").result
        b = ptx.CvtOp(a, "s64").result
        c = ptx.CvtOp(b, "f64", rnd="rn").result
        ptx.SetpOp("lt", c, c)
        ptx.RetOp()
    text = print_ptx(module)
    assert "\t.reg .pred \t%p<2>;\n\t.reg .b16 \t%rs<2>;\n\t.reg .b64 \t%rd<2>;\n\t.reg .f64 \t%fd<2>;\n" in text
    assert "\tcvt.s64.s16 \t%rd1, %rs1;" in text
    ptxas.assemble(text)


# ---------------------------------------------------------------------------------------------------------------
# Dialect: Python API, verifiers, MLIR round trip


def test_mlir_round_trip_of_built_kernels() -> None:
    for build in (build_vecadd, build_rowsum, build_math):
        module = build()
        text = _mlir(module)
        parsed = Parser(make_context(), text).parse_module()
        parsed.verify()
        assert _mlir(parsed.body.block.first_op) == text
        assert print_ptx(parsed) == print_ptx(module)


def _mlir(op) -> str:
    from io import StringIO

    out = StringIO()
    Printer(stream=out).print_op(op)
    return out.getvalue()


def _kernel(*build_ops) -> ptx.ModuleOp:
    module = ptx.ModuleOp()
    func = ptx.FuncOp("k", ["u64"])
    module.add_op(func)
    with ImplicitBuilder(func.body):
        for build in build_ops:
            build(func)
        ptx.RetOp()
    return module


def test_type_suffix_checks_operand_registers() -> None:
    def bad(func: ptx.FuncOp) -> None:
        t = ptx.SregOp("tid.x").result
        ptx.AddOp(t, ptx.MovOp(1.0, "f32").result, "f32")

    with pytest.raises(VerifyException, match=r"operand 'lhs' is a \.u32 register, which add\.f32 does not accept"):
        _kernel(bad).verify()


def test_bit_size_types_take_any_register_of_their_width() -> None:
    def ok(func: ptx.FuncOp) -> None:
        f = ptx.MovOp(1.0, "f32").result
        bits = ptx.MovOp(f, "b32").result  # bit cast f32 -> b32
        ptx.AndOp(bits, ptx.SregOp("tid.x").result, "b32")
        ptx.AddOp(ptx.SregOp("tid.x").result, ptx.MovOp(1, "s32").result, "u32")  # u32/s32 interchangeable

    _kernel(ok).verify()
    assert ptx.compatible("f32", "b32") and ptx.compatible("b32", "f32") and not ptx.compatible("u32", "f32")
    assert ptx.compatible("u32", "u8", relaxed=True) and not ptx.compatible("u32", "u8")
    assert not ptx.compatible("pred", "b32") and ptx.compatible("pred", "pred")


def test_verification_checks_each_signature_once_per_module(monkeypatch: pytest.MonkeyPatch) -> None:
    """Within one ``ptx.module``'s verification an instruction whose signature (class, modifiers, operand and
    result types) verified already is not checked again; another signature, another kernel's missing shared buffer
    and the next verification are."""
    checked: list[str] = []
    verify_modifiers = ptx.AddOp.verify_modifiers

    def counting(self: ptx.AddOp) -> None:
        checked.append(self.instr_type)
        verify_modifiers(self)

    monkeypatch.setattr(ptx.AddOp, "verify_modifiers", counting)

    def adds(func: ptx.FuncOp) -> None:
        t = ptx.SregOp("tid.x").result
        for _ in range(5):
            t = ptx.AddOp(t, t, "u32").result
        x = ptx.MovOp(1.0, "f32").result
        for _ in range(3):
            x = ptx.AddOp(x, x).result

    module = _kernel(adds)
    module.verify()
    assert sorted(checked) == ["f32", "u32"]
    checked.clear()
    module.verify()  # each verification starts afresh
    assert sorted(checked) == ["f32", "u32"]

    def bad_after_good(func: ptx.FuncOp) -> None:
        t = ptx.SregOp("tid.x").result
        t = ptx.AddOp(t, t, "u32").result
        ptx.AddOp(t, ptx.MovOp(1.0, "f32").result, "f32")  # same class, other signature: a u32 operand of add.f32

    with pytest.raises(VerifyException, match=r"operand 'lhs' is a \.u32 register, which add\.f32 does not accept"):
        _kernel(bad_after_good).verify()

    # ptx.shared_addr looks its buffer up in its own kernel: the same op in a kernel without the buffer fails
    module = ptx.ModuleOp()
    for name, declare in (("with_buffer", True), ("without", False)):
        func = ptx.FuncOp(name, ["u64"])
        module.add_op(func)
        with ImplicitBuilder(func.body):
            if declare:
                ptx.SharedOp("tile", 256)
            ptx.SharedAddrOp("tile")
            ptx.RetOp()
    with pytest.raises(VerifyException, match="no ptx.shared buffer named @tile"):
        module.verify()


def test_instructions_built_flat_match_the_irdl_builder() -> None:
    """Instructions without segment sizes are built from their flattened operand groups (``Instruction.__init__``);
    each is the op IRDL's generic builder makes from the same groups, and a wrong count still fails
    verification."""
    func = ptx.FuncOp("k", ["u64"])
    with ImplicitBuilder(func.body):
        p = ptx.LdParamOp(func.args[0]).result
        x = ptx.MovOp(1.5, "f32").result
    built = [
        ptx.MovOp(3, "u32"),
        ptx.MovOp(x, "b32"),
        ptx.LdOp(p, "f32", offset=16, vec=4),
        ptx.CvtOp(x, "s64", rnd="rzi"),
        ptx.SetpOp("lt", x, x),
        ptx.AddOp(x, x, rnd="rn"),
    ]
    for op in built:
        irdl = type(op).build(
            operands=[list(op.operands)] if type(op) is ptx.MovOp else list(op.operands),
            result_types=[list(op.result_types)] if type(op) is ptx.LdOp else list(op.result_types),
            properties=dict(op.properties),
        )
        assert irdl.is_structurally_equivalent(op), op
    bad = ptx.AddOp(x, x)
    bad.operands = [x]  # a binary op with one operand
    func.body.block.add_ops([bad, ptx.RetOp()])
    module = ptx.ModuleOp()
    module.add_op(func)
    with pytest.raises(VerifyException, match="operand"):
        module.verify()


def test_branch_target_must_exist() -> None:
    with pytest.raises(VerifyException, match="branch target 'NOPE' is not a label of @k"):
        _kernel(lambda f: ptx.BraOp("NOPE")).verify()


def test_loop_carried_values_use_assign() -> None:
    """``ptx.assign`` writes an existing register: the printed PTX reuses its name."""

    def loop(func: ptx.FuncOp) -> None:
        i = ptx.MovOp(0, "u32").result
        ptx.LabelOp("L")
        nxt = ptx.AddOp(i, ptx.MovOp(1, "u32").result).result
        ptx.AssignOp(i, nxt)
        ptx.BraOp("L", guard=ptx.SetpOp("lt", i, ptx.MovOp(10, "u32").result).result)

    text = print_ptx(_kernel(loop))
    assert "\tmov.u32 \t%r1, 0;\nL:\n" in text
    assert "\tadd.u32 \t%r3, %r1, %r2;\n\tmov.u32 \t%r1, %r3;\n" in text
    ptxas.assemble(text)


def test_modifier_keywords_and_unknown_modifiers() -> None:
    one = ptx.MovOp(1.0, "f32")
    op = ptx.AddOp(one, one, rnd="rz", ftz=True)
    assert op.opcode == "add.rz.ftz.f32"
    with pytest.raises(TypeError, match="unknown modifier 'round'"):
        ptx.AddOp(one, one, round="rn")


def test_vector_load_store() -> None:
    def vec(func: ptx.FuncOp) -> None:
        p = ptx.CvtaOp(ptx.LdParamOp(func.args[0]).result).result
        ld = ptx.LdOp(p, "f32", vec=4, offset=16)
        ptx.StOp(p, list(ld.values), offset=-16)
        ptx.StOp(p, list(ld.values)[:2])

    text = print_ptx(_kernel(vec))
    assert "\tld.global.v4.f32 \t{%f1, %f2, %f3, %f4}, [%rd2+16];" in text
    assert "\tst.global.v4.f32 \t[%rd2+-16], {%f1, %f2, %f3, %f4};" in text
    assert "\tst.global.v2.f32 \t[%rd2], {%f1, %f2};" in text
    ptxas.assemble(text)


def test_dialect_is_registered_in_make_context() -> None:
    assert make_context().get_optional_op("ptx.add") is ptx.AddOp
    assert make_context().get_optional_type("ptx.f32") is ptx.F32Type


# ---------------------------------------------------------------------------------------------------------------
# GPU (skipped without one): launch through cuda.core and compare with numpy


def _gpu_available() -> bool:
    try:
        from cuda.bindings import driver

        (err,) = driver.cuInit(0)
        if err != driver.CUresult.CUDA_SUCCESS:
            return False
        err, count = driver.cuDeviceGetCount()
        return err == driver.CUresult.CUDA_SUCCESS and count > 0
    except Exception:
        return False


gpu = pytest.mark.skipif(not _gpu_available(), reason="needs an NVIDIA GPU and driver")


def _launch(ptx_text: str, name: str, grid: int, block: int, args: list) -> list[np.ndarray]:
    """Load ``ptx_text`` with cuda.core, copy the numpy arrays of ``args`` to the device, launch, copy them back.
    Numpy scalars in ``args`` are passed by value (np.uint32 for .u32 parameters)."""
    from cuda.core import Device, LaunchConfig, LegacyPinnedMemoryResource, Program, ProgramOptions, launch

    dev = Device(0)
    dev.set_current()
    stream = dev.create_stream()
    kernel = (
        Program(ptx_text, code_type="ptx", options=ProgramOptions(arch=f"sm_{dev.arch}"))
        .compile("cubin")
        .get_kernel(name)
    )
    pinned = LegacyPinnedMemoryResource()
    buffers, host, kernel_args = [], [], []
    for a in args:
        if isinstance(a, np.ndarray):
            hbuf = pinned.allocate(a.nbytes, stream=stream)
            view = np.from_dlpack(hbuf).view(a.dtype).reshape(a.shape)
            view[...] = a
            dbuf = dev.allocate(a.nbytes, stream=stream)
            dbuf.copy_from(hbuf, stream=stream)
            buffers += [hbuf, dbuf]
            host.append((hbuf, dbuf, view))
            kernel_args.append(dbuf)
        else:
            kernel_args.append(a)
    launch(stream, LaunchConfig(grid=grid, block=block), kernel, *kernel_args)
    for hbuf, dbuf, _ in host:
        dbuf.copy_to(hbuf, stream=stream)
    stream.sync()
    results = [view.copy() for _, _, view in host]
    for buf in buffers:
        buf.close(stream)
    stream.close()
    return results


@pytest.mark.gpu
@gpu
def test_vecadd_on_gpu(rng: np.random.Generator) -> None:
    n = 1_000_003
    a = rng.standard_normal(n, dtype=np.float32)
    b = rng.standard_normal(n, dtype=np.float32)
    _, _, c = _launch(
        print_ptx(build_vecadd(with_locations=True)),
        "vecadd",
        (n + 255) // 256,
        256,
        [a, b, np.zeros_like(a), np.uint32(n)],
    )
    np.testing.assert_array_equal(c, a + b)


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("rows, cols, block", [(7, 1000, 256), (64, 33, 32), (3, 5000, 1024)])
def test_rowsum_on_gpu(rng: np.random.Generator, rows: int, cols: int, block: int) -> None:
    x = rng.standard_normal((rows, cols), dtype=np.float32)
    _, out = _launch(print_ptx(build_rowsum()), "rowsum", rows, block, [x, np.zeros(rows, np.float32), np.uint32(cols)])
    np.testing.assert_allclose(out, x.astype(np.float64).sum(axis=1), rtol=1e-5, atol=1e-4 * math.sqrt(cols))


@pytest.mark.gpu
@gpu
def test_math_on_gpu(rng: np.random.Generator) -> None:
    n = 4099
    x = rng.uniform(0.05, math.pi, n).astype(np.float32)
    _, out = _launch(
        print_ptx(build_math()),
        "math",
        (n + 127) // 128,
        128,
        [x, np.zeros((n, len(MATH_OUTPUTS)), np.float32), np.uint32(n)],
    )
    x64 = x.astype(np.float64)
    for k, (name, ref, atol, rtol) in enumerate(MATH_OUTPUTS):
        want = ref(x64)  # type: ignore[operator]
        np.testing.assert_allclose(out[:, k], want, rtol=rtol, atol=atol, err_msg=name)


def test_module_docstring_example_builds_and_assembles() -> None:
    """The Python API example at the top of ``picograd/dialects/ptx.py`` stays true."""
    import textwrap

    doc = ptx.__doc__ or ""
    example = textwrap.dedent(doc[doc.index("::", doc.index("Python API")) + 2 :])
    scope: dict[str, object] = {}
    exec(example, scope)
    module = scope["module"]
    assert isinstance(module, ptx.ModuleOp)
    assert "scale" in ptxas.assemble(print_ptx(module)).kernels


def test_print_ptx_verifies_first() -> None:
    module = _kernel(lambda f: ptx.BraOp("NOPE"))
    with pytest.raises(VerifyException, match="branch target"):
        print_ptx(module)
