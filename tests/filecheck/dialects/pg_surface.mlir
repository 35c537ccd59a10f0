// The elementwise ops of issue 20 (operator surface): they parse, print and parse back, in the custom and the
// generic form; pg-to-loops gives each one math op (sign: compares and selects; bitwise ops: arith).
// RUN: pgc-opt %s | pgc-opt | filecheck %s
// RUN: pgc-opt %s --print-op-generic | pgc-opt | filecheck %s
// RUN: pgc-opt %s -p pg-fuse,pg-bufferize,pg-to-loops | filecheck %s --check-prefix=LOOPS

// CHECK-LABEL: func.func @math
// CHECK-NEXT:    %0 = pg.floor %x : tensor<2x3xf32>
// CHECK-NEXT:    %1 = pg.ceil %0 : tensor<2x3xf32>
// CHECK-NEXT:    %2 = pg.round %1 : tensor<2x3xf32>
// CHECK-NEXT:    %3 = pg.trunc %2 : tensor<2x3xf32>
// CHECK-NEXT:    %4 = pg.sign %3 : tensor<2x3xf32>
// CHECK-NEXT:    %5 = pg.log2 %4 : tensor<2x3xf32>
// CHECK-NEXT:    %6 = pg.exp2 %5 : tensor<2x3xf32>
// CHECK-NEXT:    %7 = pg.log1p %6 : tensor<2x3xf32>
// CHECK-NEXT:    %8 = pg.expm1 %7 : tensor<2x3xf32>
// CHECK-NEXT:    %9 = pg.asin %8 : tensor<2x3xf32>
// CHECK-NEXT:    %10 = pg.acos %9 : tensor<2x3xf32>
// CHECK-NEXT:    %11 = pg.atan %10 : tensor<2x3xf32>
// CHECK-NEXT:    %12 = pg.asinh %11 : tensor<2x3xf32>
// CHECK-NEXT:    %13 = pg.acosh %12 : tensor<2x3xf32>
// CHECK-NEXT:    %14 = pg.atanh %13 : tensor<2x3xf32>
// CHECK-NEXT:    %15 = pg.atan2 %14, %x : tensor<2x3xf32>
// CHECK-NEXT:    %16 = pg.copysign %15, %x : tensor<2x3xf32>
// CHECK-NEXT:    func.return %16 : tensor<2x3xf32>

// LOOPS-LABEL: func.func @math
// LOOPS:         math.floor
// LOOPS-NEXT:    math.ceil
// LOOPS-NEXT:    math.roundeven
// LOOPS-NEXT:    math.trunc
// LOOPS:         arith.select
// LOOPS:         arith.select
// LOOPS-NEXT:    math.log2
// LOOPS-NEXT:    math.exp2
// LOOPS-NEXT:    math.log1p
// LOOPS-NEXT:    math.expm1
// LOOPS-NEXT:    math.asin
// LOOPS-NEXT:    math.acos
// LOOPS-NEXT:    math.atan
// LOOPS-NEXT:    math.asinh
// LOOPS-NEXT:    math.acosh
// LOOPS-NEXT:    math.atanh
// LOOPS-NEXT:    math.atan2
// LOOPS-NEXT:    math.copysign
func.func @math(%x: tensor<2x3xf32>) -> tensor<2x3xf32> {
  %0 = pg.floor %x : tensor<2x3xf32>
  %1 = pg.ceil %0 : tensor<2x3xf32>
  %2 = pg.round %1 : tensor<2x3xf32>
  %3 = pg.trunc %2 : tensor<2x3xf32>
  %4 = pg.sign %3 : tensor<2x3xf32>
  %5 = pg.log2 %4 : tensor<2x3xf32>
  %6 = pg.exp2 %5 : tensor<2x3xf32>
  %7 = pg.log1p %6 : tensor<2x3xf32>
  %8 = pg.expm1 %7 : tensor<2x3xf32>
  %9 = pg.asin %8 : tensor<2x3xf32>
  %10 = pg.acos %9 : tensor<2x3xf32>
  %11 = pg.atan %10 : tensor<2x3xf32>
  %12 = pg.asinh %11 : tensor<2x3xf32>
  %13 = pg.acosh %12 : tensor<2x3xf32>
  %14 = pg.atanh %13 : tensor<2x3xf32>
  %15 = pg.atan2 %14, %x : tensor<2x3xf32>
  %16 = pg.copysign %15, %x : tensor<2x3xf32>
  func.return %16 : tensor<2x3xf32>
}

// CHECK-LABEL: func.func @bitwise
// CHECK-NEXT:    %0 = pg.bitwise_and %a, %b : tensor<4xi64>
// CHECK-NEXT:    %1 = pg.bitwise_or %0, %b : tensor<4xi64>
// CHECK-NEXT:    %2 = pg.bitwise_xor %1, %a : tensor<4xi64>
// CHECK-NEXT:    %3 = pg.bitwise_and %p, %q : tensor<4xi1>

// LOOPS-LABEL: func.func @bitwise
// LOOPS:         arith.andi {{.*}} : i64
// LOOPS-NEXT:    arith.ori {{.*}} : i64
// LOOPS-NEXT:    arith.xori {{.*}} : i64
// LOOPS:         arith.andi {{.*}} : i1
func.func @bitwise(%a: tensor<4xi64>, %b: tensor<4xi64>, %p: tensor<4xi1>, %q: tensor<4xi1>) -> (tensor<4xi64>, tensor<4xi1>) {
  %0 = pg.bitwise_and %a, %b : tensor<4xi64>
  %1 = pg.bitwise_or %0, %b : tensor<4xi64>
  %2 = pg.bitwise_xor %1, %a : tensor<4xi64>
  %3 = pg.bitwise_and %p, %q : tensor<4xi1>
  func.return %2, %3 : tensor<4xi64>, tensor<4xi1>
}
