// Each verifier error of the pg dialect, one per chunk of --split-input-file. With --verify-diagnostics
// xDSL 0.74 prints each error (then the IR with the failing op marked) and exits 0: FileCheck the messages in order.
// RUN: pgc-opt %s --verify-diagnostics --split-input-file | filecheck %s

// CHECK: pg.constant: value type tensor<2xf32> differs from result tensor<3xf32>
func.func @f() {
  %0 = "pg.constant"() <{value = dense<1.0> : tensor<2xf32>}> : () -> tensor<3xf32>
  func.return
}

// -----

// CHECK: pg.iota: dim 2 is out of range for rank 2
func.func @f() {
  %0 = pg.iota dim = 2 : tensor<2x3xi64>
  func.return
}

// -----

// CHECK: pg.exp: expects a float tensor, got tensor<3xi64>
func.func @f(%x: tensor<3xi64>) {
  %0 = pg.exp %x : tensor<3xi64>
  func.return
}

// -----

// CHECK: operand 'rhs' at position 1 does not verify:
// CHECK-NEXT: attribute tensor<3xf32> expected from variable 'T', but got tensor<4xf32>
func.func @f(%x: tensor<3xf32>, %y: tensor<4xf32>) {
  %0 = "pg.add"(%x, %y) : (tensor<3xf32>, tensor<4xf32>) -> tensor<3xf32>
  func.return
}

// -----

// CHECK: pg.pow: expects float tensors, got tensor<3xi64>
func.func @f(%x: tensor<3xi64>) {
  %0 = pg.pow %x, %x : tensor<3xi64>
  func.return
}

// -----

// CHECK: pg.add: does not take bool tensors (cast them first)
func.func @f(%x: tensor<3xi1>) {
  %0 = pg.add %x, %x : tensor<3xi1>
  func.return
}

// -----

// CHECK: pg.cmp: unknown predicate 'lte', expected one of ('lt', 'le', 'gt', 'ge', 'eq', 'ne')
func.func @f(%x: tensor<3xf32>) {
  %0 = pg.cmp "lte", %x, %x : tensor<3xf32> -> tensor<3xi1>
  func.return
}

// -----

// CHECK: pg.cmp: result must be an i1 tensor of shape (3,)
func.func @f(%x: tensor<3xf32>) {
  %0 = pg.cmp "lt", %x, %x : tensor<3xf32> -> tensor<3xf32>
  func.return
}

// -----

// CHECK: pg.select: condition must be a bool tensor of shape (3,), got tensor<3xf32>
func.func @f(%c: tensor<3xf32>, %x: tensor<3xf32>) {
  %0 = pg.select %c, %x, %x : tensor<3xf32>, tensor<3xf32>
  func.return
}

// -----

// CHECK: pg.broadcast_to: element types of input and result differ
func.func @f(%x: tensor<3xf32>) {
  %0 = pg.broadcast_to %x : tensor<3xf32> -> tensor<2x3xf64>
  func.return
}

// -----

// CHECK: pg.broadcast_to: shape (3,) cannot be broadcast to (3, 2)
func.func @f(%x: tensor<3xf32>) {
  %0 = pg.broadcast_to %x : tensor<3xf32> -> tensor<3x2xf32>
  func.return
}

// -----

// CHECK: pg.broadcast_to: shape (2, 3) cannot be broadcast to (3,)
func.func @f(%x: tensor<2x3xf32>) {
  %0 = pg.broadcast_to %x : tensor<2x3xf32> -> tensor<3xf32>
  func.return
}

// -----

// CHECK: pg.sum: dim 2 is out of range for rank 2
func.func @f(%x: tensor<4x3xf32>) {
  %0 = pg.sum %x dims = [2] : tensor<4x3xf32> -> tensor<4x3xf32>
  func.return
}

// -----

// CHECK: pg.max: repeated dim in (0, 0)
func.func @f(%x: tensor<4x3xf32>) {
  %0 = pg.max %x dims = [0, 0] : tensor<4x3xf32> -> tensor<3xf32>
  func.return
}

// -----

// CHECK: pg.min: element types of input and result differ
func.func @f(%x: tensor<4x3xf32>) {
  %0 = pg.min %x dims = [1] : tensor<4x3xf32> -> tensor<4xf64>
  func.return
}

// -----

// CHECK: pg.sum: result shape (4,) does not match the expected shape (4, 1)
func.func @f(%x: tensor<4x3xf32>) {
  %0 = pg.sum %x dims = [1] keepdim : tensor<4x3xf32> -> tensor<4xf32>
  func.return
}

// -----

// CHECK: pg.argmax: dim 2 is out of range for rank 2
func.func @f(%x: tensor<4x3xf32>) {
  %0 = pg.argmax %x dim = 2 : tensor<4x3xf32> -> tensor<4xi64>
  func.return
}

// -----

// CHECK: pg.argmin: result must be an i64 tensor
func.func @f(%x: tensor<4x3xf32>) {
  %0 = pg.argmin %x dim = 1 : tensor<4x3xf32> -> tensor<4xi32>
  func.return
}

// -----

// CHECK: pg.argmax: result shape (4,) does not match the expected shape (4, 1)
func.func @f(%x: tensor<4x3xf32>) {
  %0 = pg.argmax %x dim = 1 keepdim : tensor<4x3xf32> -> tensor<4xi64>
  func.return
}

// -----

// CHECK: pg.reshape: cannot reshape (2, 3) (6 elements) to (5,)
func.func @f(%x: tensor<2x3xf32>) {
  %0 = pg.reshape %x : tensor<2x3xf32> -> tensor<5xf32>
  func.return
}

// -----

// CHECK: pg.reshape: element types of input and result differ
func.func @f(%x: tensor<2x3xf32>) {
  %0 = pg.reshape %x : tensor<2x3xf32> -> tensor<6xf64>
  func.return
}

// -----

// CHECK: pg.permute: (0, 0) is not a permutation of the 2 dims of (2, 3)
func.func @f(%x: tensor<2x3xf32>) {
  %0 = pg.permute %x perm = [0, 0] : tensor<2x3xf32> -> tensor<2x2xf32>
  func.return
}

// -----

// CHECK: pg.permute: result shape (2, 3) does not match the expected shape (3, 2)
func.func @f(%x: tensor<2x3xf32>) {
  %0 = pg.permute %x perm = [1, 0] : tensor<2x3xf32> -> tensor<2x3xf32>
  func.return
}

// -----

// CHECK: pg.slice: start/stop/step need one entry per dim of (2, 3)
func.func @f(%x: tensor<2x3xf32>) {
  %0 = pg.slice %x start = [0] stop = [2] step = [1] : tensor<2x3xf32> -> tensor<2xf32>
  func.return
}

// -----

// CHECK: pg.slice: dim 1: 1:4:1 is not a valid slice of size 3
func.func @f(%x: tensor<2x3xf32>) {
  %0 = pg.slice %x start = [0, 1] stop = [2, 4] step = [1, 1] : tensor<2x3xf32> -> tensor<2x3xf32>
  func.return
}

// -----

// CHECK: pg.slice: dim 1: 2:1:1 is not a valid slice of size 3
func.func @f(%x: tensor<2x3xf32>) {
  %0 = pg.slice %x start = [0, 2] stop = [2, 1] step = [1, 1] : tensor<2x3xf32> -> tensor<2x0xf32>
  func.return
}

// -----

// CHECK: pg.slice: dim 1: 0:3:0 is not a valid slice of size 3
func.func @f(%x: tensor<2x3xf32>) {
  %0 = pg.slice %x start = [0, 0] stop = [2, 3] step = [1, 0] : tensor<2x3xf32> -> tensor<2x3xf32>
  func.return
}

// -----

// CHECK: pg.slice: result shape (2, 1) does not match the expected shape (2, 2)
func.func @f(%x: tensor<2x3xf32>) {
  %0 = pg.slice %x start = [0, 0] stop = [2, 3] step = [1, 2] : tensor<2x3xf32> -> tensor<2x1xf32>
  func.return
}

// -----

// CHECK: pg.pad: low/high/interior need one entry per dim of (3,)
func.func @f(%x: tensor<3xf32>) {
  %0 = pg.pad %x low = [1, 0] high = [0] interior = [0] value = 0.0 : tensor<3xf32> -> tensor<4xf32>
  func.return
}

// -----

// CHECK: pg.pad: padding amounts must be non-negative
func.func @f(%x: tensor<3xf32>) {
  %0 = pg.pad %x low = [-1] high = [0] interior = [0] value = 0.0 : tensor<3xf32> -> tensor<2xf32>
  func.return
}

// -----

// CHECK: pg.pad: result shape (5,) does not match the expected shape (7,)
func.func @f(%x: tensor<3xf32>) {
  %0 = pg.pad %x low = [1] high = [1] interior = [1] value = 0.0 : tensor<3xf32> -> tensor<5xf32>
  func.return
}

// -----

// CHECK: pg.concat: needs at least one input
func.func @f() {
  %0 = "pg.concat"() <{dim = 0 : i64}> : () -> tensor<3xf32>
  func.return
}

// -----

// CHECK: pg.concat: dim 2 is out of range for rank 2
func.func @f(%x: tensor<2x3xf32>) {
  %0 = pg.concat %x, %x dim = 2 : (tensor<2x3xf32>, tensor<2x3xf32>) -> tensor<4x3xf32>
  func.return
}

// -----

// CHECK: pg.concat: inputs must share one element type
func.func @f(%x: tensor<2x3xf32>, %y: tensor<2x3xf64>) {
  %0 = pg.concat %x, %y dim = 0 : (tensor<2x3xf32>, tensor<2x3xf64>) -> tensor<4x3xf32>
  func.return
}

// -----

// CHECK: pg.concat: shapes (2, 3) and (2, 4) differ outside dim 0
func.func @f(%x: tensor<2x3xf32>, %y: tensor<2x4xf32>) {
  %0 = pg.concat %x, %y dim = 0 : (tensor<2x3xf32>, tensor<2x4xf32>) -> tensor<4x3xf32>
  func.return
}

// -----

// CHECK: pg.concat: result shape (4, 3) does not match the expected shape (3, 3)
func.func @f(%x: tensor<2x3xf32>, %y: tensor<1x3xf32>) {
  %0 = pg.concat %x, %y dim = 0 : (tensor<2x3xf32>, tensor<1x3xf32>) -> tensor<4x3xf32>
  func.return
}

// -----

// CHECK: pg.matmul: tf32 applies to f32 operands only, got f64
func.func @f(%a: tensor<2x3xf64>, %b: tensor<3x4xf64>) {
  %0 = pg.matmul %a, %b tf32 : (tensor<2x3xf64>, tensor<3x4xf64>) -> tensor<2x4xf64>
  func.return
}

// -----

// CHECK: pg.matmul: expects float operands of one type, got tensor<2x3xi64>, tensor<3x4xi64>
func.func @f(%a: tensor<2x3xi64>, %b: tensor<3x4xi64>) {
  %0 = pg.matmul %a, %b : (tensor<2x3xi64>, tensor<3x4xi64>) -> tensor<2x4xi64>
  func.return
}

// -----

// CHECK: pg.matmul: expects float operands of one type, got tensor<2x3xf32>, tensor<3x4xf64>
func.func @f(%a: tensor<2x3xf32>, %b: tensor<3x4xf64>) {
  %0 = pg.matmul %a, %b : (tensor<2x3xf32>, tensor<3x4xf64>) -> tensor<2x4xf32>
  func.return
}

// -----

// CHECK: pg.matmul: shapes (2, 3) and (4, 4) do not match for a batched matmul
func.func @f(%a: tensor<2x3xf32>, %b: tensor<4x4xf32>) {
  %0 = pg.matmul %a, %b : (tensor<2x3xf32>, tensor<4x4xf32>) -> tensor<2x4xf32>
  func.return
}

// -----

// CHECK: pg.matmul: shapes (2, 2, 3) and (3, 3, 4) do not match for a batched matmul
func.func @f(%a: tensor<2x2x3xf32>, %b: tensor<3x3x4xf32>) {
  %0 = pg.matmul %a, %b : (tensor<2x2x3xf32>, tensor<3x3x4xf32>) -> tensor<2x2x4xf32>
  func.return
}

// -----

// CHECK: pg.matmul: result shape (4, 2) does not match the expected shape (2, 4)
func.func @f(%a: tensor<2x3xf32>, %b: tensor<3x4xf32>) {
  %0 = pg.matmul %a, %b : (tensor<2x3xf32>, tensor<3x4xf32>) -> tensor<4x2xf32>
  func.return
}

// -----

// CHECK: pg.gather: dim 2 is out of range for rank 2
func.func @f(%t: tensor<27x10xf32>, %i: tensor<5xi64>) {
  %0 = pg.gather %t[%i] dim = 2 : (tensor<27x10xf32>, tensor<5xi64>) -> tensor<5x10xf32>
  func.return
}

// -----

// CHECK: pg.gather: indices must be an integer tensor, got tensor<5xf32>
func.func @f(%t: tensor<27x10xf32>, %i: tensor<5xf32>) {
  %0 = pg.gather %t[%i] dim = 0 : (tensor<27x10xf32>, tensor<5xf32>) -> tensor<5x10xf32>
  func.return
}

// -----

// CHECK: pg.gather: indices must be an integer tensor, got tensor<5xi1>
func.func @f(%t: tensor<27x10xf32>, %i: tensor<5xi1>) {
  %0 = pg.gather %t[%i] dim = 0 : (tensor<27x10xf32>, tensor<5xi1>) -> tensor<5x10xf32>
  func.return
}

// -----

// CHECK: pg.gather: result shape (10, 5) does not match the expected shape (5, 10)
func.func @f(%t: tensor<27x10xf32>, %i: tensor<5xi64>) {
  %0 = pg.gather %t[%i] dim = 0 : (tensor<27x10xf32>, tensor<5xi64>) -> tensor<10x5xf32>
  func.return
}

// -----

// CHECK: pg.scatter_add: dim 3 is out of range for rank 2
func.func @f(%u: tensor<5x10xf32>, %i: tensor<5xi64>) {
  %0 = pg.scatter_add %u[%i] dim = 3 : (tensor<5x10xf32>, tensor<5xi64>) -> tensor<27x10xf32>
  func.return
}

// -----

// CHECK: pg.scatter_add: indices must be an integer tensor, got tensor<5xf32>
func.func @f(%u: tensor<5x10xf32>, %i: tensor<5xf32>) {
  %0 = pg.scatter_add %u[%i] dim = 0 : (tensor<5x10xf32>, tensor<5xf32>) -> tensor<27x10xf32>
  func.return
}

// -----

// CHECK: pg.scatter_add: updates of shape (5, 9) do not match (5, 10) (result (27, 10), indices (5,))
func.func @f(%u: tensor<5x9xf32>, %i: tensor<5xi64>) {
  %0 = pg.scatter_add %u[%i] dim = 0 : (tensor<5x9xf32>, tensor<5xi64>) -> tensor<27x10xf32>
  func.return
}

// -----

// CHECK: pg.cast: shapes (3,) and (4,) differ
func.func @f(%x: tensor<3xf32>) {
  %0 = pg.cast %x : tensor<3xf32> -> tensor<4xi64>
  func.return
}

// -----

// CHECK: pg.random: unknown distribution 'gamma', expected ('uniform', 'normal')
func.func @f(%s: tensor<i64>) {
  %0 = pg.random "gamma" %s, %s : tensor<3xf32>
  func.return
}

// -----

// CHECK: operand 'offset' at position 1 does not verify:
// CHECK-NEXT: Expected attribute tensor<i64> but got tensor<i32>
func.func @f(%s: tensor<i64>, %o: tensor<i32>) {
  %0 = "pg.random"(%s, %o) <{distribution = "uniform"}> : (tensor<i64>, tensor<i32>) -> tensor<3xf32>
  func.return
}

// -----

// CHECK: pg.random: result must be a float tensor, got tensor<3xi64>
func.func @f(%s: tensor<i64>) {
  %0 = pg.random "normal" %s, %s : tensor<3xi64>
  func.return
}

// -----

// CHECK: pg.grad: seed type tensor<4xf32> differs from root type tensor<3xf32>
func.func @f(%y: tensor<3xf32>, %dy: tensor<4xf32>, %a: tensor<3xf32>) {
  %0 = "pg.grad"(%y, %dy, %a) <{operandSegmentSizes = array<i32: 1, 1, 1>}> : (tensor<3xf32>, tensor<4xf32>, tensor<3xf32>) -> tensor<3xf32>
  func.return
}

// -----

// CHECK: pg.grad: root of shape (3,) is not a scalar; give a seed gradient
func.func @f(%y: tensor<3xf32>, %a: tensor<3xf32>) {
  %0 = pg.grad %y wrt %a : tensor<3xf32> wrt tensor<3xf32>
  func.return
}

// -----

// CHECK: pg.grad: root must be a float tensor, got tensor<i64>
func.func @f(%y: tensor<i64>, %a: tensor<3xf32>) {
  %0 = pg.grad %y wrt %a : tensor<i64> wrt tensor<3xf32>
  func.return
}

// -----

// CHECK: pg.grad: cannot differentiate with respect to tensor<3xi64>: only float tensors can require gradients
func.func @f(%y: tensor<f32>, %i: tensor<3xi64>) {
  %0 = pg.grad %y wrt %i : tensor<f32> wrt tensor<3xi64>
  func.return
}

// -----

// CHECK: pg.grad: each result must have the type of its wrt value
func.func @f(%y: tensor<f32>, %a: tensor<3xf32>) {
  %0 = "pg.grad"(%y, %a) <{operandSegmentSizes = array<i32: 1, 0, 1>}> : (tensor<f32>, tensor<3xf32>) -> tensor<4xf32>
  func.return
}

// -----

// CHECK: pg.sgd: expects hyperparameters ('lr', 'momentum', 'dampening', 'weight_decay'), got 3
func.func @f(%h: tensor<f64>, %s: tensor<i64>, %w: tensor<3xf32>) {
  %0:2 = "pg.sgd"(%h, %h, %h, %s, %w, %w) <{operandSegmentSizes = array<i32: 3, 1, 1, 1, 0>}> : (tensor<f64>, tensor<f64>, tensor<f64>, tensor<i64>, tensor<3xf32>, tensor<3xf32>) -> (tensor<i64>, tensor<3xf32>)
  func.return
}

// -----

// CHECK: pg.adam: 1 params need 1 grads and 2 state buffers, got 1 and 1
func.func @f(%h: tensor<f64>, %s: tensor<i64>, %w: tensor<3xf32>) {
  %0:3 = pg.adam lr %h, beta1 %h, beta2 %h, eps %h, weight_decay %h step %s params(%w) grads(%w) state(%w) : tensor<3xf32>
  func.return
}

// -----

// CHECK: pg.sgd: parameter 0 is not a float tensor: tensor<3xi64>
func.func @f(%h: tensor<f64>, %s: tensor<i64>, %w: tensor<3xi64>) {
  %0:2 = pg.sgd lr %h, momentum %h, dampening %h, weight_decay %h step %s params(%w) grads(%w) state() : tensor<3xi64>
  func.return
}

// -----

// CHECK: pg.adamw: parameter 0 has type tensor<3xf32> but its grad/state has tensor<3xf64>
func.func @f(%h: tensor<f64>, %s: tensor<i64>, %w: tensor<3xf32>, %g: tensor<3xf64>) {
  %0:4 = "pg.adamw"(%h, %h, %h, %h, %h, %s, %w, %g, %w, %w) <{operandSegmentSizes = array<i32: 5, 1, 1, 1, 2>}> : (tensor<f64>, tensor<f64>, tensor<f64>, tensor<f64>, tensor<f64>, tensor<i64>, tensor<3xf32>, tensor<3xf64>, tensor<3xf32>, tensor<3xf32>) -> (tensor<i64>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>)
  func.return
}

// -----

// CHECK: pg.sgd: unknown flag 'amsgrad', expected one of ('nesterov', 'momentum')
func.func @f(%h: tensor<f64>, %s: tensor<i64>, %w: tensor<3xf32>) {
  %0:2 = pg.sgd lr %h, momentum %h, dampening %h, weight_decay %h step %s params(%w) grads(%w) state() {amsgrad} : tensor<3xf32>
  func.return
}

// -----

// CHECK: operand 'hyper' at positions 0 to 3 does not verify:
// CHECK-NEXT: Expected attribute tensor<f64> but got tensor<f32>
func.func @f(%h: tensor<f32>, %s: tensor<i64>, %w: tensor<3xf32>) {
  %0:2 = "pg.sgd"(%h, %h, %h, %h, %s, %w, %w) <{operandSegmentSizes = array<i32: 4, 1, 1, 1, 0>}> : (tensor<f32>, tensor<f32>, tensor<f32>, tensor<f32>, tensor<i64>, tensor<3xf32>, tensor<3xf32>) -> (tensor<i64>, tensor<3xf32>)
  func.return
}

// -----

// CHECK: pg.sgd: nesterov needs the momentum flag
func.func @f(%h: tensor<f64>, %s: tensor<i64>, %w: tensor<3xf32>) {
  %0:2 = pg.sgd lr %h, momentum %h, dampening %h, weight_decay %h step %s params(%w) grads(%w) state() {nesterov} : tensor<3xf32>
  func.return
}

// -----

// CHECK: pg.bitwise_and: expects integer or bool tensors, got tensor<3xf32>
func.func @f(%x: tensor<3xf32>) {
  %0 = pg.bitwise_and %x, %x : tensor<3xf32>
  func.return
}

// -----

// CHECK: pg.atan2: expects float tensors, got tensor<3xi64>
func.func @f(%x: tensor<3xi64>) {
  %0 = pg.atan2 %x, %x : tensor<3xi64>
  func.return
}

// -----

// CHECK: pg.check_index: expects an integer tensor, got tensor<3xf32>
func.func @f(%x: tensor<3xf32>) {
  %0 = pg.check_index %x "index" dim = 0 size = 4 : tensor<3xf32>
  func.return
}

// -----

// CHECK: pg.conv: input (1, 3, 4, 4) and weight (2, 2, 3, 3) do not match for groups = 1
func.func @f(%x: tensor<1x3x4x4xf32>, %w: tensor<2x2x3x3xf32>) {
  %0 = pg.conv %x, %w stride = [1, 1] dilation = [1, 1] pad_low = [0, 0] pad_high = [0, 0] groups = 1 : (tensor<1x3x4x4xf32>, tensor<2x2x3x3xf32>) -> tensor<1x2x2x2xf32>
  func.return
}

// -----

// CHECK: pg.conv: kernel (3, 3) (dilated) is larger than the padded input (4, 4)
func.func @f(%x: tensor<1x2x4x4xf32>, %w: tensor<2x2x3x3xf32>) {
  %0 = pg.conv %x, %w stride = [1, 1] dilation = [2, 2] pad_low = [0, 0] pad_high = [0, 0] groups = 1 : (tensor<1x2x4x4xf32>, tensor<2x2x3x3xf32>) -> tensor<1x2x0x0xf32>
  func.return
}
