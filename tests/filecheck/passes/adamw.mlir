// RUN: pgc-opt %s -p pg-adamw | filecheck %s
// RUN: pgc-opt %s -p pg-adamw --print-debuginfo | filecheck %s --check-prefix=LOC

// AdamW: decoupled weight decay p = p * (1 - lr * weight_decay) first (the factor an f64 scalar), then Adam's step on
// the raw gradient: no L2 term.
func.func @adamw(%lr: tensor<f64>, %b1: tensor<f64>, %b2: tensor<f64>, %eps: tensor<f64>, %wd: tensor<f64>, %s: tensor<i64>, %w: tensor<4x3xf32>, %gw: tensor<4x3xf32>, %m: tensor<4x3xf32>, %v: tensor<4x3xf32>) -> (tensor<i64>, tensor<4x3xf32>, tensor<4x3xf32>, tensor<4x3xf32>) {
  %s1, %w1, %m1, %v1 = pg.adamw lr %lr, beta1 %b1, beta2 %b2, eps %eps, weight_decay %wd step %s params(%w) grads(%gw) state(%m, %v) : tensor<4x3xf32> loc("model.py":33:4)
  func.return %s1, %w1, %m1, %v1 : tensor<i64>, tensor<4x3xf32>, tensor<4x3xf32>, tensor<4x3xf32>
}

// CHECK-LABEL: func.func @adamw
// CHECK-NEXT:    %[[I1:.*]] = pg.constant dense<1> : tensor<i64>
// CHECK-NEXT:    %[[STEP:.*]] = pg.add %s, %[[I1]] : tensor<i64>
// CHECK-NEXT:    %[[T:.*]] = pg.cast %[[STEP]] : tensor<i64> -> tensor<f64>
// CHECK-NEXT:    %[[B1T:.*]] = pg.pow %b1, %[[T]] : tensor<f64>
// CHECK-NEXT:    %[[ONE:.*]] = pg.constant dense<1.000000e+00> : tensor<f64>
// CHECK-NEXT:    %[[BC1:.*]] = pg.sub %[[ONE]], %[[B1T]] : tensor<f64>
// CHECK-NEXT:    %[[SIZE64:.*]] = pg.div %lr, %[[BC1]] : tensor<f64>
// CHECK-NEXT:    %[[B2T:.*]] = pg.pow %b2, %[[T]] : tensor<f64>
// CHECK-NEXT:    %[[BC2:.*]] = pg.sub %[[ONE]], %[[B2T]] : tensor<f64>
// CHECK-NEXT:    %[[BC2S64:.*]] = pg.sqrt %[[BC2]] : tensor<f64>
// CHECK-NEXT:    %[[OMB1:.*]] = pg.sub %[[ONE]], %b1 : tensor<f64>
// CHECK-NEXT:    %[[OMB2:.*]] = pg.sub %[[ONE]], %b2 : tensor<f64>
// CHECK-NEXT:    %[[LRWD:.*]] = pg.mul %lr, %wd : tensor<f64>
// CHECK-NEXT:    %[[SHRINK64:.*]] = pg.sub %[[ONE]], %[[LRWD]] : tensor<f64>
// CHECK-NEXT:    %{{.*}} = pg.cast %[[SHRINK64]] : tensor<f64> -> tensor<f32>
// CHECK-NEXT:    %[[SHRINK:.*]] = pg.broadcast_to %{{.*}} : tensor<f32> -> tensor<4x3xf32>
// CHECK-NEXT:    %[[P:.*]] = pg.mul %w, %[[SHRINK]] : tensor<4x3xf32>
// CHECK-NEXT:    %[[GM:.*]] = pg.sub %gw, %m : tensor<4x3xf32>
// CHECK-NEXT:    %{{.*}} = pg.cast %[[OMB1]] : tensor<f64> -> tensor<f32>
// CHECK-NEXT:    %[[W1:.*]] = pg.broadcast_to %{{.*}} : tensor<f32> -> tensor<4x3xf32>
// CHECK-NEXT:    %[[DM:.*]] = pg.mul %[[W1]], %[[GM]] : tensor<4x3xf32>
// CHECK-NEXT:    %[[M:.*]] = pg.add %m, %[[DM]] : tensor<4x3xf32>
// CHECK-NEXT:    %{{.*}} = pg.cast %b2 : tensor<f64> -> tensor<f32>
// CHECK-NEXT:    %[[B2:.*]] = pg.broadcast_to %{{.*}} : tensor<f32> -> tensor<4x3xf32>
// CHECK-NEXT:    %[[VB2:.*]] = pg.mul %v, %[[B2]] : tensor<4x3xf32>
// CHECK-NEXT:    %{{.*}} = pg.cast %[[OMB2]] : tensor<f64> -> tensor<f32>
// CHECK-NEXT:    %[[W2:.*]] = pg.broadcast_to %{{.*}} : tensor<f32> -> tensor<4x3xf32>
// CHECK-NEXT:    %[[WG:.*]] = pg.mul %[[W2]], %gw : tensor<4x3xf32>
// CHECK-NEXT:    %[[WGG:.*]] = pg.mul %[[WG]], %gw : tensor<4x3xf32>
// CHECK-NEXT:    %[[V:.*]] = pg.add %[[VB2]], %[[WGG]] : tensor<4x3xf32>
// CHECK-NEXT:    %{{.*}} = pg.cast %[[SIZE64]] : tensor<f64> -> tensor<f32>
// CHECK-NEXT:    %[[SIZE:.*]] = pg.broadcast_to %{{.*}} : tensor<f32> -> tensor<4x3xf32>
// CHECK-NEXT:    %[[NUM:.*]] = pg.mul %[[SIZE]], %[[M]] : tensor<4x3xf32>
// CHECK-NEXT:    %[[RMS:.*]] = pg.sqrt %[[V]] : tensor<4x3xf32>
// CHECK-NEXT:    %{{.*}} = pg.cast %[[BC2S64]] : tensor<f64> -> tensor<f32>
// CHECK-NEXT:    %[[BC2S:.*]] = pg.broadcast_to %{{.*}} : tensor<f32> -> tensor<4x3xf32>
// CHECK-NEXT:    %[[VHAT:.*]] = pg.div %[[RMS]], %[[BC2S]] : tensor<4x3xf32>
// CHECK-NEXT:    %{{.*}} = pg.cast %eps : tensor<f64> -> tensor<f32>
// CHECK-NEXT:    %[[EPS:.*]] = pg.broadcast_to %{{.*}} : tensor<f32> -> tensor<4x3xf32>
// CHECK-NEXT:    %[[DEN:.*]] = pg.add %[[VHAT]], %[[EPS]] : tensor<4x3xf32>
// CHECK-NEXT:    %[[UPD:.*]] = pg.div %[[NUM]], %[[DEN]] : tensor<4x3xf32>
// CHECK-NEXT:    %[[W:.*]] = pg.sub %[[P]], %[[UPD]] : tensor<4x3xf32>
// CHECK-NEXT:    func.return %[[STEP]], %[[W]], %[[M]], %[[V]] : tensor<i64>, tensor<4x3xf32>, tensor<4x3xf32>, tensor<4x3xf32>

// LOC-LABEL: func.func @adamw
// LOC-COUNT-42: loc("model.py":33:4)
// LOC-NEXT:     func.return

// Several params; the decay factor is computed and cast once. A weight decay that is a constant 0 drops the decay.
func.func @group(%lr: tensor<f64>, %b1: tensor<f64>, %b2: tensor<f64>, %eps: tensor<f64>, %wd: tensor<f64>, %s: tensor<i64>, %w: tensor<4x3xf32>, %b: tensor<3xf32>, %gw: tensor<4x3xf32>, %gb: tensor<3xf32>, %mw: tensor<4x3xf32>, %mb: tensor<3xf32>, %vw: tensor<4x3xf32>, %vb: tensor<3xf32>) -> (tensor<i64>, tensor<4x3xf32>, tensor<3xf32>, tensor<4x3xf32>, tensor<3xf32>, tensor<4x3xf32>, tensor<3xf32>) {
  %s1, %new:6 = pg.adamw lr %lr, beta1 %b1, beta2 %b2, eps %eps, weight_decay %wd step %s params(%w, %b) grads(%gw, %gb) state(%mw, %mb, %vw, %vb) : tensor<4x3xf32>, tensor<3xf32>
  func.return %s1, %new#0, %new#1, %new#2, %new#3, %new#4, %new#5 : tensor<i64>, tensor<4x3xf32>, tensor<3xf32>, tensor<4x3xf32>, tensor<3xf32>, tensor<4x3xf32>, tensor<3xf32>
}

// CHECK-LABEL: func.func @group
// CHECK:         %[[STEP:.*]] = pg.add %s, %{{.*}} : tensor<i64>
// CHECK:         %[[SHRINK32:.*]] = pg.cast %{{.*}} : tensor<f64> -> tensor<f32>
// CHECK-NEXT:    %[[SW:.*]] = pg.broadcast_to %[[SHRINK32]] : tensor<f32> -> tensor<4x3xf32>
// CHECK-NEXT:    %[[PW:.*]] = pg.mul %w, %[[SW]] : tensor<4x3xf32>
// CHECK:         %[[W:.*]] = pg.sub %[[PW]], %{{.*}} : tensor<4x3xf32>
// CHECK-NEXT:    %[[SB:.*]] = pg.broadcast_to %[[SHRINK32]] : tensor<f32> -> tensor<3xf32>
// CHECK-NEXT:    %[[PB:.*]] = pg.mul %b, %[[SB]] : tensor<3xf32>
// CHECK-NOT:     pg.cast
// CHECK:         %[[MB:.*]] = pg.add %mb, %{{.*}} : tensor<3xf32>
// CHECK:         %[[VB:.*]] = pg.add %{{.*}} : tensor<3xf32>
// CHECK:         %[[B:.*]] = pg.sub %[[PB]], %{{.*}} : tensor<3xf32>
// CHECK-NEXT:    func.return %[[STEP]], %[[W]], %[[B]], %{{.*}}, %[[MB]], %{{.*}}, %[[VB]]

func.func @no_weight_decay(%lr: tensor<f64>, %b1: tensor<f64>, %b2: tensor<f64>, %eps: tensor<f64>, %s: tensor<i64>, %w: tensor<3xf32>, %gw: tensor<3xf32>, %m: tensor<3xf32>, %v: tensor<3xf32>) -> (tensor<i64>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>) {
  %wd = pg.constant dense<0.0> : tensor<f64>
  %s1, %w1, %m1, %v1 = pg.adamw lr %lr, beta1 %b1, beta2 %b2, eps %eps, weight_decay %wd step %s params(%w) grads(%gw) state(%m, %v) : tensor<3xf32>
  func.return %s1, %w1, %m1, %v1 : tensor<i64>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>
}

// CHECK-LABEL: func.func @no_weight_decay
// CHECK-NEXT:    %wd = pg.constant
// CHECK-NOT:     %wd
// CHECK:         pg.sub %w, %{{.*}} : tensor<3xf32>
// CHECK-NEXT:    func.return
