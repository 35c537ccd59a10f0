// The README's pipe, run as written from the repository root (issue 19 item 2): pgc's textual output goes to a pipe,
// so it keeps the model's locations, and pgc-opt --print-debuginfo shows the user's file:line on every op, those that
// pg-autodiff adds included (they used to read loc(unknown)). On a terminal pgc leaves locations out unless
// --print-debuginfo; --no-print-debuginfo leaves them out everywhere.
// RUN: cd %S/../../.. && pgc examples/mlp_names.py --emit=pg | pgc-opt -p pg-autodiff,cse --print-debuginfo | filecheck %s
// RUN: cd %S/../../.. && pgc examples/mlp_names.py --emit=pg | pgc-opt -p pg-autodiff,cse --print-debuginfo | filecheck %s --check-prefix=KNOWN
// RUN: pgc %S/../../../examples/mlp_names.py --emit=step -o %t.mlir && filecheck %s --check-prefix=FILE < %t.mlir
// RUN: pgc %S/../../../examples/mlp_names.py --emit=pg --no-print-debuginfo | filecheck %s --check-prefix=NOLOC
// A reader that stops early (| head) ends pgc quietly, with exit status 0 and no BrokenPipeError traceback.
// RUN: pgc %S/../../../examples/mlp_names.py --emit=step 2> %t.err | head -c 100 > /dev/null
// RUN: filecheck %s --check-prefix=HEAD --allow-empty < %t.err

// CHECK:      func.func @train_step(
// CHECK:        pg.gather {{.*}} loc("{{.*}}examples/mlp_names.py":{{[0-9]+}}:0)
// CHECK:        pg.matmul {{.*}} loc("{{.*}}examples/mlp_names.py":{{[0-9]+}}:0)
// CHECK:        pg.tanh {{.*}} loc("{{.*}}examples/mlp_names.py":{{[0-9]+}}:0)
// CHECK-NOT:    pg.grad
// CHECK:        pg.scatter_add {{.*}} loc("{{.*}}examples/mlp_names.py":{{[0-9]+}}:0)
// CHECK:        pg.sgd {{.*}} loc("{{.*}}examples/mlp_names.py":{{[0-9]+}}:0)

// KNOWN-NOT: = pg.{{.*}}loc(unknown)

// FILE: pg.tanh {{.*}} loc("{{.*}}mlp_names.py":{{[0-9]+}}:0)

// NOLOC-NOT: loc(

// HEAD-NOT: Traceback
