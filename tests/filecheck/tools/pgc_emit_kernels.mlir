// pgc --emit=simplify and --emit=kernels on the MLP example: the stages print, parse back with pgc-opt, and keep
// the user's locations.
// RUN: pgc %S/../../../examples/mlp_names.py --emit=simplify | filecheck %s --check-prefix=SIMPLIFY
// RUN: pgc %S/../../../examples/mlp_names.py --emit=kernels | pgc-opt | filecheck %s
// RUN: pgc %S/../../../examples/mlp_names.py --emit=kernels --print-debuginfo | filecheck %s --check-prefix=LOC

// The double transposes of the backward pass and the duplicated softmax subtraction are gone.
// SIMPLIFY-LABEL: func.func @train_step
// SIMPLIFY-NOT:     pg.stop_gradient
// SIMPLIFY-COUNT-2: pg.sub %{{.*}}, %{{.*}} : tensor<32x27xf32>
// SIMPLIFY-NOT:     pg.sub %{{.*}}, %{{.*}} : tensor<32x27xf32>
// SIMPLIFY:         func.return

// Only kernels are left at the top level: the check of the embedding's indices and its gather first, the
// parameter updates last.
// CHECK-LABEL: func.func @train_step
// CHECK-NEXT:    kernel.fused @k0_check_index "elementwise"
// CHECK:         kernel.fused @k1_gather "gather"
// CHECK:         kernel.fused @k{{[0-9]+}}_matmul "matmul"
// CHECK:         kernel.fused @k{{[0-9]+}}_max "reduction"
// CHECK:         kernel.fused @k{{[0-9]+}}_sum "reduction"
// CHECK:         kernel.fused @k{{[0-9]+}}_scatter_add "scatter_add"
// CHECK:         kernel.fused @k{{[0-9]+}}_sub "elementwise"
// CHECK-NOT:     {{^    %.* = pg\.}}
// CHECK:         func.return

// LOC: kernel.fused @k1_gather
// LOC: } loc("{{.*}}mlp_names.py":{{[0-9]+}}:0)
