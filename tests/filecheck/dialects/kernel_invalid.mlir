// Each verifier error of the kernel dialect, one per chunk of --split-input-file. With --verify-diagnostics
// xDSL 0.74 prints each error (then the IR with the failing op marked) and exits 0: FileCheck the messages in order.
// RUN: pgc-opt %s --verify-diagnostics --split-input-file | filecheck %s

// CHECK: kernel.fused: unknown kind 'fancy', expected one of ('elementwise', 'reduction', 'matmul', 'gather', 'scatter_add', 'movement', 'random', 'attention', 'other')
func.func @f(%a: tensor<3xf32>) -> tensor<3xf32> {
  %r = kernel.fused @k0 "fancy" (%a) : (tensor<3xf32>) -> (tensor<3xf32>) {
  ^bb0(%x: tensor<3xf32>):
    kernel.yield %x : tensor<3xf32>
  }
  func.return %r : tensor<3xf32>
}

// -----

// CHECK: kernel.fused: block argument types (tensor<4xf32>) do not match the inputs (tensor<3xf32>)
func.func @f(%a: tensor<3xf32>) -> tensor<4xf32> {
  %r = kernel.fused @k0 "elementwise" (%a) : (tensor<3xf32>) -> (tensor<4xf32>) {
  ^bb0(%x: tensor<4xf32>):
    kernel.yield %x : tensor<4xf32>
  }
  func.return %r : tensor<4xf32>
}

// -----

// CHECK: kernel.fused: block argument types () do not match the inputs (tensor<3xf32>)
func.func @f(%a: tensor<3xf32>) -> tensor<3xf32> {
  %r = kernel.fused @k0 "elementwise" (%a) : (tensor<3xf32>) -> (tensor<3xf32>) {
    %c = pg.constant dense<1.0> : tensor<3xf32>
    kernel.yield %c : tensor<3xf32>
  }
  func.return %r : tensor<3xf32>
}

// -----

// CHECK: kernel.fused: yielded types (tensor<3xf32>, tensor<3xf32>) do not match the results (tensor<3xf32>)
func.func @f(%a: tensor<3xf32>) -> tensor<3xf32> {
  %r = kernel.fused @k0 "elementwise" (%a) : (tensor<3xf32>) -> (tensor<3xf32>) {
  ^bb0(%x: tensor<3xf32>):
    kernel.yield %x, %x : tensor<3xf32>, tensor<3xf32>
  }
  func.return %r : tensor<3xf32>
}

// -----

// CHECK: Operation pg.exp terminates block in single-block region but is not a terminator
func.func @f(%a: tensor<3xf32>) -> tensor<3xf32> {
  %r = kernel.fused @k0 "elementwise" (%a) : (tensor<3xf32>) -> (tensor<3xf32>) {
  ^bb0(%x: tensor<3xf32>):
    %y = pg.exp %x : tensor<3xf32>
  }
  func.return %r : tensor<3xf32>
}

// -----

// CHECK: Operation kernel.fused contains empty block in single-block region that expects at least a terminator
func.func @f(%a: tensor<3xf32>) -> tensor<3xf32> {
  %r = kernel.fused @k0 "elementwise" (%a) : (tensor<3xf32>) -> (tensor<3xf32>) {
  ^bb0(%x: tensor<3xf32>):
  }
  func.return %r : tensor<3xf32>
}

// -----

// The body sees only its block arguments (the region is isolated from above).
// CHECK: Operation using value defined out of its IsolatedFromAbove parent
func.func @f(%a: tensor<3xf32>) -> tensor<3xf32> {
  %r = kernel.fused @k0 "elementwise" () : () -> (tensor<3xf32>) {
    %y = pg.exp %a : tensor<3xf32>
    kernel.yield %y : tensor<3xf32>
  }
  func.return %r : tensor<3xf32>
}

// -----

// CHECK: 'kernel.yield' expects parent op to be one of 'kernel.fused', 'kernel.launch'
func.func @f(%a: tensor<3xf32>) -> tensor<3xf32> {
  kernel.yield %a : tensor<3xf32>
}

// -----

// CHECK: kernel.launch: unknown kind 'loop', expected one of
func.func @f(%m: memref<3xf32>) {
  kernel.launch @k0 "loop" ins(%m : memref<3xf32>) outs(%m : memref<3xf32>) {
  ^bb0(%x: tensor<3xf32>):
    kernel.yield %x : tensor<3xf32>
  }
  func.return
}

// -----

// CHECK: kernel.launch: block argument types (tensor<3xf64>) do not match the tensor types of ins (tensor<3xf32>)
func.func @f(%m: memref<3xf32>) {
  kernel.launch @k0 "elementwise" ins(%m : memref<3xf32>) outs(%m : memref<3xf32>) {
  ^bb0(%x: tensor<3xf64>):
    %y = pg.cast %x : tensor<3xf64> -> tensor<3xf32>
    kernel.yield %y : tensor<3xf32>
  }
  func.return
}

// -----

// CHECK: kernel.launch: yielded types (tensor<3xf32>) do not match the tensor types of outs (tensor<2x3xf32>)
func.func @f(%m: memref<3xf32>, %n: memref<2x3xf32>) {
  kernel.launch @k0 "elementwise" ins(%m : memref<3xf32>) outs(%n : memref<2x3xf32>) {
  ^bb0(%x: tensor<3xf32>):
    kernel.yield %x : tensor<3xf32>
  }
  func.return
}

// -----

// CHECK: kernel.launch: yielded types () do not match the tensor types of outs (tensor<3xf32>)
func.func @f(%m: memref<3xf32>) {
  kernel.launch @k0 "elementwise" ins() outs(%m : memref<3xf32>) {
    kernel.yield
  }
  func.return
}
