// pg-schedule{unroll=4} (the GPU pipeline's): elementwise and movement kernels of at least 2^20 points whose every
// output has a dim 4 divides take `unroll = 4` (4 points a thread); a warp_per_row reduction takes the largest power
// of two up to 4 that divides a lane's share of a row. The default (the CPU pipeline's) unrolls nothing.
// RUN: pgc-opt %s -p 'pg-schedule{unroll=4}' | filecheck %s
// RUN: pgc-opt %s -p pg-schedule | filecheck %s --check-prefix=NONE
// The chosen schedules parse back, and choosing again changes nothing:
// RUN: pgc-opt %s -p 'pg-schedule{unroll=4}' | pgc-opt -p 'pg-schedule{unroll=4}' | filecheck %s
// Only 1, 2, 4 and 8, with a nonzero exit:
// RUN: not pgc-opt %s -p 'pg-schedule{unroll=3}' 2>&1 | filecheck %s --check-prefix=ERR

// ERR: pg-schedule: unroll=3 is not 1, 2, 4 or 8

// CHECK:   kernel.fused @k0_cast "elementwise" schedule = #kernel.schedule<"thread_per_point", block = 256, unroll = 4>
// CHECK:   kernel.fused @k1_permute "movement" schedule = #kernel.schedule<"thread_per_point", block = 256, unroll = 4>
// CHECK:   kernel.fused @k2_tanh "elementwise" schedule = #kernel.schedule<"thread_per_point", block = 256>
// CHECK:   kernel.fused @k3_neg "elementwise" schedule = #kernel.schedule<"thread_per_point", block = 256>
// CHECK:   kernel.fused @k4_sum "reduction" schedule = #kernel.schedule<"warp_per_row", block = 256, unroll = 4>
// CHECK:   kernel.fused @k5_sum "reduction" schedule = #kernel.schedule<"warp_per_row", block = 256, unroll = 2>
// CHECK:   kernel.fused @k6_sum "reduction" schedule = #kernel.schedule<"warp_per_row", block = 256>
// NONE-NOT: unroll

func.func @f(%a: tensor<1024x1024xf32>, %b: tensor<64x64xf32>, %c: tensor<1025x1023xf32>, %d: tensor<2048x64xf32>,
             %e: tensor<2048x65xf32>) {
  // 2^20 points, 1024 divisible by 4: unrolled
  %0 = kernel.fused @k0_cast "elementwise" (%a) : (tensor<1024x1024xf32>) -> (tensor<1024x1024xbf16>) {
  ^bb0(%x: tensor<1024x1024xf32>):
    %y = pg.cast %x : tensor<1024x1024xf32> -> tensor<1024x1024xbf16>
    kernel.yield %y : tensor<1024x1024xbf16>
  }
  %1 = kernel.fused @k1_permute "movement" (%a) : (tensor<1024x1024xf32>) -> (tensor<1024x1024xf32>) {
  ^bb0(%x: tensor<1024x1024xf32>):
    %y = pg.permute %x perm = [1, 0] : tensor<1024x1024xf32> -> tensor<1024x1024xf32>
    kernel.yield %y : tensor<1024x1024xf32>
  }
  // too few points
  %2 = kernel.fused @k2_tanh "elementwise" (%b) : (tensor<64x64xf32>) -> (tensor<64x64xf32>) {
  ^bb0(%x: tensor<64x64xf32>):
    %y = pg.tanh %x : tensor<64x64xf32>
    kernel.yield %y : tensor<64x64xf32>
  }
  // enough points, but 4 divides no dim
  %3 = kernel.fused @k3_neg "elementwise" (%c) : (tensor<1025x1023xf32>) -> (tensor<1025x1023xf32>) {
  ^bb0(%x: tensor<1025x1023xf32>):
    %y = pg.neg %x : tensor<1025x1023xf32>
    kernel.yield %y : tensor<1025x1023xf32>
  }
  // rows of 1024: 32 elements a lane, 4 an iteration
  %4 = kernel.fused @k4_sum "reduction" (%a) : (tensor<1024x1024xf32>) -> (tensor<1024xf32>) {
  ^bb0(%x: tensor<1024x1024xf32>):
    %s = pg.sum %x dims = [1] : tensor<1024x1024xf32> -> tensor<1024xf32>
    kernel.yield %s : tensor<1024xf32>
  }
  // rows of 64: 2 a lane
  %5 = kernel.fused @k5_sum "reduction" (%d) : (tensor<2048x64xf32>) -> (tensor<2048xf32>) {
  ^bb0(%x: tensor<2048x64xf32>):
    %s = pg.sum %x dims = [1] : tensor<2048x64xf32> -> tensor<2048xf32>
    kernel.yield %s : tensor<2048xf32>
  }
  // rows of 65: ragged lanes, not unrolled
  %6 = kernel.fused @k6_sum "reduction" (%e) : (tensor<2048x65xf32>) -> (tensor<2048xf32>) {
  ^bb0(%x: tensor<2048x65xf32>):
    %s = pg.sum %x dims = [1] : tensor<2048x65xf32> -> tensor<2048xf32>
    kernel.yield %s : tensor<2048xf32>
  }
  func.return
}
