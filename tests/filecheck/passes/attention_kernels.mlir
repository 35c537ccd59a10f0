// RUN: pgc-opt %s -p pg-decompose-attention,pg-fuse,pg-schedule | filecheck %s --check-prefix=KERNELS
// RUN: pgc-opt %s -p pg-decompose-attention,pg-fuse,pg-schedule,pg-bufferize,pg-to-loops | filecheck %s --check-prefix=LOOPS
// RUN: pgc-opt %s -p pg-decompose-attention,pg-fuse,pg-schedule,pg-bufferize,pg-to-loops,pg-attention-schedule,pg-to-gpu | filecheck %s --check-prefix=GPU

// The attention kernel kind: the forward and its row log-sum-exp form one kernel, the backward another; both get the
// flash schedule. No T x T (8x8) buffer at any stage.
func.func @fused(%q: tensor<2x8x4xf32>, %k: tensor<2x8x4xf32>, %v: tensor<2x8x4xf32>, %m: tensor<8xi1>, %g: tensor<2x8x4xf32>) -> (tensor<2x8x4xf32>, tensor<2x8x4xf32>, tensor<2x8x4xf32>, tensor<2x8x4xf32>) {
  %o = pg.scaled_dot_product_attention %q, %k, %v mask %m : tensor<8xi1> scale = 5.000000e-01 : tensor<2x8x4xf32>, tensor<2x8x4xf32>, tensor<2x8x4xf32> -> tensor<2x8x4xf32>
  %l = pg.attention_lse %q, %k mask %m : tensor<8xi1> scale = 5.000000e-01 : tensor<2x8x4xf32>, tensor<2x8x4xf32> -> tensor<2x8xf32>
  %dq, %dk, %dv = pg.attention_backward %q, %k, %v, %o, %g, %l mask %m : tensor<8xi1> scale = 5.000000e-01 : tensor<2x8x4xf32>, tensor<2x8x4xf32>, tensor<2x8x4xf32>, tensor<2x8x4xf32>, tensor<2x8x4xf32>, tensor<2x8xf32> -> tensor<2x8x4xf32>, tensor<2x8x4xf32>, tensor<2x8x4xf32>
  func.return %o, %dq, %dk, %dv : tensor<2x8x4xf32>, tensor<2x8x4xf32>, tensor<2x8x4xf32>, tensor<2x8x4xf32>
}

// KERNELS-LABEL: func.func @fused
// KERNELS:         %o, %l = kernel.fused @k0_scaled_dot_product_attention "attention" schedule = #kernel.schedule<"flash", lanes = 1, block_m = 32, block_n = 8, bwd_block_m = 8, bwd_block_n = 32> (%q, %k, %v, %m)
// KERNELS:           pg.scaled_dot_product_attention
// KERNELS-NEXT:      pg.attention_lse
// KERNELS-NEXT:      kernel.yield
// KERNELS:         %dq, %dk, %dv = kernel.fused @k1_attention_backward "attention" schedule = #kernel.schedule<"flash"{{.*}}> (%q, %k, %v, %o, %g, %l, %m)
// KERNELS-NEXT:    ^bb0
// KERNELS-NEXT:      pg.attention_backward
// KERNELS-NEXT:      kernel.yield
// KERNELS-NOT:     8x8

// LOOPS-LABEL: func.func @fused
// LOOPS-NOT:     8x8
// LOOPS:         pg.attention = {nest = "forward", scale = 5.000000e-01 : f64, buffers = ["out", "q", "k", "mask", "v", "lse"]}
// LOOPS:         memref.alloc() : memref<2x8xf32>
// LOOPS:         pg.attention = {nest = "dsum", {{.*}}buffers = ["dout", "out", "dsum"]}
// LOOPS:         pg.attention = {nest = "dkdv", {{.*}}buffers = ["dv", "dk", "mask", "q", "k", "lse", "dout", "v", "dsum"]}
// LOOPS:         pg.attention = {nest = "dq", {{.*}}buffers = ["dq", "lse", "dsum", "q", "k", "mask", "dout", "v"]}
// LOOPS-NOT:     8x8

// GPU:           gpu.launch_func{{.*}}@k0_scaled_dot_product_attention
// GPU-NEXT:      memref.alloc() : memref<2x8xf32>
// GPU-NEXT:      gpu.launch_func{{.*}}@k1_attention_backward,
// GPU-NEXT:      gpu.launch_func{{.*}}@k1_attention_backward_1,
// GPU-NEXT:      gpu.launch_func{{.*}}@k1_attention_backward_2,
// GPU:           gpu_ext.workgroup_alloc : memref<8x4xf32, 3 : i64>
// GPU:           sym_name = "k0_scaled_dot_product_attention", pg.kind = "attention", pg.schedule = "flash-forward"
// GPU:           sym_name = "k1_attention_backward", pg.kind = "attention", pg.schedule = "flash-dsum"
// GPU:           gpu_ext.workgroup_alloc : memref<8xf32, 3 : i64>
// GPU:           sym_name = "k1_attention_backward_1", pg.kind = "attention", pg.schedule = "flash-dkdv"
// GPU:           sym_name = "k1_attention_backward_2", pg.kind = "attention", pg.schedule = "flash-dq"
