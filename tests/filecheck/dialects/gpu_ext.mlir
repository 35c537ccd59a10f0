// gpu_ext (what picograd adds to xDSL's gpu dialect): its ops in their custom form, and their verifiers' errors.
// (The MLP's gpu stage, shuffles and workgroup buffers included, round-trips through pgc-opt in
// tools/pgc_emit_gpu_ptx.mlir.)
// RUN: pgc-opt %s --split-input-file --verify-diagnostics | filecheck %s

// CHECK:      ^bb0(%x: f32, %p: i1, %d: f64):
// CHECK-NEXT:   %a = gpu_ext.shuffle xor %x, 16 : f32
// CHECK-NEXT:   %b = gpu_ext.shuffle down %p, 1 : i1
// CHECK-NEXT:   %c = gpu_ext.shuffle idx %d, 0 {tag} : f64
// CHECK-NEXT:   %s = gpu_ext.workgroup_alloc : memref<8xf32, 3 : i64>
"gpu.module"() <{sym_name = "m"}> ({
  "gpu.func"() <{function_type = (f32, i1, f64) -> (), kernel}> ({
  ^bb0(%x: f32, %p: i1, %d: f64):
    %a = gpu_ext.shuffle xor %x, 16 : f32
    %b = gpu_ext.shuffle down %p, 1 : i1
    %c = gpu_ext.shuffle idx %d, 0 {tag} : f64
    %s = gpu_ext.workgroup_alloc : memref<8xf32, 3 : i64>
    "gpu.return"() : () -> ()
  }) {sym_name = "k"} : () -> ()
}) : () -> ()

// -----

// The 16-byte accesses and asynchronous copies of pg-matmul-schedule's kernels: 2 or 4 elements per vector access
// (f32 or f64), async copies of 4, 8 or 16 bytes with a register count of valid elements, commit and wait.
// CHECK:      ^bb0(%buf: memref<64x64xf32>, %d: memref<8x6xf64>, %i: index, %j: index):
// CHECK-NEXT:   %a, %b, %c, %e = gpu_ext.vector_load %buf[%i, %j] : memref<64x64xf32> -> f32, f32, f32, f32
// CHECK-NEXT:   %p, %q = gpu_ext.vector_load %d[%i, %j] {tag} : memref<8x6xf64> -> f64, f64
// CHECK-NEXT:   gpu_ext.vector_store(%a, %b, %c, %e : f32, f32, f32, f32), %buf[%i, %j] : memref<64x64xf32>
// CHECK-NEXT:   gpu_ext.vector_store(%p, %q : f64, f64), %d[%i, %j] : memref<8x6xf64>
// CHECK-NEXT:   %tile = gpu_ext.workgroup_alloc : memref<2x16x128xf32, 3 : i64>
// CHECK-NEXT:   %s = arith.constant 1 : index
// CHECK-NEXT:   %n = arith.constant 4 : index
// CHECK-NEXT:   gpu_ext.async_copy %buf[%i, %j], %tile[%s, %i, %j], 4, %n : memref<64x64xf32>, memref<2x16x128xf32, 3 : i64>
// CHECK-NEXT:   gpu_ext.async_copy %buf[%i, %j], %tile[%s, %i, %j], 1, %n {tag} : memref<64x64xf32>, memref<2x16x128xf32, 3 : i64>
// CHECK-NEXT:   %dt = gpu_ext.workgroup_alloc : memref<4x6xf64, 3 : i64>
// CHECK-NEXT:   gpu_ext.async_copy %d[%i, %j], %dt[%i, %j], 2, %n : memref<8x6xf64>, memref<4x6xf64, 3 : i64>
// CHECK-NEXT:   gpu_ext.async_commit
// CHECK-NEXT:   gpu_ext.async_wait pending 0
// CHECK-NEXT:   gpu_ext.async_wait pending 1 {tag}
// CHECK-NEXT:   "gpu.return"() : () -> ()
"gpu.module"() <{sym_name = "m"}> ({
  "gpu.func"() <{function_type = (memref<64x64xf32>, memref<8x6xf64>, index, index) -> (), kernel}> ({
  ^bb0(%buf: memref<64x64xf32>, %d: memref<8x6xf64>, %i: index, %j: index):
    %a, %b, %c, %e = gpu_ext.vector_load %buf[%i, %j] : memref<64x64xf32> -> f32, f32, f32, f32
    %p, %q = gpu_ext.vector_load %d[%i, %j] {tag} : memref<8x6xf64> -> f64, f64
    gpu_ext.vector_store (%a, %b, %c, %e : f32, f32, f32, f32), %buf[%i, %j] : memref<64x64xf32>
    gpu_ext.vector_store (%p, %q : f64, f64), %d[%i, %j] : memref<8x6xf64>
    %tile = gpu_ext.workgroup_alloc : memref<2x16x128xf32, 3 : i64>
    %s = arith.constant 1 : index
    %n = arith.constant 4 : index
    gpu_ext.async_copy %buf[%i, %j], %tile[%s, %i, %j], 4, %n : memref<64x64xf32>, memref<2x16x128xf32, 3 : i64>
    gpu_ext.async_copy %buf[%i, %j], %tile[%s, %i, %j], 1, %n {tag} : memref<64x64xf32>, memref<2x16x128xf32, 3 : i64>
    %dt = gpu_ext.workgroup_alloc : memref<4x6xf64, 3 : i64>
    gpu_ext.async_copy %d[%i, %j], %dt[%i, %j], 2, %n : memref<8x6xf64>, memref<4x6xf64, 3 : i64>
    gpu_ext.async_commit
    gpu_ext.async_wait pending 0
    gpu_ext.async_wait pending 1 {tag}
    "gpu.return"() : () -> ()
  }) {sym_name = "k"} : () -> ()
}) : () -> ()

// -----

// Inside a gpu.launch (pg-matmul-schedule's output, before pg-to-gpu outlines it) the ops verify too.
// CHECK-LABEL: func.func @launch
// CHECK:         "gpu.launch"
// CHECK:           %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} = gpu_ext.vector_load %a[%{{.*}}, %{{.*}}] : memref<16x16xf32> -> f32, f32, f32, f32
// CHECK-NEXT:      %t = gpu_ext.workgroup_alloc : memref<2x4x16xf32, 3 : i64>
// CHECK-NEXT:      gpu_ext.async_copy %a[%{{.*}}, %{{.*}}], %t[%{{.*}}, %{{.*}}, %{{.*}}], 4, %{{.*}} : memref<16x16xf32>, memref<2x4x16xf32, 3 : i64>
// CHECK-NEXT:      gpu_ext.async_commit
// CHECK-NEXT:      gpu_ext.async_wait pending 0
// CHECK-NEXT:      gpu_ext.vector_store(%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} : f32, f32, f32, f32), %a[%{{.*}}, %{{.*}}] : memref<16x16xf32>
// CHECK-NEXT:      "gpu.terminator"() : () -> ()
func.func @launch(%a: memref<16x16xf32>) {
  %one = arith.constant 1 : index
  "gpu.launch"(%one, %one, %one, %one, %one, %one) <{operandSegmentSizes = array<i32: 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0>}> ({
  ^bb0(%bx: index, %by: index, %bz: index, %tx: index, %ty: index, %tz: index, %gx: index, %gy: index, %gz: index, %sx: index, %sy: index, %sz: index):
    %x0, %x1, %x2, %x3 = gpu_ext.vector_load %a[%tx, %bx] : memref<16x16xf32> -> f32, f32, f32, f32
    %t = gpu_ext.workgroup_alloc : memref<2x4x16xf32, 3 : i64>
    gpu_ext.async_copy %a[%tx, %bx], %t[%by, %bz, %tx], 4, %sx : memref<16x16xf32>, memref<2x4x16xf32, 3 : i64>
    gpu_ext.async_commit
    gpu_ext.async_wait pending 0
    gpu_ext.vector_store (%x0, %x1, %x2, %x3 : f32, f32, f32, f32), %a[%tx, %bx] : memref<16x16xf32>
    "gpu.terminator"() : () -> ()
  }) : (index, index, index, index, index, index) -> ()
  func.return
}

// -----

// CHECK: gpu_ext.shuffle: offset 32 is out of range 0..31
"gpu.module"() <{sym_name = "m"}> ({
  "gpu.func"() <{function_type = (f32) -> (), kernel}> ({
  ^bb0(%x: f32):
    %a = gpu_ext.shuffle xor %x, 32 : f32
    "gpu.return"() : () -> ()
  }) {sym_name = "k"} : () -> ()
}) : () -> ()

// -----

// CHECK: gpu_ext.shuffle: cannot shuffle a value of type i8 (f32, f64, index, i1, i32, i64)
"gpu.module"() <{sym_name = "m"}> ({
  "gpu.func"() <{function_type = (i8) -> (), kernel}> ({
  ^bb0(%x: i8):
    %a = gpu_ext.shuffle xor %x, 1 : i8
    "gpu.return"() : () -> ()
  }) {sym_name = "k"} : () -> ()
}) : () -> ()

// -----

// CHECK: gpu_ext.workgroup_alloc: the buffer must be in memory space 3 (workgroup), got
"gpu.module"() <{sym_name = "m"}> ({
  "gpu.func"() <{function_type = () -> (), kernel}> ({
    %s = gpu_ext.workgroup_alloc : memref<8xf32>
    "gpu.return"() : () -> ()
  }) {sym_name = "k"} : () -> ()
}) : () -> ()

// -----

// CHECK: gpu_ext.workgroup_alloc: the buffer needs a static shape
"gpu.module"() <{sym_name = "m"}> ({
  "gpu.func"() <{function_type = () -> (), kernel}> ({
    %s = gpu_ext.workgroup_alloc : memref<?xf32, 3 : i64>
    "gpu.return"() : () -> ()
  }) {sym_name = "k"} : () -> ()
}) : () -> ()

// -----

// CHECK: gpu_ext.workgroup_alloc: must be inside a gpu.func
func.func @host() {
  %s = gpu_ext.workgroup_alloc : memref<8xf32, 3 : i64>
  func.return
}

// -----

// The tensor-core ops of the mma-sync schedule (nvgpu's ldmatrix and mma.sync): i32 fragments, f32 accumulators;
// an f32 fragment rounded to tf32.
// CHECK:      %a, %a_1, %a_2, %a_3 = gpu_ext.ldmatrix %t[%i, %i], 4 : memref<3x4096xbf16, 3 : i64> -> i32, i32, i32, i32
// CHECK-NEXT: %b, %b_1, %b_2, %b_3 = gpu_ext.ldmatrix %t[%i, %i], 4 trans : memref<3x4096xbf16, 3 : i64> -> i32, i32, i32, i32
// CHECK-NEXT: "gpu_ext.mma_sync"(%a, %a_1, %a_2, %a_3, %b, %b_1, %z, %z, %z, %z) <{operandSegmentSizes = array<i32: 4, 2, 4>, shape = "m16n8k16", type = "bf16"}>
// CHECK-NEXT: %r = gpu_ext.round_tf32 %a
// CHECK-NEXT: %p = gpu_ext.pack_half "bf16" %z, %z
"gpu.module"() <{sym_name = "m"}> ({
  "gpu.func"() <{function_type = (index, f32) -> (), kernel}> ({
  ^bb0(%i: index, %z: f32):
    %t = gpu_ext.workgroup_alloc : memref<3x4096xbf16, 3 : i64>
    %a:4 = gpu_ext.ldmatrix %t[%i, %i], 4 : memref<3x4096xbf16, 3 : i64> -> i32, i32, i32, i32
    %b:4 = gpu_ext.ldmatrix %t[%i, %i], 4 trans : memref<3x4096xbf16, 3 : i64> -> i32, i32, i32, i32
    %d:4 = "gpu_ext.mma_sync"(%a#0, %a#1, %a#2, %a#3, %b#0, %b#1, %z, %z, %z, %z) <{operandSegmentSizes = array<i32: 4, 2, 4>, shape = "m16n8k16", type = "bf16"}> : (i32, i32, i32, i32, i32, i32, f32, f32, f32, f32) -> (f32, f32, f32, f32)
    %r = gpu_ext.round_tf32 %a#0
    %p = gpu_ext.pack_half "bf16" %z, %z
    "gpu.return"() : () -> ()
  }) {sym_name = "k"} : () -> ()
}) : () -> ()
