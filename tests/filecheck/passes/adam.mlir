// RUN: pgc-opt %s -p pg-adam | filecheck %s
// RUN: pgc-opt %s -p pg-adam --print-debuginfo | filecheck %s --check-prefix=LOC

// Adam with L2 weight decay: t = step + 1; the bias corrections and the step size are f64 scalars, computed once;
// m = m + (1 - beta1) * (g - m); v = v * beta2 + (1 - beta2) * g * g;
// p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps).
func.func @adam(%lr: tensor<f64>, %b1: tensor<f64>, %b2: tensor<f64>, %eps: tensor<f64>, %wd: tensor<f64>, %s: tensor<i64>, %w: tensor<4x3xf32>, %gw: tensor<4x3xf32>, %m: tensor<4x3xf32>, %v: tensor<4x3xf32>) -> (tensor<i64>, tensor<4x3xf32>, tensor<4x3xf32>, tensor<4x3xf32>) {
  %s1, %w1, %m1, %v1 = pg.adam lr %lr, beta1 %b1, beta2 %b2, eps %eps, weight_decay %wd step %s params(%w) grads(%gw) state(%m, %v) : tensor<4x3xf32> loc("model.py":20:4)
  func.return %s1, %w1, %m1, %v1 : tensor<i64>, tensor<4x3xf32>, tensor<4x3xf32>, tensor<4x3xf32>
}

// CHECK-LABEL: func.func @adam
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
// CHECK-NEXT:    %[[WD32:.*]] = pg.cast %wd : tensor<f64> -> tensor<f32>
// CHECK-NEXT:    %[[WD:.*]] = pg.broadcast_to %[[WD32]] : tensor<f32> -> tensor<4x3xf32>
// CHECK-NEXT:    %[[WDP:.*]] = pg.mul %[[WD]], %w : tensor<4x3xf32>
// CHECK-NEXT:    %[[G:.*]] = pg.add %gw, %[[WDP]] : tensor<4x3xf32>
// CHECK-NEXT:    %[[GM:.*]] = pg.sub %[[G]], %m : tensor<4x3xf32>
// CHECK-NEXT:    %{{.*}} = pg.cast %[[OMB1]] : tensor<f64> -> tensor<f32>
// CHECK-NEXT:    %[[W1:.*]] = pg.broadcast_to %{{.*}} : tensor<f32> -> tensor<4x3xf32>
// CHECK-NEXT:    %[[DM:.*]] = pg.mul %[[W1]], %[[GM]] : tensor<4x3xf32>
// CHECK-NEXT:    %[[M:.*]] = pg.add %m, %[[DM]] : tensor<4x3xf32>
// CHECK-NEXT:    %{{.*}} = pg.cast %b2 : tensor<f64> -> tensor<f32>
// CHECK-NEXT:    %[[B2:.*]] = pg.broadcast_to %{{.*}} : tensor<f32> -> tensor<4x3xf32>
// CHECK-NEXT:    %[[VB2:.*]] = pg.mul %v, %[[B2]] : tensor<4x3xf32>
// CHECK-NEXT:    %{{.*}} = pg.cast %[[OMB2]] : tensor<f64> -> tensor<f32>
// CHECK-NEXT:    %[[W2:.*]] = pg.broadcast_to %{{.*}} : tensor<f32> -> tensor<4x3xf32>
// CHECK-NEXT:    %[[WG:.*]] = pg.mul %[[W2]], %[[G]] : tensor<4x3xf32>
// CHECK-NEXT:    %[[WGG:.*]] = pg.mul %[[WG]], %[[G]] : tensor<4x3xf32>
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
// CHECK-NEXT:    %[[W:.*]] = pg.sub %w, %[[UPD]] : tensor<4x3xf32>
// CHECK-NEXT:    func.return %[[STEP]], %[[W]], %[[M]], %[[V]] : tensor<i64>, tensor<4x3xf32>, tensor<4x3xf32>, tensor<4x3xf32>

// LOC-LABEL: func.func @adam
// LOC-COUNT-41: loc("model.py":20:4)
// LOC-NEXT:     func.return

// Two params of different types in one group, weight decay a constant 0 (left out): the f64 scalars meet the 0-d
// f64 parameter as they are, and are cast and broadcast for the f32 one. State is all m's, then all v's.
func.func @group(%lr: tensor<f64>, %b1: tensor<f64>, %b2: tensor<f64>, %eps: tensor<f64>, %s: tensor<i64>, %w: tensor<3xf32>, %c: tensor<f64>, %gw: tensor<3xf32>, %gc: tensor<f64>, %mw: tensor<3xf32>, %mc: tensor<f64>, %vw: tensor<3xf32>, %vc: tensor<f64>) -> (tensor<i64>, tensor<3xf32>, tensor<f64>, tensor<3xf32>, tensor<f64>, tensor<3xf32>, tensor<f64>) {
  %wd = pg.constant dense<0.0> : tensor<f64>
  %s1, %new:6 = pg.adam lr %lr, beta1 %b1, beta2 %b2, eps %eps, weight_decay %wd step %s params(%w, %c) grads(%gw, %gc) state(%mw, %mc, %vw, %vc) : tensor<3xf32>, tensor<f64> loc("train.py":5:2)
  func.return %s1, %new#0, %new#1, %new#2, %new#3, %new#4, %new#5 : tensor<i64>, tensor<3xf32>, tensor<f64>, tensor<3xf32>, tensor<f64>, tensor<3xf32>, tensor<f64>
}

// CHECK-LABEL: func.func @group
// CHECK:         %[[STEP:.*]] = pg.add %s, %{{.*}} : tensor<i64>
// CHECK:         %[[SIZE64:.*]] = pg.div %lr, %{{.*}} : tensor<f64>
// CHECK:         %[[OMB1:.*]] = pg.sub %{{.*}}, %b1 : tensor<f64>
// CHECK-NOT:     %wd
// CHECK:         %[[GM:.*]] = pg.sub %gw, %mw : tensor<3xf32>
// CHECK:         %[[MW:.*]] = pg.add %mw, %{{.*}} : tensor<3xf32>
// CHECK:         %[[VW:.*]] = pg.add %{{.*}} : tensor<3xf32>
// CHECK:         %[[W:.*]] = pg.sub %w, %{{.*}} : tensor<3xf32>
// CHECK-NEXT:    %[[GMC:.*]] = pg.sub %gc, %mc : tensor<f64>
// CHECK-NEXT:    %[[DMC:.*]] = pg.mul %[[OMB1]], %[[GMC]] : tensor<f64>
// CHECK-NEXT:    %[[MC:.*]] = pg.add %mc, %[[DMC]] : tensor<f64>
// CHECK-NEXT:    %[[VB2:.*]] = pg.mul %vc, %b2 : tensor<f64>
// CHECK-NEXT:    %[[WG:.*]] = pg.mul %{{.*}}, %gc : tensor<f64>
// CHECK-NEXT:    %[[WGG:.*]] = pg.mul %[[WG]], %gc : tensor<f64>
// CHECK-NEXT:    %[[VC:.*]] = pg.add %[[VB2]], %[[WGG]] : tensor<f64>
// CHECK-NEXT:    %[[NUM:.*]] = pg.mul %[[SIZE64]], %[[MC]] : tensor<f64>
// CHECK-NEXT:    %[[RMS:.*]] = pg.sqrt %[[VC]] : tensor<f64>
// CHECK-NEXT:    %[[VHAT:.*]] = pg.div %[[RMS]], %{{.*}} : tensor<f64>
// CHECK-NEXT:    %[[DEN:.*]] = pg.add %[[VHAT]], %eps : tensor<f64>
// CHECK-NEXT:    %[[UPD:.*]] = pg.div %[[NUM]], %[[DEN]] : tensor<f64>
// CHECK-NEXT:    %[[C:.*]] = pg.sub %c, %[[UPD]] : tensor<f64>
// CHECK-NEXT:    func.return %[[STEP]], %[[W]], %[[C]], %[[MW]], %[[MC]], %[[VW]], %[[VC]]

// LOC-LABEL: func.func @group{{.*}} {
// LOC-NEXT:    pg.constant dense<0.000000e+00> : tensor<f64> loc(unknown)
// LOC-NOT:     loc(unknown)
// LOC:         func.return
