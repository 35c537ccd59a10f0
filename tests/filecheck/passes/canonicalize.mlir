// RUN: pgc-opt %s -p pg-canonicalize --split-input-file | filecheck %s
// RUN: pgc-opt %s -p "pg-canonicalize{no-signed-zeros=true}" --split-input-file | filecheck %s --check-prefix=NSZ
// RUN: pgc-opt %s -p "pg-canonicalize{max-splat-elements=4}" --split-input-file | filecheck %s --check-prefix=SMALL

// Identities that hold for every float (NaN, infinities and signed zeros included) fold; x + 0.0, x - (-0.0)
// and x * 0.0 do not (-0.0 + 0.0 is +0.0; inf * 0.0 is NaN). Integer zeros fold both ways.
func.func @identities(%x: tensor<3xf32>, %i: tensor<3xi64>) -> (tensor<3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xi64>, tensor<3xi64>) {
  %one = pg.constant dense<1.0> : tensor<3xf32>
  %pz = pg.constant dense<0.0> : tensor<f32>
  %pzb = pg.broadcast_to %pz : tensor<f32> -> tensor<3xf32>
  %nz = pg.constant dense<-0.0> : tensor<3xf32>
  %a = pg.mul %x, %one : tensor<3xf32>
  %b = pg.div %a, %one : tensor<3xf32>
  %c = pg.add %b, %nz : tensor<3xf32>
  %d = pg.sub %c, %pzb : tensor<3xf32>
  %e = pg.pow %d, %one : tensor<3xf32>
  %f = pg.maximum %e, %e : tensor<3xf32>
  %g = pg.minimum %f, %f : tensor<3xf32>
  %h = pg.neg %g : tensor<3xf32>
  %h2 = pg.neg %h : tensor<3xf32>
  %keep1 = pg.add %x, %pzb : tensor<3xf32>
  %keep2 = pg.sub %x, %nz : tensor<3xf32>
  %keep3 = pg.mul %x, %pzb : tensor<3xf32>
  %keep4 = pg.div %one, %x : tensor<3xf32>
  %iz = pg.constant dense<0> : tensor<3xi64>
  %j = pg.add %iz, %i : tensor<3xi64>
  %k = pg.mul %j, %iz : tensor<3xi64>
  func.return %h2, %keep1, %keep2, %keep3, %keep4, %j, %k : tensor<3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xi64>, tensor<3xi64>
}

// CHECK-LABEL: func.func @identities
// CHECK-NEXT:    %[[ONE:.*]] = pg.constant dense<1.000000e+00> : tensor<3xf32>
// CHECK-NEXT:    %[[PZ:.*]] = pg.constant dense<0.000000e+00> : tensor<3xf32>
// CHECK-NEXT:    %[[NZ:.*]] = pg.constant dense<-0.000000e+00> : tensor<3xf32>
// CHECK-NEXT:    %[[K1:.*]] = pg.add %x, %[[PZ]] : tensor<3xf32>
// CHECK-NEXT:    %[[K2:.*]] = pg.sub %x, %[[NZ]] : tensor<3xf32>
// CHECK-NEXT:    %[[K3:.*]] = pg.mul %x, %[[PZ]] : tensor<3xf32>
// CHECK-NEXT:    %[[K4:.*]] = pg.div %[[ONE]], %x : tensor<3xf32>
// CHECK-NEXT:    %[[K:.*]] = pg.constant dense<0> : tensor<3xi64>
// CHECK-NEXT:    func.return %x, %[[K1]], %[[K2]], %[[K3]], %[[K4]], %i, %[[K]]

// NSZ-LABEL: func.func @identities
// NSZ:         %[[K3:.*]] = pg.mul %x, %{{.*}} : tensor<3xf32>
// NSZ:         func.return %x, %x, %x, %[[K3]],

// -----

// Casts: to the same type, and round trips through an exact cast, disappear; an exact inner cast merges into the
// outer one; f32 -> i64 -> f32 (truncation) and f64 -> f32 -> f64 (rounding) stay.
func.func @casts(%x: tensor<3xf32>, %m: tensor<3xi1>, %d: tensor<3xf64>) -> (tensor<3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf64>) {
  %same = pg.cast %x : tensor<3xf32> -> tensor<3xf32>
  %up = pg.cast %same : tensor<3xf32> -> tensor<3xf64>
  %back = pg.cast %up : tensor<3xf64> -> tensor<3xf32>
  %mi = pg.cast %m : tensor<3xi1> -> tensor<3xi64>
  %mf = pg.cast %mi : tensor<3xi64> -> tensor<3xf32>
  %xi = pg.cast %x : tensor<3xf32> -> tensor<3xi64>
  %xf = pg.cast %xi : tensor<3xi64> -> tensor<3xf32>
  %dn = pg.cast %d : tensor<3xf64> -> tensor<3xf32>
  %dd = pg.cast %dn : tensor<3xf32> -> tensor<3xf64>
  func.return %back, %mf, %xf, %dd : tensor<3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf64>
}

// CHECK-LABEL: func.func @casts
// CHECK-NEXT:    %[[MF:.*]] = pg.cast %m : tensor<3xi1> -> tensor<3xf32>
// CHECK-NEXT:    %[[XI:.*]] = pg.cast %x : tensor<3xf32> -> tensor<3xi64>
// CHECK-NEXT:    %[[XF:.*]] = pg.cast %[[XI]] : tensor<3xi64> -> tensor<3xf32>
// CHECK-NEXT:    %[[DN:.*]] = pg.cast %d : tensor<3xf64> -> tensor<3xf32>
// CHECK-NEXT:    %[[DD:.*]] = pg.cast %[[DN]] : tensor<3xf32> -> tensor<3xf64>
// CHECK-NEXT:    func.return %x, %[[MF]], %[[XF]], %[[DD]]

// -----

// 16-bit floats (issue 14): bf16 -> f32 -> bf16 and f16 -> f64 -> f16 are exact round trips and disappear;
// bf16 -> f32 -> f64 is one cast; f32 -> bf16 -> f32 rounds and stays, and so does bf16 -> f16 -> bf16.
func.func @low_casts(%b: tensor<3xbf16>, %h: tensor<3xf16>, %x: tensor<3xf32>) -> (tensor<3xbf16>, tensor<3xf16>, tensor<3xf64>, tensor<3xf32>, tensor<3xbf16>) {
  %bw = pg.cast %b : tensor<3xbf16> -> tensor<3xf32>
  %bb = pg.cast %bw : tensor<3xf32> -> tensor<3xbf16>
  %hw = pg.cast %h : tensor<3xf16> -> tensor<3xf64>
  %hh = pg.cast %hw : tensor<3xf64> -> tensor<3xf16>
  %bd = pg.cast %bw : tensor<3xf32> -> tensor<3xf64>
  %xb = pg.cast %x : tensor<3xf32> -> tensor<3xbf16>
  %xx = pg.cast %xb : tensor<3xbf16> -> tensor<3xf32>
  %bh = pg.cast %b : tensor<3xbf16> -> tensor<3xf16>
  %hb = pg.cast %bh : tensor<3xf16> -> tensor<3xbf16>
  func.return %bb, %hh, %bd, %xx, %hb : tensor<3xbf16>, tensor<3xf16>, tensor<3xf64>, tensor<3xf32>, tensor<3xbf16>
}

// CHECK-LABEL: func.func @low_casts
// CHECK-NEXT:    %[[BD:.*]] = pg.cast %b : tensor<3xbf16> -> tensor<3xf64>
// CHECK-NEXT:    %[[XB:.*]] = pg.cast %x : tensor<3xf32> -> tensor<3xbf16>
// CHECK-NEXT:    %[[XX:.*]] = pg.cast %[[XB]] : tensor<3xbf16> -> tensor<3xf32>
// CHECK-NEXT:    %[[BH:.*]] = pg.cast %b : tensor<3xbf16> -> tensor<3xf16>
// CHECK-NEXT:    %[[HB:.*]] = pg.cast %[[BH]] : tensor<3xf16> -> tensor<3xbf16>
// CHECK-NEXT:    func.return %b, %h, %[[BD]], %[[XX]], %[[HB]]

// 16-bit constants fold in float32 with one rounding, as the CPU executor computes: exp(2) = 7.389 is 7.375 in bf16.
func.func @low_fold(%x: tensor<3xbf16>) -> (tensor<3xbf16>, tensor<f16>) {
  %c = pg.constant dense<2.0> : tensor<bf16>
  %e = pg.exp %c : tensor<bf16>
  %b = pg.broadcast_to %e : tensor<bf16> -> tensor<3xbf16>
  %y = pg.mul %b, %x : tensor<3xbf16>
  %h = pg.constant dense<0.1> : tensor<f16>
  %k = pg.add %h, %h : tensor<f16>
  func.return %y, %k : tensor<3xbf16>, tensor<f16>
}

// CHECK-LABEL: func.func @low_fold
// CHECK-NEXT:    %[[B:.*]] = pg.constant dense<7.375000e+00> : tensor<3xbf16>
// CHECK-NEXT:    %[[Y:.*]] = pg.mul %[[B]], %x : tensor<3xbf16>
// CHECK-NEXT:    %[[K:.*]] = pg.constant dense<1.999510e-01> : tensor<f16>
// CHECK-NEXT:    func.return %[[Y]], %[[K]]

// -----

// Shape ops that do nothing disappear; chains of broadcasts, reshapes and permutes become one op.
func.func @shapes(%x: tensor<2x3xf32>, %v: tensor<3xf32>) -> (tensor<2x3xf32>, tensor<4x2x3xf32>, tensor<3x2xf32>, tensor<2x3xf32>, tensor<6xf32>, tensor<2x3xf32>, tensor<2x3xf32>, tensor<2x3xf32>, tensor<2x3xf32>, tensor<2x2xf32>) {
  %b0 = pg.broadcast_to %x : tensor<2x3xf32> -> tensor<2x3xf32>
  %b1 = pg.broadcast_to %v : tensor<3xf32> -> tensor<2x3xf32>
  %b2 = pg.broadcast_to %b1 : tensor<2x3xf32> -> tensor<4x2x3xf32>
  %p1 = pg.permute %x perm = [1, 0] : tensor<2x3xf32> -> tensor<3x2xf32>
  %p2 = pg.permute %p1 perm = [1, 0] : tensor<3x2xf32> -> tensor<2x3xf32>
  %p3 = pg.permute %p2 perm = [1, 0] : tensor<2x3xf32> -> tensor<3x2xf32>
  %r0 = pg.reshape %b0 : tensor<2x3xf32> -> tensor<2x3xf32>
  %r1 = pg.reshape %r0 : tensor<2x3xf32> -> tensor<3x2xf32>
  %r2 = pg.reshape %r1 : tensor<3x2xf32> -> tensor<6xf32>
  %r3 = pg.reshape %r1 : tensor<3x2xf32> -> tensor<2x3xf32>
  %s0 = pg.slice %x start = [0, 0] stop = [2, 3] step = [1, 1] : tensor<2x3xf32> -> tensor<2x3xf32>
  %s1 = pg.slice %x start = [0, 1] stop = [2, 3] step = [1, 1] : tensor<2x3xf32> -> tensor<2x2xf32>
  %pad = pg.pad %x low = [0, 0] high = [0, 0] interior = [0, 0] value = 0.0 : tensor<2x3xf32> -> tensor<2x3xf32>
  %cat = pg.concat %x dim = 0 : (tensor<2x3xf32>) -> tensor<2x3xf32>
  %sum = pg.sum %x dims = [] : tensor<2x3xf32> -> tensor<2x3xf32>
  func.return %p2, %b2, %p3, %r3, %r2, %s0, %pad, %cat, %sum, %s1 : tensor<2x3xf32>, tensor<4x2x3xf32>, tensor<3x2xf32>, tensor<2x3xf32>, tensor<6xf32>, tensor<2x3xf32>, tensor<2x3xf32>, tensor<2x3xf32>, tensor<2x3xf32>, tensor<2x2xf32>
}

// CHECK-LABEL: func.func @shapes
// CHECK-NEXT:    %[[B:.*]] = pg.broadcast_to %v : tensor<3xf32> -> tensor<4x2x3xf32>
// CHECK-NEXT:    %[[P:.*]] = pg.permute %x perm = [1, 0] : tensor<2x3xf32> -> tensor<3x2xf32>
// CHECK-NEXT:    %[[R:.*]] = pg.reshape %x : tensor<2x3xf32> -> tensor<6xf32>
// CHECK-NEXT:    %[[S:.*]] = pg.slice %x start = [0, 1] stop = [2, 3] step = [1, 1] : tensor<2x3xf32> -> tensor<2x2xf32>
// CHECK-NEXT:    func.return %x, %[[B]], %[[P]], %x, %[[R]], %x, %x, %x, %x, %[[S]]

// Permutations compose: result dim j of permute(permute(x, p), q) is dim p[q[j]] of x.
func.func @permute_compose(%x: tensor<2x3x4xf32>) -> tensor<4x2x3xf32> {
  %a = pg.permute %x perm = [1, 2, 0] : tensor<2x3x4xf32> -> tensor<3x4x2xf32>
  %b = pg.permute %a perm = [1, 2, 0] : tensor<3x4x2xf32> -> tensor<4x2x3xf32>
  func.return %b : tensor<4x2x3xf32>
}

// CHECK-LABEL: func.func @permute_compose
// CHECK-NEXT:    %[[B:.*]] = pg.permute %x perm = [2, 0, 1] : tensor<2x3x4xf32> -> tensor<4x2x3xf32>
// CHECK-NEXT:    func.return %[[B]]

// -----

// A select on a constant condition picks its branch; select(c, x, x) is x; a select on a runtime condition stays.
func.func @selects(%c: tensor<3xi1>, %x: tensor<3xf32>, %y: tensor<3xf32>) -> (tensor<3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>) {
  %t = pg.constant dense<true> : tensor<i1>
  %tb = pg.broadcast_to %t : tensor<i1> -> tensor<3xi1>
  %f = pg.constant dense<false> : tensor<3xi1>
  %a = pg.select %tb, %x, %y : tensor<3xi1>, tensor<3xf32>
  %b = pg.select %f, %x, %y : tensor<3xi1>, tensor<3xf32>
  %s = pg.select %c, %x, %x : tensor<3xi1>, tensor<3xf32>
  %k = pg.select %c, %x, %y : tensor<3xi1>, tensor<3xf32>
  func.return %a, %b, %s, %k : tensor<3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>
}

// CHECK-LABEL: func.func @selects
// CHECK-NEXT:    %[[K:.*]] = pg.select %c, %x, %y : tensor<3xi1>, tensor<3xf32>
// CHECK-NEXT:    func.return %x, %y, %x, %[[K]]

// -----

// Constant folding on splats, computed in the element type (exp of 2.0 in f32; integer division floors). A splat
// bigger than max-splat-elements stays a 0-d constant broadcast. Integer division by zero is left to run.
func.func @fold() -> (tensor<3xf32>, tensor<2x2xf32>, tensor<3xi1>, tensor<3xi64>, tensor<3xf32>, tensor<100xf32>, tensor<6xf32>, tensor<i64>) {
  %two = pg.constant dense<2.0> : tensor<f32>
  %twob = pg.broadcast_to %two : tensor<f32> -> tensor<3xf32>
  %e = pg.exp %twob : tensor<3xf32>
  %c = pg.constant dense<3.0> : tensor<2x2xf32>
  %two2 = pg.broadcast_to %two : tensor<f32> -> tensor<2x2xf32>
  %m = pg.mul %c, %two2 : tensor<2x2xf32>
  %lt = pg.cmp "lt", %twob, %e : tensor<3xf32> -> tensor<3xi1>
  %seven = pg.constant dense<-7> : tensor<3xi64>
  %two_i = pg.constant dense<2> : tensor<3xi64>
  %q = pg.div %seven, %two_i : tensor<3xi64>
  %ci = pg.cast %two_i : tensor<3xi64> -> tensor<3xf32>
  %big = pg.broadcast_to %two : tensor<f32> -> tensor<100xf32>
  %bign = pg.neg %big : tensor<100xf32>
  %six = pg.constant dense<1.0> : tensor<2x3xf32>
  %r6 = pg.reshape %six : tensor<2x3xf32> -> tensor<6xf32>
  %i0 = pg.constant dense<0> : tensor<i64>
  %i1 = pg.constant dense<1> : tensor<i64>
  %dz = pg.div %i1, %i0 : tensor<i64>
  func.return %e, %m, %lt, %q, %ci, %bign, %r6, %dz : tensor<3xf32>, tensor<2x2xf32>, tensor<3xi1>, tensor<3xi64>, tensor<3xf32>, tensor<100xf32>, tensor<6xf32>, tensor<i64>
}

// CHECK-LABEL: func.func @fold
// CHECK-NEXT:    %[[E:.*]] = pg.constant dense<7.38905573> : tensor<3xf32>
// CHECK-NEXT:    %[[M:.*]] = pg.constant dense<6.000000e+00> : tensor<2x2xf32>
// CHECK-NEXT:    %[[LT:.*]] = pg.constant dense<true> : tensor<3xi1>
// CHECK-NEXT:    %[[Q:.*]] = pg.constant dense<-4> : tensor<3xi64>
// CHECK-NEXT:    %[[CI:.*]] = pg.constant dense<2.000000e+00> : tensor<3xf32>
// CHECK-NEXT:    %[[BIG:.*]] = pg.constant dense<-2.000000e+00> : tensor<100xf32>
// CHECK-NEXT:    %[[R6:.*]] = pg.constant dense<1.000000e+00> : tensor<6xf32>
// CHECK-NEXT:    %[[I0:.*]] = pg.constant dense<0> : tensor<i64>
// CHECK-NEXT:    %[[I1:.*]] = pg.constant dense<1> : tensor<i64>
// CHECK-NEXT:    %[[DZ:.*]] = pg.div %[[I1]], %[[I0]] : tensor<i64>
// CHECK-NEXT:    func.return %[[E]], %[[M]], %[[LT]], %[[Q]], %[[CI]], %[[BIG]], %[[R6]], %[[DZ]]

// SMALL-LABEL: func.func @fold
// SMALL:         %[[M:.*]] = pg.constant dense<6.000000e+00> : tensor<2x2xf32>
// SMALL:         %[[C:.*]] = pg.constant dense<-2.000000e+00> : tensor<f32>
// SMALL-NEXT:    %[[BIG:.*]] = pg.broadcast_to %[[C]] : tensor<f32> -> tensor<100xf32>
// SMALL-NEXT:    %[[C1:.*]] = pg.constant dense<1.000000e+00> : tensor<f32>
// SMALL-NEXT:    %[[R6:.*]] = pg.broadcast_to %[[C1]] : tensor<f32> -> tensor<6xf32>

// Folding keeps IEEE results: 1 / 0 is inf and inf * 0 is NaN (printed as their bit patterns).
func.func @ieee() -> (tensor<f32>, tensor<f32>) {
  %zero = pg.constant dense<0.0> : tensor<f32>
  %one = pg.constant dense<1.0> : tensor<f32>
  %inf = pg.div %one, %zero : tensor<f32>
  %nan = pg.mul %inf, %zero : tensor<f32>
  func.return %inf, %nan : tensor<f32>, tensor<f32>
}

// CHECK-LABEL: func.func @ieee
// CHECK-NEXT:    %[[INF:.*]] = pg.constant dense<0x7f800000> : tensor<f32>
// CHECK-NEXT:    %[[NAN:.*]] = pg.constant dense<0x{{ffc00000|7fc00000}}> : tensor<f32>
// CHECK-NEXT:    func.return %[[INF]], %[[NAN]]

// -----

// stop_gradient is the identity once no pg.grad is left in the module...
func.func @no_grad_left(%x: tensor<3xf32>) -> tensor<3xf32> {
  %s = pg.stop_gradient %x : tensor<3xf32>
  %e = pg.exp %s : tensor<3xf32>
  func.return %e : tensor<3xf32>
}

// CHECK-LABEL: func.func @no_grad_left
// CHECK-NEXT:    %[[E:.*]] = pg.exp %x : tensor<3xf32>
// CHECK-NEXT:    func.return %[[E]]

// -----

// ... but it is kept while one is (pg-autodiff needs it to cut the gradient).
func.func @grad_left(%x: tensor<3xf32>) -> tensor<3xf32> {
  %s = pg.stop_gradient %x : tensor<3xf32>
  %e = pg.mul %s, %x : tensor<3xf32>
  %l = pg.sum %e dims = [0] : tensor<3xf32> -> tensor<f32>
  %g = pg.grad %l wrt %x : tensor<f32> wrt tensor<3xf32>
  func.return %g : tensor<3xf32>
}

// CHECK-LABEL: func.func @grad_left
// CHECK-NEXT:    %[[S:.*]] = pg.stop_gradient %x : tensor<3xf32>
// CHECK-NEXT:    %[[E:.*]] = pg.mul %[[S]], %x : tensor<3xf32>
