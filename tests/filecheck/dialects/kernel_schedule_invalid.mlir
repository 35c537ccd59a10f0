// A kernel op's schedule must be a #kernel.schedule attribute (a parse error, and a nonzero exit).
// RUN: not pgc-opt %s 2>&1 | filecheck %s

// CHECK: expected a #kernel.schedule attribute, got 3 : i64
func.func @f(%n: memref<3xf32>) {
  kernel.launch @k0 "elementwise" schedule = 3 ins() outs(%n : memref<3xf32>) {
    %c = pg.constant dense<1.0> : tensor<3xf32>
    kernel.yield %c : tensor<3xf32>
  }
  func.return
}
