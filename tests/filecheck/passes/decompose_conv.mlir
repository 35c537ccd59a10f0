// RUN: pgc-opt %s -p pg-decompose-conv | filecheck %s
// RUN: pgc-opt %s | pgc-opt | filecheck %s --check-prefix=ROUND
// RUN: pgc-opt %s -p pg-decompose-conv --print-debuginfo | filecheck %s --check-prefix=LOC

// pg.conv (one op through autodiff) becomes im2col and one matmul before kernel formation: the input moved to
// channels last and padded, its spatial dims flattened, one gather of the windows with the flat index
// sum_i (q_i * stride_i + k_i * dilation_i) * (row length after dim i) (iotas over (*Q, *K)), giving (N, Q, K, C),
// the windows as (groups, N * Q, K * C/G) and the weight as (groups, K * C/G, O/G), a batched matmul, and the
// result back to (N, O, *Q).
func.func @conv2d(%x: tensor<2x4x7x6xf32>, %w: tensor<6x2x3x2xf32>) -> tensor<2x6x4x4xf32> {
  %y = pg.conv %x, %w stride = [2, 1] dilation = [1, 2] pad_low = [1, 0] pad_high = [1, 0] groups = 2 : (tensor<2x4x7x6xf32>, tensor<6x2x3x2xf32>) -> tensor<2x6x4x4xf32>
  func.return %y : tensor<2x6x4x4xf32>
}

// CHECK-LABEL: func.func @conv2d
// CHECK-NOT:     pg.conv
// CHECK:         %[[XL:.*]] = pg.permute %x perm = [0, 2, 3, 1] : tensor<2x4x7x6xf32> -> tensor<2x7x6x4xf32>
// CHECK-NEXT:    %[[P:.*]] = pg.pad %[[XL]] low = [0, 1, 0, 0] high = [0, 1, 0, 0] {{.*}} -> tensor<2x9x6x4xf32>
// CHECK-NEXT:    %[[F:.*]] = pg.reshape %[[P]] : tensor<2x9x6x4xf32> -> tensor<2x54x4xf32>
// CHECK-NEXT:    %[[Q0:.*]] = pg.iota dim = 0 : tensor<4x4x3x2xi64>
// CHECK-NEXT:    %[[S0:.*]] = pg.constant dense<12> : tensor<i64>
// CHECK:         %[[K0:.*]] = pg.iota dim = 2 : tensor<4x4x3x2xi64>
// CHECK-NEXT:    %[[D0:.*]] = pg.constant dense<6> : tensor<i64>
// CHECK:         %[[Q1:.*]] = pg.iota dim = 1 : tensor<4x4x3x2xi64>
// CHECK-NEXT:    pg.add %{{.*}}, %[[Q1]]
// CHECK-NEXT:    %[[K1:.*]] = pg.iota dim = 3 : tensor<4x4x3x2xi64>
// CHECK-NEXT:    %[[D1:.*]] = pg.constant dense<2> : tensor<i64>
// CHECK:         %[[I:.*]] = pg.reshape %{{.*}} : tensor<4x4x3x2xi64> -> tensor<16x6xi64>
// CHECK-NEXT:    %[[WIN:.*]] = pg.gather %[[F]][%[[I]]] dim = 1 : (tensor<2x54x4xf32>, tensor<16x6xi64>) -> tensor<2x16x6x4xf32>
// CHECK-NEXT:    %[[G:.*]] = pg.reshape %[[WIN]] : tensor<2x16x6x4xf32> -> tensor<2x16x6x2x2xf32>
// CHECK-NEXT:    %[[GP:.*]] = pg.permute %[[G]] perm = [3, 0, 1, 2, 4] : tensor<2x16x6x2x2xf32> -> tensor<2x2x16x6x2xf32>
// CHECK-NEXT:    %[[COLS:.*]] = pg.reshape %[[GP]] : tensor<2x2x16x6x2xf32> -> tensor<2x32x12xf32>
// CHECK-NEXT:    %[[WP:.*]] = pg.permute %w perm = [0, 2, 3, 1] : tensor<6x2x3x2xf32> -> tensor<6x3x2x2xf32>
// CHECK-NEXT:    %[[WK:.*]] = pg.reshape %[[WP]] : tensor<6x3x2x2xf32> -> tensor<2x3x12xf32>
// CHECK-NEXT:    %[[WM:.*]] = pg.permute %[[WK]] perm = [0, 2, 1] : tensor<2x3x12xf32> -> tensor<2x12x3xf32>
// CHECK-NEXT:    %[[MM:.*]] = pg.matmul %[[COLS]], %[[WM]] : (tensor<2x32x12xf32>, tensor<2x12x3xf32>) -> tensor<2x32x3xf32>
// CHECK-NEXT:    %[[R:.*]] = pg.reshape %[[MM]] : tensor<2x32x3xf32> -> tensor<2x2x16x3xf32>
// CHECK-NEXT:    %[[RP:.*]] = pg.permute %[[R]] perm = [1, 0, 3, 2] : tensor<2x2x16x3xf32> -> tensor<2x2x3x16xf32>
// CHECK-NEXT:    %[[Y:.*]] = pg.reshape %[[RP]] : tensor<2x2x3x16xf32> -> tensor<2x6x4x4xf32>
// CHECK-NEXT:    func.return %[[Y]]

// A 1-d convolution without padding, of one output channel: no pg.pad, one gather, no copy of the product (its
// permute to (N, O, Q) moves only a dim of length 1: a reshape).
func.func @conv1d(%x: tensor<1x3x8xf64>, %w: tensor<1x3x3xf64>) -> tensor<1x1x6xf64> {
  %y = pg.conv %x, %w stride = [1] dilation = [1] pad_low = [0] pad_high = [0] groups = 1 : (tensor<1x3x8xf64>, tensor<1x3x3xf64>) -> tensor<1x1x6xf64> loc("model.py":7:0)
  func.return %y : tensor<1x1x6xf64>
}

// CHECK-LABEL: func.func @conv1d
// CHECK-NOT:     pg.pad
// CHECK:         pg.permute %x perm = [0, 2, 1] : tensor<1x3x8xf64> -> tensor<1x8x3xf64>
// CHECK:         pg.gather %{{.*}}[%{{.*}}] dim = 1 : (tensor<1x8x3xf64>, tensor<6x3xi64>) -> tensor<1x6x3x3xf64>
// CHECK:         pg.matmul %{{.*}} : (tensor<1x6x9xf64>, tensor<1x9x1xf64>) -> tensor<1x6x1xf64>
// CHECK-NEXT:    pg.reshape %{{.*}} : tensor<1x6x1xf64> -> tensor<1x1x6x1xf64>
// CHECK-NEXT:    pg.reshape %{{.*}} : tensor<1x1x6x1xf64> -> tensor<1x1x1x6xf64>
// CHECK-NOT:     pg.gather
// CHECK-NOT:     pg.permute

// A 1x1 convolution reads its input, channels last, as the im2col matrix (no gather); the permute that makes its
// input (as autodiff's for the weight gradient) is composed with the lowering's own.
func.func @conv1x1(%x: tensor<3x2x4x5xf32>, %w: tensor<6x3x1x1xf32>) -> tensor<2x6x4x5xf32> {
  %t = pg.permute %x perm = [1, 0, 2, 3] : tensor<3x2x4x5xf32> -> tensor<2x3x4x5xf32>
  %y = pg.conv %t, %w stride = [1, 1] dilation = [1, 1] pad_low = [0, 0] pad_high = [0, 0] groups = 1 : (tensor<2x3x4x5xf32>, tensor<6x3x1x1xf32>) -> tensor<2x6x4x5xf32>
  func.return %y : tensor<2x6x4x5xf32>
}

// CHECK-LABEL: func.func @conv1x1
// CHECK-NOT:     pg.gather
// CHECK:         %[[XL:.*]] = pg.permute %x perm = [1, 2, 3, 0] : tensor<3x2x4x5xf32> -> tensor<2x4x5x3xf32>
// CHECK-NEXT:    %[[F:.*]] = pg.reshape %[[XL]] : tensor<2x4x5x3xf32> -> tensor<2x20x3xf32>
// CHECK-NEXT:    %[[W:.*]] = pg.reshape %[[F]] : tensor<2x20x3xf32> -> tensor<2x20x1x3xf32>
// CHECK-NEXT:    pg.reshape %[[W]] : tensor<2x20x1x3xf32> -> tensor<1x40x3xf32>
// CHECK-NOT:     pg.gather
// CHECK:         pg.matmul

// ROUND: pg.conv %x, %w stride = [2, 1] dilation = [1, 2] pad_low = [1, 0] pad_high = [1, 0] groups = 2 : (tensor<2x4x7x6xf32>, tensor<6x2x3x2xf32>) -> tensor<2x6x4x4xf32>
// ROUND: pg.conv %x, %w stride = [1] dilation = [1] pad_low = [0] pad_high = [0] groups = 1

// Every op of the lowering keeps the convolution's location (the user's file:line).
// LOC-LABEL: func.func @conv1d
// LOC:         pg.iota dim = 0 : tensor<6x3xi64> loc("model.py":7:0)
// LOC:         pg.gather {{.*}} loc("model.py":7:0)
// LOC:         pg.matmul {{.*}} loc("model.py":7:0)
// LOC:         pg.reshape {{.*}} -> tensor<1x1x6xf64> loc("model.py":7:0)
