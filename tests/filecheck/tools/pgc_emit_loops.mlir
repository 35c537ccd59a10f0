// pgc --emit=loops on the MLP example: the train step over buffers (destination-passing style, one arena of
// intermediates), every kernel a loop nest tagged with its name; the output parses back with pgc-opt and keeps the
// user's locations.
// RUN: pgc %S/../../../examples/mlp_names.py --emit=loops | pgc-opt | filecheck %s
// RUN: pgc %S/../../../examples/mlp_names.py --emit=loops --print-debuginfo | filecheck %s --check-prefix=LOC

// CHECK-LABEL: func.func @train_step(%{{.*}}: memref<32x3xi64>, %{{.*}}: memref<32xi64>,
// CHECK-SAME:    %result0: memref<f32> {pg.result = 0 : i64}
// CHECK-SAME:    attributes {pg.peak_bytes = [[PEAK:[0-9]+]] : i64} {
// CHECK-NEXT:    %[[ARENA:.*]] = memref.alloc() {alignment = 64 : i64} : memref<[[PEAK]]xi8>
// CHECK-NOT:     kernel.
// CHECK:         scf.if
// CHECK:         {pg.kernel = "k0_check_index", pg.kind = "elementwise", kernel.schedule = #kernel.schedule<{{[^>]*}}>}
// CHECK:         {pg.kernel = "k1_gather", pg.kind = "gather", kernel.schedule = #kernel.schedule<{{[^>]*}}>}
// CHECK:         scf.for
// CHECK:         {pg.kernel = "k3_matmul", pg.kind = "matmul", kernel.schedule = #kernel.schedule<"thread_per_point", block = 256>, pg.nest = "matmul"}
// CHECK:         math.tanh
// CHECK:         {pg.kernel = "k4_tanh", pg.kind = "elementwise", kernel.schedule = #kernel.schedule<{{[^>]*}}>}
// CHECK:         arith.maximumf
// CHECK:         {pg.kernel = "k{{[0-9]+}}_max", pg.kind = "reduction", kernel.schedule = #kernel.schedule<"thread_per_point", block = 256>, pg.nest = "reduction"}
// CHECK:         {pg.kernel = "k{{[0-9]+}}_scatter_add", pg.kind = "scatter_add", kernel.schedule = #kernel.schedule<"atomic", block = 256>}
// CHECK:         memref.dealloc %[[ARENA]]
// CHECK-NEXT:    func.return
// CHECK-NEXT:  }

// The tanh of the hidden layer carries the model's line (MLP.forward), as its loop nest does.
// LOC-LABEL: func.func @train_step
// LOC:         math.tanh {{.*}} loc("{{.*}}mlp_names.py":[[LINE:[0-9]+]]:{{[0-9]+}})
// LOC:         }) {pg.kernel = "k4_tanh", pg.kind = "elementwise", kernel.schedule = #kernel.schedule<{{[^>]*}}>} {{.*}} loc("{{.*}}mlp_names.py":[[LINE]]:{{[0-9]+}})
