// RUN: pgc-opt %s -p 'pg-schedule{arch=sm_90a}' --split-input-file | filecheck %s
// RUN: pgc-opt %s -p pg-schedule --split-input-file | filecheck %s --check-prefix=SM90
// RUN: pgc-opt %s -p 'pg-schedule{arch=sm_90a},pg-bufferize,pg-to-loops,pg-matmul-schedule,pg-to-gpu,pg-to-ptx{arch=sm_90a}' --split-input-file | filecheck %s --check-prefix=PTX
// RUN: not pgc-opt %s -p 'pg-schedule{arch=sm_80}' 2>&1 | filecheck %s --check-prefix=ERR
// On sm_90a, auto runs the 16-bit matmuls it would give mma-sync on wgmma-ws, or wgmma-ws-192 where its 192-wide
// tiles pad N less (N = 384: 2 tiles of 192 against 2 of 256) (marked `fallback`: auto's choice, which
// pg-matmul-schedule may replace by auto's rung where the loop stage shows an operand TMA cannot read); so does
// tf32 (below); extents that are not multiples of 8, and every matmul on sm_90, keep mma-sync.

// CHECK-LABEL: func.func @half
// CHECK: #kernel.schedule<"wgmma-ws-192", tile = [128, 192, 64], threads = 384, stages = 5, specialised, fallback>
// SM90-LABEL: func.func @half
// SM90: #kernel.schedule<"mma-sync"
// PTX-LABEL: ptx.func @k0_matmul
// PTX: ptx.wgmma_mma_async
func.func @half(%x: tensor<256x512xbf16>, %w: tensor<512x384xbf16>) -> tensor<256x384xbf16> {
  %h = kernel.fused @k0_matmul "matmul" (%x, %w) : (tensor<256x512xbf16>, tensor<512x384xbf16>) -> (tensor<256x384xbf16>) {
  ^bb0(%a: tensor<256x512xbf16>, %b: tensor<512x384xbf16>):
    %m = pg.matmul %a, %b : (tensor<256x512xbf16>, tensor<512x384xbf16>) -> tensor<256x384xbf16>
    kernel.yield %m : tensor<256x384xbf16>
  }
  func.return %h : tensor<256x384xbf16>
}

// -----

// CHECK-LABEL: func.func @half_wide
// CHECK: #kernel.schedule<"wgmma-ws", tile = [128, 256, 64], threads = 384, stages = 4, specialised, fallback>
// PTX-LABEL: ptx.func @k0_matmul
// PTX: ptx.wgmma_mma_async
func.func @half_wide(%x: tensor<256x512xbf16>, %w: tensor<512x1536xbf16>) -> tensor<256x1536xbf16> {
  %h = kernel.fused @k0_matmul "matmul" (%x, %w) : (tensor<256x512xbf16>, tensor<512x1536xbf16>) -> (tensor<256x1536xbf16>) {
  ^bb0(%a: tensor<256x512xbf16>, %b: tensor<512x1536xbf16>):
    %m = pg.matmul %a, %b : (tensor<256x512xbf16>, tensor<512x1536xbf16>) -> tensor<256x1536xbf16>
    kernel.yield %m : tensor<256x1536xbf16>
  }
  func.return %h : tensor<256x1536xbf16>
}

// -----

// CHECK-LABEL: func.func @ragged
// CHECK: #kernel.schedule<"mma-sync"
// PTX-LABEL: ptx.func @k0_matmul
// PTX: ptx.mma_sync
func.func @ragged(%x: tensor<250x500xbf16>, %w: tensor<500x380xbf16>) -> tensor<250x380xbf16> {
  %h = kernel.fused @k0_matmul "matmul" (%x, %w) : (tensor<250x500xbf16>, tensor<500x380xbf16>) -> (tensor<250x380xbf16>) {
  ^bb0(%a: tensor<250x500xbf16>, %b: tensor<500x380xbf16>):
    %m = pg.matmul %a, %b : (tensor<250x500xbf16>, tensor<500x380xbf16>) -> tensor<250x380xbf16>
    kernel.yield %m : tensor<250x380xbf16>
  }
  func.return %h : tensor<250x380xbf16>
}

// -----

// A tf32 matmul takes wgmma-ws too (here -192: N = 128), on K tiles of 32 f32 (128 bytes); its fallback (an operand that is not K-major,
// which wgmma cannot read as 32-bit) is the tf32 mma-sync rung, at the loop stage.
// CHECK-LABEL: func.func @tf32
// CHECK: #kernel.schedule<"wgmma-ws-192", tile = [128, 192, 32], tf32, threads = 384, stages = 5, specialised, fallback>
// PTX-LABEL: ptx.func @k0_matmul
// PTX-NOT: ptx.wgmma_mma_async
// PTX: ptx.mma_sync sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32
func.func @tf32(%x: tensor<128x128xf32>, %w: tensor<128x128xf32>) -> tensor<128x128xf32> {
  %h = kernel.fused @k0_matmul "matmul" (%x, %w) : (tensor<128x128xf32>, tensor<128x128xf32>) -> (tensor<128x128xf32>) {
  ^bb0(%a: tensor<128x128xf32>, %b: tensor<128x128xf32>):
    %m = pg.matmul %a, %b tf32 : (tensor<128x128xf32>, tensor<128x128xf32>) -> tensor<128x128xf32>
    kernel.yield %m : tensor<128x128xf32>
  }
  func.return %h : tensor<128x128xf32>
}

// -----

// x @ W.T in tf32: both operands K-major, so the loop stage keeps wgmma-ws: m64n256k8 on f32 tiles read as tf32.
// CHECK-LABEL: func.func @tf32_linear
// CHECK: #kernel.schedule<"wgmma-ws", tile = [128, 256, 32], tf32,
// PTX-LABEL: ptx.func @k0_matmul
// PTX: ptx.wgmma_mma_async sync.aligned.m64n256k8.f32.tf32.tf32
func.func @tf32_linear(%x: tensor<128x128xf32>, %w: tensor<256x128xf32>) -> tensor<128x256xf32> {
  %h = kernel.fused @k0_matmul "matmul" (%x, %w) : (tensor<128x128xf32>, tensor<256x128xf32>) -> (tensor<128x256xf32>) {
  ^bb0(%a: tensor<128x128xf32>, %b: tensor<256x128xf32>):
    %bt = pg.permute %b perm = [1, 0] : tensor<256x128xf32> -> tensor<128x256xf32>
    %m = pg.matmul %a, %bt tf32 : (tensor<128x128xf32>, tensor<128x256xf32>) -> tensor<128x256xf32>
    kernel.yield %m : tensor<128x256xf32>
  }
  func.return %h : tensor<128x256xf32>
}

// -----

// A batched A times a shared B: wgmma reads whole (batched) matrices, so at the loop stage the broadcast B sends the
// nest back to auto's rung (mma-sync).
// CHECK-LABEL: func.func @broadcast
// CHECK: #kernel.schedule<"wgmma-ws-192", {{.*}} fallback>
// PTX-LABEL: ptx.func @k0_matmul
// PTX-NOT: ptx.wgmma_mma_async
// PTX: ptx.mma_sync
func.func @broadcast(%x: tensor<4x256x512xbf16>, %w: tensor<512x384xbf16>) -> tensor<4x256x384xbf16> {
  %h = kernel.fused @k0_matmul "matmul" (%x, %w) : (tensor<4x256x512xbf16>, tensor<512x384xbf16>) -> (tensor<4x256x384xbf16>) {
  ^bb0(%a: tensor<4x256x512xbf16>, %b: tensor<512x384xbf16>):
    %bb = pg.broadcast_to %b : tensor<512x384xbf16> -> tensor<4x512x384xbf16>
    %m = pg.matmul %a, %bb : (tensor<4x256x512xbf16>, tensor<4x512x384xbf16>) -> tensor<4x256x384xbf16>
    kernel.yield %m : tensor<4x256x384xbf16>
  }
  func.return %h : tensor<4x256x384xbf16>
}

// ERR: pg-schedule: arch=sm_80 is not sm_90 or sm_90a
