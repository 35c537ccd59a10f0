// RUN: pgc-opt %s -p pg-bufferize,pg-to-loops | filecheck %s
// RUN: pgc-opt %s -p pg-bufferize,pg-to-loops,pg-to-gpu,pg-to-ptx | filecheck %s --check-prefix=PTX
// 16-bit floats through the loops and ptx stages (issue 14): bf16 buffers, math in f32 (extf in, truncf out, one
// rounding per op as the CPU executor), matmul and reduction accumulators in f32, rounded once at the store.

// CHECK-LABEL: func.func @half(
// CHECK-SAME: memref<2x3xbf16>
// CHECK: scf.for {{.*}} -> (f32)
// CHECK: memref.load %x{{.*}} : memref<2x3xbf16>
// CHECK-NEXT: arith.extf {{.*}} : bf16 to f32
// CHECK: arith.mulf {{.*}} : f32
// CHECK: arith.truncf {{.*}} : f32 to bf16
// CHECK-NEXT: memref.store {{.*}} : memref<2x4xbf16>
// CHECK: math.exp {{.*}} : f32
// CHECK-NEXT: arith.truncf {{.*}} : f32 to bf16
// CHECK-NEXT: arith.extf {{.*}} : bf16 to f32
// CHECK-NEXT: arith.addf {{.*}} : f32

// PTX: ptx.ld global.b16 {{.*}} -> !ptx.b16
// PTX-NEXT: ptx.cvt f32.bf16 {{.*}} : (!ptx.b16) -> !ptx.f32
// PTX: ptx.cvt rn.bf16.f32 {{.*}} : (!ptx.f32) -> !ptx.b16
// PTX: ptx.st global.b16
func.func @half(%x: tensor<2x3xbf16>, %w: tensor<3x4xbf16>) -> (tensor<2x4xbf16>, tensor<2xbf16>) {
  %h = kernel.fused @k0_matmul "matmul" (%x, %w) : (tensor<2x3xbf16>, tensor<3x4xbf16>) -> (tensor<2x4xbf16>) {
  ^bb0(%a: tensor<2x3xbf16>, %b: tensor<3x4xbf16>):
    %m = pg.matmul %a, %b : (tensor<2x3xbf16>, tensor<3x4xbf16>) -> tensor<2x4xbf16>
    kernel.yield %m : tensor<2x4xbf16>
  }
  %s = kernel.fused @k1_reduction "reduction" (%x) : (tensor<2x3xbf16>) -> (tensor<2xbf16>) {
  ^bb0(%a: tensor<2x3xbf16>):
    %e = pg.exp %a : tensor<2x3xbf16>
    %r = pg.sum %e dims = [1] : tensor<2x3xbf16> -> tensor<2xbf16>
    kernel.yield %r : tensor<2xbf16>
  }
  func.return %h, %s : tensor<2x4xbf16>, tensor<2xbf16>
}
