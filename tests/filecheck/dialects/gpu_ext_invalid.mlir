// Verifier errors of gpu_ext's vector and async-copy ops, one per chunk of --split-input-file (the shuffle and
// workgroup_alloc errors are in gpu_ext.mlir). With --verify-diagnostics xDSL 0.74 prints each error (then the IR
// with the failing op marked) and exits 0: FileCheck the messages in order.
// RUN: pgc-opt %s --verify-diagnostics --split-input-file | filecheck %s

// A vector access moves 2 or 4 elements (ld/st .v2 or .v4).
// CHECK: gpu_ext.vector_load: loads 2 or 4 elements, not 3
"gpu.module"() <{sym_name = "m"}> ({
  "gpu.func"() <{function_type = (memref<64x64xf32>, index) -> (), kernel}> ({
  ^bb0(%buf: memref<64x64xf32>, %i: index):
    %a, %b, %c = gpu_ext.vector_load %buf[%i, %i] : memref<64x64xf32> -> f32, f32, f32
    "gpu.return"() : () -> ()
  }) {sym_name = "k"} : () -> ()
}) : () -> ()

// -----

// A vector access must not cross a row: its count divides the innermost dimension.
// CHECK: gpu_ext.vector_load: 4 elements do not divide the innermost dimension 6 (accesses must not cross a row)
"gpu.module"() <{sym_name = "m"}> ({
  "gpu.func"() <{function_type = (memref<8x6xf32>, index) -> (), kernel}> ({
  ^bb0(%buf: memref<8x6xf32>, %i: index):
    %a, %b, %c, %d = gpu_ext.vector_load %buf[%i, %i] : memref<8x6xf32> -> f32, f32, f32, f32
    "gpu.return"() : () -> ()
  }) {sym_name = "k"} : () -> ()
}) : () -> ()

// -----

// CHECK: gpu_ext.vector_store: value type f64 is not the element type f32
"gpu.module"() <{sym_name = "m"}> ({
  "gpu.func"() <{function_type = (memref<8x8xf32>, f32, f64, index) -> (), kernel}> ({
  ^bb0(%buf: memref<8x8xf32>, %x: f32, %y: f64, %i: index):
    gpu_ext.vector_store (%x, %y : f32, f64), %buf[%i, %i] : memref<8x8xf32>
    "gpu.return"() : () -> ()
  }) {sym_name = "k"} : () -> ()
}) : () -> ()

// -----

// CHECK: gpu_ext.vector_store: 1 indices for a rank-2 buffer
"gpu.module"() <{sym_name = "m"}> ({
  "gpu.func"() <{function_type = (memref<8x8xf32>, f32, index) -> (), kernel}> ({
  ^bb0(%buf: memref<8x8xf32>, %x: f32, %i: index):
    gpu_ext.vector_store (%x, %x : f32, f32), %buf[%i] : memref<8x8xf32>
    "gpu.return"() : () -> ()
  }) {sym_name = "k"} : () -> ()
}) : () -> ()

// -----

// cp.async copies global memory into workgroup (shared) memory: not into a global buffer...
// CHECK: gpu_ext.async_copy: copies from a global buffer into a workgroup buffer
"gpu.module"() <{sym_name = "m"}> ({
  "gpu.func"() <{function_type = (memref<64x64xf32>, memref<16x128xf32>, index) -> (), kernel}> ({
  ^bb0(%src: memref<64x64xf32>, %dst: memref<16x128xf32>, %i: index):
    gpu_ext.async_copy %src[%i, %i], %dst[%i, %i], 4, %i : memref<64x64xf32>, memref<16x128xf32>
    "gpu.return"() : () -> ()
  }) {sym_name = "k"} : () -> ()
}) : () -> ()

// -----

// ... nor out of a workgroup buffer.
// CHECK: gpu_ext.async_copy: copies from a global buffer into a workgroup buffer
"gpu.module"() <{sym_name = "m"}> ({
  "gpu.func"() <{function_type = (memref<64x64xf32>, index) -> (), kernel}> ({
  ^bb0(%src: memref<64x64xf32>, %i: index):
    %t = gpu_ext.workgroup_alloc : memref<16x128xf32, 3 : i64>
    gpu_ext.async_copy %t[%i, %i], %t[%i, %i], 4, %i : memref<16x128xf32, 3 : i64>, memref<16x128xf32, 3 : i64>
    "gpu.return"() : () -> ()
  }) {sym_name = "k"} : () -> ()
}) : () -> ()

// -----

// cp.async copies 4, 8 or 16 bytes: 3 f32 are 12.
// CHECK: gpu_ext.async_copy: copies 4, 8 or 16 bytes, not 12
"gpu.module"() <{sym_name = "m"}> ({
  "gpu.func"() <{function_type = (memref<64x66xf32>, index) -> (), kernel}> ({
  ^bb0(%src: memref<64x66xf32>, %i: index):
    %t = gpu_ext.workgroup_alloc : memref<16x132xf32, 3 : i64>
    gpu_ext.async_copy %src[%i, %i], %t[%i, %i], 3, %i : memref<64x66xf32>, memref<16x132xf32, 3 : i64>
    "gpu.return"() : () -> ()
  }) {sym_name = "k"} : () -> ()
}) : () -> ()

// -----

// CHECK: gpu_ext.async_copy: 4 elements do not divide the innermost dimension 66 (accesses must not cross a row)
"gpu.module"() <{sym_name = "m"}> ({
  "gpu.func"() <{function_type = (memref<64x66xf32>, index) -> (), kernel}> ({
  ^bb0(%src: memref<64x66xf32>, %i: index):
    %t = gpu_ext.workgroup_alloc : memref<16x128xf32, 3 : i64>
    gpu_ext.async_copy %src[%i, %i], %t[%i, %i], 4, %i : memref<64x66xf32>, memref<16x128xf32, 3 : i64>
    "gpu.return"() : () -> ()
  }) {sym_name = "k"} : () -> ()
}) : () -> ()

// -----

// CHECK: gpu_ext.async_copy: value type f32 is not the element type f64
"gpu.module"() <{sym_name = "m"}> ({
  "gpu.func"() <{function_type = (memref<64x64xf64>, index) -> (), kernel}> ({
  ^bb0(%src: memref<64x64xf64>, %i: index):
    %t = gpu_ext.workgroup_alloc : memref<16x128xf32, 3 : i64>
    gpu_ext.async_copy %src[%i, %i], %t[%i, %i], 1, %i : memref<64x64xf64>, memref<16x128xf32, 3 : i64>
    "gpu.return"() : () -> ()
  }) {sym_name = "k"} : () -> ()
}) : () -> ()

// -----

// cp.async.wait_group takes 0..7.
// CHECK: gpu_ext.async_wait: pending 8 is out of range 0..7
"gpu.module"() <{sym_name = "m"}> ({
  "gpu.func"() <{function_type = () -> (), kernel}> ({
    gpu_ext.async_wait pending 8
    "gpu.return"() : () -> ()
  }) {sym_name = "k"} : () -> ()
}) : () -> ()

// -----

// CHECK: gpu_ext.vector_load: must be inside a gpu.func or gpu.launch
func.func @host(%buf: memref<8x8xf32>, %i: index) {
  %a, %b = gpu_ext.vector_load %buf[%i, %i] : memref<8x8xf32> -> f32, f32
  gpu_ext.async_commit
  func.return
}

// -----

// CHECK: gpu_ext.vector_load: value type f64 is not the element type f32
"gpu.module"() <{sym_name = "m"}> ({
  "gpu.func"() <{function_type = (memref<8x8xf32>, index) -> (), kernel}> ({
  ^bb0(%buf: memref<8x8xf32>, %i: index):
    %a, %b = gpu_ext.vector_load %buf[%i, %i] : memref<8x8xf32> -> f32, f64
    "gpu.return"() : () -> ()
  }) {sym_name = "k"} : () -> ()
}) : () -> ()

// -----

// sm_90 moves at most 16 bytes per access: four f64 are 32.
// CHECK: gpu_ext.vector_load: 4 x f64 is more than 16 bytes (the widest access on sm_90)
"gpu.module"() <{sym_name = "m"}> ({
  "gpu.func"() <{function_type = (memref<8x8xf64>, index) -> (), kernel}> ({
  ^bb0(%buf: memref<8x8xf64>, %i: index):
    %a, %b, %c, %d = gpu_ext.vector_load %buf[%i, %i] : memref<8x8xf64> -> f64, f64, f64, f64
    "gpu.return"() : () -> ()
  }) {sym_name = "k"} : () -> ()
}) : () -> ()

// -----

// CHECK: gpu_ext.mma_sync: m16n8k8.bf16 takes 2 A, 1 B and 4 C/D registers, got (4, 2, 4) and 4
"gpu.module"() <{sym_name = "m"}> ({
  "gpu.func"() <{function_type = (index, f32) -> (), kernel}> ({
  ^bb0(%i: index, %z: f32):
    %t = gpu_ext.workgroup_alloc : memref<3x4096xbf16, 3 : i64>
    %a:4 = gpu_ext.ldmatrix %t[%i, %i], 4 : memref<3x4096xbf16, 3 : i64> -> i32, i32, i32, i32
    %b:4 = gpu_ext.ldmatrix %t[%i, %i], 4 trans : memref<3x4096xbf16, 3 : i64> -> i32, i32, i32, i32
    %d:4 = "gpu_ext.mma_sync"(%a#0, %a#1, %a#2, %a#3, %b#0, %b#1, %z, %z, %z, %z) <{operandSegmentSizes = array<i32: 4, 2, 4>, shape = "m16n8k8", type = "bf16"}> : (i32, i32, i32, i32, i32, i32, f32, f32, f32, f32) -> (f32, f32, f32, f32)
    "gpu.return"() : () -> ()
  }) {sym_name = "k"} : () -> ()
}) : () -> ()
