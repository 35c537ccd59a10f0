// RUN: pgc-opt %s -p pg-to-loops --split-input-file --verify-diagnostics | filecheck %s
// RUN: pgc-opt %s -p pg-to-loops --split-input-file --verify-diagnostics --print-debuginfo | filecheck %s --check-prefix=LOC
// Without --verify-diagnostics the first rejection is an error on stderr and a nonzero exit:
// RUN: not pgc-opt %s -p pg-to-loops --split-input-file 2>&1 | filecheck %s --check-prefix=EXIT

// ---- an elementwise kernel is ONE loop nest over its output computing all its ops; the broadcast is an index
// map (%b is read at the column index), and both outputs are stored from the same body. Constants come first.

// CHECK-LABEL: func.func @elementwise
// CHECK-NEXT:    %[[C0:.*]] = arith.constant 0 : index
// CHECK-NEXT:    %[[C2:.*]] = arith.constant 2 : index
// CHECK-NEXT:    %[[C3:.*]] = arith.constant 3 : index
// CHECK-NEXT:    %[[C1:.*]] = arith.constant 1 : index
// CHECK-NEXT:    "scf.parallel"(%[[C0]], %[[C0]], %[[C2]], %[[C3]], %[[C1]], %[[C1]]) <{operandSegmentSizes = array<i32: 2, 2, 2, 0>}> ({
// CHECK-NEXT:    ^bb0(%[[I:.*]]: index, %[[J:.*]]: index):
// CHECK-NEXT:      %[[X:.*]] = memref.load %x[%[[I]], %[[J]]] : memref<2x3xf32>
// CHECK-NEXT:      %[[B:.*]] = memref.load %b[%[[J]]] : memref<3xf32>
// CHECK-NEXT:      %[[S:.*]] = arith.addf %[[X]], %[[B]] : f32
// CHECK-NEXT:      %[[T:.*]] = math.tanh %[[S]] : f32
// CHECK-NEXT:      memref.store %[[T]], %result0[%[[I]], %[[J]]] : memref<2x3xf32>
// CHECK-NEXT:      %[[U:.*]] = arith.mulf %[[T]], %[[T]] : f32
// CHECK-NEXT:      memref.store %[[U]], %result1[%[[I]], %[[J]]] : memref<2x3xf32>
// CHECK-NEXT:      scf.reduce
// CHECK-NEXT:    }) {pg.kernel = "k0_tanh", pg.kind = "elementwise"} : (index, index, index, index, index, index) -> ()
// CHECK-NEXT:    func.return

// Every op carries the location of the pg op it computes; the nest that of the first output.
// LOC-LABEL: func.func @elementwise
// LOC:         "scf.parallel"
// LOC:           memref.load %x{{.*}} loc("model.py":4:4)
// LOC-NEXT:      memref.load %b{{.*}} loc("model.py":3:4)
// LOC-NEXT:      arith.addf {{.*}} loc("model.py":4:4)
// LOC-NEXT:      math.tanh {{.*}} loc("model.py":5:4)
// LOC-NEXT:      memref.store {{.*}} loc("model.py":5:4)
// LOC-NEXT:      arith.mulf {{.*}} loc("model.py":6:4)
// LOC-NEXT:      memref.store {{.*}} loc("model.py":5:4)
// LOC-NEXT:      scf.reduce loc("model.py":5:4)
// LOC-NEXT:    }) {{.*}} loc("model.py":5:4)
func.func @elementwise(%x: memref<2x3xf32>, %b: memref<3xf32>, %result0: memref<2x3xf32> {pg.result = 0 : i64}, %result1: memref<2x3xf32> {pg.result = 1 : i64}) {
  kernel.launch @k0_tanh "elementwise" ins(%x, %b : memref<2x3xf32>, memref<3xf32>) outs(%result0, %result1 : memref<2x3xf32>, memref<2x3xf32>) {
  ^bb0(%a: tensor<2x3xf32>, %c: tensor<3xf32>):
    %bb = pg.broadcast_to %c : tensor<3xf32> -> tensor<2x3xf32> loc("model.py":3:4)
    %s = pg.add %a, %bb : tensor<2x3xf32> loc("model.py":4:4)
    %t = pg.tanh %s : tensor<2x3xf32> loc("model.py":5:4)
    %u = pg.mul %t, %t : tensor<2x3xf32> loc("model.py":6:4)
    kernel.yield %t, %u : tensor<2x3xf32>, tensor<2x3xf32>
  } loc("model.py":5:4)
  func.return
}

// ---- a random kernel scheduled points = 4: the nest runs over (2, 8 / 4), each iteration calls Philox once (its
// counter offset + i // 4 is the iteration's linear index) and stores its 4 words, in f32 math, at 4q + k

// CHECK-LABEL: func.func @random_points
// CHECK:         "scf.parallel"(%{{.*}}, %{{.*}}, %[[TWO:.*]], %[[TWO]], %{{.*}}, %{{.*}})
// CHECK-NEXT:    ^bb0(%[[I:.*]]: index, %[[Q:.*]]: index):
// CHECK-NEXT:      %[[BASE:.*]] = arith.muli %[[Q]], %{{.*}} : index
// CHECK-COUNT-20:  arith.mului_extended
// CHECK-NOT:       arith.mului_extended
// CHECK:           arith.uitofp %{{.*}} : i32 to f32
// CHECK:           memref.store %{{.*}}, %result0[%[[I]], %[[BASE]]] : memref<2x8xf32>
// CHECK-COUNT-3:   memref.store %{{.*}}, %result0[%[[I]], %{{.*}}] : memref<2x8xf32>
// CHECK-NOT:       arith.mului_extended
// CHECK:           scf.reduce
func.func @random_points(%seed: memref<i64>, %offset: memref<i64>, %result0: memref<2x8xf32> {pg.result = 0 : i64}) {
  kernel.launch @k0_random "random" schedule = #kernel.schedule<"thread_per_point", block = 256, points = 4> ins(%seed, %offset : memref<i64>, memref<i64>) outs(%result0 : memref<2x8xf32>) {
  ^bb0(%s: tensor<i64>, %o: tensor<i64>):
    %r = pg.random "uniform" %s, %o : tensor<2x8xf32>
    kernel.yield %r : tensor<2x8xf32>
  }
  func.return
}

// -----

// ---- an elementwise kernel scheduled unroll = 4: its outermost dim 4 divides (8) is cut into 4 chunks of 2; an
// iteration computes its point of every chunk (rows q, q + 2, q + 4, q + 6), all 4 loads before the 4 stores

// CHECK-LABEL: func.func @unrolled
// CHECK:         "scf.parallel"(%{{.*}}, %{{.*}}, %[[TWO:.*]], %[[THREE:.*]], %{{.*}}, %{{.*}})
// CHECK-NEXT:    ^bb0(%[[Q:.*]]: index, %[[J:.*]]: index):
// CHECK-NEXT:      %[[X0:.*]] = memref.load %x[%[[Q]], %[[J]]] : memref<8x3xbf16>
// CHECK:           %[[Q1:.*]] = arith.addi %[[Q]], %[[TWO]] : index
// CHECK-NEXT:      memref.load %x[%[[Q1]], %[[J]]] : memref<8x3xbf16>
// CHECK-COUNT-2:   memref.load %x
// CHECK-NOT:       memref.load
// CHECK:           memref.store %{{.*}}, %result0[%[[Q]], %[[J]]] : memref<8x3xf32>
// CHECK-NEXT:      memref.store %{{.*}}, %result0[%[[Q1]], %[[J]]] : memref<8x3xf32>
// CHECK-COUNT-2:   memref.store
// CHECK-NEXT:      scf.reduce
func.func @unrolled(%x: memref<8x3xbf16>, %result0: memref<8x3xf32> {pg.result = 0 : i64}) {
  kernel.launch @k0_cast "elementwise" schedule = #kernel.schedule<"thread_per_point", block = 256, unroll = 4> ins(%x : memref<8x3xbf16>) outs(%result0 : memref<8x3xf32>) {
  ^bb0(%a: tensor<8x3xbf16>):
    %c = pg.cast %a : tensor<8x3xbf16> -> tensor<8x3xf32>
    %e = pg.exp %c : tensor<8x3xf32>
    kernel.yield %e : tensor<8x3xf32>
  }
  func.return
}

// -----

// ---- a reduction: scf.parallel over the kept dims, an accumulator from -inf carried by scf.for over the reduced
// dim; its prologue (exp) computed in the loop, and the prologue's output (same shape as the reduction's input)
// stored on the way: one pass over the data.

// CHECK-LABEL: func.func @reduction
// CHECK:         %[[NEGINF:.*]] = arith.constant 0xff800000 : f32
// CHECK:         "scf.parallel"
// CHECK-NEXT:    ^bb0(%[[I:.*]]: index, %[[J:.*]]: index):
// CHECK-NEXT:      %[[M:.*]] = scf.for %[[K:.*]] = %{{.*}} to %{{.*}} step %{{.*}} iter_args(%[[ACC:.*]] = %[[NEGINF]]) -> (f32) {
// CHECK-NEXT:        %[[X:.*]] = memref.load %x[%[[I]], %[[K]]] : memref<2x3xf32>
// CHECK-NEXT:        %[[E:.*]] = math.exp %[[X]] : f32
// CHECK-NEXT:        memref.store %[[E]], %result1[%[[I]], %[[K]]] : memref<2x3xf32>
// CHECK-NEXT:        %[[NEW:.*]] = arith.maximumf %[[ACC]], %[[E]] : f32
// CHECK-NEXT:        scf.yield %[[NEW]] : f32
// CHECK-NEXT:      }
// CHECK-NEXT:      memref.store %[[M]], %result0[%[[I]], %[[J]]] : memref<2x1xf32>
// CHECK-NEXT:      scf.reduce
// CHECK-NEXT:    }) {pg.kernel = "k0_max", pg.kind = "reduction", pg.nest = "reduction"}

// LOC-LABEL: func.func @reduction
// LOC:           scf.for
// LOC-NEXT:        memref.load {{.*}} loc("model.py":8:4)
// LOC-NEXT:        math.exp {{.*}} loc("model.py":8:4)
// LOC:             arith.maximumf {{.*}} loc("model.py":9:4)
func.func @reduction(%x: memref<2x3xf32>, %result0: memref<2x1xf32> {pg.result = 0 : i64}, %result1: memref<2x3xf32> {pg.result = 1 : i64}) {
  kernel.launch @k0_max "reduction" ins(%x : memref<2x3xf32>) outs(%result0, %result1 : memref<2x1xf32>, memref<2x3xf32>) {
  ^bb0(%a: tensor<2x3xf32>):
    %e = pg.exp %a : tensor<2x3xf32> loc("model.py":8:4)
    %m = pg.max %e dims = [1] keepdim : tensor<2x3xf32> -> tensor<2x1xf32> loc("model.py":9:4)
    kernel.yield %m, %e : tensor<2x1xf32>, tensor<2x3xf32>
  } loc("model.py":9:4)
  func.return
}

// -----

// ---- matmul: the plain nest, parallel over (M, N), K innermost with the accumulator in a register.

// CHECK-LABEL: func.func @matmul
// CHECK:         %[[ZERO:.*]] = arith.constant 0.000000e+00 : f32
// CHECK:         "scf.parallel"
// CHECK-NEXT:    ^bb0(%[[M:.*]]: index, %[[N:.*]]: index):
// CHECK-NEXT:      %[[C:.*]] = scf.for %[[K:.*]] = %{{.*}} to %{{.*}} step %{{.*}} iter_args(%[[ACC:.*]] = %[[ZERO]]) -> (f32) {
// CHECK-NEXT:        %[[A:.*]] = memref.load %x[%[[M]], %[[K]]] : memref<2x4xf32>
// CHECK-NEXT:        %[[B:.*]] = memref.load %w[%[[K]], %[[N]]] : memref<4x3xf32>
// CHECK-NEXT:        %[[P:.*]] = arith.mulf %[[A]], %[[B]] : f32
// CHECK-NEXT:        %[[S:.*]] = arith.addf %[[ACC]], %[[P]] : f32
// CHECK-NEXT:        scf.yield %[[S]] : f32
// CHECK-NEXT:      }
// CHECK-NEXT:      memref.store %[[C]], %result0[%[[M]], %[[N]]] : memref<2x3xf32>
// CHECK-NEXT:      scf.reduce
// CHECK-NEXT:    }) {pg.kernel = "k0_matmul", pg.kind = "matmul", pg.nest = "matmul"}
func.func @matmul(%x: memref<2x4xf32>, %w: memref<4x3xf32>, %result0: memref<2x3xf32> {pg.result = 0 : i64}) {
  kernel.launch @k0_matmul "matmul" ins(%x, %w : memref<2x4xf32>, memref<4x3xf32>) outs(%result0 : memref<2x3xf32>) {
  ^bb0(%a: tensor<2x4xf32>, %b: tensor<4x3xf32>):
    %m = pg.matmul %a, %b : (tensor<2x4xf32>, tensor<4x3xf32>) -> tensor<2x3xf32> loc("model.py":11:4)
    kernel.yield %m : tensor<2x3xf32>
  } loc("model.py":11:4)
  func.return
}

// -----

// ---- scatter-add: zero-fill, then parallel over the dims outside `dim` and a sequential loop over the indices,
// so repeated indices accumulate without races.

// CHECK-LABEL: func.func @scatter
// CHECK:         "scf.parallel"
// CHECK-NEXT:    ^bb0(%[[I:.*]]: index, %[[J:.*]]: index):
// CHECK-NEXT:      memref.store %{{.*}}, %result0[%[[I]], %[[J]]] : memref<5x2xf32>
// CHECK-NEXT:      scf.reduce
// CHECK-NEXT:    }) {pg.kernel = "k0_scatter_add", pg.kind = "scatter_add"}
// CHECK-NEXT:    "scf.parallel"
// CHECK-NEXT:    ^bb0(%[[COL:.*]]: index):
// CHECK-NEXT:      scf.for %[[K:.*]] = %{{.*}} to %{{.*}} step %{{.*}} {
// CHECK-NEXT:        %[[IDX:.*]] = memref.load %i[%[[K]]] : memref<4xi64>
// CHECK-NEXT:        %[[ROW:.*]] = arith.index_cast %[[IDX]] : i64 to index
// CHECK-NEXT:        %[[U:.*]] = memref.load %u[%[[K]], %[[COL]]] : memref<4x2xf32>
// CHECK-NEXT:        %[[OLD:.*]] = memref.load %result0[%[[ROW]], %[[COL]]] : memref<5x2xf32>
// CHECK-NEXT:        %[[NEW:.*]] = arith.addf %[[OLD]], %[[U]] : f32
// CHECK-NEXT:        memref.store %[[NEW]], %result0[%[[ROW]], %[[COL]]] : memref<5x2xf32>
// CHECK-NEXT:      }
// CHECK-NEXT:      scf.reduce
// CHECK-NEXT:    }) {pg.kernel = "k0_scatter_add", pg.kind = "scatter_add", pg.nest = "scatter_add"}
func.func @scatter(%u: memref<4x2xf32>, %i: memref<4xi64>, %result0: memref<5x2xf32> {pg.result = 0 : i64}) {
  kernel.launch @k0_scatter_add "scatter_add" ins(%u, %i : memref<4x2xf32>, memref<4xi64>) outs(%result0 : memref<5x2xf32>) {
  ^bb0(%a: tensor<4x2xf32>, %b: tensor<4xi64>):
    %s = pg.scatter_add %a[%b] dim = 0 : (tensor<4x2xf32>, tensor<4xi64>) -> tensor<5x2xf32> loc("model.py":13:4)
    kernel.yield %s : tensor<5x2xf32>
  } loc("model.py":13:4)
  func.return
}

// -----

// ---- movement ops are index maps: the permute swaps the indices; the reshape (2, 3, 4) -> (6, 4) splits only
// the merged dim (one divui and one remui by 3), the last dim passes through.

// CHECK-LABEL: func.func @movement
// CHECK:         %[[C3:.*]] = arith.constant 3 : index
// CHECK-NEXT:    "scf.parallel"
// CHECK-NEXT:    ^bb0(%[[I:.*]]: index, %[[J:.*]]: index):
// CHECK-NEXT:      %[[Q:.*]] = arith.divui %[[J]], %[[C3]] : index
// CHECK-NEXT:      %[[R:.*]] = arith.remui %[[J]], %[[C3]] : index
// CHECK-NEXT:      %[[V:.*]] = memref.load %x[%[[Q]], %[[R]], %[[I]]] : memref<2x3x4xf32>
// CHECK-NEXT:      memref.store %[[V]], %result0[%[[I]], %[[J]]] : memref<4x6xf32>
func.func @movement(%x: memref<2x3x4xf32>, %result0: memref<4x6xf32> {pg.result = 0 : i64}) {
  kernel.launch @k0_permute "movement" ins(%x : memref<2x3x4xf32>) outs(%result0 : memref<4x6xf32>) {
  ^bb0(%a: tensor<2x3x4xf32>):
    %r = pg.reshape %a : tensor<2x3x4xf32> -> tensor<6x4xf32> loc("model.py":15:4)
    %p = pg.permute %r perm = [1, 0] : tensor<6x4xf32> -> tensor<4x6xf32> loc("model.py":16:4)
    kernel.yield %p : tensor<4x6xf32>
  } loc("model.py":16:4)
  func.return
}

// -----

// ---- argmax carries (value, index), starting from element 0: a strictly greater value or the first NaN wins.

// CHECK-LABEL: func.func @argmax
// CHECK:         ^bb0(%[[I:.*]]: index):
// CHECK-NEXT:      %[[FIRST:.*]] = memref.load %x[%[[I]], %{{.*}}] : memref<2x3xf32>
// CHECK-NEXT:      %{{.*}}, %[[BEST:.*]] = scf.for %[[K:.*]] = %{{.*}} to %{{.*}} step %{{.*}} iter_args(%[[V:.*]] = %[[FIRST]], %[[P:.*]] = %{{.*}}) -> (f32, index) {
// CHECK:             arith.cmpf ogt
// CHECK:           %[[OUT:.*]] = arith.index_cast %[[BEST]] : index to i64
// CHECK-NEXT:      memref.store %[[OUT]], %result0[%[[I]]] : memref<2xi64>
func.func @argmax(%x: memref<2x3xf32>, %result0: memref<2xi64> {pg.result = 0 : i64}) {
  kernel.launch @k0_argmax "reduction" ins(%x : memref<2x3xf32>) outs(%result0 : memref<2xi64>) {
  ^bb0(%a: tensor<2x3xf32>):
    %m = pg.argmax %a dim = 1 : tensor<2x3xf32> -> tensor<2xi64> loc("model.py":18:4)
    kernel.yield %m : tensor<2xi64>
  } loc("model.py":18:4)
  func.return
}

// -----

// ---- a dense (non-splat) constant becomes a private memref.global of the module; a splat becomes a scalar.

// CHECK:         "memref.global"() <{sym_name = "__pg_constant_0", type = memref<3xf32>, initial_value = dense<[1.000000e+00, 2.000000e+00, 3.000000e+00]> : tensor<3xf32>, sym_visibility = "private", constant}> : () -> ()
// CHECK-LABEL: func.func @constant
// CHECK:         %[[HALF:.*]] = arith.constant 5.000000e-01 : f32
// CHECK-NEXT:    %[[G:.*]] = memref.get_global @__pg_constant_0 : memref<3xf32>
// CHECK:           %[[X:.*]] = memref.load %x[%[[I:.*]]] : memref<3xf32>
// CHECK-NEXT:      %[[XH:.*]] = arith.mulf %[[X]], %[[HALF]] : f32
// CHECK-NEXT:      %[[C:.*]] = memref.load %[[G]][%[[I]]] : memref<3xf32>
// CHECK-NEXT:      arith.addf %[[XH]], %[[C]] : f32
func.func @constant(%x: memref<3xf32>, %result0: memref<3xf32> {pg.result = 0 : i64}) {
  kernel.launch @k0_add "elementwise" ins(%x : memref<3xf32>) outs(%result0 : memref<3xf32>) {
  ^bb0(%a: tensor<3xf32>):
    %h = pg.constant dense<0.5> : tensor<3xf32>
    %xh = pg.mul %a, %h : tensor<3xf32>
    %c = pg.constant dense<[1.0, 2.0, 3.0]> : tensor<3xf32>
    %s = pg.add %xh, %c : tensor<3xf32>
    kernel.yield %s : tensor<3xf32>
  }
  func.return
}

// -----

// ---- a bounds check (pg.check_index) stores (1, the index) into an error flag of its own, a mutable global that
// carries the message, and goes on with index 0

// CHECK:      "memref.global"() <{sym_name = "__pg_index_error_0", type = memref<2xi64>, initial_value = dense<0> : tensor<2xi64>, sym_visibility = "private"}> {pg.index_check = "index {} is out of range for dim 0 of size 5 (at model.py:14)"}
// CHECK-LABEL: func.func @check_index
// CHECK-DAG:     %[[LOW:.*]] = arith.constant -5 : i64
// CHECK-DAG:     %[[HIGH:.*]] = arith.constant 5 : i64
// CHECK-DAG:     %[[FLAG:.*]] = memref.get_global @__pg_index_error_0 : memref<2xi64>
// CHECK:         ^bb0(%[[K:.*]]: index):
// CHECK-NEXT:      %[[V:.*]] = memref.load %i[%[[K]]] : memref<4xi64>
// CHECK-NEXT:      %[[LT:.*]] = arith.cmpi slt, %[[V]], %[[LOW]] : i64
// CHECK-NEXT:      %[[GE:.*]] = arith.cmpi sge, %[[V]], %[[HIGH]] : i64
// CHECK-NEXT:      %[[BAD:.*]] = arith.ori %[[LT]], %[[GE]] : i1
// CHECK-NEXT:      scf.if %[[BAD]] {
// CHECK-NEXT:        memref.store %{{.*}}, %[[FLAG]][%{{.*}}] : memref<2xi64>
// CHECK-NEXT:        memref.store %[[V]], %[[FLAG]][%{{.*}}] : memref<2xi64>
// CHECK-NEXT:      }
// CHECK-NEXT:      %[[SAFE:.*]] = arith.select %[[BAD]], %{{.*}}, %[[V]] : i64
// CHECK-NEXT:      memref.store %[[SAFE]], %result0[%[[K]]] : memref<4xi64>
func.func @check_index(%i: memref<4xi64>, %result0: memref<4xi64> {pg.result = 0 : i64}) {
  kernel.launch @k0_check_index "elementwise" ins(%i : memref<4xi64>) outs(%result0 : memref<4xi64>) {
  ^bb0(%a: tensor<4xi64>):
    %c = pg.check_index %a "index" dim = 0 size = 5 negative : tensor<4xi64> loc("model.py":14:4)
    kernel.yield %c : tensor<4xi64>
  } loc("model.py":14:4)
  func.return
}

// -----

// ---- what the pass rejects

// CHECK: pg-to-loops: @unbufferized is not bufferized: 'kernel.fused' at model.py:30:2 works on tensors (run pg-bufferize first)
// EXIT: pg-to-loops: @unbufferized is not bufferized: 'kernel.fused' at model.py:30:2 works on tensors
func.func @unbufferized(%x: tensor<3xf32>) -> tensor<3xf32> {
  %y = kernel.fused @k0_exp "elementwise" (%x) : (tensor<3xf32>) -> (tensor<3xf32>) {
  ^bb0(%a: tensor<3xf32>):
    %e = pg.exp %a : tensor<3xf32>
    kernel.yield %e : tensor<3xf32>
  } loc("model.py":30:2)
  func.return %y : tensor<3xf32>
}

// -----

// CHECK: pg-to-loops: @tensor_args is not bufferized: argument 0 is a tensor<3xf32> (run pg-bufferize first)
func.func @tensor_args(%x: tensor<3xf32>) -> tensor<3xf32> {
  func.return %x : tensor<3xf32>
}

// -----

// CHECK: pg-to-loops: @loose: 'pg.constant' at model.py:33:2 is outside a kernel.launch (run pg-fuse and pg-bufferize first)
func.func @loose(%x: memref<3xf32>) {
  %c = pg.constant dense<1.0> : tensor<3xf32> loc("model.py":33:2)
  func.return
}
