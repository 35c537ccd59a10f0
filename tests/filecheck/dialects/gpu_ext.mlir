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
