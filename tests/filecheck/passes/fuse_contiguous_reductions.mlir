// pg-fuse's contiguous-reductions option (the CPU's choice, with movement): an elementwise kernel that reads
// through a permute moving the innermost dim (a convolution's channels-last product read channels first) does
// not merge into the reduction reading it; it writes its result, which the reduction reads contiguously.
// RUN: pgc-opt %s -p "pg-fuse{movement=true contiguous-reductions=true}" | filecheck %s
// Without the option the two are one kernel, the sum reading the product through the permute:
// RUN: pgc-opt %s -p "pg-fuse{movement=true}" | filecheck %s --check-prefix=MERGED

func.func @bias_grad(%y: tensor<2x16x4xf32>, %g: tensor<2x4x16xf32>) -> (tensor<2x4x16xf32>, tensor<4xf32>) {
  %t = pg.permute %y perm = [0, 2, 1] : tensor<2x16x4xf32> -> tensor<2x4x16xf32>
  %m = pg.mul %t, %g : tensor<2x4x16xf32>
  %s = pg.sum %m dims = [0, 2] : tensor<2x4x16xf32> -> tensor<4xf32>
  func.return %m, %s : tensor<2x4x16xf32>, tensor<4xf32>
}

// CHECK-LABEL: func.func @bias_grad
// CHECK:         %[[M:.*]] = kernel.fused @{{.*}} "elementwise" (%{{.*}}, %{{.*}}) : ({{.*}}) -> (tensor<2x4x16xf32>) {
// CHECK:           pg.permute
// CHECK:           pg.mul
// CHECK:         %[[S:.*]] = kernel.fused @{{.*}}sum "reduction" (%[[M]]) : (tensor<2x4x16xf32>) -> (tensor<4xf32>) {
// CHECK-NOT:       pg.permute
// CHECK:           pg.sum
// CHECK:         func.return %[[M]], %[[S]]

// MERGED-LABEL: func.func @bias_grad
// MERGED:         kernel.fused @{{.*}}sum "reduction" (%{{.*}}, %{{.*}}) : ({{.*}}) -> (tensor<2x4x16xf32>, tensor<4xf32>) {
// MERGED:           pg.permute
// MERGED:           pg.mul
// MERGED:           pg.sum
// MERGED-NOT:     kernel.fused
