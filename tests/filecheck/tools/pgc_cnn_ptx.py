# A small CNN train step as a pgc model file (conv, BatchNorm with its running statistics, max-pool, GroupNorm,
# SiLU, nearest upsampling, average pooling, Adam): the pg stage holds pg.conv ops (forward and vjp), the kernels
# stage none (pg-decompose-conv), and --emit=ptx is PTX that the assembler accepts for sm_90, with .loc lines
# into this file.
# RUN: pgc %s --emit=pg | filecheck %s --check-prefix=PG
# RUN: pgc %s --emit=kernels | filecheck %s --check-prefix=KERNELS
# RUN: pgc %s --device cuda --emit=ptx -o %t.ptx
# RUN: %python -m picograd.target.ptxas %t.ptx --arch sm_90 | filecheck %s --check-prefix=ASM
# RUN: filecheck %s --check-prefix=PTX < %t.ptx

# PG: func.func @train_step
# PG: pg.conv %{{.*}} pad_low = [1, 1] pad_high = [1, 1] groups = 1 : {{.*}} -> tensor<4x4x8x8xf32>
# PG: pg.conv %{{.*}} groups = 2 : (tensor<4x4x4x4xf32>, tensor<8x2x3x3xf32>) -> tensor<4x8x4x4xf32>

# KERNELS-LABEL: func.func @train_step
# KERNELS-NOT: pg.conv
# KERNELS: kernel.fused

# ASM: [{{ptxas|nvjitlink}}] sm_90: {{.*}}_matmul: {{[0-9]+}} registers

# PTX: .target sm_90
# PTX: .file {{[0-9]+}} "{{.*}}pgc_cnn_ptx.py"

import picograd.nn.functional as F

import picograd as pg

nn = pg.nn
model = nn.Sequential(
    nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(4, 8, 3, padding=1, groups=2), nn.GroupNorm(2, 8), nn.SiLU(),
    nn.Upsample(scale_factor=2), nn.AvgPool2d(2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10),
)  # fmt: skip
opt = pg.optim.Adam(model.parameters(), lr=1e-3)


@pg.compile(example_inputs=(pg.Spec((4, 1, 8, 8)), pg.Spec((4,), "int64")))
def train_step(x, y):
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss
