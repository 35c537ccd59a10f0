# The epilogue of the wgmma-ws kernel (picograd/passes/kinds/matmul_wgmma.py) for a bf16 C: N = 320, a multiple of 8,
# stores 16 bytes a thread after a 4x4 transpose of column pairs within each quad (quad_stores); N = 316 keeps the
# 4-byte stores of one pair; so does the wgmma-ws-pairs row, whatever N.
# RUN: %python %s wgmma-ws 320 | filecheck %s --check-prefix=QUAD
# RUN: %python %s wgmma-ws 316 | filecheck %s --check-prefix=PAIRS
# RUN: %python %s wgmma-ws-pairs 320 | filecheck %s --check-prefix=PAIRS

import sys

from picograd.dialects import ptx
from picograd.passes.kinds import matmul_wgmma as wg
from picograd.target.ptx_printer import print_ptx

module = ptx.ModuleOp(target="sm_90a")
module.add_op(wg.dynamic_shared())
module.add_op(wg.build_kernel(wg.SCHEDULES[sys.argv[1]], wg.Problem(200, int(sys.argv[2]), 64, out_dtype="bf16"), "mm"))
module.verify()
print(print_ptx(module))

# Each quad lane packs its pair of a group (the lower column in the lower half), the quad swaps pairs across lane
# bit 0 then bit 1 (selp picks the pair to send and where the received one goes), and a lane stores a whole group.
# QUAD:      cvt.rn.bf16x2.f32 [[P:%r[0-9]+]], {{%f[0-9]+}}, {{%f[0-9]+}};
# QUAD:      selp.b32 {{%r[0-9]+}}, [[P]], {{%r[0-9]+}}, {{%p[0-9]+}};
# QUAD:      shfl.sync.bfly.b32 {{%r[0-9]+}}, {{%r[0-9]+}}, 1, 31, 0xffffffff;
# QUAD:      shfl.sync.bfly.b32 {{%r[0-9]+}}, {{%r[0-9]+}}, 2, 31, 0xffffffff;
# QUAD:      @{{%p[0-9]+}} st.global.v4.b32 [{{%rd[0-9]+}}], {{{%r[0-9]+}}, {{%r[0-9]+}}, {{%r[0-9]+}}, {{%r[0-9]+}}};
# QUAD-NOT:  st.global.v2.b16
# PAIRS-NOT: shfl.sync
# PAIRS:     st.global{{(.v2)?}}.b16
# PAIRS-NOT: st.global.v4
