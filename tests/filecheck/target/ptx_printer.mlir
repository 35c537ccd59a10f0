// The PTX printer: header, .file table, parameters, register declarations, hex float immediates, guards, vector
// memory operands, labels and .loc lines from op locations.
// RUN: %python -m picograd.target.ptx_printer %s | filecheck %s
// Locations survive a round trip through pgc-opt (--print-debuginfo) and still give the same .loc lines.
// RUN: pgc-opt %s --print-debuginfo | %python -m picograd.target.ptx_printer - | filecheck %s
// What it prints assembles (ptxas, else nvJitLink; no assembler is an error).
// RUN: %python -m picograd.target.ptx_printer %s -o %t.ptx
// RUN: %python -m picograd.target.ptxas %t.ptx --arch sm_90 | filecheck %s --check-prefix=PTXAS
// PTXAS: sm_90: scale: {{[0-9]+}} registers, 0 spill bytes, {{[0-9]+}} bytes smem

ptx.module version "8.0" target "sm_90" address_size 64 {
  ptx.file 1 "model.py"
  ptx.shared @tile[1024] align 16
  ptx.func @scale(%x: !ptx.param<u64>, %n: !ptx.param<u32>, %alpha: !ptx.param<f32>) maxntid = [128, 1, 1] {
    %p = ptx.ld_param u64 %x : (!ptx.param<u64>) -> !ptx.u64 loc("model.py":10:4)
    %n32 = ptx.ld_param u32 %n : (!ptx.param<u32>) -> !ptx.u32 loc("model.py":10:4)
    %a = ptx.ld_param f32 %alpha : (!ptx.param<f32>) -> !ptx.f32 loc("model.py":11:0)
    %tid = ptx.sreg tid.x : () -> !ptx.u32
    %out = ptx.setp ge.u32 %tid, %n32 : (!ptx.u32, !ptx.u32) -> !ptx.pred
    ptx.bra "$L__done" if %out : (!ptx.pred) -> ()
    %g = ptx.cvta to.global.u64 %p : (!ptx.u64) -> !ptx.u64
    %c16 = ptx.mov u32 16 : () -> !ptx.u32
    %off = ptx.mul wide.u32 %tid, %c16 : (!ptx.u32, !ptx.u32) -> !ptx.u64
    %addr = ptx.add s64 %g, %off : (!ptx.u64, !ptx.u64) -> !ptx.s64
    %v:4 = ptx.ld global.v4.f32 [%addr] : (!ptx.s64) -> (!ptx.f32, !ptx.f32, !ptx.f32, !ptx.f32) loc("layers.py":3:8)
    %half = ptx.mov f32 0.5 : () -> !ptx.f32 loc("model.py":12:2)
    %d = ptx.mov f64 -2.0 : () -> !ptx.f64
    %y0 = ptx.fma rn.f32 %v#0, %a, %half : (!ptx.f32, !ptx.f32, !ptx.f32) -> !ptx.f32 loc("model.py":12:2)
    %y1 = ptx.mul rn.f32 %v#1, %a : (!ptx.f32, !ptx.f32) -> !ptx.f32 loc("model.py":13:2)
    %s = ptx.shared_addr u32 @tile : () -> !ptx.u32
    ptx.st shared.f32 [%s - 0], %y1 : (!ptx.u32, !ptx.f32) -> ()
    ptx.st global.v2.f32 [%addr + 8], {%y0, %y1} if not %out : (!ptx.s64, !ptx.f32, !ptx.f32, !ptx.pred) -> ()
    ptx.bar_sync 0
    %w = ptx.ld shared.f32 [%s + 4] : (!ptx.u32) -> !ptx.f32
    %w2 = ptx.ld global.f32 [%addr - 8] : (!ptx.s64) -> !ptx.f32
    %w3 = ptx.add f32 %w, %w2 : (!ptx.f32, !ptx.f32) -> !ptx.f32
    ptx.st global.f32 [%addr], %w3 : (!ptx.s64, !ptx.f32) -> ()
    ptx.label "$L__done"
    ptx.ret
  }
}

// CHECK:      .version 8.0
// CHECK-NEXT: .target sm_90
// CHECK-NEXT: .address_size 64
// CHECK-EMPTY:
// The module's table first, then files that only op locations name.
// CHECK-NEXT: .file 1 "model.py"
// CHECK-NEXT: .file 2 "layers.py"
// CHECK-EMPTY:
// CHECK-NEXT: .shared .align 16 .b8 tile[1024];
// CHECK-EMPTY:
// CHECK-NEXT: .visible .entry scale(
// CHECK-NEXT:   .param .u64 scale_param_0,
// CHECK-NEXT:   .param .u32 scale_param_1,
// CHECK-NEXT:   .param .f32 scale_param_2
// CHECK-NEXT: )
// CHECK-NEXT: .maxntid 128, 1, 1
// CHECK-NEXT: {
// CHECK-NEXT:   .reg .pred %p<2>;
// CHECK-NEXT:   .reg .b32 %r<5>;
// CHECK-NEXT:   .reg .b64 %rd<5>;
// CHECK-NEXT:   .reg .f32 %f<12>;
// CHECK-NEXT:   .reg .f64 %fd<2>;
// CHECK-EMPTY:
// CHECK-NEXT:   .loc 1 10 4
// CHECK-NEXT:   ld.param.u64 %rd1, [scale_param_0];
// CHECK-NEXT:   ld.param.u32 %r1, [scale_param_1];
// CHECK-NEXT:   .loc 1 11 0
// CHECK-NEXT:   ld.param.f32 %f1, [scale_param_2];
// CHECK-NEXT:   mov.u32 %r2, %tid.x;
// CHECK-NEXT:   setp.ge.u32 %p1, %r2, %r1;
// CHECK-NEXT:   @%p1 bra $L__done;
// CHECK-NEXT:   cvta.to.global.u64 %rd2, %rd1;
// CHECK-NEXT:   mov.u32 %r3, 16;
// CHECK-NEXT:   mul.wide.u32 %rd3, %r2, %r3;
// CHECK-NEXT:   add.s64 %rd4, %rd2, %rd3;
// CHECK-NEXT:   .loc 2 3 8
// CHECK-NEXT:   ld.global.v4.f32 {%f2, %f3, %f4, %f5}, [%rd4];
// CHECK-NEXT:   .loc 1 12 2
// CHECK-NEXT:   mov.f32 %f6, 0f3F000000;
// CHECK-NEXT:   mov.f64 %fd1, 0dC000000000000000;
// CHECK-NEXT:   fma.rn.f32 %f7, %f2, %f1, %f6;
// CHECK-NEXT:   .loc 1 13 2
// CHECK-NEXT:   mul.rn.f32 %f8, %f3, %f1;
// CHECK-NEXT:   mov.u32 %r4, tile;
// CHECK-NEXT:   st.shared.f32 [%r4], %f8;
// CHECK-NEXT:   @!%p1 st.global.v2.f32 [%rd4+8], {%f7, %f8};
// CHECK-NEXT:   bar.sync 0;
// CHECK-NEXT:   ld.shared.f32 %f9, [%r4+4];
// CHECK-NEXT:   ld.global.f32 %f10, [%rd4+-8];
// CHECK-NEXT:   add.f32 %f11, %f9, %f10;
// CHECK-NEXT:   st.global.f32 [%rd4], %f11;
// CHECK-NEXT: $L__done:
// CHECK-NEXT:   ret;
// CHECK-NEXT: }
