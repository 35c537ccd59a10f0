# A model file whose traced step adds tensors of shapes that do not broadcast: pgc reports one line naming both
# shapes and this file's line, with no Python traceback.
# RUN: not pgc %s --emit=pg 2>&1 | filecheck %s
# CHECK-NOT: Traceback
# CHECK: pgc: error: '+': shapes (4, 3) and (4, 5) cannot be broadcast together (at {{.*}}pgc_shape_error.py:16)
# CHECK-NOT: Traceback

import picograd as pg

w = pg.randn(3, 5, requires_grad=True)


@pg.compile(example_inputs=(pg.Spec((4, 3)),))
def step(x):
    h = x @ w
    return (x + h).sum()  # the fault is here: (4, 3) + (4, 5)
