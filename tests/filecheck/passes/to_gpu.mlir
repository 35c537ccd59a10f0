// RUN: pgc-opt %s -p pg-to-gpu --split-input-file --verify-diagnostics | filecheck %s
// RUN: pgc-opt %s -p pg-to-gpu --split-input-file --verify-diagnostics --print-debuginfo | filecheck %s --check-prefix=LOC
// RUN: pgc-opt %s -p 'pg-to-gpu{block-size=64 block-reductions=false atomics=false}' --split-input-file --verify-diagnostics | filecheck %s --check-prefix=PLAIN
// Without --verify-diagnostics the first rejection is an error on stderr and a nonzero exit:
// RUN: not pgc-opt %s -p pg-to-gpu --split-input-file 2>&1 | filecheck %s --check-prefix=EXIT

// ---- thread per point: an elementwise nest over (4, 100) reading a function argument and a view of the arena

// Each nest is one kernel of the function's gpu.module, launched in order from the host with constant grid and block
// sizes (400 points: 2 blocks of 256 threads). The kernel takes whole buffers (the argument and the arena); the view is
// cloned into it, so an intermediate is the arena pointer plus a constant offset. Thread b*256+t computes one point
// behind a bounds check; both accesses read their buffers in the nest's own row-major order, so each indexes its
// buffer collapsed to 1-D with the thread's linear index (in i32: 400 points) and nothing is delinearized.

// CHECK-LABEL: builtin.module attributes {gpu.container_module} {
// CHECK-NEXT:    func.func @elementwise(%x: memref<4x100xf32>, %result0: memref<4x100xf32> {pg.result = 0 : i64}) {
// CHECK-NEXT:      %[[ONE:.*]] = arith.constant 1 : index
// CHECK-NEXT:      %[[GRID:.*]] = arith.constant 2 : index
// CHECK-NEXT:      %[[BLOCK:.*]] = arith.constant 256 : index
// CHECK-NEXT:      %arena = memref.alloc() {alignment = 64 : i64} : memref<3200xi8>
// CHECK-NEXT:      "gpu.launch_func"(%[[GRID]], %[[ONE]], %[[ONE]], %[[BLOCK]], %[[ONE]], %[[ONE]], %x, %arena) <{kernel = @elementwise_kernels::@k0_tanh, {{.*}}}>
// CHECK-NEXT:      "gpu.launch_func"(%[[GRID]], %[[ONE]], %[[ONE]], %[[BLOCK]], %[[ONE]], %[[ONE]], %arena, %result0) <{kernel = @elementwise_kernels::@k1_exp, {{.*}}}>
// CHECK-NEXT:      memref.dealloc %arena : memref<3200xi8>
// CHECK-NEXT:      func.return
// CHECK-NEXT:    }
// CHECK-NEXT:    "gpu.module"() <{sym_name = "elementwise_kernels"}> ({
// CHECK-NEXT:      "gpu.func"() <{function_type = (memref<4x100xf32>, memref<3200xi8>) -> (), kernel}> ({
// CHECK-NEXT:      ^bb0(%x: memref<4x100xf32>, %arena: memref<3200xi8>):
// CHECK-NEXT:        %[[B:.*]] = arith.constant 256 : index
// CHECK-NEXT:        %[[N:.*]] = arith.constant 400 : index
// CHECK-NEXT:        %off = arith.constant 1600 : index
// CHECK-NEXT:        %v = memref.view %arena[%off][] : memref<3200xi8> to memref<4x100xf32>
// CHECK-NEXT:        %[[BID:.*]] = "gpu.block_id"() <{dimension = #gpu<dim x>}> : () -> index
// CHECK-NEXT:        %[[TID:.*]] = "gpu.thread_id"() <{dimension = #gpu<dim x>}> : () -> index
// CHECK-NEXT:        %[[BASE:.*]] = arith.muli %[[BID]], %[[B]] : index
// CHECK-NEXT:        %[[LIN:.*]] = arith.addi %[[BASE]], %[[TID]] : index
// CHECK-NEXT:        %[[IN:.*]] = arith.cmpi ult, %[[LIN]], %[[N]] : index
// CHECK-NEXT:        scf.if %[[IN]] {
// CHECK-NEXT:          %[[L32:.*]] = arith.index_cast %[[LIN]] : index to i32
// CHECK-NEXT:          %[[L:.*]] = arith.index_cast %[[L32]] : i32 to index
// CHECK-NEXT:          %[[X1:.*]] = memref.collapse_shape %x {{\[\[}}0 : i64, 1 : i64]] : memref<4x100xf32> into memref<400xf32>
// CHECK-NEXT:          %[[V1:.*]] = memref.collapse_shape %v {{\[\[}}0 : i64, 1 : i64]] : memref<4x100xf32> into memref<400xf32>
// CHECK-NEXT:          %a = memref.load %[[X1]][%[[L]]] : memref<400xf32>
// CHECK-NEXT:          %t = math.tanh %a : f32
// CHECK-NEXT:          memref.store %t, %[[V1]][%[[L]]] : memref<400xf32>
// CHECK-NEXT:        }
// CHECK-NEXT:        "gpu.return"() : () -> ()
// CHECK-NEXT:      }) {sym_name = "k0_tanh", gpu.known_block_size = array<i32: 256, 1, 1>, pg.schedule = "thread_per_point", pg.kind = "elementwise"} : () -> ()
// CHECK-NEXT:      "gpu.func"() <{function_type = (memref<3200xi8>, memref<4x100xf32>) -> (), kernel}> ({
// CHECK:             %v = memref.view %arena[%off][] : memref<3200xi8> to memref<4x100xf32>
// CHECK:             %[[V2:.*]] = memref.collapse_shape %v
// CHECK-NEXT:        %[[R2:.*]] = memref.collapse_shape %result0
// CHECK-NEXT:        %a = memref.load %[[V2]][%{{.*}}] : memref<400xf32>
// CHECK-NEXT:        %e = math.exp %a : f32
// CHECK-NEXT:        memref.store %e, %[[R2]][%{{.*}}] : memref<400xf32>
// CHECK:           }) {sym_name = "k1_exp", {{.*}}pg.schedule = "thread_per_point"

// With a smaller block size, more blocks.
// PLAIN-LABEL: func.func @elementwise
// PLAIN:         %[[G:.*]] = arith.constant 7 : index
// PLAIN-NEXT:    %[[T:.*]] = arith.constant 64 : index
// PLAIN:         "gpu.launch_func"(%[[G]], %{{.*}}, %{{.*}}, %[[T]],

// Every op carries the location of its nest; the kernel's index arithmetic the nest's, the moved body its own.
// LOC-LABEL: func.func @elementwise
// LOC:         "gpu.launch_func"{{.*}}@elementwise_kernels::@k0_tanh{{.*}} loc("model.py":5:4)
// LOC-NEXT:    "gpu.launch_func"{{.*}}@elementwise_kernels::@k1_exp{{.*}} loc("model.py":6:4)
// LOC:         memref.view {{.*}} loc("model.py":3:4)
// LOC-NEXT:    "gpu.block_id"(){{.*}} loc("model.py":5:4)
// LOC:         memref.load {{.*}} loc("model.py":4:4)
// LOC-NEXT:    math.tanh {{.*}} loc("model.py":5:4)
// LOC:         }) {sym_name = "k0_tanh"{{.*}} loc("model.py":5:4)

func.func @elementwise(%x: memref<4x100xf32>, %result0: memref<4x100xf32> {pg.result = 0 : i64}) {
  %arena = memref.alloc() {alignment = 64 : i64} : memref<3200xi8> loc("model.py":3:4)
  %off = arith.constant 1600 : index loc("model.py":3:4)
  %v = memref.view %arena[%off][] : memref<3200xi8> to memref<4x100xf32> loc("model.py":3:4)
  %c0 = arith.constant 0 : index loc("model.py":4:4)
  %c4 = arith.constant 4 : index loc("model.py":4:4)
  %c100 = arith.constant 100 : index loc("model.py":4:4)
  %c1 = arith.constant 1 : index loc("model.py":4:4)
  "scf.parallel"(%c0, %c0, %c4, %c100, %c1, %c1) <{operandSegmentSizes = array<i32: 2, 2, 2, 0>}> ({
  ^bb0(%i: index, %j: index):
    %a = memref.load %x[%i, %j] : memref<4x100xf32> loc("model.py":4:4)
    %t = math.tanh %a : f32 loc("model.py":5:4)
    memref.store %t, %v[%i, %j] : memref<4x100xf32> loc("model.py":5:4)
    scf.reduce loc("model.py":5:4)
  }) {pg.kernel = "k0_tanh", pg.kind = "elementwise"} : (index, index, index, index, index, index) -> () loc("model.py":5:4)
  "scf.parallel"(%c0, %c0, %c4, %c100, %c1, %c1) <{operandSegmentSizes = array<i32: 2, 2, 2, 0>}> ({
  ^bb0(%i: index, %j: index):
    %a = memref.load %v[%i, %j] : memref<4x100xf32> loc("model.py":6:4)
    %e = math.exp %a : f32 loc("model.py":6:4)
    memref.store %e, %result0[%i, %j] : memref<4x100xf32> loc("model.py":6:4)
    scf.reduce loc("model.py":6:4)
  }) {pg.kernel = "k1_exp", pg.kind = "elementwise"} : (index, index, index, index, index, index) -> () loc("model.py":6:4)
  memref.dealloc %arena : memref<3200xi8> loc("model.py":6:4)
  func.return loc("model.py":7:4)
}

// -----

// ---- block per row: a sum over 64 elements per output (two warps), with a rider stored per element

// A reduction of 64 elements per output: one block of 64 threads (two warps) per output row. The threads stride
// over the reduced points (the rider store stays in the loop: each element is visited by one thread), then each warp
// combines its partial sums with butterfly shuffles, lane 0 of each warp writes workgroup memory, and after a barrier
// warp 0 combines the two partial sums; thread 0 stores the result.

// CHECK-LABEL: func.func @rowsum
// CHECK:         "gpu.launch_func"(%[[R:.*]], %{{.*}}, %{{.*}}, %[[T:.*]], %{{.*}}, %{{.*}}, %x, %result1, %result0) <{kernel = @rowsum_kernels::@k0_sum
// CHECK:         "gpu.func"() <{function_type = (memref<3x64xf32>, memref<3x64xf32>, memref<3xf32>) -> (), kernel}> ({
// CHECK:           %i = "gpu.block_id"() <{dimension = #gpu<dim x>}> : () -> index
// CHECK-NEXT:      %[[TID:.*]] = "gpu.thread_id"() <{dimension = #gpu<dim x>}> : () -> index
// CHECK-NEXT:      %[[P:.*]] = scf.for %k = %[[TID]] to %c64 step %c64 iter_args(%acc = %zero) -> (f32) {
// CHECK-NEXT:        %a = memref.load %x[%i, %k] : memref<3x64xf32>
// CHECK-NEXT:        %e = math.exp %a : f32
// CHECK-NEXT:        memref.store %e, %result1[%i, %k] : memref<3x64xf32>
// CHECK-NEXT:        %n = arith.addf %acc, %e : f32
// CHECK-NEXT:        scf.yield %n : f32
// CHECK-NEXT:      }
// CHECK-NEXT:      %[[S16:.*]] = gpu_ext.shuffle xor %[[P]], 16 : f32
// CHECK-NEXT:      %[[A16:.*]] = arith.addf %[[P]], %[[S16]] : f32
// CHECK-NEXT:      %[[S8:.*]] = gpu_ext.shuffle xor %[[A16]], 8 : f32
// CHECK:           %[[S1:.*]] = gpu_ext.shuffle xor %[[A2:.*]], 1 : f32
// CHECK-NEXT:      %[[WSUM:.*]] = arith.addf %[[A2]], %[[S1]] : f32
// CHECK:           %[[SMEM:.*]] = gpu_ext.workgroup_alloc : memref<2xf32, 3 : i64>
// CHECK:           scf.if %{{.*}} {
// CHECK:             memref.store %[[WSUM]], %[[SMEM]][%{{.*}}] : memref<2xf32, 3 : i64>
// CHECK-NEXT:      }
// CHECK-NEXT:      "gpu.barrier"() : () -> ()
// CHECK:           scf.if %{{.*}} {
// CHECK:             %[[V:.*]] = scf.if %{{.*}} -> (f32) {
// CHECK:               memref.load %[[SMEM]][%{{.*}}] : memref<2xf32, 3 : i64>
// CHECK:             } else {
// CHECK-NEXT:          scf.yield %zero : f32
// CHECK-NEXT:        }
// CHECK-NEXT:        %[[X1:.*]] = gpu_ext.shuffle xor %[[V]], 1 : f32
// CHECK-NEXT:        %s = arith.addf %[[V]], %[[X1]] : f32
// CHECK:             scf.if %{{.*}} {
// CHECK-NEXT:          memref.store %s, %result0[%i] : memref<3xf32>
// CHECK-NEXT:        }
// CHECK-NEXT:      }
// CHECK-NEXT:      "gpu.return"() : () -> ()
// CHECK-NEXT:    }) {sym_name = "k0_sum", gpu.known_block_size = array<i32: 64, 1, 1>, pg.schedule = "block_per_row", pg.kind = "reduction"}

// PLAIN-LABEL: func.func @rowsum
// PLAIN:         pg.schedule = "thread_per_point", pg.kind = "reduction"
func.func @rowsum(%x: memref<3x64xf32>, %result0: memref<3xf32> {pg.result = 0 : i64}, %result1: memref<3x64xf32> {pg.result = 1 : i64}) {
  %c0 = arith.constant 0 : index
  %c3 = arith.constant 3 : index
  %c1 = arith.constant 1 : index
  %zero = arith.constant 0.000000e+00 : f32
  %c64 = arith.constant 64 : index
  "scf.parallel"(%c0, %c3, %c1) <{operandSegmentSizes = array<i32: 1, 1, 1, 0>}> ({
  ^bb0(%i: index):
    %s = scf.for %k = %c0 to %c64 step %c1 iter_args(%acc = %zero) -> (f32) {
      %a = memref.load %x[%i, %k] : memref<3x64xf32>
      %e = math.exp %a : f32
      memref.store %e, %result1[%i, %k] : memref<3x64xf32>
      %n = arith.addf %acc, %e : f32
      scf.yield %n : f32
    }
    memref.store %s, %result0[%i] : memref<3xf32>
    scf.reduce
  }) {pg.kernel = "k0_sum", pg.kind = "reduction", pg.nest = "reduction"} : (index, index, index) -> () loc("model.py":9:4)
  func.return
}

// -----

// ---- an argmax (value and index carried) keeps a thread per output with its sequential loop

// CHECK-LABEL: func.func @argmax
// CHECK:         scf.if %{{.*}} {
// CHECK-NEXT:      %first = memref.load %x[%i, %c0] : memref<2x50xf32>
// CHECK-NEXT:      %best, %best_1 = scf.for %k = %c1 to %c50 step %c1 iter_args(%b = %first, %bk = %c0) -> (f32, index) {
// CHECK:         }) {sym_name = "k0_argmax", gpu.known_block_size = array<i32: 32, 1, 1>, pg.schedule = "thread_per_point", pg.kind = "reduction"}
func.func @argmax(%x: memref<2x50xf32>, %result0: memref<2xi64> {pg.result = 0 : i64}) {
  %c0 = arith.constant 0 : index
  %c2 = arith.constant 2 : index
  %c1 = arith.constant 1 : index
  %c50 = arith.constant 50 : index
  "scf.parallel"(%c0, %c2, %c1) <{operandSegmentSizes = array<i32: 1, 1, 1, 0>}> ({
  ^bb0(%i: index):
    %first = memref.load %x[%i, %c0] : memref<2x50xf32>
    %best:2 = scf.for %k = %c1 to %c50 step %c1 iter_args(%b = %first, %bk = %c0) -> (f32, index) {
      %a = memref.load %x[%i, %k] : memref<2x50xf32>
      %gt = arith.cmpf ogt, %a, %b : f32
      %nb = arith.select %gt, %a, %b : f32
      %nk = arith.select %gt, %k, %bk : index
      scf.yield %nb, %nk : f32, index
    }
    %r = arith.index_cast %best#1 : index to i64
    memref.store %r, %result0[%i] : memref<2xi64>
    scf.reduce
  }) {pg.kernel = "k0_argmax", pg.kind = "reduction"} : (index, index, index) -> ()
  func.return
}

// -----

// ---- scatter-add: the index loop joins the parallel dims (the columns innermost: thread k*2+j) and the
// read-modify-write becomes an atomic add

// CHECK-LABEL: func.func @scatter
// CHECK:         "gpu.launch_func"({{.*}}, %result0) <{kernel = @scatter_kernels::@k0_scatter_add,
// CHECK-NEXT:    "gpu.launch_func"({{.*}}, %idx, %u, %result0) <{kernel = @scatter_kernels::@k0_scatter_add_1,
// CHECK:         }) {sym_name = "k0_scatter_add", {{.*}}pg.schedule = "thread_per_point"
// CHECK:         "gpu.func"() <{function_type = (memref<8xi64>, memref<8x2xf32>, memref<5x2xf32>) -> (), kernel}> ({
// CHECK:           %[[N:.*]] = arith.constant 16 : index
// CHECK:           scf.if %{{.*}} {
// CHECK:             %k = arith.index_cast %{{.*}} : i32 to index
// CHECK-NEXT:        %j = arith.index_cast %{{.*}} : i32 to index
// CHECK-NEXT:        %r = memref.load %idx[%k] : memref<8xi64>
// CHECK-NEXT:        %ri = arith.index_cast %r : i64 to index
// CHECK-NEXT:        %v = memref.load %u[%k, %j] : memref<8x2xf32>
// CHECK-NEXT:        %{{.*}} = "memref.atomic_rmw"(%v, %result0, %ri, %j) <{kind = 0 : i64}> : (f32, memref<5x2xf32>, index, index) -> f32
// CHECK-NEXT:      }
// CHECK:         }) {sym_name = "k0_scatter_add_1", {{.*}}pg.schedule = "atomic", pg.kind = "scatter_add"}

// PLAIN-LABEL: func.func @scatter
// PLAIN:         scf.for %k = %c0 to %c8 step %c1 {
// PLAIN:         pg.schedule = "thread_per_point", pg.kind = "scatter_add"
func.func @scatter(%u: memref<8x2xf32>, %idx: memref<8xi64>, %result0: memref<5x2xf32> {pg.result = 0 : i64}) {
  %c0 = arith.constant 0 : index
  %c5 = arith.constant 5 : index
  %c2 = arith.constant 2 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  %zero = arith.constant 0.000000e+00 : f32
  "scf.parallel"(%c0, %c0, %c5, %c2, %c1, %c1) <{operandSegmentSizes = array<i32: 2, 2, 2, 0>}> ({
  ^bb0(%i: index, %j: index):
    memref.store %zero, %result0[%i, %j] : memref<5x2xf32>
    scf.reduce
  }) {pg.kernel = "k0_scatter_add", pg.kind = "scatter_add"} : (index, index, index, index, index, index) -> ()
  "scf.parallel"(%c0, %c2, %c1) <{operandSegmentSizes = array<i32: 1, 1, 1, 0>}> ({
  ^bb0(%j: index):
    scf.for %k = %c0 to %c8 step %c1 {
      %r = memref.load %idx[%k] : memref<8xi64>
      %ri = arith.index_cast %r : i64 to index
      %v = memref.load %u[%k, %j] : memref<8x2xf32>
      %old = memref.load %result0[%ri, %j] : memref<5x2xf32>
      %new = arith.addf %old, %v : f32
      memref.store %new, %result0[%ri, %j] : memref<5x2xf32>
    }
    scf.reduce
  }) {pg.kernel = "k0_scatter_add", pg.kind = "scatter_add", pg.nest = "scatter_add"} : (index, index, index) -> ()
  func.return
}

// -----

// ---- a dense constant is a root buffer of the kernel; a nest of zero points launches nothing

// CHECK-LABEL: func.func @globals
// CHECK:         %g = memref.get_global @__pg_constant_0 : memref<3xf32>
// CHECK-NEXT:    "gpu.launch_func"({{.*}}, %x, %g, %result0) <{kernel = @globals_kernels::@k0_add,
// CHECK-NEXT:    func.return
// CHECK:         "gpu.module"() <{sym_name = "globals_kernels"}> ({
// CHECK-NEXT:      "gpu.func"() <{function_type = (memref<3xf32>, memref<3xf32>, memref<3xf32>) -> (), kernel}> ({
// CHECK-NOT:     k1_exp
"memref.global"() <{sym_name = "__pg_constant_0", type = memref<3xf32>, initial_value = dense<[1.000000e+00, 2.000000e+00, 3.000000e+00]> : tensor<3xf32>, sym_visibility = "private", constant}> : () -> ()
func.func @globals(%x: memref<3xf32>, %e: memref<0x3xf32>, %result0: memref<3xf32> {pg.result = 0 : i64}, %result1: memref<0x3xf32> {pg.result = 1 : i64}) {
  %g = memref.get_global @__pg_constant_0 : memref<3xf32>
  %c0 = arith.constant 0 : index
  %c3 = arith.constant 3 : index
  %c1 = arith.constant 1 : index
  "scf.parallel"(%c0, %c3, %c1) <{operandSegmentSizes = array<i32: 1, 1, 1, 0>}> ({
  ^bb0(%i: index):
    %a = memref.load %x[%i] : memref<3xf32>
    %b = memref.load %g[%i] : memref<3xf32>
    %s = arith.addf %a, %b : f32
    memref.store %s, %result0[%i] : memref<3xf32>
    scf.reduce
  }) {pg.kernel = "k0_add", pg.kind = "elementwise"} : (index, index, index) -> ()
  "scf.parallel"(%c0, %c0, %c0, %c3, %c1, %c1) <{operandSegmentSizes = array<i32: 2, 2, 2, 0>}> ({
  ^bb0(%i: index, %j: index):
    %a = memref.load %e[%i, %j] : memref<0x3xf32>
    memref.store %a, %result1[%i, %j] : memref<0x3xf32>
    scf.reduce
  }) {pg.kernel = "k1_exp", pg.kind = "elementwise"} : (index, index, index, index, index, index) -> ()
  func.return
}

// -----

// ---- what the pass rejects

// CHECK: pg-to-gpu: @not_lowered: 'kernel.launch' at model.py:30:2 is not lowered to loops (run pg-bufferize and pg-to-loops first)
// EXIT: pg-to-gpu: @not_lowered: 'kernel.launch' at model.py:30:2 is not lowered to loops
func.func @not_lowered(%x: memref<3xf32>, %result0: memref<3xf32> {pg.result = 0 : i64}) {
  kernel.launch @k0_exp "elementwise" ins(%x : memref<3xf32>) outs(%result0 : memref<3xf32>) {
  ^bb0(%a: tensor<3xf32>):
    %e = pg.exp %a : tensor<3xf32>
    kernel.yield %e : tensor<3xf32>
  } loc("model.py":30:2)
  func.return
}

// -----

// CHECK: pg-to-gpu: @host_loop: 'scf.for' at model.py:31:2 at the top level is neither buffer set-up nor a loop nest
func.func @host_loop(%x: memref<3xf32>) {
  %c0 = arith.constant 0 : index
  %c3 = arith.constant 3 : index
  %c1 = arith.constant 1 : index
  scf.for %i = %c0 to %c3 step %c1 {
  } loc("model.py":31:2)
  func.return
}

// -----

// CHECK: pg-to-gpu: the loop nest at model.py:32:2 uses index value n defined outside it that is neither a buffer nor a constant
func.func @scalar_from_outside(%x: memref<3xf32>, %n: index, %result0: memref<3xf32> {pg.result = 0 : i64}) {
  %c0 = arith.constant 0 : index
  %c3 = arith.constant 3 : index
  %c1 = arith.constant 1 : index
  "scf.parallel"(%c0, %c3, %c1) <{operandSegmentSizes = array<i32: 1, 1, 1, 0>}> ({
  ^bb0(%i: index):
    %j = arith.addi %i, %n : index
    %a = memref.load %x[%j] : memref<3xf32>
    memref.store %a, %result0[%i] : memref<3xf32>
    scf.reduce
  }) {pg.kernel = "k0_shift", pg.kind = "movement"} : (index, index, index) -> () loc("model.py":32:2)
  func.return
}

// -----

// ---- thread per point, a transposing read: the read is not in the nest's order and keeps the delinearized (i, j);
// the store is, and indexes its buffer collapsed to 1-D with the linear index

// CHECK-LABEL: func.func @transpose
// CHECK:         scf.if %{{.*}} {
// CHECK-NEXT:      %[[L32:.*]] = arith.index_cast %[[LIN:.*]] : index to i32
// CHECK-NEXT:      %[[L:.*]] = arith.index_cast %[[L32]] : i32 to index
// CHECK-NEXT:      %[[R:.*]] = memref.collapse_shape %result0 {{\[\[}}0 : i64, 1 : i64]] : memref<4x100xf32> into memref<400xf32>
// CHECK-NEXT:      %[[S32:.*]] = arith.index_cast %[[LIN]] : index to i32
// CHECK-NEXT:      %[[J32:.*]] = arith.remui %[[S32]], %{{.*}} : i32
// CHECK-NEXT:      %[[I32:.*]] = arith.divui %[[S32]], %{{.*}} : i32
// CHECK-NEXT:      %i = arith.index_cast %[[I32]] : i32 to index
// CHECK-NEXT:      %j = arith.index_cast %[[J32]] : i32 to index
// CHECK-NEXT:      %a = memref.load %x[%j, %i] : memref<100x4xf32>
// CHECK-NEXT:      %t = math.tanh %a : f32
// CHECK-NEXT:      memref.store %t, %[[R]][%[[L]]] : memref<400xf32>
// CHECK-NEXT:    }
func.func @transpose(%x: memref<100x4xf32>, %result0: memref<4x100xf32> {pg.result = 0 : i64}) {
  %c0 = arith.constant 0 : index
  %c4 = arith.constant 4 : index
  %c100 = arith.constant 100 : index
  %c1 = arith.constant 1 : index
  "scf.parallel"(%c0, %c0, %c4, %c100, %c1, %c1) <{operandSegmentSizes = array<i32: 2, 2, 2, 0>}> ({
  ^bb0(%i: index, %j: index):
    %a = memref.load %x[%j, %i] : memref<100x4xf32>
    %t = math.tanh %a : f32
    memref.store %t, %result0[%i, %j] : memref<4x100xf32>
    scf.reduce
  }) {pg.kernel = "k0_tanh", pg.kind = "elementwise"} : (index, index, index, index, index, index) -> ()
  func.return
}
