// pg-autodiff: what each vjp rule emits, fan-out, unbroadcast, zero gradients, pruning, locations, and rejections.
// Most functions pass a seed adjoint %dy, so the checked ops are exactly the rule's.
// RUN: pgc-opt %s -p pg-autodiff --split-input-file --verify-diagnostics | filecheck %s
// RUN: pgc-opt %s -p pg-autodiff --split-input-file --verify-diagnostics --print-debuginfo | filecheck %s --check-prefix=LOC
// Without --verify-diagnostics the first rejection is an error on stderr and a nonzero exit:
// RUN: not pgc-opt %s -p pg-autodiff --split-input-file 2>&1 | filecheck %s --check-prefix=EXIT


// ---- elementwise unary: y = f(x), dx = dy * f'(x)

// CHECK-LABEL: func.func @neg
// CHECK-NEXT:    %y = pg.neg %x
// CHECK-NEXT:    %dx = pg.neg %dy : tensor<3xf32>
// CHECK-NEXT:    func.return %dx
func.func @neg(%x: tensor<3xf32>, %dy: tensor<3xf32>) -> tensor<3xf32> {
  %y = pg.neg %x : tensor<3xf32>
  %dx = pg.grad %y seed %dy wrt %x : tensor<3xf32> wrt tensor<3xf32>
  func.return %dx : tensor<3xf32>
}

// CHECK-LABEL: func.func @exp
// CHECK-NEXT:    %y = pg.exp %x
// CHECK-NEXT:    %dx = pg.mul %dy, %y : tensor<3xf32>
// CHECK-NEXT:    func.return %dx
func.func @exp(%x: tensor<3xf32>, %dy: tensor<3xf32>) -> tensor<3xf32> {
  %y = pg.exp %x : tensor<3xf32>
  %dx = pg.grad %y seed %dy wrt %x : tensor<3xf32> wrt tensor<3xf32>
  func.return %dx : tensor<3xf32>
}

// CHECK-LABEL: func.func @log
// CHECK-NEXT:    %y = pg.log %x
// CHECK-NEXT:    %dx = pg.div %dy, %x : tensor<3xf32>
// CHECK-NEXT:    func.return %dx
func.func @log(%x: tensor<3xf32>, %dy: tensor<3xf32>) -> tensor<3xf32> {
  %y = pg.log %x : tensor<3xf32>
  %dx = pg.grad %y seed %dy wrt %x : tensor<3xf32> wrt tensor<3xf32>
  func.return %dx : tensor<3xf32>
}

// dx = dy / (2 sqrt(x))
// CHECK-LABEL: func.func @sqrt
// CHECK-NEXT:    %y = pg.sqrt %x
// CHECK-NEXT:    %[[TWO_Y:.*]] = pg.add %y, %y : tensor<3xf32>
// CHECK-NEXT:    %dx = pg.div %dy, %[[TWO_Y]] : tensor<3xf32>
// CHECK-NEXT:    func.return %dx
func.func @sqrt(%x: tensor<3xf32>, %dy: tensor<3xf32>) -> tensor<3xf32> {
  %y = pg.sqrt %x : tensor<3xf32>
  %dx = pg.grad %y seed %dy wrt %x : tensor<3xf32> wrt tensor<3xf32>
  func.return %dx : tensor<3xf32>
}

// dx = dy * -1/2 y^3
// CHECK-LABEL: func.func @rsqrt
// CHECK-NEXT:    %y = pg.rsqrt %x
// CHECK-NEXT:    %[[C:.*]] = pg.constant dense<-5.000000e-01> : tensor<f32>
// CHECK-NEXT:    %[[H:.*]] = pg.broadcast_to %[[C]] : tensor<f32> -> tensor<3xf32>
// CHECK-NEXT:    %[[Y2:.*]] = pg.mul %y, %y
// CHECK-NEXT:    %[[Y3:.*]] = pg.mul %y, %[[Y2]]
// CHECK-NEXT:    %[[D:.*]] = pg.mul %[[H]], %[[Y3]]
// CHECK-NEXT:    %dx = pg.mul %dy, %[[D]]
func.func @rsqrt(%x: tensor<3xf32>, %dy: tensor<3xf32>) -> tensor<3xf32> {
  %y = pg.rsqrt %x : tensor<3xf32>
  %dx = pg.grad %y seed %dy wrt %x : tensor<3xf32> wrt tensor<3xf32>
  func.return %dx : tensor<3xf32>
}

// CHECK-LABEL: func.func @sin
// CHECK-NEXT:    %y = pg.sin %x
// CHECK-NEXT:    %[[COS:.*]] = pg.cos %x
// CHECK-NEXT:    %dx = pg.mul %dy, %[[COS]]
func.func @sin(%x: tensor<3xf32>, %dy: tensor<3xf32>) -> tensor<3xf32> {
  %y = pg.sin %x : tensor<3xf32>
  %dx = pg.grad %y seed %dy wrt %x : tensor<3xf32> wrt tensor<3xf32>
  func.return %dx : tensor<3xf32>
}

// CHECK-LABEL: func.func @cos
// CHECK-NEXT:    %y = pg.cos %x
// CHECK-NEXT:    %[[SIN:.*]] = pg.sin %x
// CHECK-NEXT:    %[[P:.*]] = pg.mul %dy, %[[SIN]]
// CHECK-NEXT:    %dx = pg.neg %[[P]]
func.func @cos(%x: tensor<3xf32>, %dy: tensor<3xf32>) -> tensor<3xf32> {
  %y = pg.cos %x : tensor<3xf32>
  %dx = pg.grad %y seed %dy wrt %x : tensor<3xf32> wrt tensor<3xf32>
  func.return %dx : tensor<3xf32>
}

// dx = dy (1 - y^2)
// CHECK-LABEL: func.func @tanh
// CHECK-NEXT:    %y = pg.tanh %x
// CHECK-NEXT:    %[[C:.*]] = pg.constant dense<1.000000e+00> : tensor<f32>
// CHECK-NEXT:    %[[ONE:.*]] = pg.broadcast_to %[[C]]
// CHECK-NEXT:    %[[Y2:.*]] = pg.mul %y, %y
// CHECK-NEXT:    %[[D:.*]] = pg.sub %[[ONE]], %[[Y2]]
// CHECK-NEXT:    %dx = pg.mul %dy, %[[D]]
func.func @tanh(%x: tensor<3xf32>, %dy: tensor<3xf32>) -> tensor<3xf32> {
  %y = pg.tanh %x : tensor<3xf32>
  %dx = pg.grad %y seed %dy wrt %x : tensor<3xf32> wrt tensor<3xf32>
  func.return %dx : tensor<3xf32>
}

// dx = dy y (1 - y)
// CHECK-LABEL: func.func @sigmoid
// CHECK-NEXT:    %y = pg.sigmoid %x
// CHECK-NEXT:    %[[C:.*]] = pg.constant dense<1.000000e+00> : tensor<f32>
// CHECK-NEXT:    %[[ONE:.*]] = pg.broadcast_to %[[C]]
// CHECK-NEXT:    %[[D1:.*]] = pg.sub %[[ONE]], %y
// CHECK-NEXT:    %[[D:.*]] = pg.mul %y, %[[D1]]
// CHECK-NEXT:    %dx = pg.mul %dy, %[[D]]
func.func @sigmoid(%x: tensor<3xf32>, %dy: tensor<3xf32>) -> tensor<3xf32> {
  %y = pg.sigmoid %x : tensor<3xf32>
  %dx = pg.grad %y seed %dy wrt %x : tensor<3xf32> wrt tensor<3xf32>
  func.return %dx : tensor<3xf32>
}

// dx = where(x > 0, dy, 0)
// CHECK-LABEL: func.func @relu
// CHECK-NEXT:    %y = pg.relu %x
// CHECK-NEXT:    %[[C:.*]] = pg.constant dense<0.000000e+00> : tensor<f32>
// CHECK-NEXT:    %[[ZERO:.*]] = pg.broadcast_to %[[C]]
// CHECK-NEXT:    %[[POS:.*]] = pg.cmp "gt", %x, %[[ZERO]]
// CHECK-NEXT:    %dx = pg.select %[[POS]], %dy, %[[ZERO]]
func.func @relu(%x: tensor<3xf32>, %dy: tensor<3xf32>) -> tensor<3xf32> {
  %y = pg.relu %x : tensor<3xf32>
  %dx = pg.grad %y seed %dy wrt %x : tensor<3xf32> wrt tensor<3xf32>
  func.return %dx : tensor<3xf32>
}

// dx = sign(x) dy with sign(0) = 0
// CHECK-LABEL: func.func @abs
// CHECK:         %[[POS:.*]] = pg.cmp "gt", %x, %[[ZERO:.*]] :
// CHECK-NEXT:    %[[NEG:.*]] = pg.cmp "lt", %x, %[[ZERO]]
// CHECK-NEXT:    %[[MDY:.*]] = pg.neg %dy
// CHECK-NEXT:    %[[INNER:.*]] = pg.select %[[NEG]], %[[MDY]], %[[ZERO]]
// CHECK-NEXT:    %dx = pg.select %[[POS]], %dy, %[[INNER]]
func.func @abs(%x: tensor<3xf32>, %dy: tensor<3xf32>) -> tensor<3xf32> {
  %y = pg.abs %x : tensor<3xf32>
  %dx = pg.grad %y seed %dy wrt %x : tensor<3xf32> wrt tensor<3xf32>
  func.return %dx : tensor<3xf32>
}

// dx = -dy y^2
// CHECK-LABEL: func.func @reciprocal
// CHECK-NEXT:    %y = pg.reciprocal %x
// CHECK-NEXT:    %[[Y2:.*]] = pg.mul %y, %y
// CHECK-NEXT:    %[[P:.*]] = pg.mul %dy, %[[Y2]]
// CHECK-NEXT:    %dx = pg.neg %[[P]]
func.func @reciprocal(%x: tensor<3xf32>, %dy: tensor<3xf32>) -> tensor<3xf32> {
  %y = pg.reciprocal %x : tensor<3xf32>
  %dx = pg.grad %y seed %dy wrt %x : tensor<3xf32> wrt tensor<3xf32>
  func.return %dx : tensor<3xf32>
}

// dx = dy 2/sqrt(pi) exp(-x^2)
// CHECK-LABEL: func.func @erf
// CHECK-NEXT:    %y = pg.erf %x
// CHECK-NEXT:    %[[C:.*]] = pg.constant dense<1.12837923> : tensor<f32>
// CHECK-NEXT:    %[[K:.*]] = pg.broadcast_to %[[C]]
// CHECK-NEXT:    %[[X2:.*]] = pg.mul %x, %x
// CHECK-NEXT:    %[[NX2:.*]] = pg.neg %[[X2]]
// CHECK-NEXT:    %[[E:.*]] = pg.exp %[[NX2]]
// CHECK-NEXT:    %[[D:.*]] = pg.mul %[[K]], %[[E]]
// CHECK-NEXT:    %dx = pg.mul %dy, %[[D]]
func.func @erf(%x: tensor<3xf32>, %dy: tensor<3xf32>) -> tensor<3xf32> {
  %y = pg.erf %x : tensor<3xf32>
  %dx = pg.grad %y seed %dy wrt %x : tensor<3xf32> wrt tensor<3xf32>
  func.return %dx : tensor<3xf32>
}

// ---- elementwise binary

// CHECK-LABEL: func.func @add
// CHECK-NEXT:    %z = pg.add %x, %y
// CHECK-NEXT:    func.return %dz, %dz
func.func @add(%x: tensor<3xf32>, %y: tensor<3xf32>, %dz: tensor<3xf32>) -> (tensor<3xf32>, tensor<3xf32>) {
  %z = pg.add %x, %y : tensor<3xf32>
  %dx, %dy = pg.grad %z seed %dz wrt %x, %y : tensor<3xf32> wrt tensor<3xf32>, tensor<3xf32>
  func.return %dx, %dy : tensor<3xf32>, tensor<3xf32>
}

// CHECK-LABEL: func.func @sub
// CHECK-NEXT:    %z = pg.sub %x, %y
// CHECK-NEXT:    %dy = pg.neg %dz
// CHECK-NEXT:    func.return %dz, %dy
func.func @sub(%x: tensor<3xf32>, %y: tensor<3xf32>, %dz: tensor<3xf32>) -> (tensor<3xf32>, tensor<3xf32>) {
  %z = pg.sub %x, %y : tensor<3xf32>
  %dx, %dy = pg.grad %z seed %dz wrt %x, %y : tensor<3xf32> wrt tensor<3xf32>, tensor<3xf32>
  func.return %dx, %dy : tensor<3xf32>, tensor<3xf32>
}

// CHECK-LABEL: func.func @mul
// CHECK-NEXT:    %z = pg.mul %x, %y
// CHECK-NEXT:    %dx = pg.mul %dz, %y
// CHECK-NEXT:    %dy = pg.mul %dz, %x
func.func @mul(%x: tensor<3xf32>, %y: tensor<3xf32>, %dz: tensor<3xf32>) -> (tensor<3xf32>, tensor<3xf32>) {
  %z = pg.mul %x, %y : tensor<3xf32>
  %dx, %dy = pg.grad %z seed %dz wrt %x, %y : tensor<3xf32> wrt tensor<3xf32>, tensor<3xf32>
  func.return %dx, %dy : tensor<3xf32>, tensor<3xf32>
}

// dx = dz / y, dy = -dx * z
// CHECK-LABEL: func.func @div
// CHECK-NEXT:    %z = pg.div %x, %y
// CHECK-NEXT:    %dx = pg.div %dz, %y
// CHECK-NEXT:    %[[P:.*]] = pg.mul %dx, %z
// CHECK-NEXT:    %dy = pg.neg %[[P]]
func.func @div(%x: tensor<3xf32>, %y: tensor<3xf32>, %dz: tensor<3xf32>) -> (tensor<3xf32>, tensor<3xf32>) {
  %z = pg.div %x, %y : tensor<3xf32>
  %dx, %dy = pg.grad %z seed %dz wrt %x, %y : tensor<3xf32> wrt tensor<3xf32>, tensor<3xf32>
  func.return %dx, %dy : tensor<3xf32>, tensor<3xf32>
}

// dx = where(y == 0, 0, dz y' x^(y'-1)) with y' = where(y == 0, 1, y) (no NaN computed in the unused branch);
// dy = dz where(x == 0 and y >= 0, 0, z log(x)): PyTorch's, NaN for x < 0 and -inf for x == 0, y < 0
// CHECK-LABEL: func.func @pow
// CHECK-NEXT:    %z = pg.pow %x, %y
// CHECK-NEXT:    pg.constant dense<1.000000e+00>
// CHECK-NEXT:    %[[ONE:.*]] = pg.broadcast_to
// CHECK-NEXT:    pg.constant dense<0.000000e+00>
// CHECK-NEXT:    %[[ZERO:.*]] = pg.broadcast_to
// CHECK-NEXT:    %[[Y0:.*]] = pg.cmp "eq", %y, %[[ZERO]]
// CHECK-NEXT:    %[[YS:.*]] = pg.select %[[Y0]], %[[ONE]], %y
// CHECK-NEXT:    %[[YM1:.*]] = pg.sub %[[YS]], %[[ONE]]
// CHECK-NEXT:    %[[P:.*]] = pg.pow %x, %[[YM1]]
// CHECK-NEXT:    %[[YP:.*]] = pg.mul %[[YS]], %[[P]]
// CHECK-NEXT:    %[[DX:.*]] = pg.mul %dz, %[[YP]]
// CHECK-NEXT:    %dx = pg.select %[[Y0]], %[[ZERO]], %[[DX]]
// CHECK-NEXT:    %[[X0:.*]] = pg.cmp "eq", %x, %[[ZERO]]
// CHECK-NEXT:    %[[YNN:.*]] = pg.cmp "ge", %y, %[[ZERO]]
// CHECK-NEXT:    %[[FLAT:.*]] = pg.select %[[X0]], %[[YNN]], %[[X0]]
// CHECK-NEXT:    %[[LOG:.*]] = pg.log %x
// CHECK-NEXT:    %[[ZL:.*]] = pg.mul %z, %[[LOG]]
// CHECK-NEXT:    %[[G:.*]] = pg.select %[[FLAT]], %[[ZERO]], %[[ZL]]
// CHECK-NEXT:    %dy = pg.mul %dz, %[[G]]
func.func @pow(%x: tensor<3xf32>, %y: tensor<3xf32>, %dz: tensor<3xf32>) -> (tensor<3xf32>, tensor<3xf32>) {
  %z = pg.pow %x, %y : tensor<3xf32>
  %dx, %dy = pg.grad %z seed %dz wrt %x, %y : tensor<3xf32> wrt tensor<3xf32>, tensor<3xf32>
  func.return %dx, %dy : tensor<3xf32>, tensor<3xf32>
}

// A constant exponent needs no gradient: no log is emitted.
// CHECK-LABEL: func.func @pow_constant_exponent
// CHECK-NOT:     pg.log
// CHECK:         %dx = pg.select
// CHECK-NEXT:    func.return %dx
func.func @pow_constant_exponent(%x: tensor<3xf32>, %dz: tensor<3xf32>) -> tensor<3xf32> {
  %c = pg.constant dense<2.0> : tensor<3xf32>
  %z = pg.pow %x, %c : tensor<3xf32>
  %dx = pg.grad %z seed %dz wrt %x : tensor<3xf32> wrt tensor<3xf32>
  func.return %dx : tensor<3xf32>
}

// PyTorch's formula: a side gets dz unless it loses (0), dz / 2 on a tie; with a NaN neither loses, both get dz.
// CHECK-LABEL: func.func @maximum
// CHECK:         %[[TIE:.*]] = pg.cmp "eq", %x, %y
// CHECK:         %[[HALFDZ:.*]] = pg.mul %dz, %{{.*}}
// CHECK-NEXT:    %[[SHARED:.*]] = pg.select %[[TIE]], %[[HALFDZ]], %dz
// CHECK-NEXT:    %[[LT:.*]] = pg.cmp "lt", %x, %y
// CHECK-NEXT:    %dx = pg.select %[[LT]], %{{.*}}, %[[SHARED]]
// CHECK-NEXT:    %[[GT:.*]] = pg.cmp "gt", %x, %y
// CHECK-NEXT:    %dy = pg.select %[[GT]], %{{.*}}, %[[SHARED]]
func.func @maximum(%x: tensor<3xf32>, %y: tensor<3xf32>, %dz: tensor<3xf32>) -> (tensor<3xf32>, tensor<3xf32>) {
  %z = pg.maximum %x, %y : tensor<3xf32>
  %dx, %dy = pg.grad %z seed %dz wrt %x, %y : tensor<3xf32> wrt tensor<3xf32>, tensor<3xf32>
  func.return %dx, %dy : tensor<3xf32>, tensor<3xf32>
}

// CHECK-LABEL: func.func @minimum
// CHECK:         pg.constant dense<5.000000e-01>
// CHECK:         %[[GT:.*]] = pg.cmp "gt", %x, %y
// CHECK-NEXT:    %dx = pg.select %[[GT]], %{{.*}}, %[[SHARED:.*]]
// CHECK-NEXT:    %[[LT:.*]] = pg.cmp "lt", %x, %y
// CHECK-NEXT:    %dy = pg.select %[[LT]], %{{.*}}, %[[SHARED]]
func.func @minimum(%x: tensor<3xf32>, %y: tensor<3xf32>, %dz: tensor<3xf32>) -> (tensor<3xf32>, tensor<3xf32>) {
  %z = pg.minimum %x, %y : tensor<3xf32>
  %dx, %dy = pg.grad %z seed %dz wrt %x, %y : tensor<3xf32> wrt tensor<3xf32>, tensor<3xf32>
  func.return %dx, %dy : tensor<3xf32>, tensor<3xf32>
}

// To the chosen branch with a select (never dz * mask: 0 * inf would be NaN); nothing to the condition.
// CHECK-LABEL: func.func @select
// CHECK-NEXT:    %z = pg.select %c, %x, %y
// CHECK-NEXT:    pg.constant dense<0.000000e+00>
// CHECK-NEXT:    %[[ZERO:.*]] = pg.broadcast_to
// CHECK-NEXT:    %dx = pg.select %c, %dz, %[[ZERO]]
// CHECK-NEXT:    %dy = pg.select %c, %[[ZERO]], %dz
// CHECK-NEXT:    func.return %dx, %dy
func.func @select(%c: tensor<3xi1>, %x: tensor<3xf32>, %y: tensor<3xf32>, %dz: tensor<3xf32>) -> (tensor<3xf32>, tensor<3xf32>) {
  %z = pg.select %c, %x, %y : tensor<3xi1>, tensor<3xf32>
  %dx, %dy = pg.grad %z seed %dz wrt %x, %y : tensor<3xf32> wrt tensor<3xf32>, tensor<3xf32>
  func.return %dx, %dy : tensor<3xf32>, tensor<3xf32>
}

// ---- shapes and reductions

// Unbroadcast: sum over the added dim 0 and the stretched dim 2, then reshape back.
// CHECK-LABEL: func.func @broadcast_to
// CHECK-NEXT:    %y = pg.broadcast_to %x
// CHECK-NEXT:    %[[S:.*]] = pg.sum %dy dims = [0, 2] : tensor<2x3x4xf32> -> tensor<3xf32>
// CHECK-NEXT:    %dx = pg.reshape %[[S]] : tensor<3xf32> -> tensor<3x1xf32>
func.func @broadcast_to(%x: tensor<3x1xf32>, %dy: tensor<2x3x4xf32>) -> tensor<3x1xf32> {
  %y = pg.broadcast_to %x : tensor<3x1xf32> -> tensor<2x3x4xf32>
  %dx = pg.grad %y seed %dy wrt %x : tensor<2x3x4xf32> wrt tensor<3x1xf32>
  func.return %dx : tensor<3x1xf32>
}

// A broadcast operand of a binary op (what the frontend records for x + b): b's adjoint is unbroadcast.
// CHECK-LABEL: func.func @unbroadcast_bias
// CHECK:         %db = pg.sum %dz dims = [0] : tensor<4x3xf32> -> tensor<3xf32>
// CHECK-NEXT:    func.return %dz, %db
func.func @unbroadcast_bias(%x: tensor<4x3xf32>, %b: tensor<3xf32>, %dz: tensor<4x3xf32>) -> (tensor<4x3xf32>, tensor<3xf32>) {
  %bb = pg.broadcast_to %b : tensor<3xf32> -> tensor<4x3xf32>
  %z = pg.add %x, %bb : tensor<4x3xf32>
  %dx, %db = pg.grad %z seed %dz wrt %x, %b : tensor<4x3xf32> wrt tensor<4x3xf32>, tensor<3xf32>
  func.return %dx, %db : tensor<4x3xf32>, tensor<3xf32>
}

// CHECK-LABEL: func.func @unbroadcast_scalar
// CHECK-NEXT:    %y = pg.broadcast_to %x
// CHECK-NEXT:    %dx = pg.sum %dy dims = [0, 1] : tensor<2x3xf32> -> tensor<f32>
// CHECK-NEXT:    func.return %dx
func.func @unbroadcast_scalar(%x: tensor<f32>, %dy: tensor<2x3xf32>) -> tensor<f32> {
  %y = pg.broadcast_to %x : tensor<f32> -> tensor<2x3xf32>
  %dx = pg.grad %y seed %dy wrt %x : tensor<2x3xf32> wrt tensor<f32>
  func.return %dx : tensor<f32>
}

// CHECK-LABEL: func.func @sum
// CHECK-NEXT:    %y = pg.sum %x
// CHECK-NEXT:    %[[K:.*]] = pg.reshape %dy : tensor<3xf32> -> tensor<1x3x1xf32>
// CHECK-NEXT:    %dx = pg.broadcast_to %[[K]] : tensor<1x3x1xf32> -> tensor<2x3x4xf32>
func.func @sum(%x: tensor<2x3x4xf32>, %dy: tensor<3xf32>) -> tensor<2x3x4xf32> {
  %y = pg.sum %x dims = [0, 2] : tensor<2x3x4xf32> -> tensor<3xf32>
  %dx = pg.grad %y seed %dy wrt %x : tensor<3xf32> wrt tensor<2x3x4xf32>
  func.return %dx : tensor<2x3x4xf32>
}

// dx = where(x == max, dy / count(x == max), 0): ties split evenly, as torch.amax.
// CHECK-LABEL: func.func @max
// CHECK-NEXT:    %y = pg.max %x
// CHECK-NEXT:    %[[YK:.*]] = pg.reshape %y : tensor<2xf32> -> tensor<2x1xf32>
// CHECK-NEXT:    %[[YB:.*]] = pg.broadcast_to %[[YK]] : tensor<2x1xf32> -> tensor<2x3xf32>
// CHECK-NEXT:    %[[HIT:.*]] = pg.cmp "eq", %x, %[[YB]]
// CHECK-NEXT:    %[[HITF:.*]] = pg.cast %[[HIT]] : tensor<2x3xi1> -> tensor<2x3xf32>
// CHECK-NEXT:    %[[COUNT:.*]] = pg.sum %[[HITF]] dims = [1] keepdim
// CHECK-NEXT:    %[[DYK:.*]] = pg.reshape %dy
// CHECK-NEXT:    %[[SHARE:.*]] = pg.div %[[DYK]], %[[COUNT]]
// CHECK-NEXT:    %[[SHAREB:.*]] = pg.broadcast_to %[[SHARE]]
// CHECK-NEXT:    pg.constant dense<0.000000e+00>
// CHECK-NEXT:    %[[ZERO:.*]] = pg.broadcast_to
// CHECK-NEXT:    %dx = pg.select %[[HIT]], %[[SHAREB]], %[[ZERO]]
func.func @max(%x: tensor<2x3xf32>, %dy: tensor<2xf32>) -> tensor<2x3xf32> {
  %y = pg.max %x dims = [1] : tensor<2x3xf32> -> tensor<2xf32>
  %dx = pg.grad %y seed %dy wrt %x : tensor<2xf32> wrt tensor<2x3xf32>
  func.return %dx : tensor<2x3xf32>
}

// CHECK-LABEL: func.func @min
// CHECK-NEXT:    %y = pg.min %x
// CHECK-NEXT:    %[[YB:.*]] = pg.broadcast_to %y : tensor<2x1xf32> -> tensor<2x3xf32>
// CHECK-NEXT:    %[[HIT:.*]] = pg.cmp "eq", %x, %[[YB]]
// CHECK:         %dx = pg.select %[[HIT]],
func.func @min(%x: tensor<2x3xf32>, %dy: tensor<2x1xf32>) -> tensor<2x3xf32> {
  %y = pg.min %x dims = [1] keepdim : tensor<2x3xf32> -> tensor<2x1xf32>
  %dx = pg.grad %y seed %dy wrt %x : tensor<2x1xf32> wrt tensor<2x3xf32>
  func.return %dx : tensor<2x3xf32>
}

// CHECK-LABEL: func.func @reshape
// CHECK-NEXT:    %y = pg.reshape %x
// CHECK-NEXT:    %dx = pg.reshape %dy : tensor<6xf32> -> tensor<2x3xf32>
func.func @reshape(%x: tensor<2x3xf32>, %dy: tensor<6xf32>) -> tensor<2x3xf32> {
  %y = pg.reshape %x : tensor<2x3xf32> -> tensor<6xf32>
  %dx = pg.grad %y seed %dy wrt %x : tensor<6xf32> wrt tensor<2x3xf32>
  func.return %dx : tensor<2x3xf32>
}

// The inverse of [2, 0, 1] is [1, 2, 0].
// CHECK-LABEL: func.func @permute
// CHECK-NEXT:    %y = pg.permute %x
// CHECK-NEXT:    %dx = pg.permute %dy perm = [1, 2, 0] : tensor<4x2x3xf32> -> tensor<2x3x4xf32>
func.func @permute(%x: tensor<2x3x4xf32>, %dy: tensor<4x2x3xf32>) -> tensor<2x3x4xf32> {
  %y = pg.permute %x perm = [2, 0, 1] : tensor<2x3x4xf32> -> tensor<4x2x3xf32>
  %dx = pg.grad %y seed %dy wrt %x : tensor<4x2x3xf32> wrt tensor<2x3x4xf32>
  func.return %dx : tensor<2x3x4xf32>
}

// x[1:5:2, 0:7:3] of a 5x7: rows 1, 3 and columns 0, 3, 6 -> pad low = start, interior = step - 1, high = the rest.
// CHECK-LABEL: func.func @slice
// CHECK-NEXT:    %y = pg.slice %x
// CHECK-NEXT:    %dx = pg.pad %dy low = [1, 0] high = [1, 0] interior = [1, 2] value = 0.000000e+00 : tensor<2x3xf32> -> tensor<5x7xf32>
func.func @slice(%x: tensor<5x7xf32>, %dy: tensor<2x3xf32>) -> tensor<5x7xf32> {
  %y = pg.slice %x start = [1, 0] stop = [5, 7] step = [2, 3] : tensor<5x7xf32> -> tensor<2x3xf32>
  %dx = pg.grad %y seed %dy wrt %x : tensor<2x3xf32> wrt tensor<5x7xf32>
  func.return %dx : tensor<5x7xf32>
}

// CHECK-LABEL: func.func @pad
// CHECK-NEXT:    %y = pg.pad %x
// CHECK-NEXT:    %dx = pg.slice %dy start = [1, 0] stop = [4, 7] step = [2, 3] : tensor<4x9xf32> -> tensor<2x3xf32>
func.func @pad(%x: tensor<2x3xf32>, %dy: tensor<4x9xf32>) -> tensor<2x3xf32> {
  %y = pg.pad %x low = [1, 0] high = [0, 2] interior = [1, 2] value = 5.000000e-01 : tensor<2x3xf32> -> tensor<4x9xf32>
  %dx = pg.grad %y seed %dy wrt %x : tensor<4x9xf32> wrt tensor<2x3xf32>
  func.return %dx : tensor<2x3xf32>
}

// CHECK-LABEL: func.func @concat
// CHECK-NEXT:    %y = pg.concat %a, %b
// CHECK-NEXT:    %da = pg.slice %dy start = [0, 0] stop = [2, 3] step = [1, 1] : tensor<3x3xf32> -> tensor<2x3xf32>
// CHECK-NEXT:    %db = pg.slice %dy start = [2, 0] stop = [3, 3] step = [1, 1] : tensor<3x3xf32> -> tensor<1x3xf32>
func.func @concat(%a: tensor<2x3xf32>, %b: tensor<1x3xf32>, %dy: tensor<3x3xf32>) -> (tensor<2x3xf32>, tensor<1x3xf32>) {
  %y = pg.concat %a, %b dim = 0 : (tensor<2x3xf32>, tensor<1x3xf32>) -> tensor<3x3xf32>
  %da, %db = pg.grad %y seed %dy wrt %a, %b : tensor<3x3xf32> wrt tensor<2x3xf32>, tensor<1x3xf32>
  func.return %da, %db : tensor<2x3xf32>, tensor<1x3xf32>
}

// Batched: dA = dC @ B^T, dB = A^T @ dC, transposing the last two dims.
// CHECK-LABEL: func.func @matmul
// CHECK-NEXT:    %c = pg.matmul %a, %b
// CHECK-NEXT:    %[[BT:.*]] = pg.permute %b perm = [0, 2, 1] : tensor<5x3x4xf32> -> tensor<5x4x3xf32>
// CHECK-NEXT:    %da = pg.matmul %dc, %[[BT]] : (tensor<5x2x4xf32>, tensor<5x4x3xf32>) -> tensor<5x2x3xf32>
// CHECK-NEXT:    %[[AT:.*]] = pg.permute %a perm = [0, 2, 1] : tensor<5x2x3xf32> -> tensor<5x3x2xf32>
// CHECK-NEXT:    %db = pg.matmul %[[AT]], %dc : (tensor<5x3x2xf32>, tensor<5x2x4xf32>) -> tensor<5x3x4xf32>
func.func @matmul(%a: tensor<5x2x3xf32>, %b: tensor<5x3x4xf32>, %dc: tensor<5x2x4xf32>) -> (tensor<5x2x3xf32>, tensor<5x3x4xf32>) {
  %c = pg.matmul %a, %b : (tensor<5x2x3xf32>, tensor<5x3x4xf32>) -> tensor<5x2x4xf32>
  %da, %db = pg.grad %c seed %dc wrt %a, %b : tensor<5x2x4xf32> wrt tensor<5x2x3xf32>, tensor<5x3x4xf32>
  func.return %da, %db : tensor<5x2x3xf32>, tensor<5x3x4xf32>
}

// CHECK-LABEL: func.func @gather
// CHECK-NEXT:    %y = pg.gather %t[%i]
// CHECK-NEXT:    %dt = pg.scatter_add %dy[%i] dim = 0 : (tensor<4x3x10xf32>, tensor<4x3xi64>) -> tensor<27x10xf32>
func.func @gather(%t: tensor<27x10xf32>, %i: tensor<4x3xi64>, %dy: tensor<4x3x10xf32>) -> tensor<27x10xf32> {
  %y = pg.gather %t[%i] dim = 0 : (tensor<27x10xf32>, tensor<4x3xi64>) -> tensor<4x3x10xf32>
  %dt = pg.grad %y seed %dy wrt %t : tensor<4x3x10xf32> wrt tensor<27x10xf32>
  func.return %dt : tensor<27x10xf32>
}

// CHECK-LABEL: func.func @scatter_add
// CHECK-NEXT:    %y = pg.scatter_add %u[%i]
// CHECK-NEXT:    %du = pg.gather %dy[%i] dim = 0 : (tensor<27x10xf32>, tensor<4x3xi64>) -> tensor<4x3x10xf32>
func.func @scatter_add(%u: tensor<4x3x10xf32>, %i: tensor<4x3xi64>, %dy: tensor<27x10xf32>) -> tensor<4x3x10xf32> {
  %y = pg.scatter_add %u[%i] dim = 0 : (tensor<4x3x10xf32>, tensor<4x3xi64>) -> tensor<27x10xf32>
  %du = pg.grad %y seed %dy wrt %u : tensor<27x10xf32> wrt tensor<4x3x10xf32>
  func.return %du : tensor<4x3x10xf32>
}

// CHECK-LABEL: func.func @cast
// CHECK-NEXT:    %y = pg.cast %x
// CHECK-NEXT:    %dx = pg.cast %dy : tensor<3xf32> -> tensor<3xf64>
func.func @cast(%x: tensor<3xf64>, %dy: tensor<3xf32>) -> tensor<3xf64> {
  %y = pg.cast %x : tensor<3xf64> -> tensor<3xf32>
  %dx = pg.grad %y seed %dy wrt %x : tensor<3xf32> wrt tensor<3xf64>
  func.return %dx : tensor<3xf64>
}

// ---- the sweep: fan-out, pruning, cuts, zeros

// a = 3, b = a * a, c = b + b: both uses of b and both of a add up (dc/da = 12 at a = 3).
// CHECK-LABEL: func.func @fan_out
// CHECK-NEXT:    %b = pg.mul %a, %a
// CHECK-NEXT:    %c = pg.add %b, %b
// CHECK-NEXT:    %[[SEED:.*]] = pg.constant dense<1.000000e+00> : tensor<f32>
// CHECK-NEXT:    %[[DB:.*]] = pg.add %[[SEED]], %[[SEED]]
// CHECK-NEXT:    %[[DA1:.*]] = pg.mul %[[DB]], %a
// CHECK-NEXT:    %[[DA2:.*]] = pg.mul %[[DB]], %a
// CHECK-NEXT:    %da = pg.add %[[DA1]], %[[DA2]]
// CHECK-NEXT:    func.return %da
func.func @fan_out(%a: tensor<f32>) -> tensor<f32> {
  %b = pg.mul %a, %a : tensor<f32>
  %c = pg.add %b, %b : tensor<f32>
  %da = pg.grad %c wrt %a : tensor<f32> wrt tensor<f32>
  func.return %da : tensor<f32>
}

// Only what is needed: nothing for %k's sin (k is no target), for %u (not on the path to the root), for the
// adjoint of %s's other factor; the grad of sum is a broadcast of the seed.
// CHECK-LABEL: func.func @prune
// CHECK-NEXT:    %s = pg.sin %k
// CHECK-NEXT:    %u = pg.tanh %x
// CHECK-NEXT:    %y = pg.mul %x, %s
// CHECK-NEXT:    %r = pg.sum %y
// CHECK-NEXT:    %[[SEED:.*]] = pg.constant dense<1.000000e+00> : tensor<f32>
// CHECK-NEXT:    %[[DY:.*]] = pg.broadcast_to %[[SEED]] : tensor<f32> -> tensor<3xf32>
// CHECK-NEXT:    %dx = pg.mul %[[DY]], %s
// CHECK-NEXT:    func.return %dx, %u
func.func @prune(%x: tensor<3xf32>, %k: tensor<3xf32>) -> (tensor<3xf32>, tensor<3xf32>) {
  %s = pg.sin %k : tensor<3xf32>
  %u = pg.tanh %x : tensor<3xf32>
  %y = pg.mul %x, %s : tensor<3xf32>
  %r = pg.sum %y dims = [0] : tensor<3xf32> -> tensor<f32>
  %dx = pg.grad %r wrt %x : tensor<f32> wrt tensor<3xf32>
  func.return %dx, %u : tensor<3xf32>, tensor<3xf32>
}

// stop_gradient (detach) and integer values cut the paths: x * detach(x) * float(int(x)) differentiates the first
// factor only.
// CHECK-LABEL: func.func @cuts
// CHECK:         %p = pg.mul %x, %d
// CHECK-NEXT:    %q = pg.mul %p, %f
// CHECK-NEXT:    %[[DP:.*]] = pg.mul %dq, %f
// CHECK-NEXT:    %dx = pg.mul %[[DP]], %d
// CHECK-NEXT:    func.return %dx
func.func @cuts(%x: tensor<3xf32>, %dq: tensor<3xf32>) -> tensor<3xf32> {
  %d = pg.stop_gradient %x : tensor<3xf32>
  %i = pg.cast %x : tensor<3xf32> -> tensor<3xi64>
  %f = pg.cast %i : tensor<3xi64> -> tensor<3xf32>
  %p = pg.mul %x, %d : tensor<3xf32>
  %q = pg.mul %p, %f : tensor<3xf32>
  %dx = pg.grad %q seed %dq wrt %x : tensor<3xf32> wrt tensor<3xf32>
  func.return %dx : tensor<3xf32>
}

// No path from the root to %y: a zero gradient of %y's type.
// CHECK-LABEL: func.func @unreachable
// CHECK:         %[[Z:.*]] = pg.constant dense<0.000000e+00> : tensor<f32>
// CHECK-NEXT:    %dy = pg.broadcast_to %[[Z]] : tensor<f32> -> tensor<2x3xf32>
// CHECK-NEXT:    func.return %dx, %dy
func.func @unreachable(%x: tensor<3xf32>, %y: tensor<2x3xf32>) -> (tensor<3xf32>, tensor<2x3xf32>) {
  %e = pg.exp %x : tensor<3xf32>
  %r = pg.sum %e dims = [0] : tensor<3xf32> -> tensor<f32>
  %dx, %dy = pg.grad %r wrt %x, %y : tensor<f32> wrt tensor<3xf32>, tensor<2x3xf32>
  func.return %dx, %dy : tensor<3xf32>, tensor<2x3xf32>
}

// The non-differentiable ops pass no gradient: argmax, cmp, iota, random, constant. Here only the product remains.
// CHECK-LABEL: func.func @non_differentiable
// CHECK:         %p = pg.mul %x, %w
// CHECK-NEXT:    %dx = pg.mul %dp, %w
// CHECK-NEXT:    func.return %dx
func.func @non_differentiable(%x: tensor<2x3xf32>, %seed: tensor<i64>, %dp: tensor<2x3xf32>) -> tensor<2x3xf32> {
  %a = pg.argmax %x dim = 1 keepdim : tensor<2x3xf32> -> tensor<2x1xi64>
  %ab = pg.broadcast_to %a : tensor<2x1xi64> -> tensor<2x3xi64>
  %i = pg.iota dim = 1 : tensor<2x3xi64>
  %m = pg.cmp "eq", %ab, %i : tensor<2x3xi64> -> tensor<2x3xi1>
  %r = pg.random "uniform" %seed, %seed : tensor<2x3xf32>
  %c = pg.constant dense<2.0> : tensor<2x3xf32>
  %w = pg.select %m, %r, %c : tensor<2x3xi1>, tensor<2x3xf32>
  %p = pg.mul %x, %w : tensor<2x3xf32>
  %dx = pg.grad %p seed %dp wrt %x : tensor<2x3xf32> wrt tensor<2x3xf32>
  func.return %dx : tensor<2x3xf32>
}

// A pg.grad of an earlier pg.grad's result is expanded after it: second derivatives.
// d/dx sum(d/dx sum(x^3)) = 6 x (as 3 x * 2 after accumulation)
// CHECK-LABEL: func.func @second_order
// CHECK-NOT:     pg.grad
// CHECK:         func.return %ddx
func.func @second_order(%x: tensor<3xf32>) -> tensor<3xf32> {
  %x2 = pg.mul %x, %x : tensor<3xf32>
  %x3 = pg.mul %x2, %x : tensor<3xf32>
  %s = pg.sum %x3 dims = [0] : tensor<3xf32> -> tensor<f32>
  %dx = pg.grad %s wrt %x : tensor<f32> wrt tensor<3xf32>
  %t = pg.sum %dx dims = [0] : tensor<3xf32> -> tensor<f32>
  %ddx = pg.grad %t wrt %x : tensor<f32> wrt tensor<3xf32>
  func.return %ddx : tensor<3xf32>
}

// ---- locations: every vjp op carries its forward op's location; the seed carries pg.grad's

// LOC-LABEL: func.func @located
// LOC:         %y = pg.tanh %x : tensor<3xf32> loc("model.py":3:8)
// LOC-NEXT:    %s = pg.sum %y {{.*}} loc("model.py":4:10)
// LOC-NEXT:    pg.constant dense<1.000000e+00> : tensor<f32> loc("model.py":5:0)
// LOC-NEXT:    pg.broadcast_to {{.*}} loc("model.py":4:10)
// LOC-NEXT:    pg.constant dense<1.000000e+00> : tensor<f32> loc("model.py":3:8)
// LOC-NEXT:    pg.broadcast_to {{.*}} loc("model.py":3:8)
// LOC-NEXT:    pg.mul %y, %y {{.*}} loc("model.py":3:8)
// LOC-NEXT:    pg.sub {{.*}} loc("model.py":3:8)
// LOC-NEXT:    %dx = pg.mul {{.*}} loc("model.py":3:8)
// LOC-NEXT:    func.return %dx
func.func @located(%x: tensor<3xf32>) -> tensor<3xf32> {
  %y = pg.tanh %x : tensor<3xf32> loc("model.py":3:8)
  %s = pg.sum %y dims = [0] : tensor<3xf32> -> tensor<f32> loc("model.py":4:10)
  %dx = pg.grad %s wrt %x : tensor<f32> wrt tensor<3xf32> loc("model.py":5:0)
  func.return %dx : tensor<3xf32>
}

// ---- what the pass rejects

// -----

func.func @callee(%v: tensor<3xf32>) -> tensor<3xf32> {
  func.return %v : tensor<3xf32>
}
// Calls are not inlined: a func.call between x and the root has no vjp rule.
// CHECK: pg-autodiff: cannot differentiate through 'func.call' at model.py:7:2: it lies on a path from a wrt value to the root of pg.grad at model.py:9:0 and has no vjp rule
// EXIT: pg-autodiff: cannot differentiate through 'func.call' at model.py:7:2
func.func @call_on_path(%x: tensor<3xf32>) -> tensor<3xf32> {
  %e = pg.exp %x : tensor<3xf32>
  %c = func.call @callee(%e) : (tensor<3xf32>) -> tensor<3xf32> loc("model.py":7:2)
  %s = pg.sum %c dims = [0] : tensor<3xf32> -> tensor<f32>
  %dx = pg.grad %s wrt %x : tensor<f32> wrt tensor<3xf32> loc("model.py":9:0)
  func.return %dx : tensor<3xf32>
}

// -----

// Differentiating through an optimizer step (meta-learning) is not supported.
// CHECK: pg-autodiff: cannot differentiate through 'pg.sgd': it lies on a path from a wrt value to the root of pg.grad and has no vjp rule
func.func @through_sgd(%w: tensor<3xf32>, %gw: tensor<3xf32>, %lr: tensor<f64>, %step: tensor<i64>) -> tensor<3xf32> {
  %z = pg.constant dense<0.0> : tensor<f64>
  %n, %w1 = pg.sgd lr %lr, momentum %z, dampening %z, weight_decay %z step %step params(%w) grads(%gw) state() : tensor<3xf32>
  %s = pg.sum %w1 dims = [0] : tensor<3xf32> -> tensor<f32>
  %dw = pg.grad %s wrt %w : tensor<f32> wrt tensor<3xf32>
  func.return %dw : tensor<3xf32>
}

// -----

// Integer targets are refused (by pg.grad's verifier, before the pass runs).
// CHECK: pg.grad: cannot differentiate with respect to tensor<3xi64>: only float tensors can require gradients
func.func @int_wrt(%i: tensor<3xi64>, %x: tensor<f32>) -> tensor<3xi64> {
  %di = pg.grad %x wrt %i : tensor<f32> wrt tensor<3xi64>
  func.return %di : tensor<3xi64>
}
