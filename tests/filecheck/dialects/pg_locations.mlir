// Locations on pg ops (the user's file:line that the frontend records) survive parsing and printing, for ops with
// a declarative assembly format and for those with a custom parser/printer.
// RUN: pgc-opt %s --print-debuginfo | pgc-opt --print-debuginfo | filecheck %s
// Without --print-debuginfo no locations are printed.
// RUN: pgc-opt %s | filecheck %s --check-prefix=NOLOC

func.func @step(%x: tensor<3xf32> loc("model.py":3:0), %lr: tensor<f64>, %step: tensor<i64>) -> tensor<3xf32> {
  %c = pg.constant dense<2.0> : tensor<3xf32> loc("model.py":10:4)
  %y = pg.mul %x, %c : tensor<3xf32> loc("model.py":12:3)
  %s = pg.sum %y dims = [0] : tensor<3xf32> -> tensor<f32> loc("model.py":13:8)
  %g = pg.grad %s wrt %x : tensor<f32> wrt tensor<3xf32> loc("model.py":20:0)
  %z = pg.constant dense<0.0> : tensor<f64>
  %n, %w = pg.sgd lr %lr, momentum %z, dampening %z, weight_decay %z step %step params(%x) grads(%g) state() : tensor<3xf32> loc("train.py":7:2)
  func.return %w : tensor<3xf32>
}

// CHECK:      func.func @step(%x: tensor<3xf32> loc("model.py":3:0), %lr: tensor<f64> loc(unknown), %step: tensor<i64> loc(unknown)) -> tensor<3xf32> {
// CHECK-NEXT:   %c = pg.constant dense<2.000000e+00> : tensor<3xf32> loc("model.py":10:4)
// CHECK-NEXT:   %y = pg.mul %x, %c : tensor<3xf32> loc("model.py":12:3)
// CHECK-NEXT:   %s = pg.sum %y dims = [0] : tensor<3xf32> -> tensor<f32> loc("model.py":13:8)
// CHECK-NEXT:   %g = pg.grad %s wrt %x : tensor<f32> wrt tensor<3xf32> loc("model.py":20:0)
// CHECK-NEXT:   %z = pg.constant dense<0.000000e+00> : tensor<f64> loc(unknown)
// CHECK-NEXT:   %n, %w = pg.sgd {{.*}} : tensor<3xf32> loc("train.py":7:2)
// CHECK-NEXT:   func.return %w : tensor<3xf32> loc(unknown)

// NOLOC-NOT: loc(
