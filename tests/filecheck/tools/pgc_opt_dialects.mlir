// pgc-opt knows xDSL's dialects that the later stages use (arith, scf, memref, math, gpu) next to pg.
// (xDSL 0.74's gpu ops have no custom syntax: they print in the generic form.)
// RUN: pgc-opt %s | pgc-opt | filecheck %s

func.func @loops(%m: memref<4xf32>, %t: tensor<4xf32>) -> tensor<4xf32> {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  scf.for %i = %c0 to %c4 step %c1 {
    %v = memref.load %m[%i] : memref<4xf32>
    %e = math.exp %v : f32
    memref.store %e, %m[%i] : memref<4xf32>
  }
  %r = pg.exp %t : tensor<4xf32>
  func.return %r : tensor<4xf32>
}
"gpu.module"() <{sym_name = "kernels"}> ({
  "gpu.func"() <{function_type = (memref<4xf32>) -> (), kernel}> ({
  ^bb0(%m: memref<4xf32>):
    %x = "gpu.thread_id"() <{dimension = #gpu<dim x>}> : () -> index
    "gpu.return"() : () -> ()
  }) {sym_name = "k"} : () -> ()
}) : () -> ()

// CHECK:      func.func @loops(%m: memref<4xf32>, %t: tensor<4xf32>) -> tensor<4xf32> {
// CHECK-NEXT:   %c0 = arith.constant 0 : index
// CHECK-NEXT:   %c1 = arith.constant 1 : index
// CHECK-NEXT:   %c4 = arith.constant 4 : index
// CHECK-NEXT:   scf.for %i = %c0 to %c4 step %c1 {
// CHECK-NEXT:     %v = memref.load %m[%i] : memref<4xf32>
// CHECK-NEXT:     %e = math.exp %v : f32
// CHECK-NEXT:     memref.store %e, %m[%i] : memref<4xf32>
// CHECK-NEXT:   }
// CHECK-NEXT:   %r = pg.exp %t : tensor<4xf32>
// CHECK-NEXT:   func.return %r : tensor<4xf32>
// CHECK-NEXT: }
// CHECK-NEXT: "gpu.module"() <{sym_name = "kernels"}> ({
// CHECK-NEXT:   "gpu.func"() <{function_type = (memref<4xf32>) -> (), kernel}> ({
// CHECK-NEXT:   ^bb0(%m: memref<4xf32>):
// CHECK-NEXT:     %x = "gpu.thread_id"() <{dimension = #gpu<dim x>}> : () -> index
// CHECK-NEXT:     "gpu.return"() : () -> ()
// CHECK-NEXT:   }) {sym_name = "k"} : () -> ()
// CHECK-NEXT: }) : () -> ()
// CHECK-NEXT: }
