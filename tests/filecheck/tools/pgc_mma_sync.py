# Issue 14's done-when: a bf16 nn.Linear(1024, 1024) on a (1024, 1024) batch, compiled with pgc --emit=ptx, holds
# mma.sync kernels under the default auto schedule (its forward matmul: 2^30 multiply-adds of bf16; 64x64 tiles,
# since 64 tiles of 128x128 would leave SMs idle), fed by
# ldmatrix from cp.async stages, and assembles for sm_90 without spills.
# RUN: pgc %s --emit=kernels | filecheck %s --check-prefix=KERNELS
# RUN: pgc %s --emit=ptx -o %t.ptx
# RUN: %python -m picograd.target.ptxas %t.ptx --arch sm_90 | filecheck %s --check-prefix=ASM
# RUN: filecheck %s --check-prefix=PTX < %t.ptx

# KERNELS: kernel.fused @{{.*}} "matmul"
# KERNELS-SAME: schedule = #kernel.schedule<"mma-sync", tile = [64, 64, 32], threads = 128, warps = [2, 2], lanes = [8, 4], reps = [2, 4], vec = [2, 2], vector, async_copy, stages = 3>

# ASM: [{{ptxas|nvjitlink}}] sm_90: {{.*}}_matmul: {{[0-9]+}} registers, 0 spill bytes, 24576 bytes smem

# PTX: .target sm_90
# PTX: cp.async.cg.shared.global
# PTX: ldmatrix.sync.aligned.m8n8.x4{{(.trans)?}}.shared.b16
# PTX: mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32

import picograd as pg

layer = pg.nn.Linear(1024, 1024).to(pg.bfloat16)


@pg.compile(example_inputs=(pg.Spec((1024, 1024), "bfloat16"),))
def forward(x):
    return layer(x)
