// pg-outline-kernels: launches with the same kernel (same body, schedule and buffer types) become calls of one
// private function (pg.outlined), so that the lowering passes lower it once; a launch of another shape stays put.
// pg-inline-kernels (after pg-to-gpu): the calls become launches of the one gpu.func, each on its own buffers.
// RUN: pgc-opt -p pg-outline-kernels %s | filecheck %s
// RUN: pgc-opt -p pg-outline-kernels,pg-to-loops,pg-matmul-schedule,pg-to-gpu,pg-inline-kernels %s | filecheck %s --check-prefix=GPU

// CHECK-LABEL: func.func @step(
// CHECK-NEXT:    func.call @[[F:step__k0_exp]](%a, %out0) : (memref<4x8xf32>, memref<4x8xf32>) -> ()
// CHECK-NEXT:    func.call @[[F]](%b, %out1) : (memref<4x8xf32>, memref<4x8xf32>) -> ()
// CHECK-NEXT:    kernel.launch @k2_exp "elementwise"
// CHECK:       func.func private @[[F]](%{{.*}}: memref<4x8xf32>, %{{.*}}: memref<4x8xf32>) attributes {pg.outlined} {
// CHECK-NEXT:    kernel.launch @k0_exp "elementwise"
// CHECK-NOT:   kernel.launch @k1_exp

// GPU-LABEL: func.func @step(
// GPU-NOT:     func.call
// GPU:         "gpu.launch_func"({{.*}}, %a, %out0) <{kernel = @step_kernels::@k0_exp
// GPU-NEXT:    "gpu.launch_func"({{.*}}, %b, %out1) <{kernel = @step_kernels::@k0_exp
// GPU-NEXT:    "gpu.launch_func"({{.*}}, %c, %out2) <{kernel = @step_kernels::@k2_exp
// GPU-NOT:     func.func private
// GPU-COUNT-2: "gpu.func"()
// GPU-NOT:     "gpu.func"()

func.func @step(%a: memref<4x8xf32>, %b: memref<4x8xf32>, %c: memref<4x4xf32>, %out0: memref<4x8xf32> {pg.result = 0 : i64}, %out1: memref<4x8xf32> {pg.result = 1 : i64}, %out2: memref<4x4xf32> {pg.result = 2 : i64}) {
  kernel.launch @k0_exp "elementwise" schedule = #kernel.schedule<"thread_per_point", block = 256> ins(%a : memref<4x8xf32>) outs(%out0 : memref<4x8xf32>) {
  ^bb0(%x: tensor<4x8xf32>):
    %y = pg.exp %x : tensor<4x8xf32>
    kernel.yield %y : tensor<4x8xf32>
  }
  kernel.launch @k1_exp "elementwise" schedule = #kernel.schedule<"thread_per_point", block = 256> ins(%b : memref<4x8xf32>) outs(%out1 : memref<4x8xf32>) {
  ^bb0(%x: tensor<4x8xf32>):
    %y = pg.exp %x : tensor<4x8xf32>
    kernel.yield %y : tensor<4x8xf32>
  }
  kernel.launch @k2_exp "elementwise" schedule = #kernel.schedule<"thread_per_point", block = 256> ins(%c : memref<4x4xf32>) outs(%out2 : memref<4x4xf32>) {
  ^bb0(%x: tensor<4x4xf32>):
    %y = pg.exp %x : tensor<4x4xf32>
    kernel.yield %y : tensor<4x4xf32>
  }
  func.return
}
