// pg-split-reductions: a reduction nest scheduled split_rows/split_columns becomes a scratch buffer of partial
// results, the partial nest (over (chunk, point), one loop over the chunk's reduced points) and the combining nest,
// each scheduled with the strategy pg-to-gpu maps it with; side outputs are stored once per element.
// RUN: pgc-opt %s -p pg-split-reductions --split-input-file --verify-diagnostics | filecheck %s
// Then pg-to-gpu maps each nest as its own schedule says:
// RUN: pgc-opt %s -p pg-split-reductions,pg-to-gpu --split-input-file --verify-diagnostics | filecheck %s --check-prefix=GPU
// A kernel scheduled split_rows whose nest is not marked is an error, not a silent thread per point:
// RUN: pgc-opt %s -p pg-split-reductions --split-input-file --verify-diagnostics 2>&1 | filecheck %s --check-prefix=ERR
// RUN: not pgc-opt %s -p pg-split-reductions --split-input-file

// A sum of squares to a scalar with the f32 cast of its bf16 input as a side output (clip_grad_norm_'s kernels):
// 1073 elements in 5 chunks of 215, the last ragged (clamped, the identity combined, the side output not stored).
// CHECK-LABEL: func.func @full
// CHECK:         %[[PARTIALS:.*]] = memref.alloc() : memref<5x1xf32>
// CHECK:         ^bb0(%[[S:.*]]: index, %[[P:.*]]: index):
// CHECK:           scf.for
// CHECK:             %[[VALID:.*]] = arith.cmpi ult
// CHECK:             arith.minui
// CHECK:             memref.load %x
// CHECK:             scf.if %[[VALID]] {
// CHECK-NEXT:          memref.store %{{.*}}, %result0
// CHECK:             arith.select %[[VALID]]
// CHECK:           memref.store %{{.*}}, %[[PARTIALS]][%[[S]], %[[P]]] : memref<5x1xf32>
// CHECK:         kernel.schedule = #kernel.schedule<"block_per_row", block = 64>
// CHECK:           scf.for
// CHECK:             memref.load %[[PARTIALS]]
// CHECK:             arith.addf
// CHECK:           memref.store %{{.*}}, %result1[]
// CHECK:         kernel.schedule = #kernel.schedule<"thread_per_point", block = 64>
// CHECK:         memref.dealloc %[[PARTIALS]]

// GPU-LABEL: func.func @full
// GPU:         "gpu.launch_func"({{.*}}@full_kernels::@k0_sum,
// GPU:         "gpu.launch_func"({{.*}}@full_kernels::@k0_sum_1,
// GPU:           gpu_ext.shuffle xor
// GPU:         sym_name = "k0_sum", gpu.known_block_size = array<i32: 64, 1, 1>, pg.schedule = "block_per_row"
// GPU:         sym_name = "k0_sum_1", gpu.known_block_size = array<i32: 32, 1, 1>, pg.schedule = "thread_per_point"
func.func @full(%x: memref<37x29xbf16>, %result0: memref<37x29xf32> {pg.result = 0 : i64}, %result1: memref<f32> {pg.result = 1 : i64}) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c29 = arith.constant 29 : index
  %c37 = arith.constant 37 : index
  %zero = arith.constant 0.000000e+00 : f32
  "scf.parallel"(%c0, %c1, %c1) <{operandSegmentSizes = array<i32: 1, 1, 1, 0>}> ({
  ^bb0(%p: index):
    %s = scf.for %i = %c0 to %c37 step %c1 iter_args(%acc = %zero) -> (f32) {
      %t = scf.for %j = %c0 to %c29 step %c1 iter_args(%acc2 = %acc) -> (f32) {
        %a = memref.load %x[%i, %j] : memref<37x29xbf16>
        %w = arith.extf %a : bf16 to f32
        memref.store %w, %result0[%i, %j] : memref<37x29xf32>
        %sq = arith.mulf %w, %w : f32
        %n = arith.addf %acc2, %sq : f32
        scf.yield %n : f32
      }
      scf.yield %t : f32
    }
    memref.store %s, %result1[] : memref<f32>
    scf.reduce
  }) {pg.kernel = "k0_sum", pg.kind = "reduction", pg.nest = "reduction", kernel.schedule = #kernel.schedule<"split_rows", splits = 5, block = 64>} : (index, index, index) -> ()
  func.return
}

// -----

// A column sum of a 64x96 matrix in 8 chunks of 8 rows (equal: no clamp): a thread per (chunk, column), adjacent
// threads on adjacent columns, then a thread per column combining its 8 partials (fewer than 32).
// CHECK-LABEL: func.func @columns
// CHECK:         memref.alloc() : memref<8x96xf32>
// CHECK-NOT:     arith.minui
// CHECK:         kernel.schedule = #kernel.schedule<"thread_per_point", block = 256>
// CHECK:         kernel.schedule = #kernel.schedule<"thread_per_point", block = 256>
// GPU-LABEL: func.func @columns
// GPU:         "gpu.launch_func"({{.*}}@columns_kernels::@k1_sum,{{.*}}memref<64x96xf32>, memref<8x96xf32>) -> ()
// GPU:         "gpu.launch_func"({{.*}}@columns_kernels::@k1_sum_1,{{.*}}memref<8x96xf32>, memref<96xf32>) -> ()
// GPU:         sym_name = "k1_sum", gpu.known_block_size = array<i32: 256, 1, 1>, pg.schedule = "thread_per_point"
// GPU:         sym_name = "k1_sum_1", gpu.known_block_size = array<i32: 96, 1, 1>, pg.schedule = "thread_per_point"
func.func @columns(%x: memref<64x96xf32>, %result0: memref<96xf32> {pg.result = 0 : i64}) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c64 = arith.constant 64 : index
  %c96 = arith.constant 96 : index
  %zero = arith.constant 0.000000e+00 : f32
  "scf.parallel"(%c0, %c96, %c1) <{operandSegmentSizes = array<i32: 1, 1, 1, 0>}> ({
  ^bb0(%c: index):
    %s = scf.for %r = %c0 to %c64 step %c1 iter_args(%acc = %zero) -> (f32) {
      %a = memref.load %x[%r, %c] : memref<64x96xf32>
      %n = arith.addf %acc, %a : f32
      scf.yield %n : f32
    }
    memref.store %s, %result0[%c] : memref<96xf32>
    scf.reduce
  }) {pg.kernel = "k1_sum", pg.kind = "reduction", pg.nest = "reduction", kernel.schedule = #kernel.schedule<"split_columns", splits = 8, block = 256>} : (index, index, index) -> ()
  func.return
}

// -----

// ERR: pg-split-reductions: @unmarked: kernel(s) k2_sum are scheduled split_rows or split_columns, but none of their loop nests is a marked reduction nest
func.func @unmarked(%x: memref<100x64xf32>, %result0: memref<100xf32> {pg.result = 0 : i64}) {
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
  }) {pg.kernel = "k2_sum", pg.kind = "reduction", kernel.schedule = #kernel.schedule<"split_rows", splits = 4, block = 64>} : (index, index, index) -> ()
  func.return
}
