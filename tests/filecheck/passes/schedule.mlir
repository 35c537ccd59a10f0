// pg-schedule: every kernel gets its #kernel.schedule from the table, by kind; matmul rungs carry every size.
// RUN: pgc-opt %s -p pg-schedule | filecheck %s
// RUN: pgc-opt %s -p 'pg-schedule{matmul=auto}' | filecheck %s
// RUN: pgc-opt %s -p 'pg-schedule{matmul=naive}' | filecheck %s --check-prefix=NAIVE
// RUN: pgc-opt %s -p 'pg-schedule{matmul=cp-async block-size=128 block-reductions=false atomics=false}' | filecheck %s --check-prefix=OPTS
// random-points=4 (the GPU pipeline's): a random kernel's nests compute 4 consecutive elements an iteration (one
// Philox call for 4 numbers):
// RUN: pgc-opt %s -p 'pg-schedule{random-points=4}' | filecheck %s --check-prefix=POINTS
// The chosen schedules parse back, and choosing again changes nothing:
// RUN: pgc-opt %s -p pg-schedule | pgc-opt -p pg-schedule | filecheck %s
// An unknown rung and a bad block size are errors naming the choices, with a nonzero exit:
// RUN: not pgc-opt %s -p 'pg-schedule{matmul=bogus}' 2>&1 | filecheck %s --check-prefix=ERR
// RUN: not pgc-opt %s -p 'pg-schedule{block-size=100}' 2>&1 | filecheck %s --check-prefix=ERR-BLOCK

// ERR: pg-schedule: unknown matmul schedule 'bogus': expected auto or one of naive, coalesced, smem, regtile, warptile, cp-async
// ERR-BLOCK: pg-schedule: block-size=100 is not a multiple of 32 in 32..1024

func.func @f(%a: tensor<2048x2048xf32>, %b: tensor<512x512xf32>, %c: tensor<8x16xf32>, %d: tensor<16x4xf32>,
             %e: tensor<4x100x64xf64>, %f: tensor<4x64x60xf64>, %g: tensor<32x64xf32>, %h: tensor<32x8xf32>,
             %j: tensor<5xi64>, %k: tensor<5x3xf32>, %n: tensor<1536x384xbf16>, %m: tensor<16384x384xf32>,
             %l: tensor<64x98304xf32>, %o: tensor<64x256x384xf32>, %tok: tensor<64x256xi64>,
             %seed: tensor<i64>, %offset: tensor<i64>) {
  // 2048^3 in f32: 256 tiles of 128x128 give every SM one, so auto takes cp-async on them.
  %0 = kernel.fused @k0_matmul "matmul" (%a) : (tensor<2048x2048xf32>) -> (tensor<2048x2048xf32>) {
  ^bb0(%x: tensor<2048x2048xf32>):
    %p = pg.matmul %x, %x : (tensor<2048x2048xf32>, tensor<2048x2048xf32>) -> tensor<2048x2048xf32>
    kernel.yield %p : tensor<2048x2048xf32>
  }
  // 512^3: 16 tiles of 128x128 are too few for 132 SMs, 64 tiles of 64x64 are enough.
  %1 = kernel.fused @k1_matmul "matmul" (%b) : (tensor<512x512xf32>) -> (tensor<512x512xf32>) {
  ^bb0(%x: tensor<512x512xf32>):
    %p = pg.matmul %x, %x : (tensor<512x512xf32>, tensor<512x512xf32>) -> tensor<512x512xf32>
    kernel.yield %p : tensor<512x512xf32>
  }
  // 8x4x16: far below 2**24 multiply-adds, a thread per output.
  %2 = kernel.fused @k2_matmul "matmul" (%c, %d) : (tensor<8x16xf32>, tensor<16x4xf32>) -> (tensor<8x4xf32>) {
  ^bb0(%x: tensor<8x16xf32>, %y: tensor<16x4xf32>):
    %p = pg.matmul %x, %y : (tensor<8x16xf32>, tensor<16x4xf32>) -> tensor<8x4xf32>
    kernel.yield %p : tensor<8x4xf32>
  }
  // A batched f64 matmul: auto leaves it to a thread per output; a forced rung is fitted to f64 (half the outputs
  // a thread, half the K tile).
  %3 = kernel.fused @k3_matmul "matmul" (%e, %f) : (tensor<4x100x64xf64>, tensor<4x64x60xf64>) -> (tensor<4x100x60xf64>) {
  ^bb0(%x: tensor<4x100x64xf64>, %y: tensor<4x64x60xf64>):
    %p = pg.matmul %x, %y : (tensor<4x100x64xf64>, tensor<4x64x60xf64>) -> tensor<4x100x60xf64>
    kernel.yield %p : tensor<4x100x60xf64>
  }
  // A sum over 64 elements a row: a block per row; over 8: a thread per row.
  %4 = kernel.fused @k4_sum "reduction" (%g) : (tensor<32x64xf32>) -> (tensor<32xf32>) {
  ^bb0(%x: tensor<32x64xf32>):
    %s = pg.sum %x dims = [1] : tensor<32x64xf32> -> tensor<32xf32>
    kernel.yield %s : tensor<32xf32>
  }
  %5 = kernel.fused @k5_max "reduction" (%h) : (tensor<32x8xf32>) -> (tensor<32xf32>) {
  ^bb0(%x: tensor<32x8xf32>):
    %s = pg.max %x dims = [1] : tensor<32x8xf32> -> tensor<32xf32>
    kernel.yield %s : tensor<32xf32>
  }
  // argmax is a reduction kernel that keeps a thread per output, however long its rows.
  %6 = kernel.fused @k6_argmax "reduction" (%g) : (tensor<32x64xf32>) -> (tensor<32xi64>) {
  ^bb0(%x: tensor<32x64xf32>):
    %s = pg.argmax %x dim = 1 : tensor<32x64xf32> -> tensor<32xi64>
    kernel.yield %s : tensor<32xi64>
  }
  // A scatter-add adds atomically.
  %7 = kernel.fused @k7_scatter_add "scatter_add" (%j, %k) : (tensor<5xi64>, tensor<5x3xf32>) -> (tensor<10x3xf32>) {
  ^bb0(%y: tensor<5xi64>, %z: tensor<5x3xf32>):
    %s = pg.scatter_add %z[%y] dim = 0 : (tensor<5x3xf32>, tensor<5xi64>) -> tensor<10x3xf32>
    kernel.yield %s : tensor<10x3xf32>
  }
  // The GPT's token-embedding gradient: 16384 tokens into 65 rows of 384 columns, 252 adds a row; its rows fit a
  // block's workgroup memory (65 x 32 f32), so shared_rows: chunks of 192 tokens (6 rounds of 8 warps x 4) x 12
  // column slices = 1032 blocks.
  %13 = kernel.fused @k13_scatter_add "scatter_add" (%tok, %o) : (tensor<64x256xi64>, tensor<64x256x384xf32>) -> (tensor<65x384xf32>) {
  ^bb0(%y: tensor<64x256xi64>, %z: tensor<64x256x384xf32>):
    %s = pg.scatter_add %z[%y] dim = 0 : (tensor<64x256x384xf32>, tensor<64x256xi64>) -> tensor<65x384xf32>
    kernel.yield %s : tensor<65x384xf32>
  }
  // Dropout's uniform numbers.
  %14 = kernel.fused @k14_random "random" (%seed, %offset) : (tensor<i64>, tensor<i64>) -> (tensor<64x256x384xbf16>) {
  ^bb0(%s0: tensor<i64>, %o0: tensor<i64>):
    %r = pg.random "uniform" %s0, %o0 : tensor<64x256x384xbf16>
    kernel.yield %r : tensor<64x256x384xbf16>
  }
  // A sum that also yields its elementwise input (a side output stored inside the reduction loop): a block per row
  // too, each thread storing the side output of the elements it visits.
  %9:2 = kernel.fused @k9_sum "reduction" (%g) : (tensor<32x64xf32>) -> (tensor<32x64xf32>, tensor<32xf32>) {
  ^bb0(%x: tensor<32x64xf32>):
    %t = pg.tanh %x : tensor<32x64xf32>
    %s = pg.sum %t dims = [1] : tensor<32x64xf32> -> tensor<32xf32>
    kernel.yield %t, %s : tensor<32x64xf32>, tensor<32xf32>
  }
  // A sum of squares to a scalar (a gradient norm) with a side output: its 589824 elements split over 1024 blocks
  // (split_rows), then a second nest combines the partials.
  %10:2 = kernel.fused @k10_sum "reduction" (%n) : (tensor<1536x384xbf16>) -> (tensor<1536x384xf32>, tensor<f32>) {
  ^bb0(%x: tensor<1536x384xbf16>):
    %w = pg.cast %x : tensor<1536x384xbf16> -> tensor<1536x384xf32>
    %q = pg.mul %w, %w : tensor<1536x384xf32>
    %s = pg.sum %q dims = [0, 1] : tensor<1536x384xf32> -> tensor<f32>
    kernel.yield %w, %s : tensor<1536x384xf32>, tensor<f32>
  }
  // A column sum over 16384 rows (a bias gradient): 384 columns are too few threads, so 512 chunks of 32 rows a
  // thread, adjacent threads on adjacent columns (split_columns); over 64 rows, 98304 columns are enough threads.
  %11 = kernel.fused @k11_sum "reduction" (%m) : (tensor<16384x384xf32>) -> (tensor<384xf32>) {
  ^bb0(%x: tensor<16384x384xf32>):
    %s = pg.sum %x dims = [0] : tensor<16384x384xf32> -> tensor<384xf32>
    kernel.yield %s : tensor<384xf32>
  }
  %12 = kernel.fused @k12_sum "reduction" (%l) : (tensor<64x98304xf32>) -> (tensor<98304xf32>) {
  ^bb0(%x: tensor<64x98304xf32>):
    %s = pg.sum %x dims = [0] : tensor<64x98304xf32> -> tensor<98304xf32>
    kernel.yield %s : tensor<98304xf32>
  }
  // Elementwise kernels (and gathers, movement, random) take a thread per point.
  %8 = kernel.fused @k8_tanh "elementwise" (%c) : (tensor<8x16xf32>) -> (tensor<8x16xf32>) {
  ^bb0(%x: tensor<8x16xf32>):
    %t = pg.tanh %x : tensor<8x16xf32>
    kernel.yield %t : tensor<8x16xf32>
  }
  func.return
}

// CHECK-LABEL: func.func @f
// CHECK:         kernel.fused @k0_matmul "matmul" schedule = #kernel.schedule<"cp-async", tile = [128, 128, 16], threads = 256, warps = [2, 4], lanes = [8, 4], reps = [2, 2], vec = [4, 4], vector, async_copy>
// CHECK:         kernel.fused @k1_matmul "matmul" schedule = #kernel.schedule<"cp-async", tile = [64, 64, 16], threads = 128, warps = [2, 2], lanes = [8, 4], reps = [1, 2], vec = [4, 4], vector, async_copy>
// CHECK:         kernel.fused @k2_matmul "matmul" schedule = #kernel.schedule<"thread_per_point", block = 256>
// CHECK:         kernel.fused @k3_matmul "matmul" schedule = #kernel.schedule<"thread_per_point", block = 256>
// CHECK:         kernel.fused @k4_sum "reduction" schedule = #kernel.schedule<"block_per_row", block = 256>
// CHECK:         kernel.fused @k5_max "reduction" schedule = #kernel.schedule<"thread_per_point", block = 256>
// CHECK:         kernel.fused @k6_argmax "reduction" schedule = #kernel.schedule<"thread_per_point", block = 256>
// CHECK:         kernel.fused @k7_scatter_add "scatter_add" schedule = #kernel.schedule<"atomic", block = 256>
// CHECK:         kernel.fused @k13_scatter_add "scatter_add" schedule = #kernel.schedule<"shared_rows", chunk = 192, block = 256>
// CHECK:         kernel.fused @k14_random "random" schedule = #kernel.schedule<"thread_per_point", block = 256>
// CHECK:         kernel.fused @k9_sum "reduction" schedule = #kernel.schedule<"block_per_row", block = 256>
// CHECK:         kernel.fused @k10_sum "reduction" schedule = #kernel.schedule<"split_rows", splits = 1024, block = 256>
// CHECK:         kernel.fused @k11_sum "reduction" schedule = #kernel.schedule<"split_columns", splits = 512, block = 256>
// CHECK:         kernel.fused @k12_sum "reduction" schedule = #kernel.schedule<"thread_per_point", block = 256>
// CHECK:         kernel.fused @k8_tanh "elementwise" schedule = #kernel.schedule<"thread_per_point", block = 256>

// POINTS:        kernel.fused @k14_random "random" schedule = #kernel.schedule<"thread_per_point", block = 256, points = 4>
// POINTS:        kernel.fused @k8_tanh "elementwise" schedule = #kernel.schedule<"thread_per_point", block = 256>

// naive on every matmul, whatever its size (a 32x8 block of threads, one output each; f64 changes nothing).
// NAIVE:         kernel.fused @k0_matmul "matmul" schedule = #kernel.schedule<"naive", tile = [32, 8, 0], threads = 256, warps = [1, 8], lanes = [32, 1], reps = [1, 1], vec = [1, 1]>
// NAIVE:         kernel.fused @k1_matmul "matmul" schedule = #kernel.schedule<"naive", tile = [32, 8, 0]
// NAIVE:         kernel.fused @k2_matmul "matmul" schedule = #kernel.schedule<"naive", tile = [32, 8, 0]
// NAIVE:         kernel.fused @k3_matmul "matmul" schedule = #kernel.schedule<"naive", tile = [32, 8, 0]

// Forced cp-async: on f64 each thread owns 2x4 outputs in each of its 2x2 fragments (64x128 tiles: 32 f64
// accumulators, 64 registers), and the K tile halves to 8 so that two stages fit in 48 KiB; the other options turn
// block reductions and atomics off and shrink the blocks.
// OPTS:          kernel.fused @k2_matmul "matmul" schedule = #kernel.schedule<"cp-async", tile = [128, 128, 16]
// OPTS:          kernel.fused @k3_matmul "matmul" schedule = #kernel.schedule<"cp-async", tile = [64, 128, 8], threads = 256, warps = [2, 4], lanes = [8, 4], reps = [2, 2], vec = [2, 4], vector, async_copy>
// OPTS:          kernel.fused @k4_sum "reduction" schedule = #kernel.schedule<"thread_per_point", block = 128>
// OPTS:          kernel.fused @k7_scatter_add "scatter_add" schedule = #kernel.schedule<"thread_per_point", block = 128>

// A scatter-add at a 0-d index writes each element once: a thread per point, no atomics.
// CHECK-LABEL: func.func @zero_d
// CHECK:         kernel.fused @k0_scatter_add "scatter_add" schedule = #kernel.schedule<"thread_per_point", block = 256>
func.func @zero_d(%j: tensor<i64>, %k: tensor<3xf32>) {
  %0 = kernel.fused @k0_scatter_add "scatter_add" (%j, %k) : (tensor<i64>, tensor<3xf32>) -> (tensor<3x2xf32>) {
  ^bb0(%y: tensor<i64>, %z: tensor<3xf32>):
    %s = pg.scatter_add %z[%y] dim = 1 : (tensor<3xf32>, tensor<i64>) -> tensor<3x2xf32>
    kernel.yield %s : tensor<3x2xf32>
  }
  func.return
}
