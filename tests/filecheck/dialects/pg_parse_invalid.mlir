// Errors raised by the custom parsers of pg ops. With --parsing-diagnostics xDSL 0.74 prints the parse error
// (file:line:col, the source line and a caret) and exits 0.
// RUN: pgc-opt %s --parsing-diagnostics --split-input-file | filecheck %s

// CHECK: pg.constant expects a dense<...> : tensor<...> attribute
func.func @f() {
  %0 = pg.constant 1.0 : f32
  func.return
}

// -----

// CHECK: pg.sgd: operand lists do not match the 1 parameter types
func.func @f(%h: tensor<f64>, %s: tensor<i64>, %w: tensor<3xf32>) {
  %0:3 = pg.sgd lr %h, momentum %h, dampening %h, weight_decay %h step %s params(%w, %w) grads(%w, %w) state() : tensor<3xf32>
  func.return
}

// -----

// CHECK: pg.adam: operand lists do not match the 2 parameter types
func.func @f(%h: tensor<f64>, %s: tensor<i64>, %w: tensor<3xf32>) {
  %0:5 = pg.adam lr %h, beta1 %h, beta2 %h, eps %h, weight_decay %h step %s params(%w, %w) grads(%w, %w) state(%w) : tensor<3xf32>, tensor<3xf32>
  func.return
}

// -----

// The error points at the offending token, with line numbers of the whole file (not of the chunk).
// CHECK: pg_parse_invalid.mlir:[[# @LINE + 3]]:19
// CHECK: Expected 'wrt'
func.func @f(%y: tensor<f32>, %a: tensor<3xf32>) {
  %0 = pg.grad %y of %a : tensor<f32> wrt tensor<3xf32>
  func.return
}
