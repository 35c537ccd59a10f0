// Verifier errors of the ptx dialect, one per chunk of --split-input-file. With --verify-diagnostics xDSL 0.74 prints
// each error (then the IR with the failing op marked) and exits 0: FileCheck the messages in order.
// RUN: pgc-opt %s --verify-diagnostics --split-input-file | filecheck %s

// Operand registers must fit the instruction's type suffix (PTX ISA 8.0 section 9.4).
// CHECK: ptx.add: operand 'lhs' is a .u32 register, which add.f32 does not accept (it needs a register compatible with .f32)
ptx.module version "8.0" target "sm_90" address_size 64 {
  ptx.func @k() {
    %a = ptx.sreg tid.x : () -> !ptx.u32
    %b = ptx.mov f32 1.0 : () -> !ptx.f32
    %c = ptx.add f32 %a, %b : (!ptx.u32, !ptx.f32) -> !ptx.f32
    ptx.ret
  }
}

// -----

// CHECK: ptx.add: the result is a .f32 register, which add.s32 does not accept (it needs a register compatible with .s32)
ptx.module version "8.0" target "sm_90" address_size 64 {
  ptx.func @k() {
    %a = ptx.sreg tid.x : () -> !ptx.u32
    %c = ptx.add s32 %a, %a : (!ptx.u32, !ptx.u32) -> !ptx.f32
    ptx.ret
  }
}

// -----

// CHECK: ptx.setp: operand 'rhs' is a .u64 register, which setp.lt.u32 does not accept (it needs a register compatible with .u32)
ptx.module version "8.0" target "sm_90" address_size 64 {
  ptx.func @k(%p: !ptx.param<u64>) {
    %a = ptx.sreg tid.x : () -> !ptx.u32
    %b = ptx.ld_param u64 %p : (!ptx.param<u64>) -> !ptx.u64
    %c = ptx.setp lt.u32 %a, %b : (!ptx.u32, !ptx.u64) -> !ptx.pred
    ptx.ret
  }
}

// -----

// CHECK: ptx.bra: branch target 'NOWHERE' is not a label of @k
ptx.module version "8.0" target "sm_90" address_size 64 {
  ptx.func @k() {
    ptx.label "HERE"
    ptx.bra "NOWHERE"
  }
}

// -----

// CHECK: ptx.func: label 'L' is defined twice
ptx.module version "8.0" target "sm_90" address_size 64 {
  ptx.func @k() {
    ptx.label "L"
    ptx.label "L"
    ptx.ret
  }
}

// -----

// CHECK: ptx.func: @k must end with an unconditional ptx.ret or ptx.bra
ptx.module version "8.0" target "sm_90" address_size 64 {
  ptx.func @k() {
    %a = ptx.sreg tid.x : () -> !ptx.u32
  }
}

// -----

// CHECK: ptx.label: '1abc' is not a valid PTX label name
ptx.module version "8.0" target "sm_90" address_size 64 {
  ptx.func @k() {
    ptx.label "1abc"
    ptx.ret
  }
}

// -----

// CHECK: ptx.div: div.f32 needs .approx, .full or a rounding mode (.rn, .rz, .rm, .rp)
ptx.module version "8.0" target "sm_90" address_size 64 {
  ptx.func @k() {
    %b = ptx.mov f32 1.0 : () -> !ptx.f32
    %c = ptx.div f32 %b, %b : (!ptx.f32, !ptx.f32) -> !ptx.f32
    ptx.ret
  }
}

// -----

// CHECK: ptx.mul: integer mul needs .lo, .hi or .wide
ptx.module version "8.0" target "sm_90" address_size 64 {
  ptx.func @k() {
    %a = ptx.sreg tid.x : () -> !ptx.u32
    %c = ptx.mul u32 %a, %a : (!ptx.u32, !ptx.u32) -> !ptx.u32
    ptx.ret
  }
}

// -----

// CHECK: ptx.mad: mad.f32 needs a rounding modifier (.rn, .rz, .rm or .rp)
ptx.module version "8.0" target "sm_90" address_size 64 {
  ptx.func @k() {
    %b = ptx.mov f32 1.0 : () -> !ptx.f32
    %c = ptx.mad f32 %b, %b, %b : (!ptx.f32, !ptx.f32, !ptx.f32) -> !ptx.f32
    ptx.ret
  }
}

// -----

// CHECK: ptx.add: rounding .rn applies to float types only
ptx.module version "8.0" target "sm_90" address_size 64 {
  ptx.func @k() {
    %a = ptx.sreg tid.x : () -> !ptx.u32
    %c = ptx.add rn.u32 %a, %a : (!ptx.u32, !ptx.u32) -> !ptx.u32
    ptx.ret
  }
}

// -----

// CHECK: ptx.cvt: float-to-integer cvt.s32.f32 needs an integer rounding (.rni .rzi .rmi .rpi)
ptx.module version "8.0" target "sm_90" address_size 64 {
  ptx.func @k() {
    %b = ptx.mov f32 1.0 : () -> !ptx.f32
    %c = ptx.cvt s32.f32 %b : (!ptx.f32) -> !ptx.s32
    ptx.ret
  }
}

// -----

// CHECK: ptx.cvt: integer-to-float cvt.f32.s64 needs a float rounding (.rn .rz .rm .rp)
ptx.module version "8.0" target "sm_90" address_size 64 {
  ptx.func @k() {
    %a = ptx.mov s64 3 : () -> !ptx.s64
    %c = ptx.cvt f32.s64 %a : (!ptx.s64) -> !ptx.f32
    ptx.ret
  }
}

// -----

// CHECK: ptx.cvt: cvt.rz.tf32.f32: the only tf32 conversions are cvt.rna.tf32.f32 and cvt.rn.tf32.f32
ptx.module version "8.0" target "sm_90" address_size 64 {
  ptx.func @k() {
    %b = ptx.mov f32 1.0 : () -> !ptx.f32
    %c = ptx.cvt rz.tf32.f32 %b : (!ptx.f32) -> !ptx.b32
    ptx.ret
  }
}

// -----

// CHECK: ptx.cvt: cvt.rna.f32.f64: the only tf32 conversions are cvt.rna.tf32.f32 and cvt.rn.tf32.f32
ptx.module version "8.0" target "sm_90" address_size 64 {
  ptx.func @k() {
    %b = ptx.mov f64 1.0 : () -> !ptx.f64
    %c = ptx.cvt rna.f32.f64 %b : (!ptx.f64) -> !ptx.f32
    ptx.ret
  }
}

// -----

// CHECK: ptx.cvt: cvt.rna.tf32.f32 needs target sm_80 and PTX 7.0 or later; the module is sm_75, PTX 8.0
ptx.module version "8.0" target "sm_75" address_size 64 {
  ptx.func @k() {
    %b = ptx.mov f32 1.0 : () -> !ptx.f32
    %c = ptx.cvt rna.tf32.f32 %b : (!ptx.f32) -> !ptx.b32
    ptx.ret
  }
}

// -----

// CHECK: ptx.cvt: cvt.rn.tf32.f32 needs target sm_90 and PTX 7.8 or later; the module is sm_80, PTX 8.0
ptx.module version "8.0" target "sm_80" address_size 64 {
  ptx.func @k() {
    %b = ptx.mov f32 1.0 : () -> !ptx.f32
    %c = ptx.cvt rn.tf32.f32 %b : (!ptx.f32) -> !ptx.b32
    ptx.ret
  }
}

// -----

// CHECK: ptx.cvt: widening cvt.f64.f32 is exact and takes no rounding
ptx.module version "8.0" target "sm_90" address_size 64 {
  ptx.func @k() {
    %b = ptx.mov f32 1.0 : () -> !ptx.f32
    %c = ptx.cvt rn.f64.f32 %b : (!ptx.f32) -> !ptx.f64
    ptx.ret
  }
}

// -----

// CHECK: ptx.setp: comparison .lo is not defined for .s32, expected one of ('eq', 'ne', 'lt', 'le', 'gt', 'ge')
ptx.module version "8.0" target "sm_90" address_size 64 {
  ptx.func @k() {
    %a = ptx.mov s32 3 : () -> !ptx.s32
    %c = ptx.setp lo.s32 %a, %a : (!ptx.s32, !ptx.s32) -> !ptx.pred
    ptx.ret
  }
}

// -----

// PTX has no f64 transcendentals.
// CHECK: ptx.ex2: type .f64 is not supported, expected one of ('f32',) (PTX has no f64 transcendentals)
ptx.module version "8.0" target "sm_90" address_size 64 {
  ptx.func @k() {
    %b = ptx.mov f64 1.0 : () -> !ptx.f64
    %c = ptx.ex2 approx.f64 %b : (!ptx.f64) -> !ptx.f64
    ptx.ret
  }
}

// -----

// CHECK: ptx.sqrt: sqrt.approx has no .f64 form; use sqrt.rn.f64
ptx.module version "8.0" target "sm_90" address_size 64 {
  ptx.func @k() {
    %b = ptx.mov f64 1.0 : () -> !ptx.f64
    %c = ptx.sqrt approx.f64 %b : (!ptx.f64) -> !ptx.f64
    ptx.ret
  }
}

// -----

// CHECK: ptx.ld: ld.global.v2.f32 gives 2 values, not 1
ptx.module version "8.0" target "sm_90" address_size 64 {
  ptx.func @k(%p: !ptx.param<u64>) {
    %a = ptx.ld_param u64 %p : (!ptx.param<u64>) -> !ptx.u64
    %v = ptx.ld global.v2.f32 [%a] : (!ptx.u64) -> !ptx.f32
    ptx.ret
  }
}

// -----

// CHECK: ptx.st: a .global address must be a 64-bit register, got .u32
ptx.module version "8.0" target "sm_90" address_size 64 {
  ptx.func @k() {
    %a = ptx.sreg tid.x : () -> !ptx.u32
    %b = ptx.mov f32 1.0 : () -> !ptx.f32
    ptx.st global.f32 [%a], %b : (!ptx.u32, !ptx.f32) -> ()
    ptx.ret
  }
}

// -----

// CHECK: ptx.atom: min is not defined for .f32, expected one of ('u32', 'u64', 's32', 's64')
ptx.module version "8.0" target "sm_90" address_size 64 {
  ptx.func @k(%p: !ptx.param<u64>) {
    %a = ptx.ld_param u64 %p : (!ptx.param<u64>) -> !ptx.u64
    %b = ptx.mov f32 1.0 : () -> !ptx.f32
    %c = ptx.atom global.min.f32 [%a], %b : (!ptx.u64, !ptx.f32) -> !ptx.f32
    ptx.ret
  }
}

// -----

// CHECK: ptx.shared_addr: no ptx.shared buffer named @missing
ptx.module version "8.0" target "sm_90" address_size 64 {
  ptx.func @k() {
    %s = ptx.shared_addr u32 @missing : () -> !ptx.u32
    ptx.ret
  }
}

// -----

// CHECK: ptx.shared: the dynamic buffer @smem (no size) must be declared at module level
ptx.module version "8.0" target "sm_90" address_size 64 {
  ptx.func @k() {
    ptx.shared @smem[] align 16
    ptx.ret
  }
}

// -----

// CHECK: ptx.shared: alignment 12 is not a power of two
ptx.module version "8.0" target "sm_90" address_size 64 {
  ptx.shared @tile[64] align 12
}

// -----

// CHECK: ptx.ld_param: reads a .u64 parameter with ld.param.u32
ptx.module version "8.0" target "sm_90" address_size 64 {
  ptx.func @k(%p: !ptx.param<u64>) {
    %a = "ptx.ld_param"(%p) <{type = "u32"}> : (!ptx.param<u64>) -> !ptx.u32
    ptx.ret
  }
}

// -----

// CHECK: ptx.mov: immediate 4294967296 does not fit in .u32
ptx.module version "8.0" target "sm_90" address_size 64 {
  ptx.func @k() {
    %a = ptx.mov u32 4294967296 : () -> !ptx.u32
    ptx.ret
  }
}

// -----

// CHECK: ptx.mov: the immediate of mov.f32 must be a float
ptx.module version "8.0" target "sm_90" address_size 64 {
  ptx.func @k() {
    %a = ptx.mov f32 1 : () -> !ptx.f32
    ptx.ret
  }
}

// -----

// CHECK: ptx.shfl_sync: lane 32 is out of range 0..31
ptx.module version "8.0" target "sm_90" address_size 64 {
  ptx.func @k() {
    %a = ptx.sreg laneid : () -> !ptx.u32
    %b = ptx.shfl_sync down.b32 %a, 32, 31, 0xffffffff : (!ptx.u32) -> !ptx.u32
    ptx.ret
  }
}

// -----

// CHECK: ptx.sreg: unknown special register 'tid.w'
ptx.module version "8.0" target "sm_90" address_size 64 {
  ptx.func @k() {
    %a = ptx.sreg tid.w : () -> !ptx.u32
    ptx.ret
  }
}

// -----

// CHECK: ptx.func: 'ptx.module' is not a PTX instruction
ptx.module version "8.0" target "sm_90" address_size 64 {
  ptx.func @k() {
    ptx.module version "8.0" target "sm_90" address_size 64 {
    }
    ptx.ret
  }
}

// -----

// CHECK: ptx.module: target 'sm90' is not of the form sm_90 or sm_90a
ptx.module version "8.0" target "sm90" address_size 64 {
}

// -----

// CHECK: ptx.module: target sm_90a needs PTX version 8.0 or later
ptx.module version "7.8" target "sm_90a" address_size 64 {
}

// -----

// CHECK: ptx.module: .file index 1 is used twice
ptx.module version "8.0" target "sm_90" address_size 64 {
  ptx.file 1 "a.py"
  ptx.file 1 "b.py"
}

// -----

// CHECK: ptx.bra: 'negate' needs a guard predicate
ptx.module version "8.0" target "sm_90" address_size 64 {
  ptx.func @k() {
    ptx.label "L"
    "ptx.bra"() <{target = "L", negate}> : () -> ()
  }
}

// -----

// cp.async (PTX ISA 8.0 section 9.7.8.25) copies 4, 8 or 16 bytes; .cg (bypassing L1) only 16.
// CHECK: ptx.cp_async: cp.async.cg copies 16 bytes only
ptx.module version "8.0" target "sm_90" address_size 64 {
  ptx.shared @tile[64] align 16
  ptx.func @k(%p: !ptx.param<u64>) {
    %a = ptx.ld_param u64 %p : (!ptx.param<u64>) -> !ptx.u64
    %s = ptx.shared_addr u32 @tile : () -> !ptx.u32
    %n = ptx.mov u32 4 : () -> !ptx.u32
    ptx.cp_async cg.shared.global [%s], [%a], 4, %n : (!ptx.u32, !ptx.u64, !ptx.u32) -> ()
    ptx.ret
  }
}

// -----

// CHECK: ptx.cp_async: copies 4, 8 or 16 bytes, not 12
ptx.module version "8.0" target "sm_90" address_size 64 {
  ptx.shared @tile[64] align 16
  ptx.func @k(%p: !ptx.param<u64>) {
    %a = ptx.ld_param u64 %p : (!ptx.param<u64>) -> !ptx.u64
    %s = ptx.shared_addr u32 @tile : () -> !ptx.u32
    %n = ptx.mov u32 12 : () -> !ptx.u32
    ptx.cp_async ca.shared.global [%s], [%a], 12, %n : (!ptx.u32, !ptx.u64, !ptx.u32) -> ()
    ptx.ret
  }
}

// -----

// CHECK: ptx.cp_async: the global source address must be a 64-bit register, got .u32
ptx.module version "8.0" target "sm_90" address_size 64 {
  ptx.shared @tile[64] align 16
  ptx.func @k() {
    %s = ptx.shared_addr u32 @tile : () -> !ptx.u32
    %n = ptx.mov u32 4 : () -> !ptx.u32
    ptx.cp_async ca.shared.global [%s], [%s], 4, %n : (!ptx.u32, !ptx.u32, !ptx.u32) -> ()
    ptx.ret
  }
}

// -----

// CHECK: ptx.cp_async: src_size is a .f32 register, which cp.async.ca.shared.global does not accept (it needs a register compatible with .u32)
ptx.module version "8.0" target "sm_90" address_size 64 {
  ptx.shared @tile[64] align 16
  ptx.func @k(%p: !ptx.param<u64>) {
    %a = ptx.ld_param u64 %p : (!ptx.param<u64>) -> !ptx.u64
    %s = ptx.shared_addr u32 @tile : () -> !ptx.u32
    %n = ptx.mov f32 4.0 : () -> !ptx.f32
    ptx.cp_async ca.shared.global [%s], [%a], 4, %n : (!ptx.u32, !ptx.u64, !ptx.f32) -> ()
    ptx.ret
  }
}

// -----

// CHECK: ptx.ld: ld.global.v4.f64 moves 256 bits; sm_90 allows at most 128 per access
ptx.module version "8.0" target "sm_90" address_size 64 {
  ptx.func @k(%p: !ptx.param<u64>) {
    %a = ptx.ld_param u64 %p : (!ptx.param<u64>) -> !ptx.u64
    %x, %y, %z, %w = ptx.ld global.v4.f64 [%a] : (!ptx.u64) -> (!ptx.f64, !ptx.f64, !ptx.f64, !ptx.f64)
    ptx.ret
  }
}
