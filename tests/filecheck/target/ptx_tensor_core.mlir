// Tensor-core, TMA and mbarrier instructions: custom syntax round trip (fragments as {...} groups; modifiers with
// '::' quoted), the PTX they print, and ptxas -arch=sm_90a accepting it without spills.
// RUN: pgc-opt %s | pgc-opt | filecheck %s --check-prefix=MLIR
// RUN: pgc-opt %s --print-op-generic | pgc-opt | filecheck %s --check-prefix=MLIR
// RUN: %python -m picograd.target.ptx_printer %s | filecheck %s
// RUN: %python -m picograd.target.ptx_printer %s -o %t.ptx
// RUN: %python -m picograd.target.ptxas %t.ptx --arch sm_90a --strict | filecheck %s --check-prefix=PTXAS
// PTXAS: sm_90a: tc: {{[0-9]+}} registers, 0 spill bytes, 8192 bytes smem

ptx.module version "8.0" target "sm_90a" address_size 64 {
  ptx.func @tc(%out: !ptx.param<u64>, %map: !ptx.param<u64>) maxntid = [128, 1, 1] {
    ptx.shared @tile[8192] align 1024
    %o = ptx.ld_param u64 %out : (!ptx.param<u64>) -> !ptx.u64
    %tm = ptx.ld_param u64 %map : (!ptx.param<u64>) -> !ptx.u64
    %s = ptx.shared_addr u32 @tile : () -> !ptx.u32
    // MLIR: ptx.mbarrier_init "shared::cta.b64" [%{{.*}}], 1 : (!ptx.u32) -> ()
    // CHECK: mbarrier.init.shared::cta.b64 [%r1], 1;
    ptx.mbarrier_init "shared::cta.b64" [%s], 1 : (!ptx.u32) -> ()
    // MLIR: ptx.fence_proxy_async "shared::cta"
    // CHECK: fence.proxy.async.shared::cta;
    ptx.fence_proxy_async "shared::cta"
    // CHECK: mbarrier.arrive.expect_tx.shared::cta.b64 {{.*}}%rd3, [%r1], 8192;
    %st = ptx.mbarrier_arrive "expect_tx.shared::cta.b64" [%s], 8192 : (!ptx.u32) -> !ptx.b64
    %z = ptx.mov s32 0 : () -> !ptx.s32
    // MLIR: ptx.cp_async_bulk_tensor "2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes" [%{{.*}}], [%{{.*}}, {%{{.*}}, %{{.*}}}], [%{{.*}}]
    // CHECK: cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes {{.*}}[%r1], [%rd2, {%r2, %r2}], [%r1];
    ptx.cp_async_bulk_tensor "2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes" [%s], [%tm, {%z, %z}], [%s] : (!ptx.u32, !ptx.u64, !ptx.s32, !ptx.s32, !ptx.u32) -> ()
    %par = ptx.mov u32 0 : () -> !ptx.u32
    // CHECK: mbarrier.try_wait.parity.shared::cta.b64 {{.*}}%p1, [%r1], %r3;
    %done = ptx.mbarrier_try_wait "parity.shared::cta.b64" [%s], %par : (!ptx.u32, !ptx.u32) -> !ptx.pred
    // MLIR: ptx.ldmatrix sync.aligned.m8n8.x4.shared.b16 [%{{.*}}] : (!ptx.u32) -> (!ptx.b32, !ptx.b32, !ptx.b32, !ptx.b32)
    // CHECK: ldmatrix.sync.aligned.m8n8.x4.shared.b16 {{.*}}{%r4, %r5, %r6, %r7}, [%r1];
    %a0, %a1, %a2, %a3 = ptx.ldmatrix sync.aligned.m8n8.x4.shared.b16 [%s] : (!ptx.u32) -> (!ptx.b32, !ptx.b32, !ptx.b32, !ptx.b32)
    // CHECK: ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {{.*}}{%r8, %r9}, [%r1+512];
    %b0, %b1 = ptx.ldmatrix sync.aligned.m8n8.x2.trans.shared.b16 [%s + 512] : (!ptx.u32) -> (!ptx.b32, !ptx.b32)
    %c = ptx.mov f32 0.0 : () -> !ptx.f32
    // MLIR: ptx.mma_sync sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}}, {%{{.*}}, %{{.*}}}, {%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}}
    // CHECK: mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {{.*}}{%f2, %f3, %f4, %f5}, {%r4, %r5, %r6, %r7}, {%r8, %r9}, {%f1, %f1, %f1, %f1};
    %d0, %d1, %d2, %d3 = ptx.mma_sync sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%a0, %a1, %a2, %a3}, {%b0, %b1}, {%c, %c, %c, %c} : (!ptx.b32, !ptx.b32, !ptx.b32, !ptx.b32, !ptx.b32, !ptx.b32, !ptx.f32, !ptx.f32, !ptx.f32, !ptx.f32) -> (!ptx.f32, !ptx.f32, !ptx.f32, !ptx.f32)
    // CHECK: mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {{.*}}{%f6, %f7, %f8, %f9}, {%r4, %r5, %r6, %r7}, {%r8, %r9}, {%f2, %f3, %f4, %f5};
    %e0, %e1, %e2, %e3 = ptx.mma_sync sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%a0, %a1, %a2, %a3}, {%b0, %b1}, {%d0, %d1, %d2, %d3} : (!ptx.b32, !ptx.b32, !ptx.b32, !ptx.b32, !ptx.b32, !ptx.b32, !ptx.f32, !ptx.f32, !ptx.f32, !ptx.f32) -> (!ptx.f32, !ptx.f32, !ptx.f32, !ptx.f32)
    // CHECK: stmatrix.sync.aligned.m8n8.x2.shared.b16 {{.*}}[%r1+1024], {%r4, %r5};
    ptx.stmatrix sync.aligned.m8n8.x2.shared.b16 [%s + 1024], {%a0, %a1} : (!ptx.u32, !ptx.b32, !ptx.b32) -> ()
    // a 128-byte-swizzled descriptor: start 0, leading byte offset 16, stride 1024 (ptx.wgmma_descriptor(0, 16, 1024))
    %desc = ptx.mov b64 4611686293305360384 : () -> !ptx.b64
    %acc0 = ptx.mov f32 0.0 : () -> !ptx.f32
    %acc1 = ptx.mov f32 0.0 : () -> !ptx.f32
    %acc2 = ptx.mov f32 0.0 : () -> !ptx.f32
    %acc3 = ptx.mov f32 0.0 : () -> !ptx.f32
    // CHECK: wgmma.fence.sync.aligned;
    ptx.wgmma_fence
    // MLIR: ptx.wgmma_mma_async sync.aligned.m64n8k16.f32.bf16.bf16 {%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}}, %{{.*}}, %{{.*}}, %{{.*}}, 1, 1, 0, 0
    // CHECK: wgmma.mma_async.sync.aligned.m64n8k16.f32.bf16.bf16 {{.*}}{%f10, %f11, %f12, %f13}, %rd4, %rd4, %p1, 1, 1, 0, 0;
    ptx.wgmma_mma_async sync.aligned.m64n8k16.f32.bf16.bf16 {%acc0, %acc1, %acc2, %acc3}, %desc, %desc, %done, 1, 1, 0, 0 : (!ptx.f32, !ptx.f32, !ptx.f32, !ptx.f32, !ptx.b64, !ptx.b64, !ptx.pred) -> ()
    // CHECK: wgmma.commit_group.sync.aligned;
    ptx.wgmma_commit_group
    // CHECK: wgmma.wait_group.sync.aligned {{.*}}0;
    ptx.wgmma_wait_group 0
    // A from registers: two f32 rounded to bf16 and packed (the upper half first), as the A fragment of a wgmma
    // MLIR: ptx.cvt_pair rn.bf16x2.f32 %{{.*}}, %{{.*}} : (!ptx.f32, !ptx.f32) -> !ptx.b32
    // CHECK: cvt.rn.bf16x2.f32 {{.*}}[[PK:%r[0-9]+]], %f11, %f10;
    %pk = ptx.cvt_pair rn.bf16x2.f32 %acc1, %acc0 : (!ptx.f32, !ptx.f32) -> !ptx.b32
    ptx.wgmma_fence
    // MLIR: ptx.wgmma_mma_async_rs sync.aligned.m64n8k16.f32.bf16.bf16 {%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}}, {%[[P:.*]], %[[P]], %[[P]], %[[P]]}, %{{.*}}, %{{.*}}, 1, 1, 1
    // CHECK: wgmma.mma_async.sync.aligned.m64n8k16.f32.bf16.bf16 {{.*}}{%f10, %f11, %f12, %f13}, {[[PK]], [[PK]], [[PK]], [[PK]]}, %rd4, %p1, 1, 1, 1;
    ptx.wgmma_mma_async_rs sync.aligned.m64n8k16.f32.bf16.bf16 {%acc0, %acc1, %acc2, %acc3}, {%pk, %pk, %pk, %pk}, %desc, %done, 1, 1, 1 : (!ptx.f32, !ptx.f32, !ptx.f32, !ptx.f32, !ptx.b32, !ptx.b32, !ptx.b32, !ptx.b32, !ptx.b64, !ptx.pred) -> ()
    ptx.wgmma_commit_group
    ptx.wgmma_wait_group 0
    // CHECK: setmaxnreg.inc.sync.aligned.u32 {{.*}}232;
    ptx.setmaxnreg inc.sync.aligned.u32 232
    %g = ptx.cvta to.global.u64 %o : (!ptx.u64) -> !ptx.u64
    ptx.st global.v4.f32 [%g], {%acc0, %acc1, %acc2, %acc3} : (!ptx.u64, !ptx.f32, !ptx.f32, !ptx.f32, !ptx.f32) -> ()
    ptx.st global.v4.f32 [%g + 16], {%e0, %e1, %e2, %e3} : (!ptx.u64, !ptx.f32, !ptx.f32, !ptx.f32, !ptx.f32) -> ()
    ptx.ret
  }
}
