// #kernel.schedule on kernel.fused and kernel.launch: printed after the kind, round-trips through the custom syntax
// and the generic form; counts, lists of counts and switches (present: on) keep their order.
// RUN: pgc-opt %s | pgc-opt | filecheck %s
// RUN: pgc-opt %s --print-op-generic | pgc-opt | filecheck %s
// RUN: pgc-opt %s --print-op-generic | filecheck %s --check-prefix=GENERIC

func.func @f(%a: tensor<4x8xf32>, %b: tensor<8x2xf32>, %m: memref<32x27xf32>, %n: memref<32x1xf32>) -> tensor<4x2xf32> {
  %r = kernel.fused @k0_matmul "matmul" schedule = #kernel.schedule<"cp-async", tile = [64, 64, 16], threads = 128, warps = [2, 2], lanes = [8, 4], reps = [1, 2], vec = [4, 4], vector, async_copy> (%a, %b) : (tensor<4x8xf32>, tensor<8x2xf32>) -> (tensor<4x2xf32>) {
  ^bb0(%x: tensor<4x8xf32>, %y: tensor<8x2xf32>):
    %p = pg.matmul %x, %y : (tensor<4x8xf32>, tensor<8x2xf32>) -> tensor<4x2xf32>
    kernel.yield %p : tensor<4x2xf32>
  }
  kernel.launch @k1_sum "reduction" schedule = #kernel.schedule<"block_per_row", block = 256> ins(%m : memref<32x27xf32>) outs(%n : memref<32x1xf32>) {
  ^bb0(%x: tensor<32x27xf32>):
    %s = pg.sum %x dims = [1] keepdim : tensor<32x27xf32> -> tensor<32x1xf32>
    kernel.yield %s : tensor<32x1xf32>
  }
  kernel.launch @k2_fill "elementwise" ins() outs(%n : memref<32x1xf32>) {
    %c = pg.constant dense<1.0> : tensor<32x1xf32>
    kernel.yield %c : tensor<32x1xf32>
  }
  func.return %r : tensor<4x2xf32>
}

// CHECK-LABEL: func.func @f
// CHECK-NEXT:    %r = kernel.fused @k0_matmul "matmul" schedule = #kernel.schedule<"cp-async", tile = [64, 64, 16], threads = 128, warps = [2, 2], lanes = [8, 4], reps = [1, 2], vec = [4, 4], vector, async_copy> (%a, %b) : (tensor<4x8xf32>, tensor<8x2xf32>) -> (tensor<4x2xf32>) {
// CHECK:         kernel.launch @k1_sum "reduction" schedule = #kernel.schedule<"block_per_row", block = 256> ins(%m : memref<32x27xf32>) outs(%n : memref<32x1xf32>) {
// A kernel without a schedule prints none.
// CHECK:         kernel.launch @k2_fill "elementwise" ins() outs(%n : memref<32x1xf32>) {

// GENERIC: "kernel.fused"(%{{.*}}, %{{.*}}) <{kind = "matmul", sym_name = "k0_matmul", schedule = #kernel.schedule<"cp-async", tile = [64, 64, 16], threads = 128, warps = [2, 2], lanes = [8, 4], reps = [1, 2], vec = [4, 4], vector, async_copy>}>
