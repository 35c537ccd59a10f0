// RUN: pgc-opt %s -p pg-fuse --split-input-file --verify-diagnostics | filecheck %s
// A second pg-fuse changes nothing (kernels already formed are kept as they are):
// RUN: pgc-opt %s -p pg-fuse,pg-fuse --split-input-file --verify-diagnostics | filecheck %s
// Locations survive: each kernel takes its main op's location, and the ops moved into it keep theirs.
// RUN: pgc-opt %s -p pg-fuse --split-input-file --verify-diagnostics --print-debuginfo | filecheck %s --check-prefix=LOC
// Without --verify-diagnostics a rejected function is an error on stderr and a nonzero exit:
// RUN: not pgc-opt %s -p pg-fuse --split-input-file 2>&1 | filecheck %s --check-prefix=EXIT
// With report=true the pass prints its kernel count:
// RUN: pgc-opt %s -p "pg-fuse{report=true}" --split-input-file --verify-diagnostics 2>&1 >/dev/null | filecheck %s --check-prefix=REPORT

// An elementwise chain is one kernel; the constant is copied in (constants are never kernel inputs).
func.func @chain(%x: tensor<4x3xf32>, %b: tensor<3xf32>) -> tensor<4x3xf32> {
  %bb = pg.broadcast_to %b : tensor<3xf32> -> tensor<4x3xf32> loc("m.py":1:0)
  %y = pg.add %x, %bb : tensor<4x3xf32> loc("m.py":2:0)
  %two = pg.constant dense<2.0> : tensor<4x3xf32> loc("m.py":3:0)
  %z = pg.mul %y, %two : tensor<4x3xf32> loc("m.py":4:0)
  %t = pg.tanh %z : tensor<4x3xf32> loc("m.py":5:0)
  func.return %t : tensor<4x3xf32>
}

// CHECK-LABEL: func.func @chain
// CHECK-NEXT:    %[[T:.*]] = kernel.fused @k0_tanh "elementwise" (%b, %x) : (tensor<3xf32>, tensor<4x3xf32>) -> (tensor<4x3xf32>) {
// CHECK-NEXT:    ^bb0(%[[B:.*]]: tensor<3xf32>, %[[X:.*]]: tensor<4x3xf32>):
// CHECK-NEXT:      %[[BB:.*]] = pg.broadcast_to %[[B]] : tensor<3xf32> -> tensor<4x3xf32>
// CHECK-NEXT:      %[[Y:.*]] = pg.add %[[X]], %[[BB]] : tensor<4x3xf32>
// CHECK-NEXT:      %[[TWO:.*]] = pg.constant dense<2.000000e+00> : tensor<4x3xf32>
// CHECK-NEXT:      %[[Z:.*]] = pg.mul %[[Y]], %[[TWO]] : tensor<4x3xf32>
// CHECK-NEXT:      %[[TT:.*]] = pg.tanh %[[Z]] : tensor<4x3xf32>
// CHECK-NEXT:      kernel.yield %[[TT]] : tensor<4x3xf32>
// CHECK-NEXT:    }
// CHECK-NEXT:    func.return %[[T]] : tensor<4x3xf32>

// LOC-LABEL: func.func @chain
// LOC:           pg.broadcast_to {{.*}} loc("m.py":1:0)
// LOC-NEXT:      pg.add {{.*}} loc("m.py":2:0)
// LOC-NEXT:      pg.constant {{.*}} loc("m.py":3:0)
// LOC-NEXT:      pg.mul {{.*}} loc("m.py":4:0)
// LOC-NEXT:      pg.tanh {{.*}} loc("m.py":5:0)
// LOC-NEXT:      kernel.yield
// LOC-NEXT:    } loc("m.py":5:0)

// REPORT: pg-fuse: @chain: 1 kernels

// -----

// softmax: the max is one reduction kernel; exp(x - max) feeds the sum and is returned too, so it is a second
// output of the sum's kernel (one pass computes both); the division after the sum starts a new kernel (no
// epilogue fusion).
func.func @softmax(%x: tensor<4x3xf32>) -> (tensor<4x3xf32>, tensor<4x3xf32>) {
  %m = pg.max %x dims = [1] keepdim : tensor<4x3xf32> -> tensor<4x1xf32> loc("m.py":10:0)
  %mb = pg.broadcast_to %m : tensor<4x1xf32> -> tensor<4x3xf32> loc("m.py":11:0)
  %d = pg.sub %x, %mb : tensor<4x3xf32> loc("m.py":11:0)
  %e = pg.exp %d : tensor<4x3xf32> loc("m.py":12:0)
  %s = pg.sum %e dims = [1] keepdim : tensor<4x3xf32> -> tensor<4x1xf32> loc("m.py":13:0)
  %sb = pg.broadcast_to %s : tensor<4x1xf32> -> tensor<4x3xf32> loc("m.py":14:0)
  %p = pg.div %e, %sb : tensor<4x3xf32> loc("m.py":14:0)
  func.return %p, %e : tensor<4x3xf32>, tensor<4x3xf32>
}

// CHECK-LABEL: func.func @softmax
// CHECK-NEXT:    %[[M:.*]] = kernel.fused @k0_max "reduction" (%x) : (tensor<4x3xf32>) -> (tensor<4x1xf32>) {
// CHECK-NEXT:    ^bb0(%[[X:.*]]: tensor<4x3xf32>):
// CHECK-NEXT:      %[[MM:.*]] = pg.max %[[X]] dims = [1] keepdim : tensor<4x3xf32> -> tensor<4x1xf32>
// CHECK-NEXT:      kernel.yield %[[MM]] : tensor<4x1xf32>
// CHECK-NEXT:    }
// CHECK-NEXT:    %[[E:.*]], %[[S:.*]] = kernel.fused @k1_sum "reduction" (%[[M]], %x) : (tensor<4x1xf32>, tensor<4x3xf32>) -> (tensor<4x3xf32>, tensor<4x1xf32>) {
// CHECK-NEXT:    ^bb0(%[[M1:.*]]: tensor<4x1xf32>, %[[X1:.*]]: tensor<4x3xf32>):
// CHECK-NEXT:      %[[MB:.*]] = pg.broadcast_to %[[M1]] : tensor<4x1xf32> -> tensor<4x3xf32>
// CHECK-NEXT:      %[[D:.*]] = pg.sub %[[X1]], %[[MB]] : tensor<4x3xf32>
// CHECK-NEXT:      %[[E1:.*]] = pg.exp %[[D]] : tensor<4x3xf32>
// CHECK-NEXT:      %[[S1:.*]] = pg.sum %[[E1]] dims = [1] keepdim : tensor<4x3xf32> -> tensor<4x1xf32>
// CHECK-NEXT:      kernel.yield %[[E1]], %[[S1]] : tensor<4x3xf32>, tensor<4x1xf32>
// CHECK-NEXT:    }
// CHECK-NEXT:    %[[P:.*]] = kernel.fused @k2_div "elementwise" (%[[S]], %[[E]]) : (tensor<4x1xf32>, tensor<4x3xf32>) -> (tensor<4x3xf32>) {
// CHECK:           pg.div
// CHECK:         func.return %[[P]], %[[E]] : tensor<4x3xf32>, tensor<4x3xf32>

// LOC-LABEL: func.func @softmax
// LOC:         } loc("m.py":10:0)
// LOC:           pg.exp {{.*}} loc("m.py":12:0)
// LOC:         } loc("m.py":13:0)
// LOC:         } loc("m.py":14:0)

// REPORT: pg-fuse: @softmax: 3 kernels

// -----

// A linear layer: one kernel for each matmul, the first reading the transposed weight in place (the permute that
// feeds only it joins its kernel); the bias add and tanh are one kernel. The tanh output feeds a matmul and an elementwise op that reads that matmul's result: putting both in
// one kernel would make a cycle, so tanh is written out and read back.
func.func @linear(%x: tensor<8x4xf32>, %w: tensor<3x4xf32>, %b: tensor<3xf32>, %v: tensor<3x3xf32>) -> tensor<8x3xf32> {
  %wt = pg.permute %w perm = [1, 0] : tensor<3x4xf32> -> tensor<4x3xf32>
  %y = pg.matmul %x, %wt : (tensor<8x4xf32>, tensor<4x3xf32>) -> tensor<8x3xf32>
  %bb = pg.broadcast_to %b : tensor<3xf32> -> tensor<8x3xf32>
  %z = pg.add %y, %bb : tensor<8x3xf32>
  %h = pg.tanh %z : tensor<8x3xf32>
  %u = pg.matmul %h, %v : (tensor<8x3xf32>, tensor<3x3xf32>) -> tensor<8x3xf32>
  %r = pg.mul %u, %h : tensor<8x3xf32>
  func.return %r : tensor<8x3xf32>
}

// CHECK-LABEL: func.func @linear
// CHECK-NEXT:    %[[Y:.*]] = kernel.fused @k0_matmul "matmul" (%w, %x) : (tensor<3x4xf32>, tensor<8x4xf32>) -> (tensor<8x3xf32>) {
// CHECK-NEXT:    ^bb0(%[[W:.*]]: tensor<3x4xf32>, %[[X:.*]]: tensor<8x4xf32>):
// CHECK-NEXT:      %[[P:.*]] = pg.permute %[[W]] perm = [1, 0]
// CHECK-NEXT:      %[[M:.*]] = pg.matmul %[[X]], %[[P]]
// CHECK-NEXT:      kernel.yield %[[M]]
// CHECK-NEXT:    }
// CHECK-NEXT:    %[[H:.*]] = kernel.fused @k1_tanh "elementwise" (%b, %[[Y]])
// CHECK-NEXT:    ^bb0
// CHECK-NEXT:      pg.broadcast_to
// CHECK-NEXT:      pg.add
// CHECK-NEXT:      pg.tanh
// CHECK-NEXT:      kernel.yield
// CHECK-NEXT:    }
// CHECK-NEXT:    %[[U:.*]] = kernel.fused @k2_matmul "matmul" (%[[H]], %v)
// CHECK:         %[[R:.*]] = kernel.fused @k3_mul "elementwise" (%[[U]], %[[H]])
// CHECK:         func.return %[[R]]

// REPORT: pg-fuse: @linear: 4 kernels

// -----

// A permute with another user stays a movement kernel: the matmul reads its output.
func.func @shared_transpose(%x: tensor<8x4xf32>, %w: tensor<3x4xf32>) -> (tensor<8x3xf32>, tensor<4x3xf32>) {
  %wt = pg.permute %w perm = [1, 0] : tensor<3x4xf32> -> tensor<4x3xf32>
  %y = pg.matmul %x, %wt : (tensor<8x4xf32>, tensor<4x3xf32>) -> tensor<8x3xf32>
  func.return %y, %wt : tensor<8x3xf32>, tensor<4x3xf32>
}

// CHECK-LABEL: func.func @shared_transpose
// CHECK-NEXT:    %[[WT:.*]] = kernel.fused @k0_permute "movement" (%w)
// CHECK:         kernel.fused @k1_matmul "matmul" (%x, %[[WT]])

// REPORT: pg-fuse: @shared_transpose: 2 kernels

// -----

// Embedding: one kernel each for the gather and the scatter_add; a reshape between them and no elementwise op is a
// movement kernel of its own.
func.func @embedding(%t: tensor<5x2xf32>, %i: tensor<4x3xi64>, %g: tensor<4x6xf32>) -> (tensor<4x6xf32>, tensor<5x2xf32>) {
  %e = pg.gather %t[%i] dim = 0 : (tensor<5x2xf32>, tensor<4x3xi64>) -> tensor<4x3x2xf32>
  %f = pg.reshape %e : tensor<4x3x2xf32> -> tensor<4x6xf32>
  %gr = pg.reshape %g : tensor<4x6xf32> -> tensor<4x3x2xf32>
  %s = pg.scatter_add %gr[%i] dim = 0 : (tensor<4x3x2xf32>, tensor<4x3xi64>) -> tensor<5x2xf32>
  func.return %f, %s : tensor<4x6xf32>, tensor<5x2xf32>
}

// CHECK-LABEL: func.func @embedding
// CHECK-NEXT:    %[[E:.*]] = kernel.fused @k0_gather "gather" (%t, %i)
// CHECK:         %[[F:.*]] = kernel.fused @k1_reshape "movement" (%[[E]])
// CHECK:         %[[GR:.*]] = kernel.fused @k2_reshape "movement" (%g)
// CHECK:         %[[S:.*]] = kernel.fused @k3_scatter_add "scatter_add" (%[[GR]], %i)
// CHECK:         func.return %[[F]], %[[S]]

// -----

// A reshape that a matmul reads is a movement kernel of its own, which pg-bufferize makes a view: the chain it
// reshapes keeps its own iteration shape, so the normalized value that is also returned (LayerNorm's x_hat, which
// the backward pass reads) and its bf16 cast for the matmul are written by one kernel in one pass.
func.func @reshape_for_matmul(%x: tensor<2x3x4xf32>, %r: tensor<2x3x1xf32>, %w: tensor<4x5xbf16>) -> (tensor<6x5xbf16>, tensor<2x3x4xf32>) {
  %rb = pg.broadcast_to %r : tensor<2x3x1xf32> -> tensor<2x3x4xf32>
  %n = pg.mul %x, %rb : tensor<2x3x4xf32>
  %c = pg.cast %n : tensor<2x3x4xf32> -> tensor<2x3x4xbf16>
  %f = pg.reshape %c : tensor<2x3x4xbf16> -> tensor<6x4xbf16>
  %m = pg.matmul %f, %w : (tensor<6x4xbf16>, tensor<4x5xbf16>) -> tensor<6x5xbf16>
  func.return %m, %n : tensor<6x5xbf16>, tensor<2x3x4xf32>
}

// CHECK-LABEL: func.func @reshape_for_matmul
// CHECK-NEXT:    %[[N:.*]], %[[C:.*]] = kernel.fused @k{{[0-9]+}}_cast "elementwise" (%r, %x) : (tensor<2x3x1xf32>, tensor<2x3x4xf32>) -> (tensor<2x3x4xf32>, tensor<2x3x4xbf16>)
// CHECK:         %[[F:.*]] = kernel.fused @k{{[0-9]+}}_reshape "movement" (%[[C]]) : (tensor<2x3x4xbf16>) -> (tensor<6x4xbf16>) {
// CHECK-NEXT:    ^bb0(%[[A:.*]]: tensor<2x3x4xbf16>):
// CHECK-NEXT:      %[[R:.*]] = pg.reshape %[[A]] : tensor<2x3x4xbf16> -> tensor<6x4xbf16>
// CHECK-NEXT:      kernel.yield %[[R]] : tensor<6x4xbf16>
// CHECK:         %[[M:.*]] = kernel.fused @k{{[0-9]+}}_matmul "matmul" (%[[F]], %w)
// CHECK:         func.return %[[M]], %[[N]]

// -----

// A scalar (the learning rate cast to f32) is copied into each kernel that uses it rather than written out. exp(x)
// is read by two reductions and an elementwise kernel: it is computed once, in the first reduction's kernel.
func.func @sgd(%lr: tensor<f64>, %w: tensor<3xf32>, %gw: tensor<3xf32>, %v: tensor<2xf32>, %gv: tensor<2xf32>, %x: tensor<3xf32>) -> (tensor<3xf32>, tensor<2xf32>, tensor<3xf32>, tensor<f32>) {
  %lr32 = pg.cast %lr : tensor<f64> -> tensor<f32>
  %l3 = pg.broadcast_to %lr32 : tensor<f32> -> tensor<3xf32>
  %d3 = pg.mul %l3, %gw : tensor<3xf32>
  %w1 = pg.sub %w, %d3 : tensor<3xf32>
  %l2 = pg.broadcast_to %lr32 : tensor<f32> -> tensor<2xf32>
  %d2 = pg.mul %l2, %gv : tensor<2xf32>
  %v1 = pg.sub %v, %d2 : tensor<2xf32>
  %ex = pg.exp %x : tensor<3xf32>
  %sx = pg.sum %ex dims = [0] : tensor<3xf32> -> tensor<f32>
  %sb = pg.broadcast_to %sx : tensor<f32> -> tensor<3xf32>
  %y = pg.div %ex, %sb : tensor<3xf32>
  %s2 = pg.sum %ex dims = [0] : tensor<3xf32> -> tensor<f32>
  func.return %w1, %v1, %y, %s2 : tensor<3xf32>, tensor<2xf32>, tensor<3xf32>, tensor<f32>
}

// CHECK-LABEL: func.func @sgd
// CHECK-NEXT:    %[[W1:.*]] = kernel.fused @k0_sub "elementwise" (%lr, %gw, %w) : (tensor<f64>, tensor<3xf32>, tensor<3xf32>) -> (tensor<3xf32>) {
// CHECK-NEXT:    ^bb0(%[[LR:.*]]: tensor<f64>, {{.*}}):
// CHECK-NEXT:      pg.cast %[[LR]] : tensor<f64> -> tensor<f32>
// CHECK:         %[[V1:.*]] = kernel.fused @k1_sub "elementwise" (%lr, %gv, %v) : (tensor<f64>, tensor<2xf32>, tensor<2xf32>) -> (tensor<2xf32>) {
// CHECK-NEXT:    ^bb0(%[[LR2:.*]]: tensor<f64>, {{.*}}):
// CHECK-NEXT:      pg.cast %[[LR2]] : tensor<f64> -> tensor<f32>
// CHECK:         %[[EX:.*]], %[[SX:.*]] = kernel.fused @k2_sum "reduction" (%x) : (tensor<3xf32>) -> (tensor<3xf32>, tensor<f32>) {
// CHECK:         %[[Y:.*]] = kernel.fused @k3_div "elementwise" (%[[SX]], %[[EX]])
// CHECK:         %[[S2:.*]] = kernel.fused @k4_sum "reduction" (%[[EX]])
// CHECK:         func.return %[[W1]], %[[V1]], %[[Y]], %[[S2]]

// -----

// A value returned as it is gets no kernel; a returned constant gets one of its own. Function arguments are
// never kernel outputs.
func.func @trivial(%x: tensor<3xf32>) -> (tensor<3xf32>, tensor<3xf32>) {
  %c = pg.constant dense<1.0> : tensor<3xf32>
  func.return %x, %c : tensor<3xf32>, tensor<3xf32>
}

// CHECK-LABEL: func.func @trivial
// CHECK-NEXT:    %[[C:.*]] = kernel.fused @k0_constant "elementwise" () : () -> (tensor<3xf32>) {
// CHECK-NEXT:      %[[C1:.*]] = pg.constant dense<1.000000e+00> : tensor<3xf32>
// CHECK-NEXT:      kernel.yield %[[C1]] : tensor<3xf32>
// CHECK-NEXT:    }
// CHECK-NEXT:    func.return %x, %[[C]]

// -----

// Dead ops (what cse and dce would remove) are dropped, with the ops only they read.
func.func @dead(%x: tensor<3x3xf32>) -> tensor<3x3xf32> {
  %e = pg.exp %x : tensor<3x3xf32>
  %m = pg.matmul %e, %x : (tensor<3x3xf32>, tensor<3x3xf32>) -> tensor<3x3xf32>
  %n = pg.neg %m : tensor<3x3xf32>
  %t = pg.tanh %x : tensor<3x3xf32>
  func.return %t : tensor<3x3xf32>
}

// CHECK-LABEL: func.func @dead
// CHECK-NEXT:    %[[T:.*]] = kernel.fused @k0_tanh "elementwise" (%x)
// CHECK-NEXT:    ^bb0
// CHECK-NEXT:      pg.tanh
// CHECK-NEXT:      kernel.yield
// CHECK-NEXT:    }
// CHECK-NEXT:    func.return %[[T]]

// -----

// Refused: pg.grad must be expanded first.
func.func @grad(%x: tensor<3xf32>) -> tensor<3xf32> {
  %e = pg.exp %x : tensor<3xf32>
  %l = pg.sum %e dims = [0] : tensor<3xf32> -> tensor<f32>
  %g = pg.grad %l wrt %x : tensor<f32> wrt tensor<3xf32> loc("model.py":9:0)
  func.return %g : tensor<3xf32>
}

// CHECK: pg-fuse: pg.grad at model.py:9 is not expanded: run pg-autodiff first (kernels are formed after the 'step' stage)
// EXIT: pg-fuse: pg.grad at model.py:9 is not expanded: run pg-autodiff first

// -----

// Refused: optimizer ops must be expanded first.
func.func @opt(%lr: tensor<f64>, %s: tensor<i64>, %w: tensor<3xf32>, %gw: tensor<3xf32>) -> tensor<3xf32> {
  %z = pg.constant dense<0.0> : tensor<f64>
  %s1, %w1 = pg.sgd lr %lr, momentum %z, dampening %z, weight_decay %z step %s params(%w) grads(%gw) state() : tensor<3xf32>
  func.return %w1 : tensor<3xf32>
}

// CHECK: pg-fuse: pg.sgd is not expanded: run its optimizer pass (pg-sgd, pg-adam, pg-adamw) first (kernels are formed after the 'step' stage)

// -----

// Refused: ops of other dialects.
func.func @foreign(%x: f32) -> f32 {
  %y = arith.addf %x, %x : f32
  func.return %y : f32
}

// CHECK: pg-fuse: cannot place arith.addf in a kernel (only pg ops are fused)
