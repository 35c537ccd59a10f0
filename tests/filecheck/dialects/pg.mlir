// Every pg op parses, verifies, prints in its custom form and parses back to the same text.
// The second RUN goes through the generic form, so custom parse/print and the generic form agree.
// RUN: pgc-opt %s | pgc-opt | filecheck %s
// RUN: pgc-opt %s --print-op-generic | pgc-opt | filecheck %s

// CHECK: builtin.module {

// CHECK-LABEL: func.func @constants() -> (tensor<f32>, tensor<2x2xf64>, tensor<3xi64>, tensor<2xi1>, tensor<2x3xi64>) {
func.func @constants() -> (tensor<f32>, tensor<2x2xf64>, tensor<3xi64>, tensor<2xi1>, tensor<2x3xi64>) {
  %c0 = pg.constant dense<2.5> : tensor<f32>
  // CHECK-NEXT: %c0 = pg.constant dense<2.500000e+00> : tensor<f32>
  %c1 = pg.constant dense<[[1.0, 2.0], [3.0, 4.0]]> : tensor<2x2xf64>
  // CHECK-NEXT: %c1 = pg.constant dense<[[1.000000e+00, 2.000000e+00], [3.000000e+00, 4.000000e+00]]> : tensor<2x2xf64>
  %c2 = pg.constant dense<[1, 2, 3]> : tensor<3xi64>
  // CHECK-NEXT: %c2 = pg.constant dense<[1, 2, 3]> : tensor<3xi64>
  %c3 = pg.constant dense<[true, false]> : tensor<2xi1>
  // CHECK-NEXT: %c3 = pg.constant dense<[true, false]> : tensor<2xi1>
  %c4 = pg.iota dim = 1 : tensor<2x3xi64>
  // CHECK-NEXT: %c4 = pg.iota dim = 1 : tensor<2x3xi64>
  func.return %c0, %c1, %c2, %c3, %c4 : tensor<f32>, tensor<2x2xf64>, tensor<3xi64>, tensor<2xi1>, tensor<2x3xi64>
  // CHECK-NEXT: func.return %c0, %c1, %c2, %c3, %c4 : tensor<f32>, tensor<2x2xf64>, tensor<3xi64>, tensor<2xi1>, tensor<2x3xi64>
}
// CHECK-NEXT: }

// CHECK-LABEL: func.func @unary(%x: tensor<3x4xf32>, %i: tensor<3xi64>) {
func.func @unary(%x: tensor<3x4xf32>, %i: tensor<3xi64>) {
  %0 = pg.neg %x : tensor<3x4xf32>
  // CHECK-NEXT: %0 = pg.neg %x : tensor<3x4xf32>
  %1 = pg.exp %x : tensor<3x4xf32>
  // CHECK-NEXT: %1 = pg.exp %x : tensor<3x4xf32>
  %2 = pg.log %x : tensor<3x4xf32>
  // CHECK-NEXT: %2 = pg.log %x : tensor<3x4xf32>
  %3 = pg.sqrt %x : tensor<3x4xf32>
  // CHECK-NEXT: %3 = pg.sqrt %x : tensor<3x4xf32>
  %4 = pg.rsqrt %x : tensor<3x4xf32>
  // CHECK-NEXT: %4 = pg.rsqrt %x : tensor<3x4xf32>
  %5 = pg.sin %x : tensor<3x4xf32>
  // CHECK-NEXT: %5 = pg.sin %x : tensor<3x4xf32>
  %6 = pg.cos %x : tensor<3x4xf32>
  // CHECK-NEXT: %6 = pg.cos %x : tensor<3x4xf32>
  %7 = pg.tanh %x : tensor<3x4xf32>
  // CHECK-NEXT: %7 = pg.tanh %x : tensor<3x4xf32>
  %8 = pg.sigmoid %x : tensor<3x4xf32>
  // CHECK-NEXT: %8 = pg.sigmoid %x : tensor<3x4xf32>
  %9 = pg.relu %x : tensor<3x4xf32>
  // CHECK-NEXT: %9 = pg.relu %x : tensor<3x4xf32>
  %10 = pg.abs %x : tensor<3x4xf32>
  // CHECK-NEXT: %10 = pg.abs %x : tensor<3x4xf32>
  %11 = pg.reciprocal %x : tensor<3x4xf32>
  // CHECK-NEXT: %11 = pg.reciprocal %x : tensor<3x4xf32>
  %12 = pg.erf %x : tensor<3x4xf32>
  // CHECK-NEXT: %12 = pg.erf %x : tensor<3x4xf32>
  %13 = pg.stop_gradient %x : tensor<3x4xf32>
  // CHECK-NEXT: %13 = pg.stop_gradient %x : tensor<3x4xf32>
  %14 = pg.neg %i : tensor<3xi64>
  // CHECK-NEXT: %14 = pg.neg %i : tensor<3xi64>
  %15 = pg.relu %i : tensor<3xi64>
  // CHECK-NEXT: %15 = pg.relu %i : tensor<3xi64>
  %16 = pg.abs %i : tensor<3xi64>
  // CHECK-NEXT: %16 = pg.abs %i : tensor<3xi64>
  func.return
  // CHECK-NEXT: func.return
}
// CHECK-NEXT: }

// CHECK-LABEL: func.func @binary(%x: tensor<3xf32>, %y: tensor<3xf32>, %i: tensor<3xi64>, %j: tensor<3xi64>) {
func.func @binary(%x: tensor<3xf32>, %y: tensor<3xf32>, %i: tensor<3xi64>, %j: tensor<3xi64>) {
  %0 = pg.add %x, %y : tensor<3xf32>
  // CHECK-NEXT: %0 = pg.add %x, %y : tensor<3xf32>
  %1 = pg.sub %x, %y : tensor<3xf32>
  // CHECK-NEXT: %1 = pg.sub %x, %y : tensor<3xf32>
  %2 = pg.mul %x, %y : tensor<3xf32>
  // CHECK-NEXT: %2 = pg.mul %x, %y : tensor<3xf32>
  %3 = pg.div %x, %y : tensor<3xf32>
  // CHECK-NEXT: %3 = pg.div %x, %y : tensor<3xf32>
  %4 = pg.pow %x, %y : tensor<3xf32>
  // CHECK-NEXT: %4 = pg.pow %x, %y : tensor<3xf32>
  %5 = pg.maximum %x, %y : tensor<3xf32>
  // CHECK-NEXT: %5 = pg.maximum %x, %y : tensor<3xf32>
  %6 = pg.minimum %x, %y : tensor<3xf32>
  // CHECK-NEXT: %6 = pg.minimum %x, %y : tensor<3xf32>
  %7 = pg.add %i, %j : tensor<3xi64>
  // CHECK-NEXT: %7 = pg.add %i, %j : tensor<3xi64>
  %8 = pg.div %i, %j : tensor<3xi64>
  // CHECK-NEXT: %8 = pg.div %i, %j : tensor<3xi64>
  func.return
  // CHECK-NEXT: func.return
}
// CHECK-NEXT: }

// CHECK-LABEL: func.func @compare(%x: tensor<3xf32>, %y: tensor<3xf32>, %i: tensor<3xi64>) {
func.func @compare(%x: tensor<3xf32>, %y: tensor<3xf32>, %i: tensor<3xi64>) {
  %lt = pg.cmp "lt", %x, %y : tensor<3xf32> -> tensor<3xi1>
  // CHECK-NEXT: %lt = pg.cmp "lt", %x, %y : tensor<3xf32> -> tensor<3xi1>
  %le = pg.cmp "le", %x, %y : tensor<3xf32> -> tensor<3xi1>
  // CHECK-NEXT: %le = pg.cmp "le", %x, %y : tensor<3xf32> -> tensor<3xi1>
  %gt = pg.cmp "gt", %x, %y : tensor<3xf32> -> tensor<3xi1>
  // CHECK-NEXT: %gt = pg.cmp "gt", %x, %y : tensor<3xf32> -> tensor<3xi1>
  %ge = pg.cmp "ge", %x, %y : tensor<3xf32> -> tensor<3xi1>
  // CHECK-NEXT: %ge = pg.cmp "ge", %x, %y : tensor<3xf32> -> tensor<3xi1>
  %eq = pg.cmp "eq", %i, %i : tensor<3xi64> -> tensor<3xi1>
  // CHECK-NEXT: %eq = pg.cmp "eq", %i, %i : tensor<3xi64> -> tensor<3xi1>
  %ne = pg.cmp "ne", %x, %y : tensor<3xf32> -> tensor<3xi1>
  // CHECK-NEXT: %ne = pg.cmp "ne", %x, %y : tensor<3xf32> -> tensor<3xi1>
  %s = pg.select %lt, %x, %y : tensor<3xi1>, tensor<3xf32>
  // CHECK-NEXT: %s = pg.select %lt, %x, %y : tensor<3xi1>, tensor<3xf32>
  func.return
  // CHECK-NEXT: func.return
}
// CHECK-NEXT: }

// CHECK-LABEL: func.func @shapes(%x: tensor<4x3xf32>, %b: tensor<3x1xf32>) {
func.func @shapes(%x: tensor<4x3xf32>, %b: tensor<3x1xf32>) {
  %0 = pg.broadcast_to %b : tensor<3x1xf32> -> tensor<2x3x4xf32>
  // CHECK-NEXT: %0 = pg.broadcast_to %b : tensor<3x1xf32> -> tensor<2x3x4xf32>
  %1 = pg.sum %x dims = [1] : tensor<4x3xf32> -> tensor<4xf32>
  // CHECK-NEXT: %1 = pg.sum %x dims = [1] : tensor<4x3xf32> -> tensor<4xf32>
  %2 = pg.sum %x dims = [0, 1] keepdim : tensor<4x3xf32> -> tensor<1x1xf32>
  // CHECK-NEXT: %2 = pg.sum %x dims = [0, 1] keepdim : tensor<4x3xf32> -> tensor<1x1xf32>
  %3 = pg.max %x dims = [0] : tensor<4x3xf32> -> tensor<3xf32>
  // CHECK-NEXT: %3 = pg.max %x dims = [0] : tensor<4x3xf32> -> tensor<3xf32>
  %4 = pg.max %x dims = [1] keepdim : tensor<4x3xf32> -> tensor<4x1xf32>
  // CHECK-NEXT: %4 = pg.max %x dims = [1] keepdim : tensor<4x3xf32> -> tensor<4x1xf32>
  %5 = pg.min %x dims = [0, 1] : tensor<4x3xf32> -> tensor<f32>
  // CHECK-NEXT: %5 = pg.min %x dims = [0, 1] : tensor<4x3xf32> -> tensor<f32>
  %6 = pg.min %x dims = [0] keepdim : tensor<4x3xf32> -> tensor<1x3xf32>
  // CHECK-NEXT: %6 = pg.min %x dims = [0] keepdim : tensor<4x3xf32> -> tensor<1x3xf32>
  %7 = pg.argmax %x dim = 1 : tensor<4x3xf32> -> tensor<4xi64>
  // CHECK-NEXT: %7 = pg.argmax %x dim = 1 : tensor<4x3xf32> -> tensor<4xi64>
  %8 = pg.argmax %x dim = 0 keepdim : tensor<4x3xf32> -> tensor<1x3xi64>
  // CHECK-NEXT: %8 = pg.argmax %x dim = 0 keepdim : tensor<4x3xf32> -> tensor<1x3xi64>
  %9 = pg.argmin %x dim = 1 : tensor<4x3xf32> -> tensor<4xi64>
  // CHECK-NEXT: %9 = pg.argmin %x dim = 1 : tensor<4x3xf32> -> tensor<4xi64>
  %10 = pg.argmin %x dim = 1 keepdim : tensor<4x3xf32> -> tensor<4x1xi64>
  // CHECK-NEXT: %10 = pg.argmin %x dim = 1 keepdim : tensor<4x3xf32> -> tensor<4x1xi64>
  func.return
  // CHECK-NEXT: func.return
}
// CHECK-NEXT: }

// CHECK-LABEL: func.func @movement(%x: tensor<2x3xf32>, %y: tensor<1x3xf32>) {
func.func @movement(%x: tensor<2x3xf32>, %y: tensor<1x3xf32>) {
  %0 = pg.reshape %x : tensor<2x3xf32> -> tensor<6xf32>
  // CHECK-NEXT: %0 = pg.reshape %x : tensor<2x3xf32> -> tensor<6xf32>
  %1 = pg.reshape %x : tensor<2x3xf32> -> tensor<3x1x2xf32>
  // CHECK-NEXT: %1 = pg.reshape %x : tensor<2x3xf32> -> tensor<3x1x2xf32>
  %2 = pg.permute %x perm = [1, 0] : tensor<2x3xf32> -> tensor<3x2xf32>
  // CHECK-NEXT: %2 = pg.permute %x perm = [1, 0] : tensor<2x3xf32> -> tensor<3x2xf32>
  %3 = pg.slice %x start = [0, 1] stop = [2, 3] step = [1, 1] : tensor<2x3xf32> -> tensor<2x2xf32>
  // CHECK-NEXT: %3 = pg.slice %x start = [0, 1] stop = [2, 3] step = [1, 1] : tensor<2x3xf32> -> tensor<2x2xf32>
  %4 = pg.slice %x start = [0, 0] stop = [2, 3] step = [2, 2] : tensor<2x3xf32> -> tensor<1x2xf32>
  // CHECK-NEXT: %4 = pg.slice %x start = [0, 0] stop = [2, 3] step = [2, 2] : tensor<2x3xf32> -> tensor<1x2xf32>
  %5 = pg.pad %x low = [1, 0] high = [0, 2] interior = [0, 1] value = 0.0 : tensor<2x3xf32> -> tensor<3x7xf32>
  // CHECK-NEXT: %5 = pg.pad %x low = [1, 0] high = [0, 2] interior = [0, 1] value = 0.000000e+00 : tensor<2x3xf32> -> tensor<3x7xf32>
  %6 = pg.pad %x low = [0, 0] high = [1, 1] interior = [0, 0] value = -1.5 : tensor<2x3xf32> -> tensor<3x4xf32>
  // CHECK-NEXT: %6 = pg.pad %x low = [0, 0] high = [1, 1] interior = [0, 0] value = -1.500000e+00 : tensor<2x3xf32> -> tensor<3x4xf32>
  %7 = pg.concat %x, %y dim = 0 : (tensor<2x3xf32>, tensor<1x3xf32>) -> tensor<3x3xf32>
  // CHECK-NEXT: %7 = pg.concat %x, %y dim = 0 : (tensor<2x3xf32>, tensor<1x3xf32>) -> tensor<3x3xf32>
  %8 = pg.concat %x, %x, %x dim = 1 : (tensor<2x3xf32>, tensor<2x3xf32>, tensor<2x3xf32>) -> tensor<2x9xf32>
  // CHECK-NEXT: %8 = pg.concat %x, %x, %x dim = 1 : (tensor<2x3xf32>, tensor<2x3xf32>, tensor<2x3xf32>) -> tensor<2x9xf32>
  func.return
  // CHECK-NEXT: func.return
}
// CHECK-NEXT: }

// CHECK-LABEL: func.func @contraction(%a: tensor<2x3xf32>, %b: tensor<3x4xf32>, %p: tensor<5x2x3xf64>, %q: tensor<5x3x4xf64>) {
func.func @contraction(%a: tensor<2x3xf32>, %b: tensor<3x4xf32>, %p: tensor<5x2x3xf64>, %q: tensor<5x3x4xf64>) {
  %0 = pg.matmul %a, %b : (tensor<2x3xf32>, tensor<3x4xf32>) -> tensor<2x4xf32>
  // CHECK-NEXT: %0 = pg.matmul %a, %b : (tensor<2x3xf32>, tensor<3x4xf32>) -> tensor<2x4xf32>
  %1 = pg.matmul %p, %q : (tensor<5x2x3xf64>, tensor<5x3x4xf64>) -> tensor<5x2x4xf64>
  // CHECK-NEXT: %1 = pg.matmul %p, %q : (tensor<5x2x3xf64>, tensor<5x3x4xf64>) -> tensor<5x2x4xf64>
  func.return
  // CHECK-NEXT: func.return
}
// CHECK-NEXT: }

// 16-bit floats (issue 14): bf16/f16 operands, casts, and the tf32 flag of an f32 matmul.
// CHECK-LABEL: func.func @low_precision(%a: tensor<2x3xbf16>, %b: tensor<3x4xbf16>, %h: tensor<2x3xf16>, %x: tensor<2x3xf32>, %y: tensor<3x4xf32>) {
func.func @low_precision(%a: tensor<2x3xbf16>, %b: tensor<3x4xbf16>, %h: tensor<2x3xf16>, %x: tensor<2x3xf32>, %y: tensor<3x4xf32>) {
  %0 = pg.matmul %a, %b : (tensor<2x3xbf16>, tensor<3x4xbf16>) -> tensor<2x4xbf16>
  // CHECK-NEXT: %0 = pg.matmul %a, %b : (tensor<2x3xbf16>, tensor<3x4xbf16>) -> tensor<2x4xbf16>
  %1 = pg.matmul %x, %y tf32 : (tensor<2x3xf32>, tensor<3x4xf32>) -> tensor<2x4xf32>
  // CHECK-NEXT: %1 = pg.matmul %x, %y tf32 : (tensor<2x3xf32>, tensor<3x4xf32>) -> tensor<2x4xf32>
  %2 = pg.cast %x : tensor<2x3xf32> -> tensor<2x3xbf16>
  // CHECK-NEXT: %2 = pg.cast %x : tensor<2x3xf32> -> tensor<2x3xbf16>
  %3 = pg.cast %h : tensor<2x3xf16> -> tensor<2x3xf32>
  // CHECK-NEXT: %3 = pg.cast %h : tensor<2x3xf16> -> tensor<2x3xf32>
  %4 = pg.exp %a : tensor<2x3xbf16>
  // CHECK-NEXT: %4 = pg.exp %a : tensor<2x3xbf16>
  %5 = pg.sum %h dims = [1] : tensor<2x3xf16> -> tensor<2xf16>
  // CHECK-NEXT: %5 = pg.sum %h dims = [1] : tensor<2x3xf16> -> tensor<2xf16>
  func.return
  // CHECK-NEXT: func.return
}
// CHECK-NEXT: }

// CHECK-LABEL: func.func @indexing(%table: tensor<27x10xf32>, %idx: tensor<32x3xi64>, %upd: tensor<32x3x10xf32>, %i32: tensor<4xi32>, %x: tensor<3x5xf32>) {
func.func @indexing(%table: tensor<27x10xf32>, %idx: tensor<32x3xi64>, %upd: tensor<32x3x10xf32>, %i32: tensor<4xi32>, %x: tensor<3x5xf32>) {
  %0 = pg.gather %table[%idx] dim = 0 : (tensor<27x10xf32>, tensor<32x3xi64>) -> tensor<32x3x10xf32>
  // CHECK-NEXT: %0 = pg.gather %table[%idx] dim = 0 : (tensor<27x10xf32>, tensor<32x3xi64>) -> tensor<32x3x10xf32>
  %1 = pg.gather %x[%i32] dim = 1 : (tensor<3x5xf32>, tensor<4xi32>) -> tensor<3x4xf32>
  // CHECK-NEXT: %1 = pg.gather %x[%i32] dim = 1 : (tensor<3x5xf32>, tensor<4xi32>) -> tensor<3x4xf32>
  %2 = pg.scatter_add %upd[%idx] dim = 0 : (tensor<32x3x10xf32>, tensor<32x3xi64>) -> tensor<27x10xf32>
  // CHECK-NEXT: %2 = pg.scatter_add %upd[%idx] dim = 0 : (tensor<32x3x10xf32>, tensor<32x3xi64>) -> tensor<27x10xf32>
  %3 = pg.check_index %idx "index" dim = 0 size = 27 : tensor<32x3xi64>
  // CHECK-NEXT: %3 = pg.check_index %idx "index" dim = 0 size = 27 : tensor<32x3xi64>
  %4 = pg.check_index %i32 "target" dim = 1 size = 5 negative : tensor<4xi32>
  // CHECK-NEXT: %4 = pg.check_index %i32 "target" dim = 1 size = 5 negative : tensor<4xi32>
  func.return
  // CHECK-NEXT: func.return
}
// CHECK-NEXT: }

// CHECK-LABEL: func.func @casts(%i: tensor<3xi64>, %x: tensor<3xf32>, %m: tensor<3xi1>) {
func.func @casts(%i: tensor<3xi64>, %x: tensor<3xf32>, %m: tensor<3xi1>) {
  %0 = pg.cast %i : tensor<3xi64> -> tensor<3xf32>
  // CHECK-NEXT: %0 = pg.cast %i : tensor<3xi64> -> tensor<3xf32>
  %1 = pg.cast %x : tensor<3xf32> -> tensor<3xi32>
  // CHECK-NEXT: %1 = pg.cast %x : tensor<3xf32> -> tensor<3xi32>
  %2 = pg.cast %m : tensor<3xi1> -> tensor<3xf64>
  // CHECK-NEXT: %2 = pg.cast %m : tensor<3xi1> -> tensor<3xf64>
  %3 = pg.cast %x : tensor<3xf32> -> tensor<3xf64>
  // CHECK-NEXT: %3 = pg.cast %x : tensor<3xf32> -> tensor<3xf64>
  func.return
  // CHECK-NEXT: func.return
}
// CHECK-NEXT: }

// CHECK-LABEL: func.func @random(%seed: tensor<i64>, %offset: tensor<i64>) {
func.func @random(%seed: tensor<i64>, %offset: tensor<i64>) {
  %0 = pg.random "uniform" %seed, %offset : tensor<3x4xf32>
  // CHECK-NEXT: %0 = pg.random "uniform" %seed, %offset : tensor<3x4xf32>
  %1 = pg.random "normal" %seed, %offset : tensor<8xf64>
  // CHECK-NEXT: %1 = pg.random "normal" %seed, %offset : tensor<8xf64>
  func.return
  // CHECK-NEXT: func.return
}
// CHECK-NEXT: }

// CHECK-LABEL: func.func @grad(%loss: tensor<f32>, %a: tensor<3xf32>, %b: tensor<3x4xf32>, %y: tensor<3xf32>, %dy: tensor<3xf32>) {
func.func @grad(%loss: tensor<f32>, %a: tensor<3xf32>, %b: tensor<3x4xf32>, %y: tensor<3xf32>, %dy: tensor<3xf32>) {
  %ga = pg.grad %loss wrt %a : tensor<f32> wrt tensor<3xf32>
  // CHECK-NEXT: %ga = pg.grad %loss wrt %a : tensor<f32> wrt tensor<3xf32>
  %gb:2 = pg.grad %loss wrt %a, %b : tensor<f32> wrt tensor<3xf32>, tensor<3x4xf32>
  // CHECK-NEXT: %gb, %gb_1 = pg.grad %loss wrt %a, %b : tensor<f32> wrt tensor<3xf32>, tensor<3x4xf32>
  %gc:3 = pg.grad %y seed %dy wrt %a, %b, %y : tensor<3xf32> wrt tensor<3xf32>, tensor<3x4xf32>, tensor<3xf32>
  // CHECK-NEXT: %gc, %gc_1, %gc_2 = pg.grad %y seed %dy wrt %a, %b, %y : tensor<3xf32> wrt tensor<3xf32>, tensor<3x4xf32>, tensor<3xf32>
  func.return
  // CHECK-NEXT: func.return
}
// CHECK-NEXT: }

// CHECK-LABEL: func.func @optim(%lr: tensor<f64>, %mom: tensor<f64>, %damp: tensor<f64>, %wd: tensor<f64>, %b1: tensor<f64>, %b2: tensor<f64>, %eps: tensor<f64>, %step: tensor<i64>, %w: tensor<4x3xf32>, %gw: tensor<4x3xf32>, %v: tensor<3xf32>, %gv: tensor<3xf32>, %mw: tensor<4x3xf32>, %mv: tensor<3xf32>, %sw: tensor<4x3xf32>, %sv: tensor<3xf32>) {
func.func @optim(%lr: tensor<f64>, %mom: tensor<f64>, %damp: tensor<f64>, %wd: tensor<f64>, %b1: tensor<f64>, %b2: tensor<f64>, %eps: tensor<f64>, %step: tensor<i64>, %w: tensor<4x3xf32>, %gw: tensor<4x3xf32>, %v: tensor<3xf32>, %gv: tensor<3xf32>, %mw: tensor<4x3xf32>, %mv: tensor<3xf32>, %sw: tensor<4x3xf32>, %sv: tensor<3xf32>) {
  %s0, %p0:2 = pg.sgd lr %lr, momentum %mom, dampening %damp, weight_decay %wd step %step params(%w, %v) grads(%gw, %gv) state() : tensor<4x3xf32>, tensor<3xf32>
  // CHECK-NEXT: %s0, %p0, %p0_1 = pg.sgd lr %lr, momentum %mom, dampening %damp, weight_decay %wd step %step params(%w, %v) grads(%gw, %gv) state() : tensor<4x3xf32>, tensor<3xf32>
  %s1, %p1:2 = pg.sgd lr %lr, momentum %mom, dampening %damp, weight_decay %wd step %step params(%w) grads(%gw) state(%mw) {momentum} : tensor<4x3xf32>
  // CHECK-NEXT: %s1, %p1, %p1_1 = pg.sgd lr %lr, momentum %mom, dampening %damp, weight_decay %wd step %step params(%w) grads(%gw) state(%mw) {momentum} : tensor<4x3xf32>
  %s2, %p2:2 = pg.sgd lr %lr, momentum %mom, dampening %damp, weight_decay %wd step %step params(%w) grads(%gw) state(%mw) {momentum, nesterov} : tensor<4x3xf32>
  // CHECK-NEXT: %s2, %p2, %p2_1 = pg.sgd lr %lr, momentum %mom, dampening %damp, weight_decay %wd step %step params(%w) grads(%gw) state(%mw) {momentum, nesterov} : tensor<4x3xf32>
  %s3, %p3:3 = pg.adam lr %lr, beta1 %b1, beta2 %b2, eps %eps, weight_decay %wd step %step params(%w) grads(%gw) state(%mw, %sw) : tensor<4x3xf32>
  // CHECK-NEXT: %s3, %p3, %p3_1, %p3_2 = pg.adam lr %lr, beta1 %b1, beta2 %b2, eps %eps, weight_decay %wd step %step params(%w) grads(%gw) state(%mw, %sw) : tensor<4x3xf32>
  %s4, %p4:6 = pg.adamw lr %lr, beta1 %b1, beta2 %b2, eps %eps, weight_decay %wd step %step params(%w, %v) grads(%gw, %gv) state(%mw, %mv, %sw, %sv) : tensor<4x3xf32>, tensor<3xf32>
  // CHECK-NEXT: %s4, %p4, %p4_1, %p4_2, %p4_3, %p4_4, %p4_5 = pg.adamw lr %lr, beta1 %b1, beta2 %b2, eps %eps, weight_decay %wd step %step params(%w, %v) grads(%gw, %gv) state(%mw, %mv, %sw, %sv) : tensor<4x3xf32>, tensor<3xf32>
  func.return
  // CHECK-NEXT: func.return
}
// CHECK-NEXT: }
