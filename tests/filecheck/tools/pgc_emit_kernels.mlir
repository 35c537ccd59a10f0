// pgc --emit=simplify and --emit=kernels on the MLP example: the stages print, parse back with pgc-opt, and keep
// the user's locations.
// RUN: pgc %S/../../../examples/mlp_names.py --emit=simplify | filecheck %s --check-prefix=SIMPLIFY
// RUN: pgc %S/../../../examples/mlp_names.py --emit=kernels | pgc-opt | filecheck %s
// RUN: pgc %S/../../../examples/mlp_names.py --emit=kernels --print-debuginfo | filecheck %s --check-prefix=LOC
// No kernel is left without a schedule:
// RUN: pgc %S/../../../examples/mlp_names.py --emit=kernels | not grep -E "kernel.fused @[a-z0-9_]+ \"[a-z_]+\" \("

// The double transposes of the backward pass and the duplicated softmax subtraction are gone.
// SIMPLIFY-LABEL: func.func @train_step
// SIMPLIFY-NOT:     pg.stop_gradient
// SIMPLIFY-COUNT-2: pg.sub %{{.*}}, %{{.*}} : tensor<32x27xf32>
// SIMPLIFY-NOT:     pg.sub %{{.*}}, %{{.*}} : tensor<32x27xf32>
// SIMPLIFY:         func.return

// Only kernels are left at the top level: the check of the embedding's indices and its gather first, the
// parameter updates last. Every kernel names its schedule (pg-schedule): the MLP's matmuls are too small to tile
// (a thread per output), the softmax max reduces 27 elements a row (a thread per output), the sums over the batch
// of 32 take a block per row, and the embedding's gradient adds atomically.
// CHECK-LABEL: func.func @train_step
// CHECK-NEXT:    kernel.fused @k0_check_index "elementwise" schedule = #kernel.schedule<"thread_per_point", block = 256>
// CHECK:         kernel.fused @k1_gather "gather" schedule = #kernel.schedule<"thread_per_point", block = 256>
// CHECK:         kernel.fused @k{{[0-9]+}}_matmul "matmul" schedule = #kernel.schedule<"thread_per_point", block = 256>
// CHECK:         kernel.fused @k{{[0-9]+}}_max "reduction" schedule = #kernel.schedule<"thread_per_point", block = 256>
// CHECK:         kernel.fused @k{{[0-9]+}}_sum "reduction" schedule = #kernel.schedule<"block_per_row", block = 256>
// CHECK:         kernel.fused @k{{[0-9]+}}_scatter_add "scatter_add" schedule = #kernel.schedule<"atomic", block = 256>
// CHECK:         kernel.fused @k{{[0-9]+}}_sub "elementwise" schedule = #kernel.schedule<"thread_per_point", block = 256>
// CHECK-NOT:     {{^    %.* = pg\.}}
// CHECK:         func.return

// LOC: kernel.fused @k1_gather
// LOC: } loc("{{.*}}mlp_names.py":{{[0-9]+}}:0)
