// The kernel dialect round-trips through its custom syntax and the generic form.
// RUN: pgc-opt %s | pgc-opt | filecheck %s
// RUN: pgc-opt %s --print-op-generic | pgc-opt | filecheck %s
// RUN: pgc-opt %s --print-debuginfo | pgc-opt --print-debuginfo | filecheck %s --check-prefix=LOC

func.func @kernels(%a: tensor<32x27xf32>, %b: tensor<32x1xf32>, %m: memref<32x27xf32>, %n: memref<32x1xf32>) -> (tensor<32x27xf32>, tensor<32x1xf32>, tensor<f32>) {
  %r:2 = kernel.fused @k3_softmax "reduction" (%a, %b) : (tensor<32x27xf32>, tensor<32x1xf32>) -> (tensor<32x27xf32>, tensor<32x1xf32>) {
  ^bb0(%x: tensor<32x27xf32>, %y: tensor<32x1xf32>):
    %e = pg.exp %x : tensor<32x27xf32> loc("model.py":5:2)
    %s = pg.sum %e dims = [1] keepdim : tensor<32x27xf32> -> tensor<32x1xf32> loc("model.py":6:2)
    %t = pg.add %s, %y : tensor<32x1xf32>
    kernel.yield %e, %t : tensor<32x27xf32>, tensor<32x1xf32>
  } loc("model.py":6:2)
  kernel.launch @k4_sum "reduction" ins(%m : memref<32x27xf32>) outs(%n : memref<32x1xf32>) attributes {note = "x"} {
  ^bb0(%x: tensor<32x27xf32>):
    %s = pg.sum %x dims = [1] keepdim : tensor<32x27xf32> -> tensor<32x1xf32>
    kernel.yield %s : tensor<32x1xf32>
  } loc("model.py":7:0)
  kernel.launch @k5_fill "elementwise" ins() outs(%m, %n : memref<32x27xf32>, memref<32x1xf32>) {
    %c = pg.constant dense<0.0> : tensor<32x27xf32>
    %d = pg.constant dense<1.0> : tensor<32x1xf32>
    kernel.yield %c, %d : tensor<32x27xf32>, tensor<32x1xf32>
  }
  %k = kernel.fused @k6_constant "elementwise" () : () -> (tensor<f32>) {
    %c = pg.constant dense<1.0> : tensor<f32>
    kernel.yield %c : tensor<f32>
  }
  func.return %r#0, %r#1, %k : tensor<32x27xf32>, tensor<32x1xf32>, tensor<f32>
}

// CHECK-LABEL: func.func @kernels(%a: tensor<32x27xf32>, %b: tensor<32x1xf32>, %m: memref<32x27xf32>, %n: memref<32x1xf32>)
// CHECK-NEXT:    %[[R:.*]], %[[R1:.*]] = kernel.fused @k3_softmax "reduction" (%a, %b) : (tensor<32x27xf32>, tensor<32x1xf32>) -> (tensor<32x27xf32>, tensor<32x1xf32>) {
// CHECK-NEXT:    ^bb0(%x: tensor<32x27xf32>, %y: tensor<32x1xf32>):
// CHECK-NEXT:      %e = pg.exp %x : tensor<32x27xf32>
// CHECK-NEXT:      %s = pg.sum %e dims = [1] keepdim : tensor<32x27xf32> -> tensor<32x1xf32>
// CHECK-NEXT:      %t = pg.add %s, %y : tensor<32x1xf32>
// CHECK-NEXT:      kernel.yield %e, %t : tensor<32x27xf32>, tensor<32x1xf32>
// CHECK-NEXT:    }
// CHECK-NEXT:    kernel.launch @k4_sum "reduction" ins(%m : memref<32x27xf32>) outs(%n : memref<32x1xf32>) attributes {note = "x"} {
// CHECK-NEXT:    ^bb0(%[[X:.*]]: tensor<32x27xf32>):
// CHECK-NEXT:      %[[S:.*]] = pg.sum %[[X]] dims = [1] keepdim : tensor<32x27xf32> -> tensor<32x1xf32>
// CHECK-NEXT:      kernel.yield %[[S]] : tensor<32x1xf32>
// CHECK-NEXT:    }
// CHECK-NEXT:    kernel.launch @k5_fill "elementwise" ins() outs(%m, %n : memref<32x27xf32>, memref<32x1xf32>) {
// CHECK-NEXT:      %c = pg.constant dense<0.000000e+00> : tensor<32x27xf32>
// CHECK-NEXT:      %d = pg.constant dense<1.000000e+00> : tensor<32x1xf32>
// CHECK-NEXT:      kernel.yield %c, %d : tensor<32x27xf32>, tensor<32x1xf32>
// CHECK-NEXT:    }
// CHECK-NEXT:    %k = kernel.fused @k6_constant "elementwise" () : () -> (tensor<f32>) {
// CHECK-NEXT:      %[[C:.*]] = pg.constant dense<1.000000e+00> : tensor<f32>
// CHECK-NEXT:      kernel.yield %[[C]] : tensor<f32>
// CHECK-NEXT:    }
// CHECK-NEXT:    func.return %[[R]], %[[R1]], %k : tensor<32x27xf32>, tensor<32x1xf32>, tensor<f32>

// LOC:           pg.exp {{.*}} loc("model.py":5:2)
// LOC-NEXT:      pg.sum {{.*}} loc("model.py":6:2)
// LOC:         } loc("model.py":6:2)
// LOC:         } loc("model.py":7:0)
