// pg-wgmma-layout: a tf32 matmul that wgmma will run (auto on sm_90a, or a wgmma schedule named) and whose B is
// stored [k, n] reads it through a transposed copy: a permute that pg-fuse makes a movement kernel (Bt written out)
// and a permute back that joins the matmul's kernel, which then reads Bt[n, k] (K-major, all wgmma takes for tf32).
// RUN: pgc-opt %s -p "pg-wgmma-layout{arch=sm_90a}" --split-input-file | filecheck %s
// RUN: pgc-opt %s -p "pg-wgmma-layout{arch=sm_90a},pg-fuse" --split-input-file | filecheck %s --check-prefix=FUSED
// On sm_90 (the default, and the CPU's) no wgmma runs: nothing changes.
// RUN: pgc-opt %s -p "pg-wgmma-layout" --split-input-file | filecheck %s --check-prefix=SM90
// A named wgmma schedule takes every tf32 matmul, small ones too:
// RUN: pgc-opt %s -p "pg-wgmma-layout{matmul=wgmma-ws}" --split-input-file | filecheck %s --check-prefix=FORCED
// RUN: not pgc-opt %s -p "pg-wgmma-layout{matmul=nope}" 2>&1 | filecheck %s --check-prefix=ERR

// CHECK-LABEL: func.func @nn
// CHECK-NEXT:    %[[BT:.*]] = pg.permute %b perm = [1, 0] : tensor<64x128xf32> -> tensor<128x64xf32>
// CHECK-NEXT:    %[[B2:.*]] = pg.permute %[[BT]] perm = [1, 0] : tensor<128x64xf32> -> tensor<64x128xf32>
// CHECK-NEXT:    %{{.*}} = pg.matmul %a, %[[B2]] tf32
// FUSED-LABEL: func.func @nn
// FUSED:         %[[BT:.*]] = kernel.fused @{{.*}} "movement" (%b)
// FUSED:         kernel.fused @{{.*}} "matmul" (%[[BT]], %a)
// FUSED:           pg.permute
// FUSED-NEXT:      pg.matmul
// SM90-LABEL: func.func @nn
// SM90-NOT:      pg.permute
// SM90:          pg.matmul %a, %b tf32
func.func @nn(%a: tensor<128x64xf32>, %b: tensor<64x128xf32>) -> tensor<128x128xf32> {
  %m = pg.matmul %a, %b tf32 : (tensor<128x64xf32>, tensor<64x128xf32>) -> tensor<128x128xf32>
  func.return %m : tensor<128x128xf32>
}

// -----

// x @ W.T: B is already the transpose of a stored matrix (K-major); nothing to do.
// CHECK-LABEL: func.func @linear
// CHECK-NEXT:    pg.permute %w perm = [1, 0]
// CHECK-NEXT:    pg.matmul
func.func @linear(%x: tensor<128x64xf32>, %w: tensor<128x64xf32>) -> tensor<128x128xf32> {
  %wt = pg.permute %w perm = [1, 0] : tensor<128x64xf32> -> tensor<64x128xf32>
  %m = pg.matmul %x, %wt tf32 : (tensor<128x64xf32>, tensor<64x128xf32>) -> tensor<128x128xf32>
  func.return %m : tensor<128x128xf32>
}

// -----

// A batched tf32 matmul swaps the last two dims of its B; f32 without tf32 and bf16 (wgmma reads 16-bit operands
// M/N-major) are left alone, and so is a tf32 matmul below auto's tensor-core size (2**20 multiply-adds).
// CHECK-LABEL: func.func @others
// CHECK-NEXT:    pg.permute %bb perm = [0, 2, 1] : tensor<2x64x128xf32> -> tensor<2x128x64xf32>
// CHECK-NEXT:    pg.permute %{{.*}} perm = [0, 2, 1] : tensor<2x128x64xf32> -> tensor<2x64x128xf32>
// CHECK-NEXT:    pg.matmul
// CHECK-NEXT:    pg.matmul %a, %b :
// CHECK-NEXT:    pg.matmul %c, %d :
// CHECK-NEXT:    pg.matmul %e, %f tf32 :
// FORCED-LABEL: func.func @others
// FORCED:        pg.matmul %a, %b :
// FORCED-NEXT:   pg.matmul %c, %d :
// FORCED-NEXT:   pg.permute %f perm = [1, 0] : tensor<16x16xf32> -> tensor<16x16xf32>
func.func @others(%ab: tensor<2x128x64xf32>, %bb: tensor<2x64x128xf32>, %a: tensor<128x64xf32>, %b: tensor<64x128xf32>,
                  %c: tensor<128x64xbf16>, %d: tensor<64x128xbf16>, %e: tensor<16x16xf32>, %f: tensor<16x16xf32>)
    -> (tensor<2x128x128xf32>, tensor<128x128xf32>, tensor<128x128xbf16>, tensor<16x16xf32>) {
  %0 = pg.matmul %ab, %bb tf32 : (tensor<2x128x64xf32>, tensor<2x64x128xf32>) -> tensor<2x128x128xf32>
  %1 = pg.matmul %a, %b : (tensor<128x64xf32>, tensor<64x128xf32>) -> tensor<128x128xf32>
  %2 = pg.matmul %c, %d : (tensor<128x64xbf16>, tensor<64x128xbf16>) -> tensor<128x128xbf16>
  %3 = pg.matmul %e, %f tf32 : (tensor<16x16xf32>, tensor<16x16xf32>) -> tensor<16x16xf32>
  func.return %0, %1, %2, %3 : tensor<2x128x128xf32>, tensor<128x128xf32>, tensor<128x128xbf16>, tensor<16x16xf32>
}

// -----

// An A that is a permute (a weight gradient's dY.T @ X) keeps the loop stage's fallback (mma-sync): no copy. A B that
// is the transpose of a stored matrix but is also returned gets a transpose of its own, read K-major by the matmul.
// CHECK-LABEL: func.func @weight_grad
// CHECK-NEXT:    %[[DYT:.*]] = pg.permute %dy perm = [1, 0]
// CHECK-NEXT:    pg.matmul %[[DYT]], %x tf32
// CHECK-NEXT:    %[[WT:.*]] = pg.permute %w perm = [1, 0]
// CHECK-NEXT:    %[[OWN:.*]] = pg.permute %w perm = [1, 0]
// CHECK-NEXT:    pg.matmul %x, %[[OWN]] tf32
// CHECK-NEXT:    func.return %{{.*}}, %{{.*}}, %[[WT]]
func.func @weight_grad(%dy: tensor<256x128xf32>, %x: tensor<256x128xf32>, %w: tensor<128x128xf32>)
    -> (tensor<128x128xf32>, tensor<256x128xf32>, tensor<128x128xf32>) {
  %dyt = pg.permute %dy perm = [1, 0] : tensor<256x128xf32> -> tensor<128x256xf32>
  %dw = pg.matmul %dyt, %x tf32 : (tensor<128x256xf32>, tensor<256x128xf32>) -> tensor<128x128xf32>
  %wt = pg.permute %w perm = [1, 0] : tensor<128x128xf32> -> tensor<128x128xf32>
  %y = pg.matmul %x, %wt tf32 : (tensor<256x128xf32>, tensor<128x128xf32>) -> tensor<256x128xf32>
  func.return %dw, %y, %wt : tensor<128x128xf32>, tensor<256x128xf32>, tensor<128x128xf32>
}

// ERR: pg-wgmma-layout: unknown matmul schedule 'nope'
