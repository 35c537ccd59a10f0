// Every op of the ptx dialect round-trips through its custom syntax (printed, parsed again, printed the same).
// RUN: pgc-opt %s | pgc-opt | filecheck %s
// Generic syntax round-trips too.
// RUN: pgc-opt %s --print-op-generic | pgc-opt | filecheck %s

ptx.module version "8.0" target "sm_90" address_size 64 {
  ptx.file 1 "model.py"
  ptx.shared @tile[4096] align 16
  ptx.shared @dyn[] align 16
  ptx.func @all(%a: !ptx.param<u64>, %n: !ptx.param<u32>, %x: !ptx.param<f32>) maxntid = [256, 1, 1] {
    ptx.shared @local_buf[128] align 4
    %p = ptx.ld_param u64 %a : (!ptx.param<u64>) -> !ptx.u64
    %n32 = ptx.ld_param u32 %n : (!ptx.param<u32>) -> !ptx.u32
    %xf = ptx.ld_param f32 %x : (!ptx.param<f32>) -> !ptx.f32
    %g = ptx.cvta to.global.u64 %p : (!ptx.u64) -> !ptx.u64
    %tid = ptx.sreg tid.x : () -> !ptx.u32
    %lane = ptx.sreg laneid : () -> !ptx.u32
    %cta = ptx.sreg ctaid.y : () -> !ptx.u32
    %one = ptx.mov f32 1.0 : () -> !ptx.f32
    %ninf = ptx.mov f32 -inf : () -> !ptx.f32
    %tiny = ptx.mov f64 1.0e-300 : () -> !ptx.f64
    %four = ptx.mov u32 4 : () -> !ptx.u32
    %neg = ptx.mov s32 -7 : () -> !ptx.s32
    %bits = ptx.mov b32 %one : (!ptx.f32) -> !ptx.b32
    %sum = ptx.add f32 %xf, %one : (!ptx.f32, !ptx.f32) -> !ptx.f32
    %sumr = ptx.add rz.ftz.sat.f32 %xf, %one : (!ptx.f32, !ptx.f32) -> !ptx.f32
    %diff = ptx.sub s32 %neg, %neg : (!ptx.s32, !ptx.s32) -> !ptx.s32
    %wide = ptx.mul wide.u32 %tid, %four : (!ptx.u32, !ptx.u32) -> !ptx.u64
    %lo = ptx.mul lo.s32 %neg, %neg : (!ptx.s32, !ptx.s32) -> !ptx.s32
    %hi = ptx.mul hi.u32 %tid, %four : (!ptx.u32, !ptx.u32) -> !ptx.u32
    %fm = ptx.mul rn.f32 %xf, %xf : (!ptx.f32, !ptx.f32) -> !ptx.f32
    %mad = ptx.mad lo.s32 %cta, %four, %tid : (!ptx.u32, !ptx.u32, !ptx.u32) -> !ptx.s32
    %madw = ptx.mad wide.u32 %tid, %four, %g : (!ptx.u32, !ptx.u32, !ptx.u64) -> !ptx.u64
    %fma = ptx.fma rn.f32 %xf, %one, %sum : (!ptx.f32, !ptx.f32, !ptx.f32) -> !ptx.f32
    %div = ptx.div rn.f32 %xf, %one : (!ptx.f32, !ptx.f32) -> !ptx.f32
    %divf = ptx.div full.f32 %xf, %one : (!ptx.f32, !ptx.f32) -> !ptx.f32
    %divi = ptx.div u32 %tid, %four : (!ptx.u32, !ptx.u32) -> !ptx.u32
    %rem = ptx.rem u32 %tid, %four : (!ptx.u32, !ptx.u32) -> !ptx.u32
    %min = ptx.min f32 %xf, %one : (!ptx.f32, !ptx.f32) -> !ptx.f32
    %max = ptx.max NaN.f32 %xf, %one : (!ptx.f32, !ptx.f32) -> !ptx.f32
    %maxi = ptx.max s32 %neg, %lo : (!ptx.s32, !ptx.s32) -> !ptx.s32
    %negf = ptx.neg f32 %xf : (!ptx.f32) -> !ptx.f32
    %absf = ptx.abs ftz.f32 %xf : (!ptx.f32) -> !ptx.f32
    %absi = ptx.abs s32 %neg : (!ptx.s32) -> !ptx.s32
    %ex2 = ptx.ex2 approx.ftz.f32 %xf : (!ptx.f32) -> !ptx.f32
    %lg2 = ptx.lg2 approx.f32 %xf : (!ptx.f32) -> !ptx.f32
    %sin = ptx.sin approx.f32 %xf : (!ptx.f32) -> !ptx.f32
    %cos = ptx.cos approx.f32 %xf : (!ptx.f32) -> !ptx.f32
    %tanh = ptx.tanh approx.f32 %xf : (!ptx.f32) -> !ptx.f32
    %rcp = ptx.rcp rn.f32 %xf : (!ptx.f32) -> !ptx.f32
    %rcpd = ptx.rcp approx.ftz.f64 %tiny : (!ptx.f64) -> !ptx.f64
    %sqrt = ptx.sqrt rn.f32 %xf : (!ptx.f32) -> !ptx.f32
    %sqrtd = ptx.sqrt rn.f64 %tiny : (!ptx.f64) -> !ptx.f64
    %rsqrt = ptx.rsqrt approx.f32 %xf : (!ptx.f32) -> !ptx.f32
    %and = ptx.and b32 %tid, %four : (!ptx.u32, !ptx.u32) -> !ptx.b32
    %or = ptx.or b32 %tid, %four : (!ptx.u32, !ptx.u32) -> !ptx.b32
    %xor = ptx.xor b32 %tid, %bits : (!ptx.u32, !ptx.b32) -> !ptx.b32
    %not = ptx.not b32 %tid : (!ptx.u32) -> !ptx.b32
    %shl = ptx.shl b32 %tid, %four : (!ptx.u32, !ptx.u32) -> !ptx.b32
    %shr = ptx.shr s32 %neg, %four : (!ptx.s32, !ptx.u32) -> !ptx.s32
    %f2i = ptx.cvt rzi.s64.f32 %xf : (!ptx.f32) -> !ptx.s64
    %i2f = ptx.cvt rn.f32.s64 %f2i : (!ptx.s64) -> !ptx.f32
    %f2d = ptx.cvt f64.f32 %xf : (!ptx.f32) -> !ptx.f64
    %d2f = ptx.cvt rn.f32.f64 %f2d : (!ptx.f64) -> !ptx.f32
    %u2u = ptx.cvt u64.u32 %tid : (!ptx.u32) -> !ptx.u64
    %tf = ptx.cvt rna.tf32.f32 %xf : (!ptx.f32) -> !ptx.b32
    %tfe = ptx.cvt rn.tf32.f32 %xf : (!ptx.f32) -> !ptx.b32
    %lt = ptx.setp lt.f32 %xf, %one : (!ptx.f32, !ptx.f32) -> !ptx.pred
    %ge = ptx.setp hs.u32 %tid, %n32 : (!ptx.u32, !ptx.u32) -> !ptx.pred
    %both = ptx.and pred %lt, %ge : (!ptx.pred, !ptx.pred) -> !ptx.pred
    %sel = ptx.selp f32 %xf, %one, %lt : (!ptx.f32, !ptx.f32, !ptx.pred) -> !ptx.f32
    %addr = ptx.add s64 %g, %wide : (!ptx.u64, !ptx.u64) -> !ptx.s64
    %v = ptx.ld global.f32 [%addr + 16] : (!ptx.s64) -> !ptx.f32
    %vn = ptx.ld global.nc.f32 [%addr - 4] : (!ptx.s64) -> !ptx.f32
    %v0, %v1 = ptx.ld global.v2.f32 [%addr] : (!ptx.s64) -> (!ptx.f32, !ptx.f32)
    %q:4 = ptx.ld global.v4.f32 [%addr] : (!ptx.s64) -> (!ptx.f32, !ptx.f32, !ptx.f32, !ptx.f32)
    %byte = ptx.ld global.u8 [%addr] : (!ptx.s64) -> !ptx.u32
    %smem = ptx.shared_addr u32 @tile : () -> !ptx.u32
    %smem2 = ptx.shared_addr u32 @local_buf : () -> !ptx.u32
    %smem3 = ptx.shared_addr u64 @dyn : () -> !ptx.u64
    %sv = ptx.ld shared.f32 [%smem + 4] : (!ptx.u32) -> !ptx.f32
    ptx.st shared.f32 [%smem], %sv : (!ptx.u32, !ptx.f32) -> ()
    ptx.st global.v2.f32 [%addr + 8], {%v0, %v1} : (!ptx.s64, !ptx.f32, !ptx.f32) -> ()
    ptx.st global.f32 [%addr], %v if not %lt : (!ptx.s64, !ptx.f32, !ptx.pred) -> ()
    %sh = ptx.shfl_sync bfly.b32 %xf, 16, 31, 0xffffffff : (!ptx.f32) -> !ptx.f32
    %sd = ptx.shfl_sync down.b32 %tid, 1, 31, 0xffffffff : (!ptx.u32) -> !ptx.u32
    ptx.bar_sync 0
    %old = ptx.atom global.add.f32 [%addr], %xf : (!ptx.s64, !ptx.f32) -> !ptx.f32
    %cas = ptx.atom global.cas.b32 [%addr], %bits, %bits : (!ptx.s64, !ptx.b32, !ptx.b32) -> !ptx.b32
    ptx.red global.add.f32 [%addr + 4], %xf if %lt : (!ptx.s64, !ptx.f32, !ptx.pred) -> ()
    ptx.cp_async cg.shared.global [%smem + 512], [%g + 64], 16, %n32 : (!ptx.u32, !ptx.u64, !ptx.u32) -> ()
    ptx.cp_async ca.shared.global [%smem], [%addr - 8], 4, %four : (!ptx.u32, !ptx.s64, !ptx.u32) -> ()
    ptx.cp_async ca.shared.global [%smem3 + 8], [%g], 8, %n32 : (!ptx.u64, !ptx.u64, !ptx.u32) -> ()
    ptx.cp_async_commit_group
    ptx.cp_async_wait_group 0
    ptx.cp_async_wait_group 1
    %i = ptx.mov u32 0 : () -> !ptx.u32
    ptx.label "LOOP"
    %inext = ptx.add u32 %i, %four : (!ptx.u32, !ptx.u32) -> !ptx.u32
    ptx.assign u32 %i, %inext : (!ptx.u32, !ptx.u32) -> ()
    %more = ptx.setp lt.u32 %i, %n32 : (!ptx.u32, !ptx.u32) -> !ptx.pred
    ptx.bra "LOOP" if %more : (!ptx.pred) -> ()
    ptx.bra uni "DONE"
    ptx.label "DONE"
    ptx.ret if %lt : (!ptx.pred) -> ()
    ptx.ret
  }
}

// CHECK:      ptx.module version "8.0" target "sm_90" address_size 64 {
// CHECK-NEXT:   ptx.file 1 "model.py"
// CHECK-NEXT:   ptx.shared @tile[4096] align 16
// CHECK-NEXT:   ptx.shared @dyn[] align 16
// CHECK-NEXT:   ptx.func @all(%{{.*}}: !ptx.param<u64>, %{{.*}}: !ptx.param<u32>, %{{.*}}: !ptx.param<f32>) maxntid = [256, 1, 1] {
// CHECK-NEXT:     ptx.shared @local_buf[128] align 4
// CHECK-NEXT:     %p = ptx.ld_param u64 %{{.*}} : (!ptx.param<u64>) -> !ptx.u64
// CHECK-NEXT:     %n32 = ptx.ld_param u32 %{{.*}} : (!ptx.param<u32>) -> !ptx.u32
// CHECK-NEXT:     %xf = ptx.ld_param f32 %{{.*}} : (!ptx.param<f32>) -> !ptx.f32
// CHECK-NEXT:     %g = ptx.cvta to.global.u64 %p : (!ptx.u64) -> !ptx.u64
// CHECK-NEXT:     %tid = ptx.sreg tid.x : () -> !ptx.u32
// CHECK-NEXT:     %lane = ptx.sreg laneid : () -> !ptx.u32
// CHECK-NEXT:     %cta = ptx.sreg ctaid.y : () -> !ptx.u32
// CHECK-NEXT:     %one = ptx.mov f32 1.0 : () -> !ptx.f32
// CHECK-NEXT:     %ninf = ptx.mov f32 -inf : () -> !ptx.f32
// CHECK-NEXT:     %tiny = ptx.mov f64 1.0e-300 : () -> !ptx.f64
// CHECK-NEXT:     %four = ptx.mov u32 4 : () -> !ptx.u32
// CHECK-NEXT:     %neg = ptx.mov s32 -7 : () -> !ptx.s32
// CHECK-NEXT:     %bits = ptx.mov b32 %one : (!ptx.f32) -> !ptx.b32
// CHECK-NEXT:     %sum = ptx.add f32 %xf, %one : (!ptx.f32, !ptx.f32) -> !ptx.f32
// CHECK-NEXT:     %sumr = ptx.add rz.ftz.sat.f32 %xf, %one : (!ptx.f32, !ptx.f32) -> !ptx.f32
// CHECK-NEXT:     %diff = ptx.sub s32 %neg, %neg : (!ptx.s32, !ptx.s32) -> !ptx.s32
// CHECK-NEXT:     %wide = ptx.mul wide.u32 %tid, %four : (!ptx.u32, !ptx.u32) -> !ptx.u64
// CHECK-NEXT:     %lo = ptx.mul lo.s32 %neg, %neg : (!ptx.s32, !ptx.s32) -> !ptx.s32
// CHECK-NEXT:     %hi = ptx.mul hi.u32 %tid, %four : (!ptx.u32, !ptx.u32) -> !ptx.u32
// CHECK-NEXT:     %fm = ptx.mul rn.f32 %xf, %xf : (!ptx.f32, !ptx.f32) -> !ptx.f32
// CHECK-NEXT:     %mad = ptx.mad lo.s32 %cta, %four, %tid : (!ptx.u32, !ptx.u32, !ptx.u32) -> !ptx.s32
// CHECK-NEXT:     %madw = ptx.mad wide.u32 %tid, %four, %g : (!ptx.u32, !ptx.u32, !ptx.u64) -> !ptx.u64
// CHECK-NEXT:     %fma = ptx.fma rn.f32 %xf, %one, %sum : (!ptx.f32, !ptx.f32, !ptx.f32) -> !ptx.f32
// CHECK-NEXT:     %div = ptx.div rn.f32 %xf, %one : (!ptx.f32, !ptx.f32) -> !ptx.f32
// CHECK-NEXT:     %divf = ptx.div full.f32 %xf, %one : (!ptx.f32, !ptx.f32) -> !ptx.f32
// CHECK-NEXT:     %divi = ptx.div u32 %tid, %four : (!ptx.u32, !ptx.u32) -> !ptx.u32
// CHECK-NEXT:     %rem = ptx.rem u32 %tid, %four : (!ptx.u32, !ptx.u32) -> !ptx.u32
// CHECK-NEXT:     %min = ptx.min f32 %xf, %one : (!ptx.f32, !ptx.f32) -> !ptx.f32
// CHECK-NEXT:     %max = ptx.max NaN.f32 %xf, %one : (!ptx.f32, !ptx.f32) -> !ptx.f32
// CHECK-NEXT:     %maxi = ptx.max s32 %neg, %lo : (!ptx.s32, !ptx.s32) -> !ptx.s32
// CHECK-NEXT:     %negf = ptx.neg f32 %xf : (!ptx.f32) -> !ptx.f32
// CHECK-NEXT:     %absf = ptx.abs ftz.f32 %xf : (!ptx.f32) -> !ptx.f32
// CHECK-NEXT:     %absi = ptx.abs s32 %neg : (!ptx.s32) -> !ptx.s32
// CHECK-NEXT:     %ex2 = ptx.ex2 approx.ftz.f32 %xf : (!ptx.f32) -> !ptx.f32
// CHECK-NEXT:     %lg2 = ptx.lg2 approx.f32 %xf : (!ptx.f32) -> !ptx.f32
// CHECK-NEXT:     %sin = ptx.sin approx.f32 %xf : (!ptx.f32) -> !ptx.f32
// CHECK-NEXT:     %cos = ptx.cos approx.f32 %xf : (!ptx.f32) -> !ptx.f32
// CHECK-NEXT:     %tanh = ptx.tanh approx.f32 %xf : (!ptx.f32) -> !ptx.f32
// CHECK-NEXT:     %rcp = ptx.rcp rn.f32 %xf : (!ptx.f32) -> !ptx.f32
// CHECK-NEXT:     %rcpd = ptx.rcp approx.ftz.f64 %tiny : (!ptx.f64) -> !ptx.f64
// CHECK-NEXT:     %sqrt = ptx.sqrt rn.f32 %xf : (!ptx.f32) -> !ptx.f32
// CHECK-NEXT:     %sqrtd = ptx.sqrt rn.f64 %tiny : (!ptx.f64) -> !ptx.f64
// CHECK-NEXT:     %rsqrt = ptx.rsqrt approx.f32 %xf : (!ptx.f32) -> !ptx.f32
// CHECK-NEXT:     %and = ptx.and b32 %tid, %four : (!ptx.u32, !ptx.u32) -> !ptx.b32
// CHECK-NEXT:     %or = ptx.or b32 %tid, %four : (!ptx.u32, !ptx.u32) -> !ptx.b32
// CHECK-NEXT:     %xor = ptx.xor b32 %tid, %bits : (!ptx.u32, !ptx.b32) -> !ptx.b32
// CHECK-NEXT:     %not = ptx.not b32 %tid : (!ptx.u32) -> !ptx.b32
// CHECK-NEXT:     %shl = ptx.shl b32 %tid, %four : (!ptx.u32, !ptx.u32) -> !ptx.b32
// CHECK-NEXT:     %shr = ptx.shr s32 %neg, %four : (!ptx.s32, !ptx.u32) -> !ptx.s32
// CHECK-NEXT:     %f2i = ptx.cvt rzi.s64.f32 %xf : (!ptx.f32) -> !ptx.s64
// CHECK-NEXT:     %i2f = ptx.cvt rn.f32.s64 %f2i : (!ptx.s64) -> !ptx.f32
// CHECK-NEXT:     %f2d = ptx.cvt f64.f32 %xf : (!ptx.f32) -> !ptx.f64
// CHECK-NEXT:     %d2f = ptx.cvt rn.f32.f64 %f2d : (!ptx.f64) -> !ptx.f32
// CHECK-NEXT:     %u2u = ptx.cvt u64.u32 %tid : (!ptx.u32) -> !ptx.u64
// CHECK-NEXT:     %tf = ptx.cvt rna.tf32.f32 %xf : (!ptx.f32) -> !ptx.b32
// CHECK-NEXT:     %tfe = ptx.cvt rn.tf32.f32 %xf : (!ptx.f32) -> !ptx.b32
// CHECK-NEXT:     %lt = ptx.setp lt.f32 %xf, %one : (!ptx.f32, !ptx.f32) -> !ptx.pred
// CHECK-NEXT:     %ge = ptx.setp hs.u32 %tid, %n32 : (!ptx.u32, !ptx.u32) -> !ptx.pred
// CHECK-NEXT:     %both = ptx.and pred %lt, %ge : (!ptx.pred, !ptx.pred) -> !ptx.pred
// CHECK-NEXT:     %sel = ptx.selp f32 %xf, %one, %lt : (!ptx.f32, !ptx.f32, !ptx.pred) -> !ptx.f32
// CHECK-NEXT:     %addr = ptx.add s64 %g, %wide : (!ptx.u64, !ptx.u64) -> !ptx.s64
// CHECK-NEXT:     %v = ptx.ld global.f32 [%addr + 16] : (!ptx.s64) -> !ptx.f32
// CHECK-NEXT:     %vn = ptx.ld global.nc.f32 [%addr - 4] : (!ptx.s64) -> !ptx.f32
// CHECK-NEXT:     %v0, %v1 = ptx.ld global.v2.f32 [%addr] : (!ptx.s64) -> (!ptx.f32, !ptx.f32)
// CHECK-NEXT:     %q, %q_1, %q_2, %q_3 = ptx.ld global.v4.f32 [%addr] : (!ptx.s64) -> (!ptx.f32, !ptx.f32, !ptx.f32, !ptx.f32)
// CHECK-NEXT:     %byte = ptx.ld global.u8 [%addr] : (!ptx.s64) -> !ptx.u32
// CHECK-NEXT:     %smem = ptx.shared_addr u32 @tile : () -> !ptx.u32
// CHECK-NEXT:     %smem2 = ptx.shared_addr u32 @local_buf : () -> !ptx.u32
// CHECK-NEXT:     %smem3 = ptx.shared_addr u64 @dyn : () -> !ptx.u64
// CHECK-NEXT:     %sv = ptx.ld shared.f32 [%smem + 4] : (!ptx.u32) -> !ptx.f32
// CHECK-NEXT:     ptx.st shared.f32 [%smem], %sv : (!ptx.u32, !ptx.f32) -> ()
// CHECK-NEXT:     ptx.st global.v2.f32 [%addr + 8], {%v0, %v1} : (!ptx.s64, !ptx.f32, !ptx.f32) -> ()
// CHECK-NEXT:     ptx.st global.f32 [%addr], %v if not %lt : (!ptx.s64, !ptx.f32, !ptx.pred) -> ()
// CHECK-NEXT:     %sh = ptx.shfl_sync bfly.b32 %xf, 16, 31, 0xffffffff : (!ptx.f32) -> !ptx.f32
// CHECK-NEXT:     %sd = ptx.shfl_sync down.b32 %tid, 1, 31, 0xffffffff : (!ptx.u32) -> !ptx.u32
// CHECK-NEXT:     ptx.bar_sync 0
// CHECK-NEXT:     %old = ptx.atom global.add.f32 [%addr], %xf : (!ptx.s64, !ptx.f32) -> !ptx.f32
// CHECK-NEXT:     %cas = ptx.atom global.cas.b32 [%addr], %bits, %bits : (!ptx.s64, !ptx.b32, !ptx.b32) -> !ptx.b32
// CHECK-NEXT:     ptx.red global.add.f32 [%addr + 4], %xf if %lt : (!ptx.s64, !ptx.f32, !ptx.pred) -> ()
// CHECK-NEXT:     ptx.cp_async cg.shared.global [%smem + 512], [%g + 64], 16, %n32 : (!ptx.u32, !ptx.u64, !ptx.u32) -> ()
// CHECK-NEXT:     ptx.cp_async ca.shared.global [%smem], [%addr - 8], 4, %four : (!ptx.u32, !ptx.s64, !ptx.u32) -> ()
// CHECK-NEXT:     ptx.cp_async ca.shared.global [%smem3 + 8], [%g], 8, %n32 : (!ptx.u64, !ptx.u64, !ptx.u32) -> ()
// CHECK-NEXT:     ptx.cp_async_commit_group
// CHECK-NEXT:     ptx.cp_async_wait_group 0
// CHECK-NEXT:     ptx.cp_async_wait_group 1
// CHECK-NEXT:     %i = ptx.mov u32 0 : () -> !ptx.u32
// CHECK-NEXT:     ptx.label "LOOP"
// CHECK-NEXT:     %inext = ptx.add u32 %i, %four : (!ptx.u32, !ptx.u32) -> !ptx.u32
// CHECK-NEXT:     ptx.assign u32 %i, %inext : (!ptx.u32, !ptx.u32) -> ()
// CHECK-NEXT:     %more = ptx.setp lt.u32 %i, %n32 : (!ptx.u32, !ptx.u32) -> !ptx.pred
// CHECK-NEXT:     ptx.bra "LOOP" if %more : (!ptx.pred) -> ()
// CHECK-NEXT:     ptx.bra uni "DONE"
// CHECK-NEXT:     ptx.label "DONE"
// CHECK-NEXT:     ptx.ret if %lt : (!ptx.pred) -> ()
// CHECK-NEXT:     ptx.ret
// CHECK-NEXT:   }
// CHECK-NEXT: }
