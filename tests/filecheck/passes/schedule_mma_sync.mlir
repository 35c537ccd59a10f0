// RUN: pgc-opt %s -p pg-schedule --split-input-file --verify-diagnostics | filecheck %s
// RUN: pgc-opt %s -p 'pg-schedule{matmul=mma-sync}' --split-input-file --verify-diagnostics | filecheck %s --check-prefix=FORCED
// RUN: pgc-opt %s -p pg-schedule,pg-bufferize,pg-to-loops,pg-matmul-schedule,pg-to-gpu,pg-to-ptx --split-input-file --verify-diagnostics | filecheck %s --check-prefix=PTX
// The mma-sync row (issue 14): auto takes it for bf16 (and f32 under tf32) matmuls from 2^20 multiply-adds (64x64
// tiles when 128x128 ones would leave SMs idle); forced, it takes 128x128x32 (x16 for tf32, which it records);
// forced on f32 without tf32 (or f64) it is one error naming schedule, dtype and target.

// CHECK-LABEL: func.func @half
// CHECK: #kernel.schedule<"mma-sync", tile = [64, 64, 32], threads = 128, warps = [2, 2], lanes = [8, 4], reps = [2, 4], vec = [2, 2], vector, async_copy, stages = 3>
// FORCED-LABEL: func.func @half
// FORCED: #kernel.schedule<"mma-sync", tile = [128, 128, 32], threads = 128, warps = [2, 2], lanes = [8, 4], reps = [4, 8], vec = [2, 2], vector, async_copy, stages = 3>
// PTX: ptx.cp_async cg.shared.global
// PTX: ptx.ldmatrix sync.aligned.m8n8.x4.trans.shared.b16
// PTX: ptx.mma_sync sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32
// PTX: ptx.cvt rn.bf16.f32
func.func @half(%x: tensor<256x512xbf16>, %w: tensor<512x384xbf16>) -> tensor<256x384xbf16> {
  %h = kernel.fused @k0_matmul "matmul" (%x, %w) : (tensor<256x512xbf16>, tensor<512x384xbf16>) -> (tensor<256x384xbf16>) {
  ^bb0(%a: tensor<256x512xbf16>, %b: tensor<512x384xbf16>):
    %m = pg.matmul %a, %b : (tensor<256x512xbf16>, tensor<512x384xbf16>) -> tensor<256x384xbf16>
    kernel.yield %m : tensor<256x384xbf16>
  }
  func.return %h : tensor<256x384xbf16>
}

// -----

// CHECK-LABEL: func.func @tf32
// CHECK: #kernel.schedule<"mma-sync", tile = [64, 64, 16], {{.*}} stages = 3, tf32>
// FORCED-LABEL: func.func @tf32
// FORCED: #kernel.schedule<"mma-sync", tile = [128, 128, 16], {{.*}} stages = 3, tf32>
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

// CHECK-LABEL: func.func @fp32
// CHECK: #kernel.schedule<"thread_per_point"
// FORCED: pg-schedule: matmul schedule 'mma-sync' does not support fp32 on sm_90: it runs bf16/fp16/tf32 matmuls on the tensor cores of sm_80+; float32 matmuls run on tensor cores as tf32 only under pg.backends.cuda.matmul.allow_tf32 = True at model.py:9:2
func.func @fp32(%x: tensor<64x64xf32>, %w: tensor<64x64xf32>) -> tensor<64x64xf32> {
  %h = kernel.fused @k0_matmul "matmul" (%x, %w) : (tensor<64x64xf32>, tensor<64x64xf32>) -> (tensor<64x64xf32>) {
  ^bb0(%a: tensor<64x64xf32>, %b: tensor<64x64xf32>):
    %m = pg.matmul %a, %b : (tensor<64x64xf32>, tensor<64x64xf32>) -> tensor<64x64xf32> loc("model.py":9:2)
    kernel.yield %m : tensor<64x64xf32>
  }
  func.return %h : tensor<64x64xf32>
}
