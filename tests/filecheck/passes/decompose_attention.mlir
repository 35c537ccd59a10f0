// RUN: pgc-opt %s -p "pg-decompose-attention{all=true}" | filecheck %s
// RUN: pgc-opt %s | pgc-opt | filecheck %s --check-prefix=ROUND

// pg.scaled_dot_product_attention (one op through autodiff) becomes its reference lowering before kernel
// formation: q @ k^T * scale, the causal mask from two iotas, a stable softmax (row max, exp, row sum), @ v.
func.func @causal(%q: tensor<2x3x4xf32>, %k: tensor<2x5x4xf32>, %v: tensor<2x5x6xf32>) -> tensor<2x3x6xf32> {
  %o = pg.scaled_dot_product_attention %q, %k, %v scale = 5.000000e-01 causal : tensor<2x3x4xf32>, tensor<2x5x4xf32>, tensor<2x5x6xf32> -> tensor<2x3x6xf32>
  func.return %o : tensor<2x3x6xf32>
}

// CHECK-LABEL: func.func @causal
// CHECK-NOT:     pg.scaled_dot_product_attention
// CHECK:         %[[KT:.*]] = pg.permute %k
// CHECK-NEXT:    %[[S:.*]] = pg.matmul %q, %[[KT]] : (tensor<2x3x4xf32>, tensor<2x4x5xf32>) -> tensor<2x3x5xf32>
// CHECK:         pg.iota dim = 0 : tensor<3x5xi64>
// CHECK-NEXT:    pg.iota dim = 1 : tensor<3x5xi64>
// CHECK-NEXT:    pg.cmp "le"
// CHECK:         pg.max %{{.*}} dims = [2] keepdim
// CHECK:         pg.exp
// CHECK:         pg.sum %{{.*}} dims = [2] keepdim
// CHECK:         pg.div
// CHECK-NEXT:    %[[O:.*]] = pg.matmul %{{.*}}, %v : (tensor<2x3x5xf32>, tensor<2x5x6xf32>) -> tensor<2x3x6xf32>
// CHECK-NEXT:    func.return %[[O]]

// A bool mask (True = attend) broadcast to the scores and a dropout multiplier applied to the probabilities.
func.func @masked(%q: tensor<2x3x4xf32>, %k: tensor<2x5x4xf32>, %v: tensor<2x5x6xf32>, %m: tensor<3x5xi1>, %d: tensor<2x3x5xf32>) -> tensor<2x3x6xf32> {
  %o = pg.scaled_dot_product_attention %q, %k, %v mask %m : tensor<3x5xi1> dropout %d : tensor<2x3x5xf32> scale = 5.000000e-01 : tensor<2x3x4xf32>, tensor<2x5x4xf32>, tensor<2x5x6xf32> -> tensor<2x3x6xf32>
  func.return %o : tensor<2x3x6xf32>
}

// CHECK-LABEL: func.func @masked
// CHECK:         %[[MB:.*]] = pg.broadcast_to %m : tensor<3x5xi1> -> tensor<2x3x5xi1>
// CHECK:         pg.select %[[MB]]
// CHECK:         %[[P:.*]] = pg.div
// CHECK-NEXT:    %[[PD:.*]] = pg.mul %[[P]], %d : tensor<2x3x5xf32>
// CHECK-NEXT:    pg.matmul %[[PD]], %v

// ROUND: pg.scaled_dot_product_attention %q, %k, %v scale = 5.000000e-01 causal : tensor<2x3x4xf32>
// ROUND: pg.scaled_dot_product_attention %q, %k, %v mask %m : tensor<3x5xi1> dropout %d : tensor<2x3x5xf32> scale
