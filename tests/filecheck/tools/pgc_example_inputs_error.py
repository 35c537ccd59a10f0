# A model file whose @pg.compile gets a shape where a pg.Spec belongs: pgc reports one line saying what
# example_inputs takes, at the decorator's line, with no Python traceback (issue 19 item 5).
# RUN: not pgc %s --emit=pg 2>&1 | filecheck %s
# CHECK-NOT: Traceback
# CHECK: pgc: error: step: example input 0 (x) is the shape (4, 3), not a pg.Spec: write pg.Spec((4, 3)) {{.*}}example_inputs takes one entry per argument{{.*}} (at {{.*}}pgc_example_inputs_error.py:11)
# CHECK-NOT: Traceback

import picograd as pg


@pg.compile(example_inputs=((4, 3),))
def step(x):
    return (x * 2.0).sum()
