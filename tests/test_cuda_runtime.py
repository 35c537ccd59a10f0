"""The CUDA runtime (picograd.runtime.cuda).

Without a GPU: every entry point that needs one raises DeviceError with a message naming what is missing, and PTX
still assembles (nvJitLink) with its kernel figures and errors. With a GPU (`-m gpu`, skipped otherwise): launches,
buffers, graphs and the Executable against numpy.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import picograd as pg
from picograd.runtime import cuda
from picograd.runtime.cuda import (
    BufferSpec,
    Copy,
    DeviceBuffer,
    Executable,
    Input,
    Launch,
    Memset,
    Output,
    Temp,
    View,
)

HAS_GPU = cuda.available()
requires_gpu = pytest.mark.skipif(not HAS_GPU, reason="needs an NVIDIA GPU")
no_gpu = pytest.mark.skipif(HAS_GPU, reason="checks the behaviour without a GPU")

HEADER = ".version 8.0\n.target sm_90\n.address_size 64\n"


def _index_prologue(params: list[str]) -> str:
    """Load the u64 params into %rd1.., n into %r1, the global index into %r5; exit when it is >= n."""
    loads = "\n".join(f"    ld.param.u64 %rd{i + 1}, [{p}];" for i, p in enumerate(params[:-1]))
    return f"""{loads}
    ld.param.u32 %r1, [{params[-1]}];
    mov.u32 %r2, %ctaid.x;
    mov.u32 %r3, %ntid.x;
    mov.u32 %r4, %tid.x;
    mad.lo.s32 %r5, %r2, %r3, %r4;
    setp.ge.u32 %p1, %r5, %r1;
    @%p1 bra DONE;
    mul.wide.u32 %rd10, %r5, 4;"""


def binary_kernel(name: str, op: str) -> str:
    """out[i] = a[i] <op> b[i] on f32, for i < n."""
    return f"""
.visible .entry {name}(.param .u64 {name}_a, .param .u64 {name}_b, .param .u64 {name}_out, .param .u32 {name}_n)
{{
    .reg .pred %p<2>;
    .reg .b32 %r<6>;
    .reg .f32 %f<4>;
    .reg .b64 %rd<14>;
{_index_prologue([f"{name}_a", f"{name}_b", f"{name}_out", f"{name}_n"])}
    cvta.to.global.u64 %rd4, %rd1;
    cvta.to.global.u64 %rd5, %rd2;
    cvta.to.global.u64 %rd6, %rd3;
    add.s64 %rd11, %rd4, %rd10;
    add.s64 %rd12, %rd5, %rd10;
    add.s64 %rd13, %rd6, %rd10;
    ld.global.f32 %f1, [%rd11];
    ld.global.f32 %f2, [%rd12];
    {op}.rn.f32 %f3, %f1, %f2;
    st.global.f32 [%rd13], %f3;
DONE:
    ret;
}}
"""


SCALE_KERNEL = f"""
.visible .entry scale(.param .u64 scale_a, .param .u64 scale_out, .param .f32 scale_s, .param .u32 scale_n)
{{
    .reg .pred %p<2>;
    .reg .b32 %r<6>;
    .reg .f32 %f<4>;
    .reg .b64 %rd<14>;
    ld.param.f32 %f2, [scale_s];
{_index_prologue(["scale_a", "scale_out", "scale_n"])}
    cvta.to.global.u64 %rd4, %rd1;
    cvta.to.global.u64 %rd5, %rd2;
    add.s64 %rd11, %rd4, %rd10;
    add.s64 %rd12, %rd5, %rd10;
    ld.global.f32 %f1, [%rd11];
    mul.rn.f32 %f3, %f1, %f2;
    st.global.f32 [%rd12], %f3;
DONE:
    ret;
}}
"""

INC_KERNEL = f"""
.visible .entry inc(.param .u64 inc_x, .param .u32 inc_n)
{{
    .reg .pred %p<2>;
    .reg .b32 %r<6>;
    .reg .f32 %f<3>;
    .reg .b64 %rd<14>;
{_index_prologue(["inc_x", "inc_n"])}
    cvta.to.global.u64 %rd4, %rd1;
    add.s64 %rd11, %rd4, %rd10;
    ld.global.f32 %f1, [%rd11];
    add.rn.f32 %f2, %f1, 0f3F800000;
    st.global.f32 [%rd11], %f2;
DONE:
    ret;
}}
"""

# Each thread writes 3*tid at byte `off` + 4*tid of dynamic shared memory, then reads its mirror's value, so the
# result is right only if `off` + 4*ntid bytes of dynamic shared memory really exist (off is above 48 KiB).
SMEM_KERNEL = """
.extern .shared .align 16 .b8 smem[];
.visible .entry smem_probe(.param .u64 smem_probe_out, .param .u32 smem_probe_off)
{
    .reg .b32 %r<12>;
    .reg .b64 %rd<6>;
    ld.param.u64 %rd1, [smem_probe_out];
    ld.param.u32 %r1, [smem_probe_off];
    mov.u32 %r2, %tid.x;
    mov.u32 %r3, %ntid.x;
    mov.u32 %r4, smem;
    add.s32 %r4, %r4, %r1;
    shl.b32 %r5, %r2, 2;
    add.s32 %r6, %r4, %r5;
    mul.lo.s32 %r7, %r2, 3;
    st.shared.u32 [%r6], %r7;
    bar.sync 0;
    sub.s32 %r8, %r3, %r2;
    sub.s32 %r8, %r8, 1;
    shl.b32 %r9, %r8, 2;
    add.s32 %r10, %r4, %r9;
    ld.shared.u32 %r11, [%r10];
    cvta.to.global.u64 %rd2, %rd1;
    mul.wide.u32 %rd3, %r2, 4;
    add.s64 %rd4, %rd2, %rd3;
    st.global.u32 [%rd4], %r11;
    ret;
}
"""

CHAIN_PTX = HEADER + binary_kernel("add_f32", "add") + binary_kernel("mul_f32", "mul") + SCALE_KERNEL + INC_KERNEL
VECADD_PTX = HEADER + binary_kernel("vecadd", "add")


def _blocks(n: int, block: int = 256) -> int:
    return max(1, (n + block - 1) // block)


def chain_executable(n: int, **kwargs) -> Executable:
    """out = (a + b) * c + a through two intermediates: three launches."""
    spec = BufferSpec((n,), np.float32)
    grid = _blocks(n)
    steps = [
        Launch("add_f32", grid, 256, (Input(0), Input(1), Temp(0), n)),
        Launch("mul_f32", grid, 256, (Temp(0), Input(2), Temp(1), n)),
        Launch("add_f32", grid, 256, (Temp(1), Input(0), Output(0), n)),
    ]
    return Executable(CHAIN_PTX, steps, [spec] * 3, [spec], [spec, spec], **kwargs)


def chain_numpy(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    return (a + b) * c + a


def _assembler_available() -> bool:
    try:
        cuda.compile_ptx(VECADD_PTX)
    except pg.DeviceError:
        return False
    return True


needs_assembler = pytest.mark.skipif(not _assembler_available(), reason="neither nvJitLink nor a CUDA driver")


# ---------------------------------------------------------------------------------------------------------------------
# Without a GPU
# ---------------------------------------------------------------------------------------------------------------------

MISSING = r"no CUDA driver found \(libcuda\.so\)|no NVIDIA GPU visible|cuda-python is not installed"


@no_gpu
def test_not_available_without_gpu():
    assert cuda.available() is False
    with pytest.raises(pg.DeviceError, match=MISSING):
        cuda.device()
    with pytest.raises(pg.DeviceError, match=MISSING):  # the failure is remembered and raised again
        cuda.device()


@no_gpu
@needs_assembler
def test_every_gpu_entry_point_raises_device_error():
    kernel = cuda.compile_ptx(VECADD_PTX).kernel("vecadd")
    exe = chain_executable(16)  # building and checking a launch list needs no GPU
    calls = {
        "stream": cuda.stream,
        "synchronize": cuda.synchronize,
        "DeviceBuffer": lambda: DeviceBuffer((3,), np.float32),
        "from_numpy": lambda: DeviceBuffer.from_numpy(np.zeros(3, np.float32)),
        "launch": lambda: cuda.launch(kernel, 1, 32, (0, 0, 0, 3)),
        "kernel handle": lambda: kernel.handle,
        "graph replay": lambda: cuda.Graph().replay(),
        "executable call": lambda: exe(),
        "time_ms": lambda: cuda.time_ms(lambda: None),
    }
    for name, call in calls.items():
        with pytest.raises(pg.DeviceError, match=MISSING):
            call()
            pytest.fail(f"{name} did not raise")


def test_no_gpu_message_in_a_fresh_process():
    """With CUDA_VISIBLE_DEVICES empty the runtime reports what is missing (on a GPU machine too)."""
    code = textwrap.dedent(
        """
        from picograd.runtime import cuda
        import picograd as pg
        print(cuda.available())
        try:
            cuda.DeviceBuffer((2,), "float32")
        except pg.DeviceError as e:
            print("DeviceError:", e)
        """
    )
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    first, second = run.stdout.splitlines()[:2]
    assert first == "False"
    assert second.startswith("DeviceError: CUDA is unavailable:")
    assert "no CUDA driver found (libcuda.so)" in second or "no NVIDIA GPU visible" in second


def test_importing_touches_no_cuda():
    code = "import sys; import picograd.runtime.cuda; print(any(m.startswith('cuda') for m in sys.modules))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "False"


# ---------------------------------------------------------------------------------------------------------------------
# PTX -> cubin (nvJitLink: no GPU needed)
# ---------------------------------------------------------------------------------------------------------------------


@needs_assembler
def test_compile_reference_vecadd():
    sys.path.insert(0, "/work/shared/reference/cuda")
    ptx = VECADD_PTX
    try:
        import vecadd  # the verified reference kernel, when this checkout sits beside it

        ptx = vecadd.PTX
    except ImportError:
        pass
    finally:
        sys.path.pop(0)
    module = cuda.compile_ptx(ptx)
    assert module.arch == "sm_90"
    assert module.cubin[:4] == b"\x7fELF"
    assert module.kernel_names == ("vecadd",)
    kernel = module.kernel("vecadd")
    assert 0 < kernel.num_regs <= 64
    assert kernel.local_size_bytes == 0
    assert kernel.shared_size_bytes == 0
    assert kernel.spill_store_bytes == 0
    assert [p.ptx_type for p in kernel.params] == ["u64", "u64", "u64", "u32"]
    assert "Used" in module.log and "registers" in module.log


@needs_assembler
def test_invalid_ptx_raises_compile_error_with_the_ptxas_log():
    bad = VECADD_PTX.replace("add.rn.f32", "addd.rn.f32")
    with pytest.raises(pg.CompileError) as info:
        cuda.compile_ptx(bad)
    message = str(info.value)
    assert "addd" in message and "line" in message  # ptxas's own error line
    assert "sm_90" in message
    assert info.value.log  # type: ignore[attr-defined]


@needs_assembler
def test_sm_90a_target_and_arch_override():
    ptx = HEADER.replace("sm_90", "sm_90a") + textwrap.dedent(
        """
        .visible .entry fence()
        {
            wgmma.fence.sync.aligned;
            ret;
        }
        """
    )
    assert cuda.target_arch(ptx) == "sm_90a"
    module = cuda.compile_ptx(ptx)
    assert module.arch == "sm_90a"
    assert module.kernel("fence").params == ()
    with pytest.raises(pg.CompileError, match="cannot be compiled for architecture 'sm_90'"):
        cuda.compile_ptx(ptx, arch="sm_90")
    with pytest.raises(ValueError):
        cuda.compile_ptx(ptx, arch="hopper")


@needs_assembler
def test_module_cache():
    cuda.clear_module_cache()
    first = cuda.compile_ptx(CHAIN_PTX)
    assert cuda.compile_ptx(CHAIN_PTX) is first
    assert cuda.module_cache_size() == 1
    other = cuda.compile_ptx(CHAIN_PTX, arch="sm_90a")  # same text, another arch: another module
    assert other is not first and other.arch == "sm_90a"
    assert cuda.module_cache_size() == 2
    assert first.kernel_names == ("add_f32", "mul_f32", "scale", "inc")
    with pytest.raises(KeyError, match="no kernel 'nope'"):
        first.kernel("nope")


@needs_assembler
def test_shared_memory_figures():
    module = cuda.compile_ptx(HEADER + SMEM_KERNEL)
    kernel = module.kernel("smem_probe")
    assert kernel.shared_size_bytes == 0  # dynamic shared memory is not static
    assert kernel.barriers == 1


def test_scalar_parameter_conversion():
    u32, f32, s64 = cuda.Param("n", "u32", 4), cuda.Param("s", "f32", 4), cuda.Param("k", "s64", 8)
    assert type(u32.convert(7)) is np.uint32
    assert type(u32.convert(np.int32(7))) is np.int32  # same width: passed as is
    assert type(f32.convert(0.5)) is np.float32 and type(f32.convert(2)) is np.float32
    assert type(s64.convert(-3)) is np.int64
    with pytest.raises(OverflowError):
        u32.convert(-1)
    with pytest.raises(OverflowError):
        u32.convert(2**32)
    with pytest.raises(TypeError, match="pass np.uint32"):
        u32.convert(np.int64(7))
    with pytest.raises(TypeError, match="float"):
        u32.convert(1.5)
    with pytest.raises(TypeError, match="pass np.float32"):
        f32.convert(np.float64(1.5))
    with pytest.raises(TypeError):
        f32.convert("1.5")


@needs_assembler
def test_launch_list_is_checked_without_a_gpu():
    spec = BufferSpec((8,), np.float32)

    def build(*steps, temps=()):
        return Executable(CHAIN_PTX, list(steps), [spec, spec], [spec], list(temps))

    build(Launch("add_f32", 1, 32, (Input(0), Input(1), Output(0), 8)))
    with pytest.raises(ValueError, match="no kernel 'sub_f32'"):
        build(Launch("sub_f32", 1, 32, (Input(0), Input(1), Output(0), 8)))
    with pytest.raises(TypeError, match="takes 4 arguments, got 3"):
        build(Launch("add_f32", 1, 32, (Input(0), Input(1), Output(0))))
    with pytest.raises(IndexError, match="out of range"):
        build(Launch("add_f32", 1, 32, (Input(0), Input(2), Output(0), 8)))
    with pytest.raises(IndexError, match="out of range"):
        build(Launch("add_f32", 1, 32, (Input(0), Input(1), Temp(0), 8)))
    with pytest.raises(TypeError, match="not a pointer"):
        build(Launch("add_f32", 1, 32, (Input(0), Input(1), Output(0), Input(0))))
    with pytest.raises(TypeError, match="float"):
        build(Launch("add_f32", 1, 32, (Input(0), Input(1), Output(0), 8.0)))
    with pytest.raises(ValueError, match="more than 1024 threads"):
        build(Launch("add_f32", 1, (64, 32), (Input(0), Input(1), Output(0), 8)))
    with pytest.raises(ValueError, match="grid"):
        build(Launch("add_f32", 0, 32, (Input(0), Input(1), Output(0), 8)))
    with pytest.raises(pg.ShapeError):
        build(Copy(Output(0), Temp(0)), temps=[BufferSpec((4,), np.float32)])
    build(Memset(Output(0)), Copy(Output(0), Input(1)))


# ---------------------------------------------------------------------------------------------------------------------
# With a GPU
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 257, 1_000_003])
@pytest.mark.gpu
@requires_gpu
def test_vecadd_launch_matches_numpy(n, rng):
    kernel = cuda.compile_ptx(VECADD_PTX).kernel("vecadd")
    a, b = rng.standard_normal(n, dtype=np.float32), rng.standard_normal(n, dtype=np.float32)
    da, db = DeviceBuffer.from_numpy(a), DeviceBuffer.from_numpy(b)
    dc = DeviceBuffer((n,), np.float32)
    cuda.launch(kernel, _blocks(n), 256, (da, db, dc, n))
    np.testing.assert_array_equal(dc.to_numpy(), a + b)


@pytest.mark.gpu
@requires_gpu
def test_ptxas_figures_match_the_driver():
    """ptxas -v's figures are what the driver reports for the loaded kernels. The figures come from the command-line
    ptxas: the linker's log is empty when the driver's JIT cache already holds the module (a test that compiled the
    same text earlier in this process or a previous one), and the kernel then reads them from the driver."""
    from picograd.target import ptxas

    if ptxas.find_ptxas() is None:
        pytest.skip("no ptxas executable")
    module = cuda.compile_ptx(CHAIN_PTX)
    figures = ptxas.assemble(CHAIN_PTX, module.arch, backend="ptxas").kernels
    for name in module.kernel_names:
        kernel = module.kernel(name)
        attributes = kernel.handle.attributes
        assert figures[name].registers == attributes.num_regs == kernel.num_regs, name
        assert figures[name].stack_frame == attributes.local_size_bytes == kernel.local_size_bytes, name
        assert figures[name].shared_bytes == attributes.shared_size_bytes == kernel.shared_size_bytes, name


@pytest.mark.gpu
@requires_gpu
def test_launch_argument_errors():
    kernel = cuda.compile_ptx(VECADD_PTX).kernel("vecadd")
    buf = DeviceBuffer((4,), np.float32)
    with pytest.raises(TypeError, match="takes 4 arguments"):
        cuda.launch(kernel, 1, 32, (buf, buf, buf))
    with pytest.raises(TypeError, match="not a pointer"):
        cuda.launch(kernel, 1, 32, (buf, buf, buf, buf))
    with pytest.raises(ValueError, match="1024"):
        cuda.launch(kernel, 1, 2048, (buf, buf, buf, 4))


@pytest.mark.parametrize(
    "shape, dtype",
    [((7, 13), np.float32), ((1001,), np.int64), ((3, 5, 7), np.bool_), ((0,), np.float32), ((), np.int64)],
)
@pytest.mark.gpu
@requires_gpu
def test_device_buffer_round_trip(shape, dtype, rng):
    if dtype is np.bool_:
        data = rng.random(shape) < 0.5
    elif dtype is np.int64:
        data = rng.integers(-(2**62), 2**62, size=shape, dtype=np.int64)
    else:
        data = rng.standard_normal(shape).astype(dtype)
    buf = DeviceBuffer.from_numpy(data)
    assert buf.shape == tuple(shape) and buf.dtype == np.dtype(dtype) and buf.nbytes == data.nbytes
    back = buf.to_numpy()
    assert back.dtype == data.dtype and back.shape == data.shape
    np.testing.assert_array_equal(back, data)
    other = DeviceBuffer(shape, dtype)
    other.copy_from(buf)
    np.testing.assert_array_equal(other.to_numpy(), data)
    other.fill_zero()
    np.testing.assert_array_equal(other.to_numpy(), np.zeros(shape, dtype))
    np.testing.assert_array_equal(buf.to_numpy(), data)  # the source is untouched
    with pytest.raises(pg.ShapeError):
        other.copy_from(np.zeros((2, 2), dtype))
    with pytest.raises(pg.DTypeError):
        other.copy_from(np.zeros(shape, np.float64))


@pytest.mark.gpu
@requires_gpu
def test_graph_replays_run_every_time():
    kernel = cuda.compile_ptx(CHAIN_PTX).kernel("inc")
    n = 1000
    x = DeviceBuffer.from_numpy(np.zeros(n, np.float32))
    graph = cuda.Graph()
    graph.launch(kernel, _blocks(n), 256, (x, n))
    graph.launch(kernel, _blocks(n), 256, (x, n))
    for _ in range(5):
        graph.replay()
    graph.synchronize()
    np.testing.assert_array_equal(x.to_numpy(), np.full(n, 10, np.float32))
    with pytest.raises(RuntimeError, match="already captured"):
        graph.launch(kernel, 1, 32, (x, n))


@pytest.mark.gpu
@requires_gpu
def test_executable_replays_one_graph_on_fixed_buffers(rng):
    n = 4099
    exe = chain_executable(n)
    a, b, c, out = (DeviceBuffer((n,), np.float32) for _ in range(4))
    for _ in range(100):
        ha, hb, hc = (rng.standard_normal(n, dtype=np.float32) for _ in range(3))
        a.copy_from(ha)
        b.copy_from(hb)
        c.copy_from(hc)
        (result,) = exe(a, b, c, out=(out,))
        assert result is out
        np.testing.assert_array_equal(out.to_numpy(), chain_numpy(ha, hb, hc))
    assert (exe.stats.calls, exe.stats.captures, exe.stats.updates) == (100, 1, 0)


@pytest.mark.gpu
@requires_gpu
def test_executable_rebinds_fresh_buffers(rng):
    """Fresh inputs and outputs every call, all kept alive so that every call has new addresses: graphs are
    re-pointed (cuGraphExecUpdate) and no replay writes through a stale address."""
    n = 1000
    exe = chain_executable(n, max_graphs=2)
    kept = []
    for _ in range(100):
        host = [rng.standard_normal(n, dtype=np.float32) for _ in range(3)]
        inputs = [DeviceBuffer.from_numpy(h) for h in host]
        (out,) = exe(*inputs)
        kept.append((host, inputs, out))
    for host, _, out in kept:
        np.testing.assert_array_equal(out.to_numpy(), chain_numpy(*host))
    assert exe.stats.captures == 2, exe.stats
    assert exe.stats.updates == 98, exe.stats


@pytest.mark.gpu
@requires_gpu
def test_executable_with_dropped_buffers(rng):
    """The usual eager pattern: results read and dropped; addresses come back from the pool."""
    n = 777
    exe = chain_executable(n)
    for _ in range(50):
        host = [rng.standard_normal(n, dtype=np.float32) for _ in range(3)]
        (out,) = exe(*(DeviceBuffer.from_numpy(h) for h in host))
        np.testing.assert_array_equal(out.to_numpy(), chain_numpy(*host))
    assert exe.stats.captures <= exe.max_graphs
    print("stats with dropped buffers:", exe.stats)


@pytest.mark.gpu
@requires_gpu
def test_executable_capture_after_and_plain_launches(rng):
    n = 513
    host = [rng.standard_normal(n, dtype=np.float32) for _ in range(3)]
    inputs = [DeviceBuffer.from_numpy(h) for h in host]
    out = DeviceBuffer((n,), np.float32)
    late = chain_executable(n, capture_after=2)
    for _ in range(3):
        out.fill_zero()
        late(*inputs, out=(out,))
        np.testing.assert_array_equal(out.to_numpy(), chain_numpy(*host))
    assert (late.stats.eager, late.stats.captures) == (1, 1)
    fresh = [late(*(DeviceBuffer.from_numpy(h) for h in host))[0] for _ in range(5)]  # new buffer sets: no captures
    assert late.stats.captures == 1
    for result in fresh:
        np.testing.assert_array_equal(result.to_numpy(), chain_numpy(*host))
    plain = chain_executable(n, use_graph=False)
    for _ in range(3):
        out.fill_zero()
        plain(*inputs, out=(out,))
        np.testing.assert_array_equal(out.to_numpy(), chain_numpy(*host))
    assert (plain.stats.eager, plain.stats.captures) == (3, 0)


@pytest.mark.gpu
@requires_gpu
def test_executable_scalars_memset_copy_and_in_place(rng):
    n = 300
    spec = BufferSpec((n,), np.float32)
    grid = _blocks(n)
    steps = [
        Launch("scale", grid, 256, (Input(0), Temp(0), 0.5, n)),  # a Python float baked in as an f32
        Launch("add_f32", grid, 256, (Temp(0), Input(0), Output(0), np.uint32(n))),
        Memset(Output(1)),
        Copy(Output(2), Input(0)),
    ]
    exe = Executable(CHAIN_PTX, steps, [spec], [spec, spec, spec], [spec])
    a = rng.standard_normal(n, dtype=np.float32)
    outs = tuple(DeviceBuffer.from_numpy(np.ones(n, np.float32)) for _ in range(3))
    for _ in range(2):
        exe(DeviceBuffer.from_numpy(a), out=outs)
    np.testing.assert_array_equal(outs[0].to_numpy(), a * np.float32(0.5) + a)
    np.testing.assert_array_equal(outs[1].to_numpy(), np.zeros(n, np.float32))
    np.testing.assert_array_equal(outs[2].to_numpy(), a)

    # in place: the output is the first input (x += y), three calls
    accumulate = Executable(
        CHAIN_PTX, [Launch("add_f32", grid, 256, (Input(0), Input(1), Output(0), n))], [spec, spec], [spec]
    )
    x0, y = rng.standard_normal(n, dtype=np.float32), rng.standard_normal(n, dtype=np.float32)
    x, dy = DeviceBuffer.from_numpy(x0), DeviceBuffer.from_numpy(y)
    for _ in range(3):
        accumulate(x, dy, out=(x,))
    np.testing.assert_array_equal(x.to_numpy(), ((x0 + y) + y) + y)
    assert accumulate.stats.captures == 1

    with pytest.raises(pg.ShapeError, match=r"\(299,\)"):
        exe(DeviceBuffer((299,), np.float32))
    with pytest.raises(pg.DTypeError, match="int32"):
        exe(DeviceBuffer((n,), np.int32))


@pytest.mark.gpu
@requires_gpu
def test_executable_views_of_a_temp(rng):
    """``View(slot, offset)``: the address ``offset`` bytes into a buffer (how launches of a kernel shared by several
    layers pass their views of the arena); an offset outside the buffer is refused when the executable is built."""
    n = 300
    spec = BufferSpec((n,), np.float32)
    grid = _blocks(n)
    arena = BufferSpec((3 * n,), np.float32)
    steps = [
        Launch("scale", grid, 256, (Input(0), View(Temp(0), 4 * n), 0.5, n)),
        Launch("add_f32", grid, 256, (View(Temp(0), 4 * n), Input(0), View(Temp(0), 8 * n), np.uint32(n))),
        Launch("add_f32", grid, 256, (View(Temp(0), 8 * n), View(Temp(0), 4 * n), Output(0), np.uint32(n))),
    ]
    exe = Executable(CHAIN_PTX, steps, [spec], [spec], [arena])
    a = rng.standard_normal(n, dtype=np.float32)
    for _ in range(2):
        (out,) = exe(DeviceBuffer.from_numpy(a))
        half = a * np.float32(0.5)
        np.testing.assert_array_equal(out.to_numpy(), (half + a) + half)
    with pytest.raises(ValueError, match="outside its buffer"):
        bad = Launch("scale", grid, 256, (Input(0), View(Temp(0), 12 * n), 0.5, n))
        Executable(CHAIN_PTX, [bad], [spec], [spec], [arena])


@pytest.mark.gpu
@requires_gpu
def test_dynamic_shared_memory_above_48k():
    kernel = cuda.compile_ptx(HEADER + SMEM_KERNEL).kernel("smem_probe")
    block, offset = 256, 150_000
    out = DeviceBuffer((block,), np.uint32)
    cuda.launch(kernel, 1, block, (out, offset), shmem=offset + 4 * block)
    expected = (block - 1 - np.arange(block, dtype=np.uint32)) * 3
    np.testing.assert_array_equal(out.to_numpy(), expected)


@pytest.mark.gpu
@requires_gpu
def test_event_timing_is_positive():
    n = 1 << 20
    kernel = cuda.compile_ptx(VECADD_PTX).kernel("vecadd")
    a, b, c = (DeviceBuffer.from_numpy(np.ones(n, np.float32)) for _ in range(3))
    launch_ms = cuda.time_ms(lambda: cuda.launch(kernel, _blocks(n), 256, (a, b, c, n)), warmup=2, iters=10)
    exe = chain_executable(n)
    out = DeviceBuffer((n,), np.float32)
    graph_ms = cuda.time_ms(lambda: exe(a, b, c, out=(out,)), warmup=2, iters=10)
    assert 0 < launch_ms < 1000
    assert 0 < graph_ms < 1000


@needs_assembler
def test_compiled_programs_hand_the_runtime_their_kernel_parameters(monkeypatch, rng):
    """A compiled program's kernel parameters come from the ``ptx`` dialect (``CudaProgram.params``), and the
    executable checks its launches against them without reading them back out of the PTX text."""
    from picograd.driver.gpu_compile import compile_for_cuda
    from picograd.frontend.realize import pending_module

    x = pg.tensor(rng.standard_normal((3, 5)).astype(np.float32))
    w = pg.tensor(rng.standard_normal((5, 4)).astype(np.float32))
    module, _ = pending_module([(x @ w).relu().sum(dim=1)])
    program = compile_for_cuda(module)
    assert program.params and set(program.params) == set(program.kernels)
    parsed = cuda.compile_ptx(program.ptx).kernel
    for name, params in program.params.items():
        assert params == parsed(name).params  # the IR and the text agree
        assert all(p.is_pointer_sized for p in params)
    cuda.clear_module_cache()

    def no_text_parsing(ptx: str) -> None:
        raise AssertionError("the runtime parsed kernel parameters out of the PTX text")

    monkeypatch.setattr(cuda, "_parse_entries", no_text_parsing)
    exe = program.executable()
    assert {k: exe.module.kernel(k).params for k in program.params} == program.params
    cuda.clear_module_cache()
