// RUN: pgc-opt %s -p pg-to-ptx --split-input-file --verify-diagnostics | filecheck %s
// RUN: pgc-opt %s -p pg-to-ptx --split-input-file --verify-diagnostics --print-debuginfo | filecheck %s --check-prefix=LOC
// RUN: pgc-opt %s -p 'pg-to-ptx{arch=sm_90a contract=false}' --split-input-file --verify-diagnostics | filecheck %s --check-prefix=OPT
// Without --verify-diagnostics the first rejection is an error on stderr and a nonzero exit:
// RUN: not pgc-opt %s -p pg-to-ptx --split-input-file 2>&1 | filecheck %s --check-prefix=EXIT

// ---- the gpu.module becomes a ptx.module with one .entry per kernel; the host function stays as it is.
// Each buffer argument is a .u64 parameter made a global address; the view of the arena at byte 1600 is folded into
// the address offset ([%r + 1600]); the delinearization divides in 32 bits (by the constant 100: a multiply-high,
// no div/rem, which ptxas would expand into a reciprocal iteration), so the element offset is computed in 32
// bits too (the indices are index_casts of i32 values) and added to the base with one mad.wide.s32; tanh is
// expanded from accurate f32 arithmetic (fma.rn, div.rn), never tanh.approx.

// CHECK-LABEL: func.func @elementwise
// CHECK:         "gpu.launch_func"{{.*}}@elementwise_kernels::@k0_tanh
// CHECK:         ptx.module version "8.0" target "sm_90" address_size 64 attributes {pg.gpu_module = "elementwise_kernels"} {
// CHECK-NEXT:      ptx.func @k0_tanh(%{{.*}}: !ptx.param<u64>, %{{.*}}: !ptx.param<u64>) maxntid = [256, 1, 1] {
// CHECK-NEXT:        %[[P0:.*]] = ptx.ld_param u64 %{{.*}} : (!ptx.param<u64>) -> !ptx.u64
// CHECK-NEXT:        %[[X:.*]] = ptx.cvta to.global.u64 %[[P0]] : (!ptx.u64) -> !ptx.u64
// CHECK-NEXT:        %[[P1:.*]] = ptx.ld_param u64 %{{.*}} : (!ptx.param<u64>) -> !ptx.u64
// CHECK-NEXT:        %[[ARENA:.*]] = ptx.cvta to.global.u64 %[[P1]] : (!ptx.u64) -> !ptx.u64
// CHECK:             %[[CTA:.*]] = ptx.sreg ctaid.x : () -> !ptx.u32
// CHECK-NEXT:        %{{.*}} = ptx.cvt s64.u32 %[[CTA]] : (!ptx.u32) -> !ptx.s64
// CHECK-NEXT:        %[[TID:.*]] = ptx.sreg tid.x : () -> !ptx.u32
// CHECK:             %[[IN:.*]] = ptx.setp lt.u64 %{{.*}}, %{{.*}} : (!ptx.s64, !ptx.s64) -> !ptx.pred
// CHECK-NEXT:        ptx.bra "[[END:.*]]" if not %[[IN]] : (!ptx.pred) -> ()
// CHECK-NEXT:        %[[L32:.*]] = ptx.cvt s32.s64 %{{.*}} : (!ptx.s64) -> !ptx.s32
// CHECK-NEXT:        %[[HI:.*]] = ptx.mul hi.u32 %[[L32]], %{{.*}} : (!ptx.s32, !ptx.u32) -> !ptx.u32
// CHECK-NEXT:        %{{.*}} = ptx.sub u32 %[[L32]], %[[HI]] : (!ptx.s32, !ptx.u32) -> !ptx.u32
// CHECK-NOT:         ptx.div u32
// CHECK-NOT:         ptx.rem u32
// CHECK:             %[[LIN:.*]] = ptx.add s32
// CHECK-NEXT:        %[[ADDR:.*]] = ptx.mad wide.s32 %[[LIN]], %{{.*}}, %[[X]] : (!ptx.s32, !ptx.s32, !ptx.u64) -> !ptx.s64
// CHECK-NEXT:        %{{.*}} = ptx.ld global.f32 [%[[ADDR]]] : (!ptx.s64) -> !ptx.f32
// CHECK-NOT:         tanh
// CHECK:             ptx.div rn.f32
// CHECK:             ptx.st global.f32 [%{{.*}} + 1600], %{{.*}} : (!ptx.s64, !ptx.f32) -> ()
// CHECK-NEXT:        ptx.label "[[END]]"
// CHECK-NEXT:        ptx.ret
// CHECK-NEXT:      }
// CHECK-NEXT:      ptx.func @k1_exp(
// CHECK:             ptx.ld global.f32 [%{{.*}} + 1600]
// CHECK-NOT:         ex2
// CHECK:             ptx.ret
// CHECK-NEXT:      }
// CHECK-NEXT:    }
// CHECK-NEXT:  }

// OPT-LABEL: func.func @elementwise
// OPT:         ptx.module version "8.0" target "sm_90a"

builtin.module attributes {gpu.container_module} {
  func.func @elementwise(%x: memref<4x100xf32>, %result0: memref<4x100xf32> {pg.result = 0 : i64}) {
    %0 = arith.constant 1 : index
    %1 = arith.constant 2 : index
    %2 = arith.constant 256 : index
    %arena = memref.alloc() {alignment = 64 : i64} : memref<3200xi8>
    "gpu.launch_func"(%1, %0, %0, %2, %0, %0, %x, %arena) <{kernel = @elementwise_kernels::@k0_tanh, operandSegmentSizes = array<i32: 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 2, 0>}> : (index, index, index, index, index, index, memref<4x100xf32>, memref<3200xi8>) -> ()
    "gpu.launch_func"(%1, %0, %0, %2, %0, %0, %arena, %result0) <{kernel = @elementwise_kernels::@k1_exp, operandSegmentSizes = array<i32: 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 2, 0>}> : (index, index, index, index, index, index, memref<3200xi8>, memref<4x100xf32>) -> ()
    memref.dealloc %arena : memref<3200xi8>
    func.return
  }
  "gpu.module"() <{sym_name = "elementwise_kernels"}> ({
    "gpu.func"() <{function_type = (memref<4x100xf32>, memref<3200xi8>) -> (), kernel}> ({
    ^bb0(%x: memref<4x100xf32>, %arena: memref<3200xi8>):
      %0 = arith.constant 256 : index
      %1 = arith.constant 400 : index
      %2 = arith.constant 100 : i32
      %off = arith.constant 1600 : index
      %v = memref.view %arena[%off][] : memref<3200xi8> to memref<4x100xf32>
      %3 = "gpu.block_id"() <{dimension = #gpu<dim x>}> : () -> index
      %4 = "gpu.thread_id"() <{dimension = #gpu<dim x>}> : () -> index
      %5 = arith.muli %3, %0 : index
      %6 = arith.addi %5, %4 : index
      %7 = arith.cmpi ult, %6, %1 : index
      scf.if %7 {
        %8 = arith.index_cast %6 : index to i32
        %9 = arith.remui %8, %2 : i32
        %10 = arith.divui %8, %2 : i32
        %i = arith.index_cast %10 : i32 to index
        %j = arith.index_cast %9 : i32 to index
        %a = memref.load %x[%i, %j] : memref<4x100xf32>
        %t = math.tanh %a : f32
        memref.store %t, %v[%i, %j] : memref<4x100xf32>
      }
      "gpu.return"() : () -> ()
    }) {sym_name = "k0_tanh", gpu.known_block_size = array<i32: 256, 1, 1>, pg.schedule = "thread_per_point", pg.kind = "elementwise"} : () -> ()
    "gpu.func"() <{function_type = (memref<3200xi8>, memref<4x100xf32>) -> (), kernel}> ({
    ^bb0(%arena: memref<3200xi8>, %result0: memref<4x100xf32>):
      %0 = arith.constant 256 : index
      %1 = arith.constant 400 : index
      %2 = arith.constant 100 : i32
      %off = arith.constant 1600 : index
      %v = memref.view %arena[%off][] : memref<3200xi8> to memref<4x100xf32>
      %3 = "gpu.block_id"() <{dimension = #gpu<dim x>}> : () -> index
      %4 = "gpu.thread_id"() <{dimension = #gpu<dim x>}> : () -> index
      %5 = arith.muli %3, %0 : index
      %6 = arith.addi %5, %4 : index
      %7 = arith.cmpi ult, %6, %1 : index
      scf.if %7 {
        %8 = arith.index_cast %6 : index to i32
        %9 = arith.remui %8, %2 : i32
        %10 = arith.divui %8, %2 : i32
        %i = arith.index_cast %10 : i32 to index
        %j = arith.index_cast %9 : i32 to index
        %a = memref.load %v[%i, %j] : memref<4x100xf32>
        %e = math.exp %a : f32
        memref.store %e, %result0[%i, %j] : memref<4x100xf32>
      }
      "gpu.return"() : () -> ()
    }) {sym_name = "k1_exp", gpu.known_block_size = array<i32: 256, 1, 1>, pg.schedule = "thread_per_point", pg.kind = "elementwise"} : () -> ()
  }) : () -> ()
}

// -----

// ---- a block reduction: a .shared buffer of the kernel, butterfly shuffles (shfl.sync.bfly.b32 of the f32
// register), stores and loads in the shared window, one bar.sync; the strided loop is guarded (its start is the
// thread index) and bottom-tested, its accumulator written back with ptx.assign.

// CHECK-LABEL: func.func @rowsum
// CHECK:         ptx.func @k0_sum(
// CHECK-NEXT:      ptx.shared @k0_sum_smem1[8] align 16
// CHECK:           %[[SMEM:.*]] = ptx.shared_addr u64 @k0_sum_smem1 : () -> !ptx.u64
// CHECK:           %[[ACC:.*]] = ptx.mov f32 %{{.*}} : (!ptx.f32) -> !ptx.f32
// CHECK-NEXT:      %[[SKIP:.*]] = ptx.setp ge.s64 %{{.*}}, %{{.*}} : (!ptx.s64, !ptx.s64) -> !ptx.pred
// CHECK-NEXT:      ptx.bra "[[DONE:.*]]" if %[[SKIP]] : (!ptx.pred) -> ()
// CHECK-NEXT:      ptx.label "[[LOOP:.*]]"
// CHECK:           %[[SUM:.*]] = ptx.add rn.f32 %[[ACC]], %{{.*}} : (!ptx.f32, !ptx.f32) -> !ptx.f32
// CHECK-NEXT:      ptx.assign f32 %[[ACC]], %[[SUM]] : (!ptx.f32, !ptx.f32) -> ()
// CHECK:           ptx.bra "[[LOOP]]" if %{{.*}} : (!ptx.pred) -> ()
// CHECK-NEXT:      ptx.label "[[DONE]]"
// CHECK-NEXT:      %{{.*}} = ptx.shfl_sync bfly.b32 %[[ACC]], 16, 31, 0xffffffff : (!ptx.f32) -> !ptx.f32
// CHECK:           ptx.shfl_sync bfly.b32 %{{.*}}, 1, 31, 0xffffffff
// CHECK:           ptx.st shared.f32 [%{{.*}}], %{{.*}} : (!ptx.s64, !ptx.f32) -> ()
// CHECK:           ptx.bar_sync 0
// CHECK:           ptx.ld shared.f32 [%{{.*}}] : (!ptx.s64) -> !ptx.f32
// CHECK:           ptx.shfl_sync bfly.b32 %{{.*}}, 1, 31, 0xffffffff
// CHECK:           ptx.st global.f32

builtin.module attributes {gpu.container_module} {
  func.func @rowsum(%x: memref<3x64xf32>, %result0: memref<3xf32> {pg.result = 0 : i64}, %result1: memref<3x64xf32> {pg.result = 1 : i64}) {
    %0 = arith.constant 1 : index
    %1 = arith.constant 3 : index
    %2 = arith.constant 64 : index
    "gpu.launch_func"(%1, %0, %0, %2, %0, %0, %x, %result1, %result0) <{kernel = @rowsum_kernels::@k0_sum, operandSegmentSizes = array<i32: 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 3, 0>}> : (index, index, index, index, index, index, memref<3x64xf32>, memref<3x64xf32>, memref<3xf32>) -> ()
    func.return
  }
  "gpu.module"() <{sym_name = "rowsum_kernels"}> ({
    "gpu.func"() <{function_type = (memref<3x64xf32>, memref<3x64xf32>, memref<3xf32>) -> (), kernel}> ({
    ^bb0(%x: memref<3x64xf32>, %result1: memref<3x64xf32>, %result0: memref<3xf32>):
      %0 = arith.constant 31 : i32
      %1 = arith.constant 5 : i32
      %2 = arith.constant 0 : i32
      %3 = arith.constant 2 : i32
      %c0 = arith.constant 0 : index
      %c1 = arith.constant 1 : index
      %zero = arith.constant 0.000000e+00 : f32
      %c64 = arith.constant 64 : index
      %i = "gpu.block_id"() <{dimension = #gpu<dim x>}> : () -> index
      %4 = "gpu.thread_id"() <{dimension = #gpu<dim x>}> : () -> index
      %5 = scf.for %k = %4 to %c64 step %c64 iter_args(%acc = %zero) -> (f32) {
        %a = memref.load %x[%i, %k] : memref<3x64xf32>
        %e = math.exp %a : f32
        memref.store %e, %result1[%i, %k] : memref<3x64xf32>
        %n = arith.addf %acc, %e : f32
        scf.yield %n : f32
      }
      %6 = gpu_ext.shuffle xor %5, 16 : f32
      %7 = arith.addf %5, %6 : f32
      %8 = gpu_ext.shuffle xor %7, 8 : f32
      %9 = arith.addf %7, %8 : f32
      %10 = gpu_ext.shuffle xor %9, 4 : f32
      %11 = arith.addf %9, %10 : f32
      %12 = gpu_ext.shuffle xor %11, 2 : f32
      %13 = arith.addf %11, %12 : f32
      %14 = gpu_ext.shuffle xor %13, 1 : f32
      %15 = arith.addf %13, %14 : f32
      %16 = arith.index_cast %4 : index to i32
      %17 = arith.andi %16, %0 : i32
      %18 = arith.shrui %16, %1 : i32
      %19 = gpu_ext.workgroup_alloc : memref<2xf32, 3 : i64>
      %20 = arith.cmpi eq, %17, %2 : i32
      scf.if %20 {
        %21 = arith.index_cast %18 : i32 to index
        memref.store %15, %19[%21] : memref<2xf32, 3 : i64>
      }
      "gpu.barrier"() : () -> ()
      %22 = arith.cmpi eq, %18, %2 : i32
      scf.if %22 {
        %23 = arith.cmpi ult, %17, %3 : i32
        %24 = scf.if %23 -> (f32) {
          %25 = arith.index_cast %17 : i32 to index
          %26 = memref.load %19[%25] : memref<2xf32, 3 : i64>
          scf.yield %26 : f32
        } else {
          scf.yield %zero : f32
        }
        %27 = gpu_ext.shuffle xor %24, 1 : f32
        %s = arith.addf %24, %27 : f32
        %28 = arith.cmpi eq, %17, %2 : i32
        scf.if %28 {
          memref.store %s, %result0[%i] : memref<3xf32>
        }
      }
      "gpu.return"() : () -> ()
    }) {sym_name = "k0_sum", gpu.known_block_size = array<i32: 64, 1, 1>, pg.schedule = "block_per_row", pg.kind = "reduction"} : () -> ()
  }) : () -> ()
}

// -----

// ---- the atomic scatter-add: red.global.add.f32 (its result is unused)

// CHECK-LABEL: func.func @scatter
// CHECK:         ptx.func @k0_scatter_add_1(
// CHECK:           ptx.red global.add.f32 [%{{.*}}], %{{.*}} : (!ptx.s64, !ptx.f32) -> ()

builtin.module attributes {gpu.container_module} {
  func.func @scatter(%u: memref<8x2xf32>, %idx: memref<8xi64>, %result0: memref<5x2xf32> {pg.result = 0 : i64}) {
    %0 = arith.constant 1 : index
    %1 = arith.constant 32 : index
    "gpu.launch_func"(%0, %0, %0, %1, %0, %0, %result0) <{kernel = @scatter_kernels::@k0_scatter_add, operandSegmentSizes = array<i32: 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 0>}> : (index, index, index, index, index, index, memref<5x2xf32>) -> ()
    "gpu.launch_func"(%0, %0, %0, %1, %0, %0, %idx, %u, %result0) <{kernel = @scatter_kernels::@k0_scatter_add_1, operandSegmentSizes = array<i32: 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 3, 0>}> : (index, index, index, index, index, index, memref<8xi64>, memref<8x2xf32>, memref<5x2xf32>) -> ()
    func.return
  }
  "gpu.module"() <{sym_name = "scatter_kernels"}> ({
    "gpu.func"() <{function_type = (memref<5x2xf32>) -> (), kernel}> ({
    ^bb0(%result0: memref<5x2xf32>):
      %0 = arith.constant 32 : index
      %1 = arith.constant 10 : index
      %2 = arith.constant 2 : i32
      %zero = arith.constant 0.000000e+00 : f32
      %3 = "gpu.block_id"() <{dimension = #gpu<dim x>}> : () -> index
      %4 = "gpu.thread_id"() <{dimension = #gpu<dim x>}> : () -> index
      %5 = arith.muli %3, %0 : index
      %6 = arith.addi %5, %4 : index
      %7 = arith.cmpi ult, %6, %1 : index
      scf.if %7 {
        %8 = arith.index_cast %6 : index to i32
        %9 = arith.remui %8, %2 : i32
        %10 = arith.divui %8, %2 : i32
        %i = arith.index_cast %10 : i32 to index
        %j = arith.index_cast %9 : i32 to index
        memref.store %zero, %result0[%i, %j] : memref<5x2xf32>
      }
      "gpu.return"() : () -> ()
    }) {sym_name = "k0_scatter_add", gpu.known_block_size = array<i32: 32, 1, 1>, pg.schedule = "thread_per_point", pg.kind = "scatter_add"} : () -> ()
    "gpu.func"() <{function_type = (memref<8xi64>, memref<8x2xf32>, memref<5x2xf32>) -> (), kernel}> ({
    ^bb0(%idx: memref<8xi64>, %u: memref<8x2xf32>, %result0: memref<5x2xf32>):
      %0 = arith.constant 32 : index
      %1 = arith.constant 16 : index
      %2 = arith.constant 8 : i32
      %c0 = arith.constant 0 : index
      %c1 = arith.constant 1 : index
      %c8 = arith.constant 8 : index
      %3 = "gpu.block_id"() <{dimension = #gpu<dim x>}> : () -> index
      %4 = "gpu.thread_id"() <{dimension = #gpu<dim x>}> : () -> index
      %5 = arith.muli %3, %0 : index
      %6 = arith.addi %5, %4 : index
      %7 = arith.cmpi ult, %6, %1 : index
      scf.if %7 {
        %8 = arith.index_cast %6 : index to i32
        %9 = arith.remui %8, %2 : i32
        %10 = arith.divui %8, %2 : i32
        %j = arith.index_cast %10 : i32 to index
        %k = arith.index_cast %9 : i32 to index
        %r = memref.load %idx[%k] : memref<8xi64>
        %ri = arith.index_cast %r : i64 to index
        %v = memref.load %u[%k, %j] : memref<8x2xf32>
        %11 = "memref.atomic_rmw"(%v, %result0, %ri, %j) <{kind = 0 : i64}> : (f32, memref<5x2xf32>, index, index) -> f32
      }
      "gpu.return"() : () -> ()
    }) {sym_name = "k0_scatter_add_1", gpu.known_block_size = array<i32: 32, 1, 1>, pg.schedule = "atomic", pg.kind = "scatter_add"} : () -> ()
  }) : () -> ()
}

// -----

// ---- i1 buffers are bytes (ld.global.u8 + setp.ne.u16; selp.u16 + st.global.u8); f64 exp from f64 fma; float to
// int truncates (cvt.rzi); a loop whose iteration values swap goes through temporaries; every op carries the
// location of the op it lowers.

// CHECK-LABEL: ptx.func @k0_misc
// CHECK:         %[[BYTE:.*]] = ptx.ld global.u8 [%{{.*}}] : (!ptx.s64) -> !ptx.u16
// CHECK-NEXT:    %[[FLAG:.*]] = ptx.setp ne.u16 %[[BYTE]], %{{.*}} : (!ptx.u16, !ptx.u16) -> !ptx.pred
// CHECK:         ptx.ld global.f64
// CHECK:         ptx.fma rn.f64
// CHECK:         ptx.cvt rzi.s64.f64
// CHECK:         %[[IV:.*]] = ptx.mov s64 %{{.*}} : (!ptx.s64) -> !ptx.s64
// CHECK-NEXT:    %[[P:.*]] = ptx.mov s64 %{{.*}} : (!ptx.s64) -> !ptx.s64
// CHECK-NEXT:    %[[Q:.*]] = ptx.mov s64 %{{.*}} : (!ptx.s64) -> !ptx.s64
// CHECK-NEXT:    ptx.label "[[TOP:.*]]"
// CHECK-NEXT:    %[[T1:.*]] = ptx.mov s64 %[[Q]] : (!ptx.s64) -> !ptx.s64
// CHECK-NEXT:    %[[T2:.*]] = ptx.mov s64 %[[P]] : (!ptx.s64) -> !ptx.s64
// CHECK-NEXT:    ptx.assign s64 %[[P]], %[[T1]] : (!ptx.s64, !ptx.s64) -> ()
// CHECK-NEXT:    ptx.assign s64 %[[Q]], %[[T2]] : (!ptx.s64, !ptx.s64) -> ()
// CHECK:         ptx.bra "[[TOP]]" if %{{.*}} : (!ptx.pred) -> ()
// CHECK:         ptx.add s64 %[[P]], %[[Q]]
// CHECK:         ptx.st global.s64
// CHECK:         %[[NF:.*]] = ptx.xor pred %[[FLAG]], %[[FLAG]] : (!ptx.pred, !ptx.pred) -> !ptx.pred
// CHECK:         %[[B:.*]] = ptx.selp u16 %{{.*}}, %{{.*}}, %[[NF]] : (!ptx.u16, !ptx.u16, !ptx.pred) -> !ptx.u16
// CHECK-NEXT:    ptx.st global.u8 [%{{.*}}], %[[B]] : (!ptx.s64, !ptx.u16) -> ()

// LOC-LABEL: ptx.func @k0_misc
// LOC:         ptx.sreg tid.x {{.*}} loc("model.py":40:4)
// LOC:         ptx.ld global.u8 {{.*}} loc("model.py":41:4)
// LOC:         ptx.ld global.f64 {{.*}} loc("model.py":42:4)
// LOC:         ptx.fma rn.f64 {{.*}} loc("model.py":43:4)
// LOC:         ptx.cvt rzi.s64.f64 {{.*}} loc("model.py":44:4)
// LOC:         ptx.selp s64 {{.*}} loc("model.py":45:4)
// LOC:         ptx.label {{.*}} loc("model.py":46:4)
// LOC:         ptx.st global.s64 {{.*}} loc("model.py":48:4)
// LOC:         ptx.st global.u8 {{.*}} loc("model.py":49:4)

builtin.module attributes {gpu.container_module} {
  "gpu.module"() <{sym_name = "misc_kernels"}> ({
    "gpu.func"() <{function_type = (memref<4xi1>, memref<4xf64>, memref<4xi64>) -> (), kernel}> ({
    ^bb0(%flags: memref<4xi1>, %x: memref<4xf64>, %out: memref<4xi64>):
      %c0 = arith.constant 0 : index
      %c1 = arith.constant 1 : index
      %c4 = arith.constant 4 : index
      %c10 = arith.constant 10 : index
      %one = arith.constant 1.000000e+00 : f64
      %zero = arith.constant 0 : i64
      %tid = "gpu.thread_id"() <{dimension = #gpu<dim x>}> : () -> index loc("model.py":40:4)
      %ok = arith.cmpi ult, %tid, %c4 : index loc("model.py":40:4)
      scf.if %ok {
        %f = memref.load %flags[%tid] : memref<4xi1> loc("model.py":41:4)
        %v = memref.load %x[%tid] : memref<4xf64> loc("model.py":42:4)
        %e = math.exp %v : f64 loc("model.py":43:4)
        %n = arith.fptosi %e : f64 to i64 loc("model.py":44:4)
        %s = arith.select %f, %n, %zero : i64 loc("model.py":45:4)
        %a, %b = scf.for %k = %c0 to %c10 step %c1 iter_args(%p = %s, %q = %zero) -> (i64, i64) {
          scf.yield %q, %p : i64, i64
        } loc("model.py":46:4)
        %t = arith.addi %a, %b : i64 loc("model.py":47:4)
        memref.store %t, %out[%tid] : memref<4xi64> loc("model.py":48:4)
        %nf = arith.xori %f, %f : i1 loc("model.py":49:4)
        memref.store %nf, %flags[%tid] : memref<4xi1> loc("model.py":49:4)
      } loc("model.py":40:4)
      "gpu.return"() : () -> () loc("model.py":40:4)
    }) {sym_name = "k0_misc", gpu.known_block_size = array<i32: 32, 1, 1>} : () -> ()
  }) : () -> ()
}

// -----

// ---- what the pass rejects

// CHECK: pg-to-ptx: 'memref.load' on memref<?xf32>: dynamic shapes have no PTX lowering at model.py:50:4
// EXIT: pg-to-ptx: 'memref.load' on memref<?xf32>: dynamic shapes have no PTX lowering at model.py:50:4
builtin.module attributes {gpu.container_module} {
  "gpu.module"() <{sym_name = "bad_kernels"}> ({
    "gpu.func"() <{function_type = (memref<?xf32>) -> (), kernel}> ({
    ^bb0(%x: memref<?xf32>):
      %c0 = arith.constant 0 : index
      %a = memref.load %x[%c0] : memref<?xf32> loc("model.py":50:4)
      "gpu.return"() : () -> ()
    }) {sym_name = "k0_dynamic"} : () -> ()
  }) : () -> ()
}

// -----

// CHECK: pg-to-ptx: 'memref.load': no PTX register for type i8 at model.py:51:4
builtin.module attributes {gpu.container_module} {
  "gpu.module"() <{sym_name = "bad_kernels"}> ({
    "gpu.func"() <{function_type = (memref<4xi8>) -> (), kernel}> ({
    ^bb0(%x: memref<4xi8>):
      %c0 = arith.constant 0 : index
      %a = memref.load %x[%c0] : memref<4xi8> loc("model.py":51:4)
      "gpu.return"() : () -> ()
    }) {sym_name = "k0_byte"} : () -> ()
  }) : () -> ()
}

// -----

// CHECK: pg-to-ptx: no PTX lowering for 'scf.parallel' at model.py:52:4
builtin.module attributes {gpu.container_module} {
  "gpu.module"() <{sym_name = "bad_kernels"}> ({
    "gpu.func"() <{function_type = (memref<4xf32>) -> (), kernel}> ({
    ^bb0(%x: memref<4xf32>):
      %c0 = arith.constant 0 : index
      %c4 = arith.constant 4 : index
      %c1 = arith.constant 1 : index
      "scf.parallel"(%c0, %c4, %c1) <{operandSegmentSizes = array<i32: 1, 1, 1, 0>}> ({
      ^bb0(%i: index):
        scf.reduce
      }) : (index, index, index) -> () loc("model.py":52:4)
      "gpu.return"() : () -> ()
    }) {sym_name = "k0_nested"} : () -> ()
  }) : () -> ()
}

// -----

// CHECK: pg-to-ptx: the module has loop nests at model.py:53:4 but no gpu.module (run pg-to-gpu first)
func.func @loops_only(%x: memref<4xf32>) {
  %c0 = arith.constant 0 : index
  %c4 = arith.constant 4 : index
  %c1 = arith.constant 1 : index
  "scf.parallel"(%c0, %c4, %c1) <{operandSegmentSizes = array<i32: 1, 1, 1, 0>}> ({
  ^bb0(%i: index):
    scf.reduce
  }) {pg.kernel = "k0_nothing", pg.kind = "elementwise"} : (index, index, index) -> () loc("model.py":53:4)
  func.return
}
