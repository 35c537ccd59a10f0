// Errors raised by the custom parsers of ptx ops. With --parsing-diagnostics xDSL 0.74 prints the parse error and
// exits 0.
// RUN: pgc-opt %s --parsing-diagnostics --split-input-file | filecheck %s

// CHECK: ptx.add: unknown modifier 'rx' in 'rx.f32'
ptx.module version "8.0" target "sm_90" address_size 64 {
  ptx.func @k() {
    %b = ptx.mov f32 1.0 : () -> !ptx.f32
    %c = ptx.add rx.f32 %b, %b : (!ptx.f32, !ptx.f32) -> !ptx.f32
    ptx.ret
  }
}

// -----

// CHECK: ptx.cvt: expected one of ('u8', 'u16', 'u32', 'u64', 's8', 's16', 's32', 's64', 'f16', 'bf16', 'f32', 'f64') for the 'atype' modifier in 'rn.f32'
ptx.module version "8.0" target "sm_90" address_size 64 {
  ptx.func @k() {
    %b = ptx.mov f32 1.0 : () -> !ptx.f32
    %c = ptx.cvt rn.f32 %b : (!ptx.f32) -> !ptx.f32
    ptx.ret
  }
}

// -----

// CHECK: ptx.add: 2 operands but 1 operand types
ptx.module version "8.0" target "sm_90" address_size 64 {
  ptx.func @k() {
    %b = ptx.mov f32 1.0 : () -> !ptx.f32
    %c = ptx.add f32 %b, %b : (!ptx.f32) -> !ptx.f32
    ptx.ret
  }
}

// -----

// CHECK: ptx.red takes one value operand
ptx.module version "8.0" target "sm_90" address_size 64 {
  ptx.func @k(%p: !ptx.param<u64>) {
    %a = ptx.ld_param u64 %p : (!ptx.param<u64>) -> !ptx.u64
    %b = ptx.mov f32 1.0 : () -> !ptx.f32
    ptx.red global.add.f32 [%a], %b, %b : (!ptx.u64, !ptx.f32, !ptx.f32) -> ()
    ptx.ret
  }
}

// -----

// CHECK: !ptx.param: unknown parameter type 'pred'
ptx.module version "8.0" target "sm_90" address_size 64 {
  ptx.func @k(%p: !ptx.param<pred>) {
    ptx.ret
  }
}
