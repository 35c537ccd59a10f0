// Verifier errors of the tensor-core, TMA and mbarrier ops of the ptx dialect, one per chunk of --split-input-file.
// RUN: pgc-opt %s --verify-diagnostics --split-input-file | filecheck %s

// wgmma is sm_90a only (arch-specific: not on sm_90, nor on later targets).
// CHECK: ptx.wgmma_fence: wgmma.fence.sync.aligned needs target sm_90a and PTX 8.0 or later; the module is sm_90, PTX 8.0
ptx.module version "8.0" target "sm_90" address_size 64 {
  ptx.func @k() {
    ptx.wgmma_fence
    ptx.ret
  }
}

// -----

// mbarrier.init needs sm_80.
// CHECK: ptx.mbarrier_init: mbarrier.init.shared::cta.b64 needs target sm_80 and PTX 7.8 or later; the module is sm_75, PTX 8.0
ptx.module version "8.0" target "sm_75" address_size 64 {
  ptx.func @k() {
    %s = ptx.mov u32 0 : () -> !ptx.u32
    ptx.mbarrier_init "shared::cta.b64" [%s], 1 : (!ptx.u32) -> ()
    ptx.ret
  }
}

// -----

// mma.sync fragment sizes come from the MMA_SHAPES table: m16n8k16 bf16 takes 4 A registers.
// CHECK: ptx.mma_sync: A needs 4 registers, got 2
ptx.module version "8.0" target "sm_90" address_size 64 {
  ptx.func @k() {
    %a = ptx.mov b32 0 : () -> !ptx.b32
    %c = ptx.mov f32 0.0 : () -> !ptx.f32
    %d0, %d1, %d2, %d3 = ptx.mma_sync sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%a, %a}, {%a, %a}, {%c, %c, %c, %c} : (!ptx.b32, !ptx.b32, !ptx.b32, !ptx.b32, !ptx.f32, !ptx.f32, !ptx.f32, !ptx.f32) -> (!ptx.f32, !ptx.f32, !ptx.f32, !ptx.f32)
    ptx.ret
  }
}

// -----

// tf32 has no m16n8k16 shape.
// CHECK: ptx.mma_sync: no mma.sync of shape .m16n8k16 on .tf32
ptx.module version "8.0" target "sm_90" address_size 64 {
  ptx.func @k() {
    %a = ptx.mov b32 0 : () -> !ptx.b32
    %c = ptx.mov f32 0.0 : () -> !ptx.f32
    %d0, %d1, %d2, %d3 = ptx.mma_sync sync.aligned.m16n8k16.row.col.f32.tf32.tf32.f32 {%a, %a, %a, %a}, {%a, %a}, {%c, %c, %c, %c} : (!ptx.b32, !ptx.b32, !ptx.b32, !ptx.b32, !ptx.b32, !ptx.b32, !ptx.f32, !ptx.f32, !ptx.f32, !ptx.f32) -> (!ptx.f32, !ptx.f32, !ptx.f32, !ptx.f32)
    ptx.ret
  }
}

// -----

// m64nNk16 holds N/2 f32 accumulators per thread.
// CHECK: ptx.wgmma_mma_async: the accumulator needs 8 registers, got 4
ptx.module version "8.0" target "sm_90a" address_size 64 {
  ptx.func @k() {
    %c = ptx.mov f32 0.0 : () -> !ptx.f32
    %d = ptx.mov b64 0 : () -> !ptx.b64
    %z = ptx.mov u32 0 : () -> !ptx.u32
    %p = ptx.setp eq.u32 %z, %z : (!ptx.u32, !ptx.u32) -> !ptx.pred
    ptx.wgmma_mma_async sync.aligned.m64n16k16.f32.bf16.bf16 {%c, %c, %c, %c}, %d, %d, %p, 1, 1, 0, 0 : (!ptx.f32, !ptx.f32, !ptx.f32, !ptx.f32, !ptx.b64, !ptx.b64, !ptx.pred) -> ()
    ptx.ret
  }
}

// -----

// CHECK: ptx.setmaxnreg: the register count must be a multiple of 8 in 24..256, got 300
ptx.module version "8.0" target "sm_90a" address_size 64 {
  ptx.func @k() {
    ptx.setmaxnreg inc.sync.aligned.u32 300
    ptx.ret
  }
}
