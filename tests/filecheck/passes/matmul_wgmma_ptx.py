# The PTX of the wgmma and wgmma-ws matmul schedules (picograd/passes/kinds/matmul_wgmma.py) for the loop-stage
# bf16 matmul of matmul_wgmma.mlir beside this file (A 200x64, Bt 320x64, f32 out), compiled with
# compile_for_cuda for sm_90a and assembled by ptxas without spills (-Werror).
# RUN: %python %s %S/matmul_wgmma.mlir wgmma | filecheck %s --check-prefixes=PTX,WG,WG-PTXAS
# RUN: %python %s %S/matmul_wgmma.mlir wgmma-ws | filecheck %s --check-prefixes=PTX,WS,WS-PTXAS

import sys

from xdsl.dialects import memref, scf
from xdsl.parser import Parser

from picograd.dialects import make_context
from picograd.driver.gpu_compile import compile_for_cuda

ctx = make_context()
ctx.load_dialect(scf.Scf)
ctx.load_dialect(memref.MemRef)
module = Parser(ctx, open(sys.argv[1], encoding="utf-8").read()).parse_module()
program = compile_for_cuda(module, arch="sm_90a", matmul_schedule=sys.argv[2])
print(program.ptx)
info = program.assemble(strict=True).kernels["k0_matmul"]
print(f"ptxas: {info.registers} registers, {info.spill_stores} spill bytes, {info.stack_frame} bytes stack")
for step in program.steps:
    print(f"launch: grid {step.grid}, block {step.block}, {step.shmem} bytes of dynamic shared memory")
    for arg in step.args:
        print(f"  {arg}")

# The kernel takes the tensor maps of A and Bt by value, then the three buffers; the stages live in dynamic shared
# memory (aligned to 1024 bytes at run time), the mbarriers in static shared memory.
# PTX:       .target sm_90a
# PTX:       .extern .shared .align 1024 .b8 wgmma_smem[];
# PTX:       .visible .entry k0_matmul(
# PTX-NEXT:  .param .align 64 .b8 k0_matmul_param_0[128],
# PTX-NEXT:  .param .align 64 .b8 k0_matmul_param_1[128],
# PTX-NEXT:  .param .u64 k0_matmul_param_2,
# PTX-NEXT:  .param .u64 k0_matmul_param_3,
# PTX-NEXT:  .param .u64 k0_matmul_param_4
# WG:        .maxntid 256, 1, 1
# WS:        .maxntid 384, 1, 1
# PTX:       mov.u64 [[MAPA:%rd[0-9]+]], k0_matmul_param_0;
# PTX-NEXT:  cvta.param.u64 [[GMAPA:%rd[0-9]+]], [[MAPA]];
# PTX:       ld.param.u64 {{%rd[0-9]+}}, [k0_matmul_param_4];
# PTX:       mbarrier.init.shared::cta.b64
# PTX:       fence.proxy.async.shared::cta;
# PTX:       bar.sync 0;
# Warp specialisation over a persistent grid: warpgroup 0 gives up registers and produces; the consumers take
# them.
# WS:        mov.u32 {{%r[0-9]+}}, %nctaid.x;
# WS:        setmaxnreg.dec.sync.aligned.u32 40;
# Each stage: the bytes announced, then the two TMA boxes (64 elements of K by the tile's rows).
# PTX:       mbarrier.arrive.expect_tx.shared::cta.b64 {{%rd[0-9]+}}, [{{%r[0-9]+}}], [[BYTES:[0-9]+]];
# PTX:       cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [{{%r[0-9]+}}], [[[GMAPA]], {{{%r[0-9]+}}, {{%r[0-9]+}}}], [{{%r[0-9]+}}];
# WS:        setmaxnreg.inc.sync.aligned.u32 232;
# PTX:       mbarrier.try_wait.parity.shared::cta.b64
# PTX:       wgmma.fence.sync.aligned;
# WG:        wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {{{(%f[0-9]+, ){63}%f[0-9]+}}}, {{%rd[0-9]+}}, {{%rd[0-9]+}}, {{%p[0-9]+}}, 1, 1, 0, 0;
# WS:        wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 {{{(%f[0-9]+, ){127}%f[0-9]+}}}, {{%rd[0-9]+}}, {{%rd[0-9]+}}, {{%p[0-9]+}}, 1, 1, 0, 0;
# PTX:       wgmma.commit_group.sync.aligned;
# WG-NEXT:   wgmma.wait_group.sync.aligned 0;
# WS-NEXT:   wgmma.wait_group.sync.aligned 1;
# The consumers free the stage (wgmma: a block barrier; ws: with one group left in flight, one arrival per warpgroup
# on the empty mbarrier of the previous K tile's stage).
# WG-NEXT:   bar.sync 0;
# WS:        mbarrier.arrive.shared::cta.b64
# The epilogue stores pairs of f32 columns where they fall inside C.
# PTX:       @{{%p[0-9]+}} st.global.v2.f32 [{{%rd[0-9]+}}], {{{%f[0-9]+}}, {{%f[0-9]+}}};
# WG-PTXAS: ptxas: {{[0-9]+}} registers, 0 spill bytes, 0 bytes stack
# WS-PTXAS: ptxas: {{[0-9]+}} registers, 0 spill bytes, 0 bytes stack
# The launch: the tensor maps of A and Bt (64 elements of K by the tile's rows, 128-byte swizzle), then the buffers.
# WG: launch: grid (3, 2, 1), block (256, 1, 1), 132096 bytes of dynamic shared memory
# WS: launch: grid (4, 1, 1), block (384, 1, 1), 197632 bytes of dynamic shared memory
# PTX-NEXT: TensorMap(slot=Input(index=0), dtype='bf16', shape=(64, 200), strides=(128,), box=(64, 128), swizzle=128, offset=0)
# WG-NEXT:  TensorMap(slot=Input(index=1), dtype='bf16', shape=(64, 320), strides=(128,), box=(64, 128), swizzle=128, offset=0)
# WS-NEXT:  TensorMap(slot=Input(index=1), dtype='bf16', shape=(64, 320), strides=(128,), box=(64, 256), swizzle=128, offset=0)
# PTX-NEXT: Input(index=0)
# PTX-NEXT: Input(index=1)
# PTX-NEXT: Output(index=0)
