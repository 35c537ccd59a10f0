"""The ``wgmma`` and ``wgmma-ws`` matmul kernels (``picograd/passes/kinds/matmul_wgmma.py``).

Each kernel is assembled with ``ptxas -arch=sm_90a --warn-on-spills -Werror`` at 4096^3 (its SASS must hold
``HGMMA`` and no local memory, and the warp-specialised one ``USETMAXREG``), and run on the PTX emulator on small
shapes with a test-only tile (one consumer warpgroup, 64 columns, 2 stages, so that the stage ring wraps) against
numpy float64. Inputs are bf16; accumulation is f32. Tolerance (``test_tensor_core_ptx.assert_close``):
``|C - C64| <= K * 2**-23 * (|A| @ |B|)``; a bf16 output adds half an ulp of bf16, ``2**-8 |C64|``.
"""

from __future__ import annotations

import numpy as np
import pytest
from _ptx_emulator import Emulator, TensorMap, bf16_to_f32
from test_tensor_core_ptx import assert_close, random_bf16

from picograd.dialects import ptx
from picograd.passes.kinds import matmul_wgmma as wg
from picograd.target import ptxas
from picograd.target.ptx_printer import print_ptx

#: Test-only tiles: the smallest each schedule allows (a warpgroup is 128 threads; the emulator runs ~1e5
#: instructions a second).
TEST_SCHEDULES = {
    "wgmma": wg.WgmmaSchedule("wgmma", consumers=1, bn=64, stages=2),
    "wgmma-ws": wg.WgmmaSchedule("wgmma-ws", consumers=1, bn=64, stages=2, specialised=True),
}


def module_of(s: wg.WgmmaSchedule, p: wg.Problem) -> tuple[ptx.ModuleOp, ptx.FuncOp]:
    module = ptx.ModuleOp(target="sm_90a")
    module.add_op(wg.dynamic_shared())
    func = wg.build_kernel(s, p, "mm")
    module.add_op(func)
    module.verify()
    return module, func


def run(s: wg.WgmmaSchedule, p: wg.Problem, rng: np.random.Generator) -> None:
    module, func = module_of(s, p)
    ptxas.assemble(print_ptx(module), "sm_90a", strict=True)
    a_bits, a = random_bf16(rng, (p.batch, p.m, p.k))
    b_bits, bt = random_bf16(rng, (p.batch, p.n, p.k))
    emu = Emulator(module)
    maps, pointers = [], []
    for array, spec in zip((a_bits, b_bits), wg.tensor_maps(func).values(), strict=True):
        addr = emu.heap.alloc(array.nbytes)
        emu.heap.put(addr, array)
        pointers.append(addr)
        tmap = TensorMap(addr, np.dtype(np.uint16), spec.shape, spec.strides, spec.box, spec.swizzle)
        maps.append(emu.tensor_map(tmap))
    esize = 4 if p.out_dtype == "f32" else 2
    pc = emu.heap.alloc(p.batch * p.m * p.n * esize, 0xFF)
    # a persistent grid of 3 blocks: each takes several tiles
    emu.launch("mm", wg.grid(s, p, sms=3), (s.threads,), [*maps, *pointers, pc], shmem=s.shared_bytes)
    shape = (p.batch, p.m, p.n)
    if p.out_dtype == "f32":
        c = emu.heap.get(pc, shape, np.dtype(np.float32)).astype(np.float64)
    else:
        c = bf16_to_f32(emu.heap.get(pc, shape, np.dtype(np.uint16))).astype(np.float64)
    for i in range(p.batch):
        if p.out_dtype == "f32":
            assert_close(c[i], a[i], bt[i].T)
        else:
            ref = a[i] @ bt[i].T
            bound = 2.0**-8 * np.abs(ref) + p.k * 2.0**-23 * (np.abs(a[i]) @ np.abs(bt[i]).T)
            err = np.abs(c[i] - ref)
            assert np.all(err <= bound), f"max error {err.max()}"


#: 128x128x64 (2x2 tiles, one K tile), and an edge: ragged M, N and K (zero-filled by TMA), 3 K tiles over 2
#: stages, a batch of 2, bf16 output (odd N: scalar stores).
CASES = [wg.Problem(128, 128, 64), wg.Problem(70, 37, 136, batch=2, out_dtype="bf16")]


@pytest.mark.parametrize("problem", CASES, ids=["128x128x64", "edge"])
@pytest.mark.parametrize("name", list(TEST_SCHEDULES))
def test_wgmma_kernel_on_the_emulator(name: str, problem: wg.Problem, rng: np.random.Generator) -> None:
    run(TEST_SCHEDULES[name], problem, rng)


@pytest.mark.parametrize("name", list(wg.SCHEDULES))
def test_wgmma_kernel_assembles_at_4096_with_hgmma_and_no_local_memory(name: str) -> None:
    s = wg.SCHEDULES[name]
    module, _ = module_of(s, wg.Problem(4096, 4096, 4096, out_dtype="bf16"))
    result = ptxas.assemble(print_ptx(module), "sm_90a", strict=True)
    info = result.kernels["mm"]
    assert info.spill_stores == 0 and info.stack_frame == 0
    if ptxas.find_cuobjdump() is None:
        pytest.skip("cuobjdump not installed (pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm)")
    sass = ptxas.dump_sass(result.cubin)
    assert f"HGMMA.64x{s.bn}x16.F32.BF16" in sass
    assert "UTMALDG" in sass and "SYNCS" in sass
    assert not any(op in sass for op in ("LDL", "STL")), "local-memory traffic in the wgmma kernel"
    assert ("USETMAXREG" in sass) == s.specialised  # setmaxnreg honoured (not dropped with warning C7508)


def test_wgmma_kernel_refuses_what_it_cannot_compute() -> None:
    s = wg.SCHEDULES["wgmma"]
    with pytest.raises(ValueError, match="wgmma schedule cannot compute a 64x64x60 matmul: K = 60"):
        wg.build_kernel(s, wg.Problem(64, 64, 60), "mm")
    with pytest.raises(ValueError, match="inputs of f32"):
        wg.build_kernel(s, wg.Problem(64, 64, 64, dtype="f32"), "mm")
    with pytest.raises(ValueError, match="bn=12"):
        wg.build_kernel(wg.WgmmaSchedule("wgmma", 1, 12, 2), wg.Problem(64, 64, 64), "mm")
