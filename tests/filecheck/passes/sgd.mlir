// RUN: pgc-opt %s -p pg-sgd | filecheck %s
// RUN: pgc-opt %s -p pg-sgd --print-debuginfo | filecheck %s --check-prefix=LOC

// Plain SGD: p - lr * (g + weight_decay * p); the new step count is step + 1.
func.func @plain(%lr: tensor<f64>, %mom: tensor<f64>, %damp: tensor<f64>, %wd: tensor<f64>, %s: tensor<i64>, %w: tensor<4x3xf32>, %gw: tensor<4x3xf32>) -> (tensor<i64>, tensor<4x3xf32>) {
  %s1, %w1 = pg.sgd lr %lr, momentum %mom, dampening %damp, weight_decay %wd step %s params(%w) grads(%gw) state() : tensor<4x3xf32> loc("model.py":7:4)
  func.return %s1, %w1 : tensor<i64>, tensor<4x3xf32>
}

// CHECK-LABEL: func.func @plain
// CHECK-NEXT:    %[[ONE:.*]] = pg.constant dense<1> : tensor<i64>
// CHECK-NEXT:    %[[STEP:.*]] = pg.add %s, %[[ONE]] : tensor<i64>
// CHECK-NEXT:    %[[WD32:.*]] = pg.cast %wd : tensor<f64> -> tensor<f32>
// CHECK-NEXT:    %[[WD:.*]] = pg.broadcast_to %[[WD32]] : tensor<f32> -> tensor<4x3xf32>
// CHECK-NEXT:    %[[WDP:.*]] = pg.mul %[[WD]], %w : tensor<4x3xf32>
// CHECK-NEXT:    %[[G:.*]] = pg.add %gw, %[[WDP]] : tensor<4x3xf32>
// CHECK-NEXT:    %[[LR32:.*]] = pg.cast %lr : tensor<f64> -> tensor<f32>
// CHECK-NEXT:    %[[LR:.*]] = pg.broadcast_to %[[LR32]] : tensor<f32> -> tensor<4x3xf32>
// CHECK-NEXT:    %[[DELTA:.*]] = pg.mul %[[LR]], %[[G]] : tensor<4x3xf32>
// CHECK-NEXT:    %[[W:.*]] = pg.sub %w, %[[DELTA]] : tensor<4x3xf32>
// CHECK-NEXT:    func.return %[[STEP]], %[[W]] : tensor<i64>, tensor<4x3xf32>

// LOC-LABEL: func.func @plain
// LOC-COUNT-10: loc("model.py":7:4)
// LOC-NEXT:     func.return

// A weight decay that is a constant 0 is left out, as torch skips it.
func.func @no_weight_decay(%lr: tensor<f64>, %mom: tensor<f64>, %damp: tensor<f64>, %s: tensor<i64>, %w: tensor<3xf64>, %gw: tensor<3xf64>) -> (tensor<i64>, tensor<3xf64>) {
  %wd = pg.constant dense<0.0> : tensor<f64>
  %s1, %w1 = pg.sgd lr %lr, momentum %mom, dampening %damp, weight_decay %wd step %s params(%w) grads(%gw) state() : tensor<3xf64>
  func.return %s1, %w1 : tensor<i64>, tensor<3xf64>
}

// CHECK-LABEL: func.func @no_weight_decay
// CHECK:         %[[STEP:.*]] = pg.add %s, %{{.*}} : tensor<i64>
// CHECK-NEXT:    %[[LR:.*]] = pg.broadcast_to %lr : tensor<f64> -> tensor<3xf64>
// CHECK-NEXT:    %[[DELTA:.*]] = pg.mul %[[LR]], %gw : tensor<3xf64>
// CHECK-NEXT:    %[[W:.*]] = pg.sub %w, %[[DELTA]] : tensor<3xf64>
// CHECK-NEXT:    func.return %[[STEP]], %[[W]] : tensor<i64>, tensor<3xf64>

// Momentum: buf = g on the first step (step == 0), else momentum * buf + (1 - dampening) * g; p - lr * buf.
func.func @momentum(%lr: tensor<f64>, %mom: tensor<f64>, %damp: tensor<f64>, %s: tensor<i64>, %w: tensor<3xf32>, %gw: tensor<3xf32>, %buf: tensor<3xf32>) -> (tensor<i64>, tensor<3xf32>, tensor<3xf32>) {
  %wd = pg.constant dense<0.0> : tensor<f64>
  %s1, %w1, %buf1 = pg.sgd lr %lr, momentum %mom, dampening %damp, weight_decay %wd step %s params(%w) grads(%gw) state(%buf) {momentum} : tensor<3xf32>
  func.return %s1, %w1, %buf1 : tensor<i64>, tensor<3xf32>, tensor<3xf32>
}

// CHECK-LABEL: func.func @momentum
// CHECK:         %[[STEP:.*]] = pg.add %s, %{{.*}} : tensor<i64>
// CHECK-NEXT:    %[[ZERO:.*]] = pg.constant dense<0> : tensor<i64>
// CHECK-NEXT:    %[[FIRST:.*]] = pg.cmp "eq", %s, %[[ZERO]] : tensor<i64> -> tensor<i1>
// CHECK-NEXT:    %[[C1:.*]] = pg.constant dense<1.000000e+00> : tensor<f64>
// CHECK-NEXT:    %[[KEEP64:.*]] = pg.sub %[[C1]], %damp : tensor<f64>
// CHECK-NEXT:    %[[MOM32:.*]] = pg.cast %mom : tensor<f64> -> tensor<f32>
// CHECK-NEXT:    %[[MOM:.*]] = pg.broadcast_to %[[MOM32]] : tensor<f32> -> tensor<3xf32>
// CHECK-NEXT:    %[[OLD:.*]] = pg.mul %[[MOM]], %buf : tensor<3xf32>
// CHECK-NEXT:    %[[KEEP32:.*]] = pg.cast %[[KEEP64]] : tensor<f64> -> tensor<f32>
// CHECK-NEXT:    %[[KEEP:.*]] = pg.broadcast_to %[[KEEP32]] : tensor<f32> -> tensor<3xf32>
// CHECK-NEXT:    %[[NEW:.*]] = pg.mul %[[KEEP]], %gw : tensor<3xf32>
// CHECK-NEXT:    %[[AVG:.*]] = pg.add %[[OLD]], %[[NEW]] : tensor<3xf32>
// CHECK-NEXT:    %[[MASK:.*]] = pg.broadcast_to %[[FIRST]] : tensor<i1> -> tensor<3xi1>
// CHECK-NEXT:    %[[BUF:.*]] = pg.select %[[MASK]], %gw, %[[AVG]] : tensor<3xi1>, tensor<3xf32>
// CHECK-NEXT:    %[[LR32:.*]] = pg.cast %lr : tensor<f64> -> tensor<f32>
// CHECK-NEXT:    %[[LR:.*]] = pg.broadcast_to %[[LR32]] : tensor<f32> -> tensor<3xf32>
// CHECK-NEXT:    %[[DELTA:.*]] = pg.mul %[[LR]], %[[BUF]] : tensor<3xf32>
// CHECK-NEXT:    %[[W:.*]] = pg.sub %w, %[[DELTA]] : tensor<3xf32>
// CHECK-NEXT:    func.return %[[STEP]], %[[W]], %[[BUF]] : tensor<i64>, tensor<3xf32>, tensor<3xf32>

// Nesterov: the step direction is g + momentum * buf (the splat momentum is reused).
func.func @nesterov(%lr: tensor<f64>, %mom: tensor<f64>, %damp: tensor<f64>, %s: tensor<i64>, %w: tensor<3xf32>, %gw: tensor<3xf32>, %buf: tensor<3xf32>) -> (tensor<i64>, tensor<3xf32>, tensor<3xf32>) {
  %wd = pg.constant dense<0.0> : tensor<f64>
  %s1, %w1, %buf1 = pg.sgd lr %lr, momentum %mom, dampening %damp, weight_decay %wd step %s params(%w) grads(%gw) state(%buf) {momentum, nesterov} : tensor<3xf32>
  func.return %s1, %w1, %buf1 : tensor<i64>, tensor<3xf32>, tensor<3xf32>
}

// CHECK-LABEL: func.func @nesterov
// CHECK:         %[[MOM:.*]] = pg.broadcast_to %{{.*}} : tensor<f32> -> tensor<3xf32>
// CHECK:         %[[BUF:.*]] = pg.select %{{.*}}, %gw, %{{.*}} : tensor<3xi1>, tensor<3xf32>
// CHECK-NEXT:    %[[LOOK:.*]] = pg.mul %[[MOM]], %[[BUF]] : tensor<3xf32>
// CHECK-NEXT:    %[[DIR:.*]] = pg.add %gw, %[[LOOK]] : tensor<3xf32>
// CHECK-NEXT:    %{{.*}} = pg.cast %lr : tensor<f64> -> tensor<f32>
// CHECK-NEXT:    %[[LR:.*]] = pg.broadcast_to %{{.*}} : tensor<f32> -> tensor<3xf32>
// CHECK-NEXT:    %[[DELTA:.*]] = pg.mul %[[LR]], %[[DIR]] : tensor<3xf32>
// CHECK-NEXT:    %[[W:.*]] = pg.sub %w, %[[DELTA]] : tensor<3xf32>
// CHECK-NEXT:    func.return %{{.*}}, %[[W]], %[[BUF]] : tensor<i64>, tensor<3xf32>, tensor<3xf32>

// Several params in one group, with weight decay and momentum: the f64 scalars are computed and cast once, broadcast
// once per parameter shape; results are the step, then the params, then the buffers, in operand order.
func.func @group(%lr: tensor<f64>, %mom: tensor<f64>, %damp: tensor<f64>, %wd: tensor<f64>, %s: tensor<i64>, %w: tensor<4x3xf32>, %b: tensor<3xf32>, %gw: tensor<4x3xf32>, %gb: tensor<3xf32>, %mw: tensor<4x3xf32>, %mb: tensor<3xf32>) -> (tensor<i64>, tensor<4x3xf32>, tensor<3xf32>, tensor<4x3xf32>, tensor<3xf32>) {
  %s1, %new:4 = pg.sgd lr %lr, momentum %mom, dampening %damp, weight_decay %wd step %s params(%w, %b) grads(%gw, %gb) state(%mw, %mb) {momentum} : tensor<4x3xf32>, tensor<3xf32> loc("train.py":31:8)
  func.return %s1, %new#0, %new#1, %new#2, %new#3 : tensor<i64>, tensor<4x3xf32>, tensor<3xf32>, tensor<4x3xf32>, tensor<3xf32>
}

// CHECK-LABEL: func.func @group
// CHECK:         %[[STEP:.*]] = pg.add %s, %{{.*}} : tensor<i64>
// CHECK:         %[[WD32:.*]] = pg.cast %wd : tensor<f64> -> tensor<f32>
// CHECK-NEXT:    %[[WDW:.*]] = pg.broadcast_to %[[WD32]] : tensor<f32> -> tensor<4x3xf32>
// CHECK-NEXT:    %{{.*}} = pg.mul %[[WDW]], %w : tensor<4x3xf32>
// CHECK:         %[[BUFW:.*]] = pg.select %{{.*}} : tensor<4x3xi1>, tensor<4x3xf32>
// CHECK:         %[[W:.*]] = pg.sub %w, %{{.*}} : tensor<4x3xf32>
// CHECK-NOT:     pg.cast %wd
// CHECK:         %[[WDB:.*]] = pg.broadcast_to %[[WD32]] : tensor<f32> -> tensor<3xf32>
// CHECK-NEXT:    %{{.*}} = pg.mul %[[WDB]], %b : tensor<3xf32>
// CHECK:         %[[BUFB:.*]] = pg.select %{{.*}} : tensor<3xi1>, tensor<3xf32>
// CHECK-NOT:     pg.cast
// CHECK:         %[[B:.*]] = pg.sub %b, %{{.*}} : tensor<3xf32>
// CHECK-NEXT:    func.return %[[STEP]], %[[W]], %[[B]], %[[BUFW]], %[[BUFB]]

// The optimizer op's location is on every op the pass creates.
// LOC-LABEL: func.func @group{{.*}} {
// LOC-NOT:   loc(unknown)
// LOC:       pg.select {{.*}} loc("train.py":31:8)
// LOC-NOT:   loc(unknown)
// LOC:       func.return
