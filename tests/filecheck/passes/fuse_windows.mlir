// pg-fuse's windows option (the CPU's choice): a gather of rows read through reshapes only as a matmul's lhs (a
// convolution's im2col windows) joins the matmul's kernel, which the CPU runtime runs as an implicit GEMM; the
// pad it reads stays a kernel of its own (written once, with the permute to channels last it reads).
// RUN: pgc-opt %s -p "pg-fuse{movement=true views=true windows=true}" --split-input-file | filecheck %s
// Without the option the windows are a gather kernel, which reads the pad and the permute at its index:
// RUN: pgc-opt %s -p "pg-fuse{movement=true views=true}" --split-input-file | filecheck %s --check-prefix=NOWIN

func.func @conv(%x: tensor<2x3x4x4xf32>, %idx: tensor<16x9xi64>, %w: tensor<5x27xf32>) -> tensor<32x5xf32> {
  %t = pg.permute %x perm = [0, 2, 3, 1] : tensor<2x3x4x4xf32> -> tensor<2x4x4x3xf32>
  %p = pg.pad %t low = [0, 1, 1, 0] high = [0, 1, 1, 0] interior = [0, 0, 0, 0] value = 0.0 : tensor<2x4x4x3xf32> -> tensor<2x6x6x3xf32>
  %f = pg.reshape %p : tensor<2x6x6x3xf32> -> tensor<2x36x3xf32>
  %g = pg.gather %f[%idx] dim = 1 : (tensor<2x36x3xf32>, tensor<16x9xi64>) -> tensor<2x16x9x3xf32>
  %cols = pg.reshape %g : tensor<2x16x9x3xf32> -> tensor<32x27xf32>
  %wt = pg.permute %w perm = [1, 0] : tensor<5x27xf32> -> tensor<27x5xf32>
  %y = pg.matmul %cols, %wt : (tensor<32x27xf32>, tensor<27x5xf32>) -> tensor<32x5xf32>
  func.return %y : tensor<32x5xf32>
}

// CHECK-LABEL: func.func @conv
// CHECK:         %[[P:.*]] = kernel.fused @{{.*}}pad "movement" (%x) : (tensor<2x3x4x4xf32>) -> (tensor<2x6x6x3xf32>) {
// CHECK:           pg.permute
// CHECK-NEXT:      pg.pad
// CHECK:         %[[Y:.*]] = kernel.fused @{{.*}}matmul "matmul" (%[[P]], %idx, %w) : (tensor<2x6x6x3xf32>, tensor<16x9xi64>, tensor<5x27xf32>) -> (tensor<32x5xf32>) {
// CHECK:           pg.reshape {{.*}} : tensor<2x6x6x3xf32> -> tensor<2x36x3xf32>
// CHECK-NEXT:      pg.gather {{.*}} dim = 1 : (tensor<2x36x3xf32>, tensor<16x9xi64>) -> tensor<2x16x9x3xf32>
// CHECK-NEXT:      pg.reshape {{.*}} : tensor<2x16x9x3xf32> -> tensor<32x27xf32>
// CHECK-NEXT:      pg.permute
// CHECK-NEXT:      pg.matmul
// CHECK:         func.return %[[Y]]

// NOWIN-LABEL: func.func @conv
// NOWIN:         kernel.fused @{{.*}}permute "movement"
// NOWIN:         kernel.fused @{{.*}}gather "gather"
// NOWIN:           pg.pad
// NOWIN:           pg.gather
// NOWIN:         kernel.fused @{{.*}}matmul "matmul"
// NOWIN-NOT:       pg.gather

// -----

// A weight gradient's windows, the matmul's rhs, join it too.
func.func @rhs(%f: tensor<2x36x3xf32>, %idx: tensor<16x9xi64>, %g: tensor<5x32xf32>) -> tensor<5x27xf32> {
  %w = pg.gather %f[%idx] dim = 1 : (tensor<2x36x3xf32>, tensor<16x9xi64>) -> tensor<2x16x9x3xf32>
  %cols = pg.reshape %w : tensor<2x16x9x3xf32> -> tensor<32x27xf32>
  %y = pg.matmul %g, %cols : (tensor<5x32xf32>, tensor<32x27xf32>) -> tensor<5x27xf32>
  func.return %y : tensor<5x27xf32>
}

// CHECK-LABEL: func.func @rhs
// CHECK-NEXT:    kernel.fused @{{.*}}matmul "matmul" (%f, %idx, %g)
// CHECK:           pg.gather
// CHECK:           pg.matmul %{{.*}}, %{{.*}} : (tensor<5x32xf32>, tensor<32x27xf32>)
// CHECK:         func.return
// NOWIN-LABEL: func.func @rhs
// NOWIN:         kernel.fused @{{.*}}gather "gather"

// -----

// Windows read by anything but one matmul operand (here also returned, and a matmul of the windows with
// themselves) stay a gather kernel.
func.func @shared(%f: tensor<2x36x3xf32>, %idx: tensor<16x9xi64>) -> (tensor<27x27xf32>, tensor<2x16x9x3xf32>) {
  %w = pg.gather %f[%idx] dim = 1 : (tensor<2x36x3xf32>, tensor<16x9xi64>) -> tensor<2x16x9x3xf32>
  %cols = pg.reshape %w : tensor<2x16x9x3xf32> -> tensor<32x27xf32>
  %t = pg.permute %cols perm = [1, 0] : tensor<32x27xf32> -> tensor<27x32xf32>
  %y = pg.matmul %t, %cols : (tensor<27x32xf32>, tensor<32x27xf32>) -> tensor<27x27xf32>
  func.return %y, %w : tensor<27x27xf32>, tensor<2x16x9x3xf32>
}

// CHECK-LABEL: func.func @shared
// CHECK:         kernel.fused @{{.*}}gather "gather"
// CHECK:         kernel.fused @{{.*}}matmul "matmul"
// CHECK-NOT:       pg.gather
// CHECK:         func.return
