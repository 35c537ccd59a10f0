// pgc prints each stage of the names MLP's compiled train step; every stage parses back with pgc-opt.
// RUN: pgc %S/../../../examples/mlp_names.py --emit=pg | filecheck %s --check-prefix=PG
// RUN: pgc %S/../../../examples/mlp_names.py --emit=pg | pgc-opt | filecheck %s --check-prefix=PG
// RUN: pgc %S/../../../examples/mlp_names.py --emit=grad | filecheck %s --check-prefix=GRAD
// RUN: pgc %S/../../../examples/mlp_names.py --emit=step | filecheck %s --check-prefix=STEP
// RUN: pgc %S/../../../examples/mlp_names.py --emit=step --print-debuginfo | filecheck %s --check-prefix=LOC

// PG: func.func @train_step(%{{.*}}: tensor<32x3xi64>{{( loc\(unknown\))?}}, %{{.*}}: tensor<32xi64>
// PG: pg.gather
// PG: pg.matmul
// PG: pg.tanh
// PG: pg.grad
// PG: pg.sgd

// GRAD-NOT: pg.grad
// GRAD: pg.scatter_add
// GRAD: pg.sgd

// STEP-COUNT-1: func.func @train_step
// STEP-NOT: pg.grad
// STEP-NOT: pg.sgd
// STEP: pg.tanh
// STEP: pg.scatter_add
// STEP: func.return

// LOC: pg.tanh {{.*}} loc("{{.*}}mlp_names.py":{{[0-9]+}}:0)
