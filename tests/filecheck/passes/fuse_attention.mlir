// RUN: pgc-opt %s -p pg-fuse-attention | filecheck %s

// pg-fuse-attention: the ops the frontend records for hand-written attention (nanoGPT's non-flash path) become one
// pg.scaled_dot_product_attention; what is not attention (a finite fill, a softmax over another dim, a scale that
// is not a scalar constant, a mask applied by a product) is left alone.

// nanoGPT: (q @ k^T) * (1 / sqrt(8)), masked_fill(iota col > iota row, -inf), softmax(dim=-1), @ v: causal.
func.func @causal_iota(%q: tensor<2x4x8xf32>, %k: tensor<2x4x8xf32>, %v: tensor<2x4x8xf32>) -> tensor<2x4x8xf32> {
  %kt = pg.permute %k perm = [0, 2, 1] : tensor<2x4x8xf32> -> tensor<2x8x4xf32>
  %s0 = pg.matmul %q, %kt : (tensor<2x4x8xf32>, tensor<2x8x4xf32>) -> tensor<2x4x4xf32>
  %c = pg.constant dense<0.353553385> : tensor<f32>
  %cb = pg.broadcast_to %c : tensor<f32> -> tensor<2x4x4xf32>
  %s = pg.mul %s0, %cb : tensor<2x4x4xf32>
  %col = pg.iota dim = 1 : tensor<4x4xi64>
  %row = pg.iota dim = 0 : tensor<4x4xi64>
  %above = pg.cmp "gt", %col, %row : tensor<4x4xi64> -> tensor<4x4xi1>
  %aboveb = pg.broadcast_to %above : tensor<4x4xi1> -> tensor<2x4x4xi1>
  %fill = pg.constant dense<0xFF800000> : tensor<f32>
  %fillb = pg.broadcast_to %fill : tensor<f32> -> tensor<2x4x4xf32>
  %x = pg.select %aboveb, %fillb, %s : tensor<2x4x4xi1>, tensor<2x4x4xf32>
  %sm_m = pg.max %x dims = [2] keepdim : tensor<2x4x4xf32> -> tensor<2x4x1xf32>
  %sm_md = pg.stop_gradient %sm_m : tensor<2x4x1xf32>
  %sm_ninf = pg.constant dense<0xFF800000> : tensor<f32>
  %sm_ninfb = pg.broadcast_to %sm_ninf : tensor<f32> -> tensor<2x4x1xf32>
  %sm_isinf = pg.cmp "eq", %sm_md, %sm_ninfb : tensor<2x4x1xf32> -> tensor<2x4x1xi1>
  %sm_z = pg.constant dense<0.0> : tensor<f32>
  %sm_zb = pg.broadcast_to %sm_z : tensor<f32> -> tensor<2x4x1xf32>
  %sm_mm = pg.select %sm_isinf, %sm_zb, %sm_md : tensor<2x4x1xi1>, tensor<2x4x1xf32>
  %sm_mb = pg.broadcast_to %sm_mm : tensor<2x4x1xf32> -> tensor<2x4x4xf32>
  %sm_sh = pg.sub %x, %sm_mb : tensor<2x4x4xf32>
  %sm_e = pg.exp %sm_sh : tensor<2x4x4xf32>
  %sm_sum = pg.sum %sm_e dims = [2] keepdim : tensor<2x4x4xf32> -> tensor<2x4x1xf32>
  %sm_iszero = pg.cmp "eq", %sm_sum, %sm_zb : tensor<2x4x1xf32> -> tensor<2x4x1xi1>
  %sm_one = pg.constant dense<1.0> : tensor<f32>
  %sm_oneb = pg.broadcast_to %sm_one : tensor<f32> -> tensor<2x4x1xf32>
  %sm_den = pg.select %sm_iszero, %sm_oneb, %sm_sum : tensor<2x4x1xi1>, tensor<2x4x1xf32>
  %sm_denb = pg.broadcast_to %sm_den : tensor<2x4x1xf32> -> tensor<2x4x4xf32>
  %sm_p = pg.div %sm_e, %sm_denb : tensor<2x4x4xf32>
  %y = pg.matmul %sm_p, %v : (tensor<2x4x4xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  func.return %y : tensor<2x4x8xf32>
}

// CHECK-LABEL: func.func @causal_iota
// CHECK-NEXT:    %[[Y:.*]] = pg.scaled_dot_product_attention %q, %k, %v scale = 0.35355338454246521 causal : tensor<2x4x8xf32>, tensor<2x4x8xf32>, tensor<2x4x8xf32> -> tensor<2x4x8xf32>
// CHECK-NEXT:    func.return %[[Y]]

// bias[:, :, :T, :T] == 0 with bias a constant tril of ones (its values are checked); the scale divides.
func.func @causal_constant(%q: tensor<2x4x8xf32>, %k: tensor<2x4x8xf32>, %v: tensor<2x4x8xf32>) -> tensor<2x4x8xf32> {
  %kt = pg.permute %k perm = [0, 2, 1] : tensor<2x4x8xf32> -> tensor<2x8x4xf32>
  %s0 = pg.matmul %q, %kt : (tensor<2x4x8xf32>, tensor<2x8x4xf32>) -> tensor<2x4x4xf32>
  %c = pg.constant dense<2.82842708> : tensor<f32>
  %cb = pg.broadcast_to %c : tensor<f32> -> tensor<2x4x4xf32>
  %s = pg.div %s0, %cb : tensor<2x4x4xf32>
  %bias = pg.constant dense<[[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]]> : tensor<4x4xf32>
  %zero = pg.constant dense<0.0> : tensor<f32>
  %zerob = pg.broadcast_to %zero : tensor<f32> -> tensor<4x4xf32>
  %off = pg.cmp "eq", %bias, %zerob : tensor<4x4xf32> -> tensor<4x4xi1>
  %offb = pg.broadcast_to %off : tensor<4x4xi1> -> tensor<2x4x4xi1>
  %fill = pg.constant dense<0xFF800000> : tensor<f32>
  %fillb = pg.broadcast_to %fill : tensor<f32> -> tensor<2x4x4xf32>
  %x = pg.select %offb, %fillb, %s : tensor<2x4x4xi1>, tensor<2x4x4xf32>
  %sm_m = pg.max %x dims = [2] keepdim : tensor<2x4x4xf32> -> tensor<2x4x1xf32>
  %sm_md = pg.stop_gradient %sm_m : tensor<2x4x1xf32>
  %sm_ninf = pg.constant dense<0xFF800000> : tensor<f32>
  %sm_ninfb = pg.broadcast_to %sm_ninf : tensor<f32> -> tensor<2x4x1xf32>
  %sm_isinf = pg.cmp "eq", %sm_md, %sm_ninfb : tensor<2x4x1xf32> -> tensor<2x4x1xi1>
  %sm_z = pg.constant dense<0.0> : tensor<f32>
  %sm_zb = pg.broadcast_to %sm_z : tensor<f32> -> tensor<2x4x1xf32>
  %sm_mm = pg.select %sm_isinf, %sm_zb, %sm_md : tensor<2x4x1xi1>, tensor<2x4x1xf32>
  %sm_mb = pg.broadcast_to %sm_mm : tensor<2x4x1xf32> -> tensor<2x4x4xf32>
  %sm_sh = pg.sub %x, %sm_mb : tensor<2x4x4xf32>
  %sm_e = pg.exp %sm_sh : tensor<2x4x4xf32>
  %sm_sum = pg.sum %sm_e dims = [2] keepdim : tensor<2x4x4xf32> -> tensor<2x4x1xf32>
  %sm_iszero = pg.cmp "eq", %sm_sum, %sm_zb : tensor<2x4x1xf32> -> tensor<2x4x1xi1>
  %sm_one = pg.constant dense<1.0> : tensor<f32>
  %sm_oneb = pg.broadcast_to %sm_one : tensor<f32> -> tensor<2x4x1xf32>
  %sm_den = pg.select %sm_iszero, %sm_oneb, %sm_sum : tensor<2x4x1xi1>, tensor<2x4x1xf32>
  %sm_denb = pg.broadcast_to %sm_den : tensor<2x4x1xf32> -> tensor<2x4x4xf32>
  %sm_p = pg.div %sm_e, %sm_denb : tensor<2x4x4xf32>
  %y = pg.matmul %sm_p, %v : (tensor<2x4x4xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  func.return %y : tensor<2x4x8xf32>
}

// CHECK-LABEL: func.func @causal_constant
// CHECK-NOT:     pg.matmul
// CHECK:         pg.scaled_dot_product_attention %q, %k, %v scale = 0.3535533{{[0-9]*}} causal :
// CHECK-NOT:     pg.matmul

// A constant mask that is not causal (key j >= i) stays the op's mask.
func.func @constant_not_causal(%q: tensor<2x4x8xf32>, %k: tensor<2x4x8xf32>, %v: tensor<2x4x8xf32>) -> tensor<2x4x8xf32> {
  %kt = pg.permute %k perm = [0, 2, 1] : tensor<2x4x8xf32> -> tensor<2x8x4xf32>
  %s0 = pg.matmul %q, %kt : (tensor<2x4x8xf32>, tensor<2x8x4xf32>) -> tensor<2x4x4xf32>
  %c = pg.constant dense<0.353553385> : tensor<f32>
  %cb = pg.broadcast_to %c : tensor<f32> -> tensor<2x4x4xf32>
  %s = pg.mul %s0, %cb : tensor<2x4x4xf32>
  %col = pg.iota dim = 1 : tensor<4x4xi64>
  %row = pg.iota dim = 0 : tensor<4x4xi64>
  %keep = pg.cmp "ge", %col, %row : tensor<4x4xi64> -> tensor<4x4xi1>
  %keepb = pg.broadcast_to %keep : tensor<4x4xi1> -> tensor<2x4x4xi1>
  %fill = pg.constant dense<0xFF800000> : tensor<f32>
  %fillb = pg.broadcast_to %fill : tensor<f32> -> tensor<2x4x4xf32>
  %x = pg.select %keepb, %s, %fillb : tensor<2x4x4xi1>, tensor<2x4x4xf32>
  %sm_m = pg.max %x dims = [2] keepdim : tensor<2x4x4xf32> -> tensor<2x4x1xf32>
  %sm_md = pg.stop_gradient %sm_m : tensor<2x4x1xf32>
  %sm_ninf = pg.constant dense<0xFF800000> : tensor<f32>
  %sm_ninfb = pg.broadcast_to %sm_ninf : tensor<f32> -> tensor<2x4x1xf32>
  %sm_isinf = pg.cmp "eq", %sm_md, %sm_ninfb : tensor<2x4x1xf32> -> tensor<2x4x1xi1>
  %sm_z = pg.constant dense<0.0> : tensor<f32>
  %sm_zb = pg.broadcast_to %sm_z : tensor<f32> -> tensor<2x4x1xf32>
  %sm_mm = pg.select %sm_isinf, %sm_zb, %sm_md : tensor<2x4x1xi1>, tensor<2x4x1xf32>
  %sm_mb = pg.broadcast_to %sm_mm : tensor<2x4x1xf32> -> tensor<2x4x4xf32>
  %sm_sh = pg.sub %x, %sm_mb : tensor<2x4x4xf32>
  %sm_e = pg.exp %sm_sh : tensor<2x4x4xf32>
  %sm_sum = pg.sum %sm_e dims = [2] keepdim : tensor<2x4x4xf32> -> tensor<2x4x1xf32>
  %sm_iszero = pg.cmp "eq", %sm_sum, %sm_zb : tensor<2x4x1xf32> -> tensor<2x4x1xi1>
  %sm_one = pg.constant dense<1.0> : tensor<f32>
  %sm_oneb = pg.broadcast_to %sm_one : tensor<f32> -> tensor<2x4x1xf32>
  %sm_den = pg.select %sm_iszero, %sm_oneb, %sm_sum : tensor<2x4x1xi1>, tensor<2x4x1xf32>
  %sm_denb = pg.broadcast_to %sm_den : tensor<2x4x1xf32> -> tensor<2x4x4xf32>
  %sm_p = pg.div %sm_e, %sm_denb : tensor<2x4x4xf32>
  %y = pg.matmul %sm_p, %v : (tensor<2x4x4xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  func.return %y : tensor<2x4x8xf32>
}

// CHECK-LABEL: func.func @constant_not_causal
// CHECK:         %[[KEEP:.*]] = pg.cmp "ge"
// CHECK-NEXT:    pg.scaled_dot_product_attention %q, %k, %v mask %[[KEEP]] : tensor<4x4xi1> scale = 0.3535533{{[0-9]*}} :
// CHECK-NOT:     causal

// A step-input mask (nanoGPT's registered bias buffer: its values are not known) becomes the op's mask,
// negated exactly (eq -> ne), never assumed causal.
func.func @bias_input(%q: tensor<2x4x8xf32>, %k: tensor<2x4x8xf32>, %v: tensor<2x4x8xf32>, %bias: tensor<1x4x4xf32>) -> tensor<2x4x8xf32> {
  %kt = pg.permute %k perm = [0, 2, 1] : tensor<2x4x8xf32> -> tensor<2x8x4xf32>
  %s0 = pg.matmul %q, %kt : (tensor<2x4x8xf32>, tensor<2x8x4xf32>) -> tensor<2x4x4xf32>
  %c = pg.constant dense<0.353553385> : tensor<f32>
  %cb = pg.broadcast_to %c : tensor<f32> -> tensor<2x4x4xf32>
  %s = pg.mul %s0, %cb : tensor<2x4x4xf32>
  %zero = pg.constant dense<0.0> : tensor<f32>
  %zerob = pg.broadcast_to %zero : tensor<f32> -> tensor<1x4x4xf32>
  %off = pg.cmp "eq", %bias, %zerob : tensor<1x4x4xf32> -> tensor<1x4x4xi1>
  %offb = pg.broadcast_to %off : tensor<1x4x4xi1> -> tensor<2x4x4xi1>
  %fill = pg.constant dense<0xFF800000> : tensor<f32>
  %fillb = pg.broadcast_to %fill : tensor<f32> -> tensor<2x4x4xf32>
  %x = pg.select %offb, %fillb, %s : tensor<2x4x4xi1>, tensor<2x4x4xf32>
  %sm_m = pg.max %x dims = [2] keepdim : tensor<2x4x4xf32> -> tensor<2x4x1xf32>
  %sm_md = pg.stop_gradient %sm_m : tensor<2x4x1xf32>
  %sm_ninf = pg.constant dense<0xFF800000> : tensor<f32>
  %sm_ninfb = pg.broadcast_to %sm_ninf : tensor<f32> -> tensor<2x4x1xf32>
  %sm_isinf = pg.cmp "eq", %sm_md, %sm_ninfb : tensor<2x4x1xf32> -> tensor<2x4x1xi1>
  %sm_z = pg.constant dense<0.0> : tensor<f32>
  %sm_zb = pg.broadcast_to %sm_z : tensor<f32> -> tensor<2x4x1xf32>
  %sm_mm = pg.select %sm_isinf, %sm_zb, %sm_md : tensor<2x4x1xi1>, tensor<2x4x1xf32>
  %sm_mb = pg.broadcast_to %sm_mm : tensor<2x4x1xf32> -> tensor<2x4x4xf32>
  %sm_sh = pg.sub %x, %sm_mb : tensor<2x4x4xf32>
  %sm_e = pg.exp %sm_sh : tensor<2x4x4xf32>
  %sm_sum = pg.sum %sm_e dims = [2] keepdim : tensor<2x4x4xf32> -> tensor<2x4x1xf32>
  %sm_iszero = pg.cmp "eq", %sm_sum, %sm_zb : tensor<2x4x1xf32> -> tensor<2x4x1xi1>
  %sm_one = pg.constant dense<1.0> : tensor<f32>
  %sm_oneb = pg.broadcast_to %sm_one : tensor<f32> -> tensor<2x4x1xf32>
  %sm_den = pg.select %sm_iszero, %sm_oneb, %sm_sum : tensor<2x4x1xi1>, tensor<2x4x1xf32>
  %sm_denb = pg.broadcast_to %sm_den : tensor<2x4x1xf32> -> tensor<2x4x4xf32>
  %sm_p = pg.div %sm_e, %sm_denb : tensor<2x4x4xf32>
  %y = pg.matmul %sm_p, %v : (tensor<2x4x4xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  func.return %y : tensor<2x4x8xf32>
}

// CHECK-LABEL: func.func @bias_input
// CHECK:         %[[ON:.*]] = pg.cmp "ne", %bias, %{{.*}} : tensor<1x4x4xf32> -> tensor<1x4x4xi1>
// CHECK-NEXT:    pg.scaled_dot_product_attention %q, %k, %v mask %[[ON]] : tensor<1x4x4xi1> scale = 0.3535533{{[0-9]*}} :
// CHECK-NOT:     causal

// An additive float mask, the scale on q, and F.dropout's select(keep, p * c, 0) on the probabilities.
func.func @additive_dropout(%q: tensor<2x4x8xf32>, %k: tensor<2x4x8xf32>, %v: tensor<2x4x8xf32>, %m: tensor<4x4xf32>, %keep: tensor<2x4x4xi1>) -> tensor<2x4x8xf32> {
  %qc = pg.constant dense<0.5> : tensor<f32>
  %qcb = pg.broadcast_to %qc : tensor<f32> -> tensor<2x4x8xf32>
  %qs = pg.mul %q, %qcb : tensor<2x4x8xf32>
  %kt = pg.permute %k perm = [0, 2, 1] : tensor<2x4x8xf32> -> tensor<2x8x4xf32>
  %s = pg.matmul %qs, %kt : (tensor<2x4x8xf32>, tensor<2x8x4xf32>) -> tensor<2x4x4xf32>
  %mb = pg.broadcast_to %m : tensor<4x4xf32> -> tensor<2x4x4xf32>
  %x = pg.add %s, %mb : tensor<2x4x4xf32>
  %sm_m = pg.max %x dims = [2] keepdim : tensor<2x4x4xf32> -> tensor<2x4x1xf32>
  %sm_md = pg.stop_gradient %sm_m : tensor<2x4x1xf32>
  %sm_ninf = pg.constant dense<0xFF800000> : tensor<f32>
  %sm_ninfb = pg.broadcast_to %sm_ninf : tensor<f32> -> tensor<2x4x1xf32>
  %sm_isinf = pg.cmp "eq", %sm_md, %sm_ninfb : tensor<2x4x1xf32> -> tensor<2x4x1xi1>
  %sm_z = pg.constant dense<0.0> : tensor<f32>
  %sm_zb = pg.broadcast_to %sm_z : tensor<f32> -> tensor<2x4x1xf32>
  %sm_mm = pg.select %sm_isinf, %sm_zb, %sm_md : tensor<2x4x1xi1>, tensor<2x4x1xf32>
  %sm_mb = pg.broadcast_to %sm_mm : tensor<2x4x1xf32> -> tensor<2x4x4xf32>
  %sm_sh = pg.sub %x, %sm_mb : tensor<2x4x4xf32>
  %sm_e = pg.exp %sm_sh : tensor<2x4x4xf32>
  %sm_sum = pg.sum %sm_e dims = [2] keepdim : tensor<2x4x4xf32> -> tensor<2x4x1xf32>
  %sm_iszero = pg.cmp "eq", %sm_sum, %sm_zb : tensor<2x4x1xf32> -> tensor<2x4x1xi1>
  %sm_one = pg.constant dense<1.0> : tensor<f32>
  %sm_oneb = pg.broadcast_to %sm_one : tensor<f32> -> tensor<2x4x1xf32>
  %sm_den = pg.select %sm_iszero, %sm_oneb, %sm_sum : tensor<2x4x1xi1>, tensor<2x4x1xf32>
  %sm_denb = pg.broadcast_to %sm_den : tensor<2x4x1xf32> -> tensor<2x4x4xf32>
  %sm_p = pg.div %sm_e, %sm_denb : tensor<2x4x4xf32>
  %dc = pg.constant dense<1.25> : tensor<f32>
  %dcb = pg.broadcast_to %dc : tensor<f32> -> tensor<2x4x4xf32>
  %dz = pg.constant dense<0.0> : tensor<f32>
  %dzb = pg.broadcast_to %dz : tensor<f32> -> tensor<2x4x4xf32>
  %pd = pg.mul %sm_p, %dcb : tensor<2x4x4xf32>
  %pdrop = pg.select %keep, %pd, %dzb : tensor<2x4x4xi1>, tensor<2x4x4xf32>
  %y = pg.matmul %pdrop, %v : (tensor<2x4x4xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  func.return %y : tensor<2x4x8xf32>
}

// CHECK-LABEL: func.func @additive_dropout
// CHECK:         %[[D:.*]] = pg.select %keep, %{{.*}}, %{{.*}} : tensor<2x4x4xi1>, tensor<2x4x4xf32>
// CHECK-NEXT:    pg.scaled_dot_product_attention %q, %k, %v mask %m : tensor<4x4xf32> dropout %[[D]] : tensor<2x4x4xf32> scale = 5.000000e-01 :
// CHECK-NOT:     pg.exp

// Not a mask of the op: masked_fill with a finite value (-1e9) replaces the scores instead of dropping keys.
func.func @finite_fill(%q: tensor<2x4x8xf32>, %k: tensor<2x4x8xf32>, %v: tensor<2x4x8xf32>, %off: tensor<2x4x4xi1>) -> tensor<2x4x8xf32> {
  %kt = pg.permute %k perm = [0, 2, 1] : tensor<2x4x8xf32> -> tensor<2x8x4xf32>
  %s0 = pg.matmul %q, %kt : (tensor<2x4x8xf32>, tensor<2x8x4xf32>) -> tensor<2x4x4xf32>
  %c = pg.constant dense<0.353553385> : tensor<f32>
  %cb = pg.broadcast_to %c : tensor<f32> -> tensor<2x4x4xf32>
  %s = pg.mul %s0, %cb : tensor<2x4x4xf32>
  %fill = pg.constant dense<-1.0e+09> : tensor<f32>
  %fillb = pg.broadcast_to %fill : tensor<f32> -> tensor<2x4x4xf32>
  %x = pg.select %off, %fillb, %s : tensor<2x4x4xi1>, tensor<2x4x4xf32>
  %sm_m = pg.max %x dims = [2] keepdim : tensor<2x4x4xf32> -> tensor<2x4x1xf32>
  %sm_md = pg.stop_gradient %sm_m : tensor<2x4x1xf32>
  %sm_ninf = pg.constant dense<0xFF800000> : tensor<f32>
  %sm_ninfb = pg.broadcast_to %sm_ninf : tensor<f32> -> tensor<2x4x1xf32>
  %sm_isinf = pg.cmp "eq", %sm_md, %sm_ninfb : tensor<2x4x1xf32> -> tensor<2x4x1xi1>
  %sm_z = pg.constant dense<0.0> : tensor<f32>
  %sm_zb = pg.broadcast_to %sm_z : tensor<f32> -> tensor<2x4x1xf32>
  %sm_mm = pg.select %sm_isinf, %sm_zb, %sm_md : tensor<2x4x1xi1>, tensor<2x4x1xf32>
  %sm_mb = pg.broadcast_to %sm_mm : tensor<2x4x1xf32> -> tensor<2x4x4xf32>
  %sm_sh = pg.sub %x, %sm_mb : tensor<2x4x4xf32>
  %sm_e = pg.exp %sm_sh : tensor<2x4x4xf32>
  %sm_sum = pg.sum %sm_e dims = [2] keepdim : tensor<2x4x4xf32> -> tensor<2x4x1xf32>
  %sm_iszero = pg.cmp "eq", %sm_sum, %sm_zb : tensor<2x4x1xf32> -> tensor<2x4x1xi1>
  %sm_one = pg.constant dense<1.0> : tensor<f32>
  %sm_oneb = pg.broadcast_to %sm_one : tensor<f32> -> tensor<2x4x1xf32>
  %sm_den = pg.select %sm_iszero, %sm_oneb, %sm_sum : tensor<2x4x1xi1>, tensor<2x4x1xf32>
  %sm_denb = pg.broadcast_to %sm_den : tensor<2x4x1xf32> -> tensor<2x4x4xf32>
  %sm_p = pg.div %sm_e, %sm_denb : tensor<2x4x4xf32>
  %y = pg.matmul %sm_p, %v : (tensor<2x4x4xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  func.return %y : tensor<2x4x8xf32>
}

// CHECK-LABEL: func.func @finite_fill
// CHECK-NOT:     pg.scaled_dot_product_attention
// CHECK:         pg.exp
// CHECK:         func.return

// Not a mask of the op: a multiplicative mask (scores * m, m a tensor argument, so no scalar scale either).
func.func @product_mask(%q: tensor<2x4x8xf32>, %k: tensor<2x4x8xf32>, %v: tensor<2x4x8xf32>, %m: tensor<2x4x4xf32>) -> tensor<2x4x8xf32> {
  %kt = pg.permute %k perm = [0, 2, 1] : tensor<2x4x8xf32> -> tensor<2x8x4xf32>
  %s0 = pg.matmul %q, %kt : (tensor<2x4x8xf32>, tensor<2x8x4xf32>) -> tensor<2x4x4xf32>
  %x = pg.mul %s0, %m : tensor<2x4x4xf32>
  %sm_m = pg.max %x dims = [2] keepdim : tensor<2x4x4xf32> -> tensor<2x4x1xf32>
  %sm_md = pg.stop_gradient %sm_m : tensor<2x4x1xf32>
  %sm_ninf = pg.constant dense<0xFF800000> : tensor<f32>
  %sm_ninfb = pg.broadcast_to %sm_ninf : tensor<f32> -> tensor<2x4x1xf32>
  %sm_isinf = pg.cmp "eq", %sm_md, %sm_ninfb : tensor<2x4x1xf32> -> tensor<2x4x1xi1>
  %sm_z = pg.constant dense<0.0> : tensor<f32>
  %sm_zb = pg.broadcast_to %sm_z : tensor<f32> -> tensor<2x4x1xf32>
  %sm_mm = pg.select %sm_isinf, %sm_zb, %sm_md : tensor<2x4x1xi1>, tensor<2x4x1xf32>
  %sm_mb = pg.broadcast_to %sm_mm : tensor<2x4x1xf32> -> tensor<2x4x4xf32>
  %sm_sh = pg.sub %x, %sm_mb : tensor<2x4x4xf32>
  %sm_e = pg.exp %sm_sh : tensor<2x4x4xf32>
  %sm_sum = pg.sum %sm_e dims = [2] keepdim : tensor<2x4x4xf32> -> tensor<2x4x1xf32>
  %sm_iszero = pg.cmp "eq", %sm_sum, %sm_zb : tensor<2x4x1xf32> -> tensor<2x4x1xi1>
  %sm_one = pg.constant dense<1.0> : tensor<f32>
  %sm_oneb = pg.broadcast_to %sm_one : tensor<f32> -> tensor<2x4x1xf32>
  %sm_den = pg.select %sm_iszero, %sm_oneb, %sm_sum : tensor<2x4x1xi1>, tensor<2x4x1xf32>
  %sm_denb = pg.broadcast_to %sm_den : tensor<2x4x1xf32> -> tensor<2x4x4xf32>
  %sm_p = pg.div %sm_e, %sm_denb : tensor<2x4x4xf32>
  %y = pg.matmul %sm_p, %v : (tensor<2x4x4xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  func.return %y : tensor<2x4x8xf32>
}

// CHECK-LABEL: func.func @product_mask
// CHECK-NOT:     pg.scaled_dot_product_attention
// CHECK:         pg.exp
// CHECK:         func.return

// Not a scalar scale: a constant that differs along the keys.
func.func @vector_scale(%q: tensor<2x4x8xf32>, %k: tensor<2x4x8xf32>, %v: tensor<2x4x8xf32>) -> tensor<2x4x8xf32> {
  %kt = pg.permute %k perm = [0, 2, 1] : tensor<2x4x8xf32> -> tensor<2x8x4xf32>
  %s0 = pg.matmul %q, %kt : (tensor<2x4x8xf32>, tensor<2x8x4xf32>) -> tensor<2x4x4xf32>
  %c = pg.constant dense<[1.0, 2.0, 3.0, 4.0]> : tensor<4xf32>
  %cb = pg.broadcast_to %c : tensor<4xf32> -> tensor<2x4x4xf32>
  %x = pg.mul %s0, %cb : tensor<2x4x4xf32>
  %sm_m = pg.max %x dims = [2] keepdim : tensor<2x4x4xf32> -> tensor<2x4x1xf32>
  %sm_md = pg.stop_gradient %sm_m : tensor<2x4x1xf32>
  %sm_ninf = pg.constant dense<0xFF800000> : tensor<f32>
  %sm_ninfb = pg.broadcast_to %sm_ninf : tensor<f32> -> tensor<2x4x1xf32>
  %sm_isinf = pg.cmp "eq", %sm_md, %sm_ninfb : tensor<2x4x1xf32> -> tensor<2x4x1xi1>
  %sm_z = pg.constant dense<0.0> : tensor<f32>
  %sm_zb = pg.broadcast_to %sm_z : tensor<f32> -> tensor<2x4x1xf32>
  %sm_mm = pg.select %sm_isinf, %sm_zb, %sm_md : tensor<2x4x1xi1>, tensor<2x4x1xf32>
  %sm_mb = pg.broadcast_to %sm_mm : tensor<2x4x1xf32> -> tensor<2x4x4xf32>
  %sm_sh = pg.sub %x, %sm_mb : tensor<2x4x4xf32>
  %sm_e = pg.exp %sm_sh : tensor<2x4x4xf32>
  %sm_sum = pg.sum %sm_e dims = [2] keepdim : tensor<2x4x4xf32> -> tensor<2x4x1xf32>
  %sm_iszero = pg.cmp "eq", %sm_sum, %sm_zb : tensor<2x4x1xf32> -> tensor<2x4x1xi1>
  %sm_one = pg.constant dense<1.0> : tensor<f32>
  %sm_oneb = pg.broadcast_to %sm_one : tensor<f32> -> tensor<2x4x1xf32>
  %sm_den = pg.select %sm_iszero, %sm_oneb, %sm_sum : tensor<2x4x1xi1>, tensor<2x4x1xf32>
  %sm_denb = pg.broadcast_to %sm_den : tensor<2x4x1xf32> -> tensor<2x4x4xf32>
  %sm_p = pg.div %sm_e, %sm_denb : tensor<2x4x4xf32>
  %y = pg.matmul %sm_p, %v : (tensor<2x4x4xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  func.return %y : tensor<2x4x8xf32>
}

// CHECK-LABEL: func.func @vector_scale
// CHECK-NOT:     pg.scaled_dot_product_attention
// CHECK:         pg.exp
// CHECK:         func.return

// Not attention: the softmax runs over the queries (dim 1), not the keys.
func.func @softmax_other_dim(%q: tensor<2x4x8xf32>, %k: tensor<2x4x8xf32>, %v: tensor<2x4x8xf32>) -> tensor<2x4x8xf32> {
  %kt = pg.permute %k perm = [0, 2, 1] : tensor<2x4x8xf32> -> tensor<2x8x4xf32>
  %s0 = pg.matmul %q, %kt : (tensor<2x4x8xf32>, tensor<2x8x4xf32>) -> tensor<2x4x4xf32>
  %c = pg.constant dense<0.353553385> : tensor<f32>
  %cb = pg.broadcast_to %c : tensor<f32> -> tensor<2x4x4xf32>
  %s = pg.mul %s0, %cb : tensor<2x4x4xf32>
  %sm_m = pg.max %s dims = [1] keepdim : tensor<2x4x4xf32> -> tensor<2x1x4xf32>
  %sm_md = pg.stop_gradient %sm_m : tensor<2x1x4xf32>
  %sm_ninf = pg.constant dense<0xFF800000> : tensor<f32>
  %sm_ninfb = pg.broadcast_to %sm_ninf : tensor<f32> -> tensor<2x1x4xf32>
  %sm_isinf = pg.cmp "eq", %sm_md, %sm_ninfb : tensor<2x1x4xf32> -> tensor<2x1x4xi1>
  %sm_z = pg.constant dense<0.0> : tensor<f32>
  %sm_zb = pg.broadcast_to %sm_z : tensor<f32> -> tensor<2x1x4xf32>
  %sm_mm = pg.select %sm_isinf, %sm_zb, %sm_md : tensor<2x1x4xi1>, tensor<2x1x4xf32>
  %sm_mb = pg.broadcast_to %sm_mm : tensor<2x1x4xf32> -> tensor<2x4x4xf32>
  %sm_sh = pg.sub %s, %sm_mb : tensor<2x4x4xf32>
  %sm_e = pg.exp %sm_sh : tensor<2x4x4xf32>
  %sm_sum = pg.sum %sm_e dims = [1] keepdim : tensor<2x4x4xf32> -> tensor<2x1x4xf32>
  %sm_iszero = pg.cmp "eq", %sm_sum, %sm_zb : tensor<2x1x4xf32> -> tensor<2x1x4xi1>
  %sm_one = pg.constant dense<1.0> : tensor<f32>
  %sm_oneb = pg.broadcast_to %sm_one : tensor<f32> -> tensor<2x1x4xf32>
  %sm_den = pg.select %sm_iszero, %sm_oneb, %sm_sum : tensor<2x1x4xi1>, tensor<2x1x4xf32>
  %sm_denb = pg.broadcast_to %sm_den : tensor<2x1x4xf32> -> tensor<2x4x4xf32>
  %sm_p = pg.div %sm_e, %sm_denb : tensor<2x4x4xf32>
  %y = pg.matmul %sm_p, %v : (tensor<2x4x4xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  func.return %y : tensor<2x4x8xf32>
}

// CHECK-LABEL: func.func @softmax_other_dim
// CHECK-NOT:     pg.scaled_dot_product_attention
// CHECK:         pg.exp
// CHECK:         func.return

// The scale split over k^T (a quotient) and the scores (a product): the factors multiply (0.5 / 2 = 0.25).
func.func @scale_on_kt(%q: tensor<2x4x8xf32>, %k: tensor<2x4x8xf32>, %v: tensor<2x4x8xf32>) -> tensor<2x4x8xf32> {
  %kt0 = pg.permute %k perm = [0, 2, 1] : tensor<2x4x8xf32> -> tensor<2x8x4xf32>
  %kc = pg.constant dense<2.0> : tensor<f32>
  %kcb = pg.broadcast_to %kc : tensor<f32> -> tensor<2x8x4xf32>
  %kt = pg.div %kt0, %kcb : tensor<2x8x4xf32>
  %s0 = pg.matmul %q, %kt : (tensor<2x4x8xf32>, tensor<2x8x4xf32>) -> tensor<2x4x4xf32>
  %c = pg.constant dense<0.5> : tensor<f32>
  %cb = pg.broadcast_to %c : tensor<f32> -> tensor<2x4x4xf32>
  %s = pg.mul %cb, %s0 : tensor<2x4x4xf32>
  %sm_m = pg.max %s dims = [2] keepdim : tensor<2x4x4xf32> -> tensor<2x4x1xf32>
  %sm_md = pg.stop_gradient %sm_m : tensor<2x4x1xf32>
  %sm_ninf = pg.constant dense<0xFF800000> : tensor<f32>
  %sm_ninfb = pg.broadcast_to %sm_ninf : tensor<f32> -> tensor<2x4x1xf32>
  %sm_isinf = pg.cmp "eq", %sm_md, %sm_ninfb : tensor<2x4x1xf32> -> tensor<2x4x1xi1>
  %sm_z = pg.constant dense<0.0> : tensor<f32>
  %sm_zb = pg.broadcast_to %sm_z : tensor<f32> -> tensor<2x4x1xf32>
  %sm_mm = pg.select %sm_isinf, %sm_zb, %sm_md : tensor<2x4x1xi1>, tensor<2x4x1xf32>
  %sm_mb = pg.broadcast_to %sm_mm : tensor<2x4x1xf32> -> tensor<2x4x4xf32>
  %sm_sh = pg.sub %s, %sm_mb : tensor<2x4x4xf32>
  %sm_e = pg.exp %sm_sh : tensor<2x4x4xf32>
  %sm_sum = pg.sum %sm_e dims = [2] keepdim : tensor<2x4x4xf32> -> tensor<2x4x1xf32>
  %sm_iszero = pg.cmp "eq", %sm_sum, %sm_zb : tensor<2x4x1xf32> -> tensor<2x4x1xi1>
  %sm_one = pg.constant dense<1.0> : tensor<f32>
  %sm_oneb = pg.broadcast_to %sm_one : tensor<f32> -> tensor<2x4x1xf32>
  %sm_den = pg.select %sm_iszero, %sm_oneb, %sm_sum : tensor<2x4x1xi1>, tensor<2x4x1xf32>
  %sm_denb = pg.broadcast_to %sm_den : tensor<2x4x1xf32> -> tensor<2x4x4xf32>
  %sm_p = pg.div %sm_e, %sm_denb : tensor<2x4x4xf32>
  %y = pg.matmul %sm_p, %v : (tensor<2x4x4xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  func.return %y : tensor<2x4x8xf32>
}

// CHECK-LABEL: func.func @scale_on_kt
// CHECK-NEXT:    pg.scaled_dot_product_attention %q, %k, %v scale = 2.500000e-01 : tensor<2x4x8xf32>, tensor<2x4x8xf32>, tensor<2x4x8xf32> -> tensor<2x4x8xf32>
// CHECK-NEXT:    func.return

// Two user masks (a boolean and an additive one) are more than the op's one mask: left alone.
func.func @two_masks(%q: tensor<2x4x8xf32>, %k: tensor<2x4x8xf32>, %v: tensor<2x4x8xf32>, %keep: tensor<2x4x4xi1>, %m: tensor<2x4x4xf32>) -> tensor<2x4x8xf32> {
  %kt = pg.permute %k perm = [0, 2, 1] : tensor<2x4x8xf32> -> tensor<2x8x4xf32>
  %s0 = pg.matmul %q, %kt : (tensor<2x4x8xf32>, tensor<2x8x4xf32>) -> tensor<2x4x4xf32>
  %c = pg.constant dense<0.353553385> : tensor<f32>
  %cb = pg.broadcast_to %c : tensor<f32> -> tensor<2x4x4xf32>
  %s = pg.mul %s0, %cb : tensor<2x4x4xf32>
  %fill = pg.constant dense<0xFF800000> : tensor<f32>
  %fillb = pg.broadcast_to %fill : tensor<f32> -> tensor<2x4x4xf32>
  %s1 = pg.select %keep, %s, %fillb : tensor<2x4x4xi1>, tensor<2x4x4xf32>
  %x = pg.add %s1, %m : tensor<2x4x4xf32>
  %sm_m = pg.max %x dims = [2] keepdim : tensor<2x4x4xf32> -> tensor<2x4x1xf32>
  %sm_md = pg.stop_gradient %sm_m : tensor<2x4x1xf32>
  %sm_ninf = pg.constant dense<0xFF800000> : tensor<f32>
  %sm_ninfb = pg.broadcast_to %sm_ninf : tensor<f32> -> tensor<2x4x1xf32>
  %sm_isinf = pg.cmp "eq", %sm_md, %sm_ninfb : tensor<2x4x1xf32> -> tensor<2x4x1xi1>
  %sm_z = pg.constant dense<0.0> : tensor<f32>
  %sm_zb = pg.broadcast_to %sm_z : tensor<f32> -> tensor<2x4x1xf32>
  %sm_mm = pg.select %sm_isinf, %sm_zb, %sm_md : tensor<2x4x1xi1>, tensor<2x4x1xf32>
  %sm_mb = pg.broadcast_to %sm_mm : tensor<2x4x1xf32> -> tensor<2x4x4xf32>
  %sm_sh = pg.sub %x, %sm_mb : tensor<2x4x4xf32>
  %sm_e = pg.exp %sm_sh : tensor<2x4x4xf32>
  %sm_sum = pg.sum %sm_e dims = [2] keepdim : tensor<2x4x4xf32> -> tensor<2x4x1xf32>
  %sm_iszero = pg.cmp "eq", %sm_sum, %sm_zb : tensor<2x4x1xf32> -> tensor<2x4x1xi1>
  %sm_one = pg.constant dense<1.0> : tensor<f32>
  %sm_oneb = pg.broadcast_to %sm_one : tensor<f32> -> tensor<2x4x1xf32>
  %sm_den = pg.select %sm_iszero, %sm_oneb, %sm_sum : tensor<2x4x1xi1>, tensor<2x4x1xf32>
  %sm_denb = pg.broadcast_to %sm_den : tensor<2x4x1xf32> -> tensor<2x4x4xf32>
  %sm_p = pg.div %sm_e, %sm_denb : tensor<2x4x4xf32>
  %y = pg.matmul %sm_p, %v : (tensor<2x4x4xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  func.return %y : tensor<2x4x8xf32>
}

// CHECK-LABEL: func.func @two_masks
// CHECK-NOT:     pg.scaled_dot_product_attention
// CHECK:         pg.exp
// CHECK:         func.return

// The probabilities have another use (a second product): the T x T values stay alive, nothing is fused.
func.func @probabilities_used(%q: tensor<2x4x8xf32>, %k: tensor<2x4x8xf32>, %v: tensor<2x4x8xf32>) -> tensor<2x4x8xf32> {
  %kt = pg.permute %k perm = [0, 2, 1] : tensor<2x4x8xf32> -> tensor<2x8x4xf32>
  %s0 = pg.matmul %q, %kt : (tensor<2x4x8xf32>, tensor<2x8x4xf32>) -> tensor<2x4x4xf32>
  %c = pg.constant dense<0.353553385> : tensor<f32>
  %cb = pg.broadcast_to %c : tensor<f32> -> tensor<2x4x4xf32>
  %s = pg.mul %s0, %cb : tensor<2x4x4xf32>
  %sm_m = pg.max %s dims = [2] keepdim : tensor<2x4x4xf32> -> tensor<2x4x1xf32>
  %sm_md = pg.stop_gradient %sm_m : tensor<2x4x1xf32>
  %sm_ninf = pg.constant dense<0xFF800000> : tensor<f32>
  %sm_ninfb = pg.broadcast_to %sm_ninf : tensor<f32> -> tensor<2x4x1xf32>
  %sm_isinf = pg.cmp "eq", %sm_md, %sm_ninfb : tensor<2x4x1xf32> -> tensor<2x4x1xi1>
  %sm_z = pg.constant dense<0.0> : tensor<f32>
  %sm_zb = pg.broadcast_to %sm_z : tensor<f32> -> tensor<2x4x1xf32>
  %sm_mm = pg.select %sm_isinf, %sm_zb, %sm_md : tensor<2x4x1xi1>, tensor<2x4x1xf32>
  %sm_mb = pg.broadcast_to %sm_mm : tensor<2x4x1xf32> -> tensor<2x4x4xf32>
  %sm_sh = pg.sub %s, %sm_mb : tensor<2x4x4xf32>
  %sm_e = pg.exp %sm_sh : tensor<2x4x4xf32>
  %sm_sum = pg.sum %sm_e dims = [2] keepdim : tensor<2x4x4xf32> -> tensor<2x4x1xf32>
  %sm_iszero = pg.cmp "eq", %sm_sum, %sm_zb : tensor<2x4x1xf32> -> tensor<2x4x1xi1>
  %sm_one = pg.constant dense<1.0> : tensor<f32>
  %sm_oneb = pg.broadcast_to %sm_one : tensor<f32> -> tensor<2x4x1xf32>
  %sm_den = pg.select %sm_iszero, %sm_oneb, %sm_sum : tensor<2x4x1xi1>, tensor<2x4x1xf32>
  %sm_denb = pg.broadcast_to %sm_den : tensor<2x4x1xf32> -> tensor<2x4x4xf32>
  %sm_p = pg.div %sm_e, %sm_denb : tensor<2x4x4xf32>
  %y = pg.matmul %sm_p, %v : (tensor<2x4x4xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  %y2 = pg.matmul %sm_p, %q : (tensor<2x4x4xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  %both = pg.add %y, %y2 : tensor<2x4x8xf32>
  func.return %both : tensor<2x4x8xf32>
}

// CHECK-LABEL: func.func @probabilities_used
// CHECK-NOT:     pg.scaled_dot_product_attention
// CHECK:         pg.exp
// CHECK:         func.return
