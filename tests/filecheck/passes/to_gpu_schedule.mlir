// pg-to-gpu follows the kernel.schedule a nest carries (pg-schedule's choice, copied by pg-to-loops), not its own
// options: a sum over 64 elements scheduled thread_per_point with 64-thread blocks keeps a thread per row, and one
// scheduled block_per_row gets a block per row even with block-reductions=false; one scheduled warp_per_row gets a
// warp per row, 4 rows a 128-thread block (25 blocks), lane 0 storing, with no workgroup memory and no barrier.
// RUN: pgc-opt %s -p pg-to-gpu --split-input-file --verify-diagnostics | filecheck %s
// RUN: pgc-opt %s -p 'pg-to-gpu{block-reductions=false}' --split-input-file --verify-diagnostics | filecheck %s
// A kernel scheduled block_per_row whose nest is not a reduction is an error, not a silent thread per point (the
// last chunk; without --verify-diagnostics, a nonzero exit):
// RUN: pgc-opt %s -p pg-to-gpu --split-input-file --verify-diagnostics 2>&1 | filecheck %s --check-prefix=ERR
// RUN: not pgc-opt %s -p pg-to-gpu --split-input-file

// CHECK-LABEL: func.func @per_point
// CHECK-NOT:       gpu_ext.shuffle
// CHECK:         }) {sym_name = "k0_sum", gpu.known_block_size = array<i32: 64, 1, 1>, pg.schedule = "thread_per_point", pg.kind = "reduction"}
func.func @per_point(%x: memref<100x64xf32>, %result0: memref<100xf32> {pg.result = 0 : i64}) {
  %c0 = arith.constant 0 : index
  %c100 = arith.constant 100 : index
  %c1 = arith.constant 1 : index
  %c64 = arith.constant 64 : index
  %zero = arith.constant 0.000000e+00 : f32
  "scf.parallel"(%c0, %c100, %c1) <{operandSegmentSizes = array<i32: 1, 1, 1, 0>}> ({
  ^bb0(%i: index):
    %s = scf.for %k = %c0 to %c64 step %c1 iter_args(%acc = %zero) -> (f32) {
      %a = memref.load %x[%i, %k] : memref<100x64xf32>
      %n = arith.addf %acc, %a : f32
      scf.yield %n : f32
    }
    memref.store %s, %result0[%i] : memref<100xf32>
    scf.reduce
  }) {pg.kernel = "k0_sum", pg.kind = "reduction", pg.nest = "reduction", kernel.schedule = #kernel.schedule<"thread_per_point", block = 64>} : (index, index, index) -> ()
  func.return
}

// -----

// CHECK-LABEL: func.func @per_row
// CHECK:           gpu_ext.shuffle xor
// CHECK:         }) {sym_name = "k0_sum", gpu.known_block_size = array<i32: 64, 1, 1>, pg.schedule = "block_per_row", pg.kind = "reduction"}
func.func @per_row(%x: memref<100x64xf32>, %result0: memref<100xf32> {pg.result = 0 : i64}) {
  %c0 = arith.constant 0 : index
  %c100 = arith.constant 100 : index
  %c1 = arith.constant 1 : index
  %c64 = arith.constant 64 : index
  %zero = arith.constant 0.000000e+00 : f32
  "scf.parallel"(%c0, %c100, %c1) <{operandSegmentSizes = array<i32: 1, 1, 1, 0>}> ({
  ^bb0(%i: index):
    %s = scf.for %k = %c0 to %c64 step %c1 iter_args(%acc = %zero) -> (f32) {
      %a = memref.load %x[%i, %k] : memref<100x64xf32>
      %n = arith.addf %acc, %a : f32
      scf.yield %n : f32
    }
    memref.store %s, %result0[%i] : memref<100xf32>
    scf.reduce
  }) {pg.kernel = "k0_sum", pg.kind = "reduction", pg.nest = "reduction", kernel.schedule = #kernel.schedule<"block_per_row", block = 64>} : (index, index, index) -> ()
  func.return
}

// -----

// CHECK-LABEL: func.func @per_warp
// CHECK-DAG:       %[[BLOCKS:.*]] = arith.constant 25 : index
// CHECK-DAG:       %[[THREADS:.*]] = arith.constant 128 : index
// CHECK:           "gpu.launch_func"(%[[BLOCKS]], %{{.*}}, %{{.*}}, %[[THREADS]], %{{.*}}, %{{.*}}, %x, %result0) <{kernel = @per_warp_kernels::@k0_sum
// CHECK:           %[[LANE:.*]] = arith.andi %{{.*}}, %{{.*}} : i32
// CHECK:           %[[WARP:.*]] = arith.shrui %{{.*}}, %{{.*}} : i32
// CHECK-NOT:       gpu_ext.workgroup_alloc
// CHECK-NOT:       gpu.barrier
// CHECK:           gpu_ext.shuffle xor
// CHECK:           memref.store
// CHECK:         }) {sym_name = "k0_sum", gpu.known_block_size = array<i32: 128, 1, 1>, pg.schedule = "warp_per_row", pg.kind = "reduction"}
func.func @per_warp(%x: memref<100x64xf32>, %result0: memref<100xf32> {pg.result = 0 : i64}) {
  %c0 = arith.constant 0 : index
  %c100 = arith.constant 100 : index
  %c1 = arith.constant 1 : index
  %c64 = arith.constant 64 : index
  %zero = arith.constant 0.000000e+00 : f32
  "scf.parallel"(%c0, %c100, %c1) <{operandSegmentSizes = array<i32: 1, 1, 1, 0>}> ({
  ^bb0(%i: index):
    %s = scf.for %k = %c0 to %c64 step %c1 iter_args(%acc = %zero) -> (f32) {
      %a = memref.load %x[%i, %k] : memref<100x64xf32>
      %n = arith.addf %acc, %a : f32
      scf.yield %n : f32
    }
    memref.store %s, %result0[%i] : memref<100xf32>
    scf.reduce
  }) {pg.kernel = "k0_sum", pg.kind = "reduction", pg.nest = "reduction", kernel.schedule = #kernel.schedule<"warp_per_row", block = 128>} : (index, index, index) -> ()
  func.return
}

// -----

// ERR: pg-to-gpu: @not_a_reduction: kernel(s) k0_copy are scheduled block_per_row, warp_per_row or atomic, but none of their loop nests has that form
func.func @not_a_reduction(%x: memref<100xf32>, %result0: memref<100xf32> {pg.result = 0 : i64}) {
  %c0 = arith.constant 0 : index
  %c100 = arith.constant 100 : index
  %c1 = arith.constant 1 : index
  "scf.parallel"(%c0, %c100, %c1) <{operandSegmentSizes = array<i32: 1, 1, 1, 0>}> ({
  ^bb0(%i: index):
    %a = memref.load %x[%i] : memref<100xf32>
    memref.store %a, %result0[%i] : memref<100xf32>
    scf.reduce
  }) {pg.kernel = "k0_copy", pg.kind = "elementwise", kernel.schedule = #kernel.schedule<"block_per_row", block = 256>} : (index, index, index) -> ()
  func.return
}
