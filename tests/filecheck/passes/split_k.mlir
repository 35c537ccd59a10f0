// pg-split-k: a matmul nest scheduled with split_k = S becomes a scratch buffer of f32 partial sums, a marked matmul
// nest batched by the S chunks of K (its operands read at s * chunk + k, the same rung without split_k) and a
// thread_per_point nest summing the chunks in order, rounded once to the output's type.
// RUN: pgc-opt %s -p pg-split-k --split-input-file --verify-diagnostics | filecheck %s

// A bf16 matmul of K = 256 in 4 chunks of 64.
// CHECK-LABEL: func.func @whole
// CHECK:         %[[PARTIALS:.*]] = memref.alloc() : memref<4x8x4xf32>
// CHECK:         ^bb0(%[[S:.*]]: index, %[[I:.*]]: index, %[[J:.*]]: index):
// CHECK:           scf.for %[[KK:.*]] = %{{.*}} to %[[C64:.*]] step
// CHECK:             %[[OFF:.*]] = arith.muli %[[S]], %[[C64]] : index
// CHECK:             %[[K:.*]] = arith.addi %[[OFF]], %[[KK]] : index
// CHECK:             memref.load %a[%[[I]], %[[K]]]
// CHECK:             memref.load %b[%[[K]], %[[J]]]
// CHECK-NOT:       arith.truncf
// CHECK:           memref.store %{{.*}}, %[[PARTIALS]][%[[S]], %[[I]], %[[J]]] : memref<4x8x4xf32>
// CHECK:         pg.nest = "matmul"
// CHECK-SAME:    #kernel.schedule<"cp-async", tile = [64, 64, 16], threads = 128, warps = [2, 2], lanes = [8, 4], reps = [1, 2], vec = [4, 4], vector, async_copy>
// CHECK:           scf.for
// CHECK:             memref.load %[[PARTIALS]]
// CHECK:             arith.addf
// CHECK:           arith.truncf
// CHECK:           memref.store %{{.*}}, %result0
// CHECK:         kernel.schedule = #kernel.schedule<"thread_per_point", block = 256>
// CHECK:         memref.dealloc %[[PARTIALS]]
func.func @whole(%a: memref<8x256xbf16>, %b: memref<256x4xbf16>, %result0: memref<8x4xbf16> {pg.result = 0 : i64}) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %m = arith.constant 8 : index
  %n = arith.constant 4 : index
  %k = arith.constant 256 : index
  %zero = arith.constant 0.0 : f32
  "scf.parallel"(%c0, %c0, %m, %n, %c1, %c1) <{operandSegmentSizes = array<i32: 2, 2, 2, 0>}> ({
  ^bb0(%i: index, %j: index):
    %sum = scf.for %kk = %c0 to %k step %c1 iter_args(%acc = %zero) -> (f32) {
      %x0 = memref.load %a[%i, %kk] : memref<8x256xbf16>
      %y0 = memref.load %b[%kk, %j] : memref<256x4xbf16>
      %x = arith.extf %x0 : bf16 to f32
      %y = arith.extf %y0 : bf16 to f32
      %p = arith.mulf %x, %y : f32
      %s = arith.addf %acc, %p : f32
      scf.yield %s : f32
    }
    %r = arith.truncf %sum : f32 to bf16
    memref.store %r, %result0[%i, %j] : memref<8x4xbf16>
    scf.reduce
  }) {pg.kernel = "k0_matmul", pg.kind = "matmul", pg.nest = "matmul", kernel.schedule = #kernel.schedule<"cp-async", tile = [64, 64, 16], threads = 128, warps = [2, 2], lanes = [8, 4], reps = [1, 2], vec = [4, 4], vector, async_copy, split_k = 4>}
    : (index, index, index, index, index, index) -> ()
  func.return
}

// -----

// K = 100 in 3 chunks of 34, the last ragged: k clamped, both factors zero past K.
// CHECK-LABEL: func.func @ragged
// CHECK:         memref.alloc() : memref<3x2x2xf32>
// CHECK:           scf.for
// CHECK:             %[[VALID:.*]] = arith.cmpi ult
// CHECK:             arith.minui
// CHECK:             arith.select %[[VALID]]
// CHECK:             arith.select %[[VALID]]
// CHECK:             arith.mulf
func.func @ragged(%a: memref<2x100xf32>, %b: memref<100x2xf32>, %result0: memref<2x2xf32> {pg.result = 0 : i64}) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %m = arith.constant 2 : index
  %k = arith.constant 100 : index
  %zero = arith.constant 0.0 : f32
  "scf.parallel"(%c0, %c0, %m, %m, %c1, %c1) <{operandSegmentSizes = array<i32: 2, 2, 2, 0>}> ({
  ^bb0(%i: index, %j: index):
    %sum = scf.for %kk = %c0 to %k step %c1 iter_args(%acc = %zero) -> (f32) {
      %x = memref.load %a[%i, %kk] : memref<2x100xf32>
      %y = memref.load %b[%kk, %j] : memref<100x2xf32>
      %p = arith.mulf %x, %y : f32
      %s = arith.addf %acc, %p : f32
      scf.yield %s : f32
    }
    memref.store %sum, %result0[%i, %j] : memref<2x2xf32>
    scf.reduce
  }) {pg.kernel = "k0_matmul", pg.kind = "matmul", pg.nest = "matmul", kernel.schedule = #kernel.schedule<"cp-async", tile = [64, 64, 16], threads = 128, warps = [2, 2], lanes = [8, 4], reps = [1, 2], vec = [4, 4], vector, async_copy, split_k = 3>}
    : (index, index, index, index, index, index) -> ()
  func.return
}
