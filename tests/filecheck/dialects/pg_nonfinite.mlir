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

// 16-bit floats: their hex bit patterns have 16 bits (bf16 is the top half of an f32).
// CHECK: pg.constant dense<[0xff80, 0x7fc0, 1.500000e+00]> : tensor<3xbf16>
// CHECK: pg.constant dense<[0x7c00, 0xfe00]> : tensor<2xf16>
func.func @low() -> (tensor<3xbf16>, tensor<2xf16>) {
  %0 = pg.constant dense<[0xFF80, 0x7FC0, 1.5]> : tensor<3xbf16>
  %1 = pg.constant dense<[0x7C00, 0xFE00]> : tensor<2xf16>
  func.return %0, %1 : tensor<3xbf16>, tensor<2xf16>
}
