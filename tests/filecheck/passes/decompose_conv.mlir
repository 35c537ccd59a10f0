// RUN: pgc-opt %s -p pg-decompose-conv | filecheck %s
// RUN: pgc-opt %s | pgc-opt | filecheck %s --check-prefix=ROUND
// RUN: pgc-opt %s -p pg-decompose-conv --print-debuginfo | filecheck %s --check-prefix=LOC

// pg.conv (one op through autodiff) becomes im2col and one matmul before kernel formation: the input padded, one
// gather per spatial dim with index q * stride + k * dilation (two iotas), the windows as (groups, N * Q, C/G * K)
// and the weight as (groups, C/G * K, O/G), a batched matmul, and the result back to (N, O, *Q).
func.func @conv2d(%x: tensor<2x4x7x6xf32>, %w: tensor<6x2x3x2xf32>) -> tensor<2x6x4x4xf32> {
  %y = pg.conv %x, %w stride = [2, 1] dilation = [1, 2] pad_low = [1, 0] pad_high = [1, 0] groups = 2 : (tensor<2x4x7x6xf32>, tensor<6x2x3x2xf32>) -> tensor<2x6x4x4xf32>
  func.return %y : tensor<2x6x4x4xf32>
}

// CHECK-LABEL: func.func @conv2d
// CHECK-NOT:     pg.conv
// CHECK:         %[[P:.*]] = pg.pad %x low = [0, 0, 1, 0] high = [0, 0, 1, 0] {{.*}} -> tensor<2x4x9x6xf32>
// CHECK-NEXT:    %[[Q0:.*]] = pg.iota dim = 0 : tensor<4x3xi64>
// CHECK-NEXT:    %[[S0:.*]] = pg.constant dense<2> : tensor<i64>
// CHECK-NEXT:    %[[S0B:.*]] = pg.broadcast_to %[[S0]]
// CHECK-NEXT:    %[[Q0S:.*]] = pg.mul %[[Q0]], %[[S0B]] : tensor<4x3xi64>
// CHECK-NEXT:    %[[K0:.*]] = pg.iota dim = 1 : tensor<4x3xi64>
// CHECK-NEXT:    %[[I0:.*]] = pg.add %[[Q0S]], %[[K0]] : tensor<4x3xi64>
// CHECK-NEXT:    %[[H:.*]] = pg.gather %[[P]][%[[I0]]] dim = 2 : (tensor<2x4x9x6xf32>, tensor<4x3xi64>) -> tensor<2x4x4x3x6xf32>
// CHECK:         %[[K1:.*]] = pg.iota dim = 1 : tensor<4x2xi64>
// CHECK:         pg.mul %[[K1]]
// CHECK:         %[[HW:.*]] = pg.gather %[[H]][%{{.*}}] dim = 4 : (tensor<2x4x4x3x6xf32>, tensor<4x2xi64>) -> tensor<2x4x4x3x4x2xf32>
// CHECK-NEXT:    %[[G:.*]] = pg.reshape %[[HW]] : tensor<2x4x4x3x4x2xf32> -> tensor<2x2x2x4x3x4x2xf32>
// CHECK-NEXT:    %[[GP:.*]] = pg.permute %[[G]] perm = [1, 0, 3, 5, 2, 4, 6]
// CHECK-NEXT:    %[[COLS:.*]] = pg.reshape %[[GP]] : tensor<2x2x4x4x2x3x2xf32> -> tensor<2x32x12xf32>
// CHECK-NEXT:    %[[WG:.*]] = pg.reshape %w : tensor<6x2x3x2xf32> -> tensor<2x3x12xf32>
// CHECK-NEXT:    %[[WM:.*]] = pg.permute %[[WG]] perm = [0, 2, 1] : tensor<2x3x12xf32> -> tensor<2x12x3xf32>
// CHECK-NEXT:    %[[MM:.*]] = pg.matmul %[[COLS]], %[[WM]] : (tensor<2x32x12xf32>, tensor<2x12x3xf32>) -> tensor<2x32x3xf32>
// CHECK-NEXT:    %[[R:.*]] = pg.reshape %[[MM]] : tensor<2x32x3xf32> -> tensor<2x2x16x3xf32>
// CHECK-NEXT:    %[[RP:.*]] = pg.permute %[[R]] perm = [1, 0, 3, 2] : tensor<2x2x16x3xf32> -> tensor<2x2x3x16xf32>
// CHECK-NEXT:    %[[Y:.*]] = pg.reshape %[[RP]] : tensor<2x2x3x16xf32> -> tensor<2x6x4x4xf32>
// CHECK-NEXT:    func.return %[[Y]]

// A 1-d convolution without padding: no pg.pad, one gather.
func.func @conv1d(%x: tensor<1x3x8xf64>, %w: tensor<2x3x3xf64>) -> tensor<1x2x6xf64> {
  %y = pg.conv %x, %w stride = [1] dilation = [1] pad_low = [0] pad_high = [0] groups = 1 : (tensor<1x3x8xf64>, tensor<2x3x3xf64>) -> tensor<1x2x6xf64> loc("model.py":7:0)
  func.return %y : tensor<1x2x6xf64>
}

// CHECK-LABEL: func.func @conv1d
// CHECK-NOT:     pg.pad
// CHECK:         pg.gather %x[%{{.*}}] dim = 2 : (tensor<1x3x8xf64>, tensor<6x3xi64>) -> tensor<1x3x6x3xf64>
// CHECK:         pg.matmul %{{.*}} : (tensor<1x6x9xf64>, tensor<1x9x2xf64>) -> tensor<1x6x2xf64>
// CHECK-NOT:     pg.gather

// ROUND: pg.conv %x, %w stride = [2, 1] dilation = [1, 2] pad_low = [1, 0] pad_high = [1, 0] groups = 2 : (tensor<2x4x7x6xf32>, tensor<6x2x3x2xf32>) -> tensor<2x6x4x4xf32>
// ROUND: pg.conv %x, %w stride = [1] dilation = [1] pad_low = [0] pad_high = [0] groups = 1

// Every op of the lowering keeps the convolution's location (the user's file:line).
// LOC-LABEL: func.func @conv1d
// LOC:         pg.iota dim = 0 : tensor<6x3xi64> loc("model.py":7:0)
// LOC:         pg.gather {{.*}} loc("model.py":7:0)
// LOC:         pg.matmul {{.*}} loc("model.py":7:0)
// LOC:         pg.reshape {{.*}} -> tensor<1x2x6xf64> loc("model.py":7:0)
