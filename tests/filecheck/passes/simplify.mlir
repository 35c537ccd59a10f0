// The simplify stage: pg-canonicalize, then xDSL's cse and dce.
// RUN: pgc-opt %s -p pg-canonicalize,cse,dce | filecheck %s
// Locations survive: a rewrite that creates an op gives it the location of the op it replaces.
// RUN: pgc-opt %s -p pg-canonicalize,cse,dce --print-debuginfo | filecheck %s --check-prefix=LOC

// Two parameters initialised identically stay two arguments: cse merges equal ops (the two 0.5 constants, and
// the two products of %a), never function arguments, so %w1 and %w2 keep separate updates.
func.func @two_params(%w1: tensor<3xf32>, %w2: tensor<3xf32>, %g: tensor<3xf32>) -> (tensor<3xf32>, tensor<3xf32>, tensor<3xf32>) {
  %c1 = pg.constant dense<5.000000e-01> : tensor<3xf32> loc("train.py":3:0)
  %c2 = pg.constant dense<5.000000e-01> : tensor<3xf32> loc("train.py":4:0)
  %d1 = pg.mul %c1, %g : tensor<3xf32> loc("train.py":5:0)
  %d2 = pg.mul %c2, %g : tensor<3xf32> loc("train.py":6:0)
  %n1 = pg.sub %w1, %d1 : tensor<3xf32> loc("train.py":7:0)
  %n2 = pg.sub %w2, %d2 : tensor<3xf32> loc("train.py":8:0)
  %dead = pg.exp %g : tensor<3xf32> loc("train.py":9:0)
  func.return %n1, %n2, %d2 : tensor<3xf32>, tensor<3xf32>, tensor<3xf32>
}

// CHECK-LABEL: func.func @two_params(%w1: tensor<3xf32>, %w2: tensor<3xf32>, %g: tensor<3xf32>)
// CHECK-NEXT:    %[[C:.*]] = pg.constant dense<5.000000e-01> : tensor<3xf32>
// CHECK-NEXT:    %[[D:.*]] = pg.mul %[[C]], %g : tensor<3xf32>
// CHECK-NEXT:    %[[N1:.*]] = pg.sub %w1, %[[D]] : tensor<3xf32>
// CHECK-NEXT:    %[[N2:.*]] = pg.sub %w2, %[[D]] : tensor<3xf32>
// CHECK-NEXT:    func.return %[[N1]], %[[N2]], %[[D]]

// LOC-LABEL: func.func @two_params
// LOC-NEXT:    pg.constant {{.*}} loc("train.py":3:0)
// LOC-NEXT:    pg.mul {{.*}} loc("train.py":5:0)
// LOC-NEXT:    pg.sub %w1, {{.*}} loc("train.py":7:0)
// LOC-NEXT:    pg.sub %w2, {{.*}} loc("train.py":8:0)

// Ops made by rewrites take the replaced op's location: the composed permute the outer one's, folded constants
// the folded op's.
func.func @new_ops(%x: tensor<2x3xf32>) -> (tensor<2x3xf32>, tensor<3x2xf32>, tensor<2x3xf32>) {
  %p = pg.permute %x perm = [1, 0] : tensor<2x3xf32> -> tensor<3x2xf32> loc("model.py":10:0)
  %q = pg.permute %p perm = [1, 0] : tensor<3x2xf32> -> tensor<2x3xf32> loc("model.py":11:0)
  %r = pg.permute %q perm = [1, 0] : tensor<2x3xf32> -> tensor<3x2xf32> loc("model.py":12:0)
  %two = pg.constant dense<2.0> : tensor<f32> loc("model.py":13:0)
  %b = pg.broadcast_to %two : tensor<f32> -> tensor<2x3xf32> loc("model.py":14:0)
  %e = pg.exp %b : tensor<2x3xf32> loc("model.py":15:0)
  %s = pg.add %e, %x : tensor<2x3xf32> loc("model.py":16:0)
  func.return %q, %r, %s : tensor<2x3xf32>, tensor<3x2xf32>, tensor<2x3xf32>
}

// CHECK-LABEL: func.func @new_ops
// CHECK-NEXT:    %[[R:.*]] = pg.permute %x perm = [1, 0] : tensor<2x3xf32> -> tensor<3x2xf32>
// CHECK-NEXT:    %[[E:.*]] = pg.constant dense<7.38905573> : tensor<2x3xf32>
// CHECK-NEXT:    %[[S:.*]] = pg.add %[[E]], %x : tensor<2x3xf32>
// CHECK-NEXT:    func.return %x, %[[R]], %[[S]]

// LOC-LABEL: func.func @new_ops
// LOC-NEXT:    pg.permute %x perm = [1, 0] {{.*}} loc("model.py":12:0)
// LOC-NEXT:    pg.constant dense<7.38905573> {{.*}} loc("model.py":15:0)
// LOC-NEXT:    pg.add {{.*}} loc("model.py":16:0)
