// Non-finite float constants survive a round trip (xDSL prints them as hex bit patterns).
// RUN: pgc-opt %s | pgc-opt | filecheck %s

// CHECK: pg.constant dense<0xff800000> : tensor<f32>
// CHECK: pg.constant dense<[0x7ff0000000000000, 0xfff8000000000000]> : tensor<2xf64>
// CHECK: pg.constant dense<2.500000e+00> : tensor<f32>
func.func @f() -> (tensor<f32>, tensor<2xf64>, tensor<f32>) {
  %0 = pg.constant dense<0xff800000> : tensor<f32>
  %1 = pg.constant dense<[0x7FF0000000000000, 0xFFF8000000000000]> : tensor<2xf64>
  %2 = pg.constant dense<2.5> : tensor<f32>
  func.return %0, %1, %2 : tensor<f32>, tensor<2xf64>, tensor<f32>
}

// CHECK: pg.constant dense<0xff800000> : tensor<3xf32>
func.func @splat() -> tensor<3xf32> {
  %0 = pg.constant dense<0xff800000> : tensor<3xf32>
  func.return %0 : tensor<3xf32>
}
