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

// shared_rows (a few-row table, many adds a row): 20 columns in one slice, 40 tuples in chunks of 16 -> 3 blocks of 64
// threads (2 warps, lanes on columns). The block's 5 x 32 rows in workgroup memory, zeroed by the rows of each
// thread's column; rounds of 4 tuples a thread (warp g takes g, g + 2, ...): their loads first, clamped to the last
// tuple and column and added as 0 where past the end, then their red.shared adds; one global atomic per row hit.

// CHECK-LABEL: func.func @shared_rows
// CHECK:         "gpu.launch_func"(%[[G:.*]], %{{.*}}, %{{.*}}, %[[B:.*]], %{{.*}}, %{{.*}}, %idx, %u, %result0) <{kernel = @shared_rows_kernels::@k0_scatter_add_1,
// CHECK:         %[[T:.*]] = gpu_ext.workgroup_alloc : memref<160xf32, 3 : i64>
// CHECK:         scf.for
// CHECK:           memref.store %{{.*}}, %[[T]][%{{.*}}] : memref<160xf32, 3 : i64>
// CHECK:         "gpu.barrier"() : () -> ()
// CHECK:         scf.for %{{.*}} = %c0 to %{{.*}} step %c1 {
// CHECK-COUNT-4:   memref.load %u
// CHECK-NOT:       memref.load %u
// CHECK-COUNT-4:   "memref.atomic_rmw"(%{{.*}}, %[[T]], %{{.*}}) <{kind = 0 : i64}> : (f32, memref<160xf32, 3 : i64>, index) -> f32
// CHECK-NEXT:    }
// CHECK-NEXT:    "gpu.barrier"() : () -> ()
// CHECK:           %[[V:.*]] = memref.load %[[T]]
// CHECK-NEXT:      %[[HIT:.*]] = arith.cmpf une, %[[V]]
// CHECK-NEXT:      scf.if %[[HIT]] {
// CHECK-NEXT:        "memref.atomic_rmw"(%[[V]], %result0, %{{.*}}, %{{.*}}) <{kind = 0 : i64}> : (f32, memref<5x20xf32>, index, index) -> f32
// CHECK:         }) {sym_name = "k0_scatter_add_1", gpu.known_block_size = array<i32: 64, 1, 1>, pg.schedule = "shared_rows", pg.kind = "scatter_add"}
func.func @shared_rows(%u: memref<40x20xf32>, %idx: memref<40xi64>, %result0: memref<5x20xf32> {pg.result = 0 : i64}) {
  %c0 = arith.constant 0 : index
  %c5 = arith.constant 5 : index
  %c20 = arith.constant 20 : index
  %c1 = arith.constant 1 : index
  %c40 = arith.constant 40 : index
  %zero = arith.constant 0.000000e+00 : f32
  "scf.parallel"(%c0, %c0, %c5, %c20, %c1, %c1) <{operandSegmentSizes = array<i32: 2, 2, 2, 0>}> ({
  ^bb0(%i: index, %j: index):
    memref.store %zero, %result0[%i, %j] : memref<5x20xf32>
    scf.reduce
  }) {pg.kernel = "k0_scatter_add", pg.kind = "scatter_add", kernel.schedule = #kernel.schedule<"shared_rows", chunk = 16, block = 64>} : (index, index, index, index, index, index) -> ()
  "scf.parallel"(%c0, %c20, %c1) <{operandSegmentSizes = array<i32: 1, 1, 1, 0>}> ({
  ^bb0(%j: index):
    scf.for %k = %c0 to %c40 step %c1 {
      %r = memref.load %idx[%k] : memref<40xi64>
      %ri = arith.index_cast %r : i64 to index
      %v = memref.load %u[%k, %j] : memref<40x20xf32>
      %old = memref.load %result0[%ri, %j] : memref<5x20xf32>
      %new = arith.addf %old, %v : f32
      memref.store %new, %result0[%ri, %j] : memref<5x20xf32>
    }
    scf.reduce
  }) {pg.kernel = "k0_scatter_add", pg.kind = "scatter_add", pg.nest = "scatter_add", kernel.schedule = #kernel.schedule<"shared_rows", chunk = 16, block = 64>} : (index, index, index) -> ()
  func.return
}

// -----

// shared_rows with a chunk that is not whole rounds (2 warps x 4 tuples): the nest takes atomic's mapping instead.

// CHECK-LABEL: func.func @shared_rows_unfit
// CHECK-NOT:     gpu_ext.workgroup_alloc
// CHECK:         "memref.atomic_rmw"(%{{.*}}, %result0, %{{.*}}, %{{.*}}) <{kind = 0 : i64}> : (f32, memref<5x20xf32>, index, index) -> f32
func.func @shared_rows_unfit(%u: memref<40x20xf32>, %idx: memref<40xi64>, %result0: memref<5x20xf32> {pg.result = 0 : i64}) {
  %c0 = arith.constant 0 : index
  %c5 = arith.constant 5 : index
  %c20 = arith.constant 20 : index
  %c1 = arith.constant 1 : index
  %c40 = arith.constant 40 : index
  %zero = arith.constant 0.000000e+00 : f32
  "scf.parallel"(%c0, %c0, %c5, %c20, %c1, %c1) <{operandSegmentSizes = array<i32: 2, 2, 2, 0>}> ({
  ^bb0(%i: index, %j: index):
    memref.store %zero, %result0[%i, %j] : memref<5x20xf32>
    scf.reduce
  }) {pg.kernel = "k0_scatter_add", pg.kind = "scatter_add", kernel.schedule = #kernel.schedule<"shared_rows", chunk = 5, block = 64>} : (index, index, index, index, index, index) -> ()
  "scf.parallel"(%c0, %c20, %c1) <{operandSegmentSizes = array<i32: 1, 1, 1, 0>}> ({
  ^bb0(%j: index):
    scf.for %k = %c0 to %c40 step %c1 {
      %r = memref.load %idx[%k] : memref<40xi64>
      %ri = arith.index_cast %r : i64 to index
      %v = memref.load %u[%k, %j] : memref<40x20xf32>
      %old = memref.load %result0[%ri, %j] : memref<5x20xf32>
      %new = arith.addf %old, %v : f32
      memref.store %new, %result0[%ri, %j] : memref<5x20xf32>
    }
    scf.reduce
  }) {pg.kernel = "k0_scatter_add", pg.kind = "scatter_add", pg.nest = "scatter_add", kernel.schedule = #kernel.schedule<"shared_rows", chunk = 5, block = 64>} : (index, index, index) -> ()
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
