// pg-matmul-schedule: the matmul nests of the loop stage become gpu.launch kernels, one rung of the SGEMM ladder each.
// RUN: pgc-opt %s -p 'pg-matmul-schedule{schedule=naive}' --split-input-file | filecheck %s --check-prefixes=CHECK,NAIVE
// RUN: pgc-opt %s -p 'pg-matmul-schedule{schedule=coalesced}' --split-input-file | filecheck %s --check-prefixes=CHECK,COAL
// RUN: pgc-opt %s -p 'pg-matmul-schedule{schedule=smem}' --split-input-file | filecheck %s --check-prefixes=CHECK,SMEM
// RUN: pgc-opt %s -p 'pg-matmul-schedule{schedule=regtile}' --split-input-file | filecheck %s --check-prefixes=CHECK,REG
// RUN: pgc-opt %s -p 'pg-matmul-schedule{schedule=warptile}' --split-input-file | filecheck %s --check-prefixes=CHECK,WARP
// RUN: pgc-opt %s -p 'pg-matmul-schedule{schedule=cp-async}' --split-input-file | filecheck %s --check-prefixes=CHECK,CPA
// The default is auto: small and f64 nests stay loop nests (pg-to-gpu's thread per output), big f32 ones are tiled.
// RUN: pgc-opt %s -p pg-matmul-schedule --split-input-file | filecheck %s --check-prefixes=CHECK,AUTO
// RUN: pgc-opt %s -p 'pg-matmul-schedule{schedule=auto}' --split-input-file | filecheck %s --check-prefixes=CHECK,AUTO
// An unknown schedule name is an error naming the choices, and a nonzero exit:
// RUN: not pgc-opt %s -p 'pg-matmul-schedule{schedule=bogus}' --split-input-file 2>&1 | filecheck %s --check-prefix=ERR

// ERR: pg-matmul-schedule: unknown matmul schedule 'bogus': expected auto or one of naive, coalesced, smem, regtile, warptile, cp-async

// ---- a plain f32 matmul, 200x300x24: A row-major (contiguous along K), B row-major (contiguous along N); 24 and 300
// are multiples of 4, so the tiled rungs read both operands and write the result 16 bytes at a time.

// The grid is (ceil(N / BN), ceil(M / BM), batch), launched from the host with constant sizes; the launch keeps the
// nest's kernel name and kind and names its schedule.

// naive: 32x8 outputs a block, a thread per output, consecutive threads (lanes) along M: row = by * 32 + lane.
// NAIVE-LABEL: func.func @mm(
// NAIVE:         %[[GX:[0-9a-z_]+]] = arith.constant 38 : index
// NAIVE-NEXT:    %[[GY:[0-9a-z_]+]] = arith.constant 7 : index
// NAIVE-NEXT:    %[[GZ:[0-9a-z_]+]] = arith.constant 1 : index
// NAIVE-NEXT:    %[[T:[0-9a-z_]+]] = arith.constant 256 : index
// NAIVE-NEXT:    %[[ONE:[0-9a-z_]+]] = arith.constant 1 : index
// NAIVE-NEXT:    "gpu.launch"(%[[GX]], %[[GY]], %[[GZ]], %[[T]], %[[ONE]], %[[ONE]])
// NAIVE-NEXT:    ^bb0(%[[BX:[0-9]+]]: index, %[[BY:[0-9]+]]: index, %{{[0-9]+}}: index, %[[TX:[0-9]+]]: index,
// NAIVE-DAG:       %[[C32:[0-9a-z_]+]] = arith.constant 32 : i32
// NAIVE-DAG:       %[[C8:[0-9a-z_]+]] = arith.constant 8 : i32
// NAIVE-DAG:       %[[C31:[0-9a-z_]+]] = arith.constant 31 : i32
// NAIVE:           %[[BX32:[0-9a-z_]+]] = arith.index_cast %[[BX]] : index to i32
// NAIVE-NEXT:      %[[BY32:[0-9a-z_]+]] = arith.index_cast %[[BY]] : index to i32
// NAIVE-NEXT:      %{{.*}} = arith.index_cast
// NAIVE-NEXT:      %[[TID:[0-9a-z_]+]] = arith.index_cast %[[TX]] : index to i32
// NAIVE-NEXT:      %[[M0:[0-9a-z_]+]] = arith.muli %[[BY32]], %[[C32]] : i32
// NAIVE-NEXT:      %[[N0:[0-9a-z_]+]] = arith.muli %[[BX32]], %[[C8]] : i32
// NAIVE-NEXT:      %[[WID:[0-9a-z_]+]] = arith.shrui %[[TID]], %{{.*}} : i32
// NAIVE-NEXT:      %[[LANE:[0-9a-z_]+]] = arith.andi %[[TID]], %[[C31]] : i32
// NAIVE:           %[[R:[0-9a-z_]+]] = arith.addi %{{.*}}, %[[LANE]] : i32
// NAIVE-NEXT:      %[[ROW:[0-9a-z_]+]] = arith.addi %[[M0]], %[[R]] : i32
// NAIVE-NEXT:      %[[COL:[0-9a-z_]+]] = arith.addi %[[N0]], %{{.*}} : i32
// NAIVE-NEXT:      %[[SUM:[0-9a-z_]+]] = scf.for %{{.*}} iter_args(%[[ACC:[0-9a-z_]+]] = %{{.*}}) -> (f32) {
// NAIVE:             %[[X:[0-9a-z_]+]] = memref.load %a[{{.*}}] : memref<200x24xf32>
// NAIVE-NEXT:        %[[XS:[0-9a-z_]+]] = arith.select %{{.*}}, %[[X]], %{{.*}} : f32
// NAIVE:             %[[Y:[0-9a-z_]+]] = memref.load %b[{{.*}}] : memref<24x300xf32>
// NAIVE-NEXT:        %[[YS:[0-9a-z_]+]] = arith.select %{{.*}}, %[[Y]], %{{.*}} : f32
// NAIVE-NEXT:        %[[P:[0-9a-z_]+]] = arith.mulf %[[XS]], %[[YS]] : f32
// NAIVE-NEXT:        %[[S:[0-9a-z_]+]] = arith.addf %[[ACC]], %[[P]] : f32
// NAIVE-NEXT:        scf.yield %[[S]] : f32
// NAIVE-NEXT:      }
// NAIVE-NEXT:      %[[RIN:[0-9a-z_]+]] = arith.cmpi ult, %[[ROW]], %{{.*}} : i32
// NAIVE-NEXT:      %[[CIN:[0-9a-z_]+]] = arith.cmpi ult, %[[COL]], %{{.*}} : i32
// NAIVE-NEXT:      %[[IN:[0-9a-z_]+]] = arith.andi %[[RIN]], %[[CIN]] : i1
// NAIVE-NEXT:      scf.if %[[IN]] {
// NAIVE-NEXT:        %[[I:[0-9a-z_]+]] = arith.index_cast %[[ROW]] : i32 to index
// NAIVE-NEXT:        %[[J:[0-9a-z_]+]] = arith.index_cast %[[COL]] : i32 to index
// NAIVE-NEXT:        memref.store %[[SUM]], %c[%[[I]], %[[J]]] : memref<200x300xf32>
// NAIVE-NEXT:      }
// NAIVE-NEXT:      "gpu.terminator"() : () -> ()
// NAIVE-NEXT:    }) {pg.kernel = "k0_matmul", pg.kind = "matmul", pg.schedule = "naive", pg.tile = array<i32: 32, 8, 0>, gpu.known_block_size = array<i32: 256, 1, 1>}
// NAIVE-NOT:     scf.parallel

// coalesced: 8x32 outputs a block, consecutive threads along N: column = bx * 32 + lane.
// COAL-LABEL: func.func @mm(
// COAL:         %[[GX:[0-9a-z_]+]] = arith.constant 10 : index
// COAL-NEXT:    %[[GY:[0-9a-z_]+]] = arith.constant 25 : index
// COAL-NEXT:    %[[GZ:[0-9a-z_]+]] = arith.constant 1 : index
// COAL-NEXT:    %[[T:[0-9a-z_]+]] = arith.constant 256 : index
// COAL-NEXT:    %[[ONE:[0-9a-z_]+]] = arith.constant 1 : index
// COAL-NEXT:    "gpu.launch"(%[[GX]], %[[GY]], %[[GZ]], %[[T]], %[[ONE]], %[[ONE]])
// COAL-NEXT:    ^bb0(%[[BX:[0-9]+]]: index, %[[BY:[0-9]+]]: index, %{{[0-9]+}}: index, %[[TX:[0-9]+]]: index,
// COAL-DAG:       %[[C8:[0-9a-z_]+]] = arith.constant 8 : i32
// COAL-DAG:       %[[C32:[0-9a-z_]+]] = arith.constant 32 : i32
// COAL-DAG:       %[[C31:[0-9a-z_]+]] = arith.constant 31 : i32
// COAL:           %[[BX32:[0-9a-z_]+]] = arith.index_cast %[[BX]] : index to i32
// COAL-NEXT:      %[[BY32:[0-9a-z_]+]] = arith.index_cast %[[BY]] : index to i32
// COAL-NEXT:      %{{.*}} = arith.index_cast
// COAL-NEXT:      %[[TID:[0-9a-z_]+]] = arith.index_cast %[[TX]] : index to i32
// COAL-NEXT:      %[[M0:[0-9a-z_]+]] = arith.muli %[[BY32]], %[[C8]] : i32
// COAL-NEXT:      %[[N0:[0-9a-z_]+]] = arith.muli %[[BX32]], %[[C32]] : i32
// COAL-NEXT:      %[[WID:[0-9a-z_]+]] = arith.shrui %[[TID]], %{{.*}} : i32
// COAL-NEXT:      %[[LANE:[0-9a-z_]+]] = arith.andi %[[TID]], %[[C31]] : i32
// COAL-NEXT:      %{{.*}} = arith.shrui %[[LANE]], %{{.*}} : i32
// COAL-NEXT:      %[[LN:[0-9a-z_]+]] = arith.andi %[[LANE]], %[[C31]] : i32
// COAL-NEXT:      %[[R:[0-9a-z_]+]] = arith.addi %[[WID]], %{{.*}} : i32
// COAL-NEXT:      %[[ROW:[0-9a-z_]+]] = arith.addi %[[M0]], %[[R]] : i32
// COAL-NEXT:      %[[COL:[0-9a-z_]+]] = arith.addi %[[N0]], %[[LN]] : i32
// COAL-NEXT:      %[[SUM:[0-9a-z_]+]] = scf.for
// COAL:             memref.load %a[{{.*}}] : memref<200x24xf32>
// COAL:             memref.load %b[{{.*}}] : memref<24x300xf32>
// COAL:           scf.if
// COAL-NEXT:        %[[I:[0-9a-z_]+]] = arith.index_cast %[[ROW]] : i32 to index
// COAL-NEXT:        %[[J:[0-9a-z_]+]] = arith.index_cast %[[COL]] : i32 to index
// COAL-NEXT:        memref.store %[[SUM]], %c[%[[I]], %[[J]]] : memref<200x300xf32>
// COAL:         }) {pg.kernel = "k0_matmul", pg.kind = "matmul", pg.schedule = "coalesced", pg.tile = array<i32: 8, 32, 0>, gpu.known_block_size = array<i32: 256, 1, 1>}

// smem: 32x32 outputs a block of 1024 threads; each K step of 32 copies a 32x32 tile of A and of B into workgroup
// memory, k-major. A's tile is transposed on the way (one row of padding against bank conflicts), B's is not. One K
// step covers K = 24; a barrier after the copies and after the 32 unrolled multiply-adds.
// SMEM-LABEL: func.func @mm(
// SMEM:         %[[GX:[0-9a-z_]+]] = arith.constant 10 : index
// SMEM-NEXT:    %[[GY:[0-9a-z_]+]] = arith.constant 7 : index
// SMEM-NEXT:    %[[GZ:[0-9a-z_]+]] = arith.constant 1 : index
// SMEM-NEXT:    %[[T:[0-9a-z_]+]] = arith.constant 1024 : index
// SMEM-NEXT:    %[[ONE:[0-9a-z_]+]] = arith.constant 1 : index
// SMEM-NEXT:    "gpu.launch"(%[[GX]], %[[GY]], %[[GZ]], %[[T]], %[[ONE]], %[[ONE]])
// SMEM:           %[[AT:[0-9a-z_]+]] = gpu_ext.workgroup_alloc : memref<1x32x33xf32, 3 : i64>
// SMEM:           %[[BT:[0-9a-z_]+]] = gpu_ext.workgroup_alloc : memref<1x32x32xf32, 3 : i64>
// SMEM:           %[[SUM:[0-9a-z_]+]] = scf.for %{{.*}} = %{{.*}} to %[[KT:[0-9a-z_]+]] step %[[KT]] iter_args(%{{.*}}) -> (f32) {
// SMEM:             %[[X:[0-9a-z_]+]] = memref.load %a[{{.*}}] : memref<200x24xf32>
// SMEM-NEXT:        %[[XS:[0-9a-z_]+]] = arith.select %{{.*}}, %[[X]], %{{.*}} : f32
// SMEM-NEXT:        %[[AK:[0-9a-z_]+]] = arith.index_cast
// SMEM-NEXT:        %[[AI:[0-9a-z_]+]] = arith.index_cast
// SMEM-NEXT:        memref.store %[[XS]], %[[AT]][%{{.*}}, %[[AK]], %[[AI]]] : memref<1x32x33xf32, 3 : i64>
// SMEM:             %[[Y:[0-9a-z_]+]] = memref.load %b[{{.*}}] : memref<24x300xf32>
// SMEM-NEXT:        %[[YS:[0-9a-z_]+]] = arith.select %{{.*}}, %[[Y]], %{{.*}} : f32
// SMEM-NEXT:        memref.store %[[YS]], %[[BT]][%{{.*}}, %[[AI]], %[[AK]]] : memref<1x32x32xf32, 3 : i64>
// SMEM-NEXT:        "gpu.barrier"() : () -> ()
// SMEM-COUNT-32:    memref.load %[[AT]]
// SMEM-NOT:         memref.load %[[AT]]
// SMEM:             "gpu.barrier"() : () -> ()
// SMEM-NEXT:        scf.yield
// SMEM-NEXT:      }
// SMEM:           scf.if
// SMEM:             memref.store %[[SUM]], %c[{{.*}}] : memref<200x300xf32>
// SMEM:         }) {pg.kernel = "k0_matmul", pg.kind = "matmul", pg.schedule = "smem", pg.tile = array<i32: 32, 32, 32>, gpu.known_block_size = array<i32: 1024, 1, 1>}

// regtile: 128x128 outputs a block of 256 threads, 8x8 of them each in 64 loop-carried accumulators; K steps of 8.
// 16-byte global loads: A's 4 values go transposed into its padded tile (4 scalar stores), B's tile takes them in one
// 16-byte store. Each k step reads two 16-byte fragments of each tile. Each thread stores 8 rows of 2 16-byte
// vectors, each behind its bounds check.
// REG-LABEL: func.func @mm(
// REG:         %[[GX:[0-9a-z_]+]] = arith.constant 3 : index
// REG-NEXT:    %[[GY:[0-9a-z_]+]] = arith.constant 2 : index
// REG-NEXT:    %[[GZ:[0-9a-z_]+]] = arith.constant 1 : index
// REG-NEXT:    %[[T:[0-9a-z_]+]] = arith.constant 256 : index
// REG-NEXT:    %[[ONE:[0-9a-z_]+]] = arith.constant 1 : index
// REG-NEXT:    "gpu.launch"(%[[GX]], %[[GY]], %[[GZ]], %[[T]], %[[ONE]], %[[ONE]])
// REG:           %[[AT:[0-9a-z_]+]] = gpu_ext.workgroup_alloc : memref<1x8x132xf32, 3 : i64>
// REG:           %[[BT:[0-9a-z_]+]] = gpu_ext.workgroup_alloc : memref<1x8x128xf32, 3 : i64>
// REG:           scf.for {{.*}} -> ({{(f32, ){63}f32}}) {
// REG:             %[[A0:[0-9a-z_]+]], %[[A1:[0-9a-z_]+]], %[[A2:[0-9a-z_]+]], %[[A3:[0-9a-z_]+]] = gpu_ext.vector_load %a[{{.*}}] : memref<200x24xf32> -> f32, f32, f32, f32
// REG-NEXT:        %[[S0:[0-9a-z_]+]] = arith.select %[[OK:[0-9a-z_]+]], %[[A0]], %{{.*}} : f32
// REG-NEXT:        %[[S1:[0-9a-z_]+]] = arith.select %[[OK]], %[[A1]], %{{.*}} : f32
// REG-NEXT:        %[[S2:[0-9a-z_]+]] = arith.select %[[OK]], %[[A2]], %{{.*}} : f32
// REG-NEXT:        %[[S3:[0-9a-z_]+]] = arith.select %[[OK]], %[[A3]], %{{.*}} : f32
// REG:             memref.store %[[S0]], %[[AT]]
// REG:             memref.store %[[S1]], %[[AT]]
// REG:             memref.store %[[S2]], %[[AT]]
// REG:             memref.store %[[S3]], %[[AT]]
// REG:             gpu_ext.vector_load %b[{{.*}}] : memref<24x300xf32> -> f32, f32, f32, f32
// REG:             gpu_ext.vector_store({{.*}}), %[[BT]][{{.*}}] : memref<1x8x128xf32, 3 : i64>
// REG-NEXT:        "gpu.barrier"() : () -> ()
// REG-COUNT-16:    gpu_ext.vector_load %[[AT]]
// REG-NOT:         gpu_ext.vector_load %[[AT]]
// REG:             "gpu.barrier"() : () -> ()
// REG-NEXT:        scf.yield
// REG-NEXT:      }
// REG:           scf.if
// REG-NEXT:        arith.index_cast
// REG-NEXT:        arith.index_cast
// REG-NEXT:        gpu_ext.vector_store({{.*}}), %c[{{.*}}] : memref<200x300xf32>
// REG-NEXT:      }
// REG-COUNT-15:    gpu_ext.vector_store({{.*}}), %c[{{.*}}] : memref<200x300xf32>
// REG-NOT:         memref.store
// REG:         }) {pg.kernel = "k0_matmul", pg.kind = "matmul", pg.schedule = "regtile", pg.tile = array<i32: 128, 128, 8>, gpu.known_block_size = array<i32: 256, 1, 1>}

// warptile: as regtile with K steps of 16, each warp owning a 64x32 tile; a thread's 8x8 outputs are 2x2 fragments
// of 4x4, so each k step still reads two 16-byte fragments of each tile (32 of A's in all).
// WARP-LABEL: func.func @mm(
// WARP:         %[[GX:[0-9a-z_]+]] = arith.constant 3 : index
// WARP-NEXT:    %[[GY:[0-9a-z_]+]] = arith.constant 2 : index
// WARP-NEXT:    %[[GZ:[0-9a-z_]+]] = arith.constant 1 : index
// WARP-NEXT:    %[[T:[0-9a-z_]+]] = arith.constant 256 : index
// WARP-NEXT:    %[[ONE:[0-9a-z_]+]] = arith.constant 1 : index
// WARP-NEXT:    "gpu.launch"(%[[GX]], %[[GY]], %[[GZ]], %[[T]], %[[ONE]], %[[ONE]])
// WARP:           %[[AT:[0-9a-z_]+]] = gpu_ext.workgroup_alloc : memref<1x16x132xf32, 3 : i64>
// WARP:           %[[BT:[0-9a-z_]+]] = gpu_ext.workgroup_alloc : memref<1x16x128xf32, 3 : i64>
// WARP:           scf.for {{.*}} -> ({{(f32, ){63}f32}}) {
// WARP-COUNT-2:     gpu_ext.vector_load %a[{{.*}}] : memref<200x24xf32> -> f32, f32, f32, f32
// WARP-COUNT-2:     gpu_ext.vector_load %b[{{.*}}] : memref<24x300xf32> -> f32, f32, f32, f32
// WARP-NOT:         gpu_ext.vector_load %a
// WARP:             "gpu.barrier"() : () -> ()
// WARP-COUNT-32:    gpu_ext.vector_load %[[AT]]
// WARP-NOT:         gpu_ext.vector_load %[[AT]]
// WARP:             "gpu.barrier"() : () -> ()
// WARP-NEXT:        scf.yield
// WARP-NEXT:      }
// WARP-COUNT-16:  gpu_ext.vector_store({{.*}}), %c[{{.*}}] : memref<200x300xf32>
// WARP-NOT:       memref.store
// WARP:         }) {pg.kernel = "k0_matmul", pg.kind = "matmul", pg.schedule = "warptile", pg.tile = array<i32: 128, 128, 16>, gpu.known_block_size = array<i32: 256, 1, 1>}

// cp-async: warptile's tiles in two stages. A (contiguous along K, transposed into its tile) takes the register path;
// B's tile is copied 16 bytes at a time with cp.async (zero bytes past the matrix). A prologue fills stage 0; step kt
// starts tile kt + 1 towards stage (kt + 1) % 2, computes on stage kt % 2, stores A's registers, then waits for its
// copies and synchronizes once.
// CPA-LABEL: func.func @mm(
// CPA:         %[[GX:[0-9a-z_]+]] = arith.constant 3 : index
// CPA-NEXT:    %[[GY:[0-9a-z_]+]] = arith.constant 2 : index
// CPA-NEXT:    %[[GZ:[0-9a-z_]+]] = arith.constant 1 : index
// CPA-NEXT:    %[[T:[0-9a-z_]+]] = arith.constant 256 : index
// CPA-NEXT:    %[[ONE:[0-9a-z_]+]] = arith.constant 1 : index
// CPA-NEXT:    "gpu.launch"(%[[GX]], %[[GY]], %[[GZ]], %[[T]], %[[ONE]], %[[ONE]])
// CPA:           %[[AT:[0-9a-z_]+]] = gpu_ext.workgroup_alloc : memref<2x16x132xf32, 3 : i64>
// CPA:           %[[BT:[0-9a-z_]+]] = gpu_ext.workgroup_alloc : memref<2x16x128xf32, 3 : i64>
// CPA-COUNT-2:   gpu_ext.vector_load %a[{{.*}}] : memref<200x24xf32> -> f32, f32, f32, f32
// CPA-COUNT-8:   memref.store %{{.*}}, %[[AT]][%[[S0:[0-9]+]], {{.*}}] : memref<2x16x132xf32, 3 : i64>
// CPA:           %[[VALID:[0-9a-z_]+]] = arith.select %{{.*}}, %[[C4:[0-9a-z_]+]], %{{.*}} : index
// CPA:           gpu_ext.async_copy %b[{{.*}}], %[[BT]][%[[S0]], {{.*}}], 4, %[[VALID]] : memref<24x300xf32>, memref<2x16x128xf32, 3 : i64>
// CPA:           gpu_ext.async_copy %b[{{.*}}], %[[BT]][%[[S0]], {{.*}}], 4, %{{.*}} : memref<24x300xf32>, memref<2x16x128xf32, 3 : i64>
// CPA-NEXT:      gpu_ext.async_commit
// CPA-NEXT:      gpu_ext.async_wait pending 0
// CPA-NEXT:      "gpu.barrier"() : () -> ()
// CPA-NEXT:      scf.for %{{.*}} -> ({{(f32, ){63}f32}}) {
// CPA-NEXT:        %[[KT:[0-9a-z_]+]] = arith.index_cast
// CPA:             %[[HERE:[0-9a-z_]+]] = arith.andi %[[KT]], %[[C1:[0-9a-z_]+]] : i32
// CPA-NEXT:        %[[THERE:[0-9a-z_]+]] = arith.xori %[[HERE]], %[[C1]] : i32
// CPA-COUNT-2:     gpu_ext.vector_load %a[{{.*}}] : memref<200x24xf32> -> f32, f32, f32, f32
// CPA:             %[[ST:[0-9a-z_]+]] = arith.index_cast %[[THERE]] : i32 to index
// CPA:             gpu_ext.async_copy %b[{{.*}}], %[[BT]][%[[ST]], {{.*}}], 4, %{{.*}}
// CPA:             gpu_ext.async_copy %b[{{.*}}], %[[BT]][%[[ST]], {{.*}}], 4, %{{.*}}
// CPA-NEXT:        gpu_ext.async_commit
// CPA-NEXT:        %[[SH:[0-9a-z_]+]] = arith.index_cast %[[HERE]] : i32 to index
// CPA:             gpu_ext.vector_load %[[AT]][%[[SH]], {{.*}}]
// CPA:             gpu_ext.vector_load %[[BT]][%[[SH]], {{.*}}]
// CPA-COUNT-8:     memref.store %{{.*}}, %[[AT]][%[[ST]], {{.*}}] : memref<2x16x132xf32, 3 : i64>
// CPA-NEXT:        gpu_ext.async_wait pending 0
// CPA-NEXT:        "gpu.barrier"() : () -> ()
// CPA-NEXT:        scf.yield
// CPA-NEXT:      }
// CPA-COUNT-16:  gpu_ext.vector_store({{.*}}), %c[{{.*}}] : memref<200x300xf32>
// CPA:         }) {pg.kernel = "k0_matmul", pg.kind = "matmul", pg.schedule = "cp-async", pg.tile = array<i32: 128, 128, 16>, gpu.known_block_size = array<i32: 256, 1, 1>}

// auto: 1.4M multiply-adds, below 2**24: the nest stays a loop nest for pg-to-gpu.
// AUTO-LABEL: func.func @mm(
// AUTO-NOT:     gpu.launch
// AUTO:         "scf.parallel"
// AUTO:         }) {pg.kernel = "k0_matmul", pg.kind = "matmul", pg.nest = "matmul"} : (index, index, index, index, index, index) -> ()

func.func @mm(%a: memref<200x24xf32>, %b: memref<24x300xf32>, %c: memref<200x300xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %m = arith.constant 200 : index
  %n = arith.constant 300 : index
  %k = arith.constant 24 : index
  %zero = arith.constant 0.000000e+00 : f32
  "scf.parallel"(%c0, %c0, %m, %n, %c1, %c1) <{operandSegmentSizes = array<i32: 2, 2, 2, 0>}> ({
  ^bb0(%i: index, %j: index):
    %sum = scf.for %kk = %c0 to %k step %c1 iter_args(%acc = %zero) -> (f32) {
      %x = memref.load %a[%i, %kk] : memref<200x24xf32>
      %y = memref.load %b[%kk, %j] : memref<24x300xf32>
      %p = arith.mulf %x, %y : f32
      %s = arith.addf %acc, %p : f32
      scf.yield %s : f32
    }
    memref.store %sum, %c[%i, %j] : memref<200x300xf32>
    scf.reduce
  }) {pg.kernel = "k0_matmul", pg.kind = "matmul", pg.nest = "matmul"} : (index, index, index, index, index, index) -> ()
  func.return
}

// -----

// ---- a transposed A (pg.permute folded into the load: %a[%k, %m]): A's memory order is now along M, so its tile
// keeps it (no padding, no transposing stores) and, for cp-async, is copied 16 bytes at a time too.

// NAIVE-LABEL: func.func @mm_at(
// NAIVE:         "gpu.launch"
// NAIVE:           scf.for %[[K:[0-9a-z_]+]] = {{.*}} -> (f32) {
// NAIVE:             memref.load %a[%[[KI:[0-9a-z_]+]], %[[MI:[0-9a-z_]+]]] : memref<24x200xf32>
// NAIVE:             memref.load %b[%[[KI]], %{{.*}}] : memref<24x300xf32>
// NAIVE:         pg.schedule = "naive"

// SMEM-LABEL: func.func @mm_at(
// SMEM:           %[[AT:[0-9a-z_]+]] = gpu_ext.workgroup_alloc : memref<1x32x32xf32, 3 : i64>
// SMEM:           %[[BT:[0-9a-z_]+]] = gpu_ext.workgroup_alloc : memref<1x32x32xf32, 3 : i64>
// SMEM:             %[[X:[0-9a-z_]+]] = memref.load %a[{{.*}}] : memref<24x200xf32>
// SMEM-NEXT:        %[[XS:[0-9a-z_]+]] = arith.select %{{.*}}, %[[X]], %{{.*}} : f32
// SMEM-NEXT:        %[[AK:[0-9a-z_]+]] = arith.index_cast
// SMEM-NEXT:        %[[AI:[0-9a-z_]+]] = arith.index_cast
// SMEM-NEXT:        memref.store %[[XS]], %[[AT]][%{{.*}}, %[[AK]], %[[AI]]] : memref<1x32x32xf32, 3 : i64>
// SMEM:         pg.schedule = "smem"

// REG-LABEL: func.func @mm_at(
// REG:           %[[AT:[0-9a-z_]+]] = gpu_ext.workgroup_alloc : memref<1x8x128xf32, 3 : i64>
// REG:           %[[BT:[0-9a-z_]+]] = gpu_ext.workgroup_alloc : memref<1x8x128xf32, 3 : i64>
// REG:             %[[A0:[0-9a-z_]+]], %[[A1:[0-9a-z_]+]], %[[A2:[0-9a-z_]+]], %[[A3:[0-9a-z_]+]] = gpu_ext.vector_load %a[{{.*}}] : memref<24x200xf32> -> f32, f32, f32, f32
// REG-NOT:         memref.store
// REG:             gpu_ext.vector_store({{.*}}), %[[AT]][{{.*}}] : memref<1x8x128xf32, 3 : i64>
// REG:             gpu_ext.vector_load %b[{{.*}}] : memref<24x300xf32> -> f32, f32, f32, f32
// REG-NOT:         memref.store
// REG:             gpu_ext.vector_store({{.*}}), %[[BT]][{{.*}}] : memref<1x8x128xf32, 3 : i64>
// REG-NEXT:        "gpu.barrier"() : () -> ()
// REG:         pg.schedule = "regtile"

// WARP-LABEL: func.func @mm_at(
// WARP:           %[[AT:[0-9a-z_]+]] = gpu_ext.workgroup_alloc : memref<1x16x128xf32, 3 : i64>
// WARP:           gpu_ext.vector_load %a[{{.*}}] : memref<24x200xf32> -> f32, f32, f32, f32
// WARP:           gpu_ext.vector_store({{.*}}), %[[AT]][{{.*}}] : memref<1x16x128xf32, 3 : i64>
// WARP:         pg.schedule = "warptile"

// CPA-LABEL: func.func @mm_at(
// CPA:           %[[AT:[0-9a-z_]+]] = gpu_ext.workgroup_alloc : memref<2x16x128xf32, 3 : i64>
// CPA:           %[[BT:[0-9a-z_]+]] = gpu_ext.workgroup_alloc : memref<2x16x128xf32, 3 : i64>
// CPA-NOT:       gpu_ext.vector_load %a
// CPA-COUNT-2:   gpu_ext.async_copy %a[{{.*}}], %[[AT]][{{.*}}], 4, %{{.*}} : memref<24x200xf32>, memref<2x16x128xf32, 3 : i64>
// CPA-COUNT-2:   gpu_ext.async_copy %b[{{.*}}], %[[BT]][{{.*}}], 4, %{{.*}} : memref<24x300xf32>, memref<2x16x128xf32, 3 : i64>
// CPA-NEXT:      gpu_ext.async_commit
// CPA-NEXT:      gpu_ext.async_wait pending 0
// CPA-NEXT:      "gpu.barrier"() : () -> ()
// CPA:           scf.for
// CPA-COUNT-2:     gpu_ext.async_copy %a[{{.*}}], %[[AT]][{{.*}}], 4, %{{.*}}
// CPA-COUNT-2:     gpu_ext.async_copy %b[{{.*}}], %[[BT]][{{.*}}], 4, %{{.*}}
// CPA-NEXT:        gpu_ext.async_commit
// CPA-NOT:         memref.store
// CPA:             gpu_ext.async_wait pending 0
// CPA-NEXT:        "gpu.barrier"() : () -> ()
// CPA-NEXT:        scf.yield
// CPA:         pg.schedule = "cp-async"

func.func @mm_at(%a: memref<24x200xf32>, %b: memref<24x300xf32>, %c: memref<200x300xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %m = arith.constant 200 : index
  %n = arith.constant 300 : index
  %k = arith.constant 24 : index
  %zero = arith.constant 0.000000e+00 : f32
  "scf.parallel"(%c0, %c0, %m, %n, %c1, %c1) <{operandSegmentSizes = array<i32: 2, 2, 2, 0>}> ({
  ^bb0(%i: index, %j: index):
    %sum = scf.for %kk = %c0 to %k step %c1 iter_args(%acc = %zero) -> (f32) {
      %x = memref.load %a[%kk, %i] : memref<24x200xf32>
      %y = memref.load %b[%kk, %j] : memref<24x300xf32>
      %p = arith.mulf %x, %y : f32
      %s = arith.addf %acc, %p : f32
      scf.yield %s : f32
    }
    memref.store %sum, %c[%i, %j] : memref<200x300xf32>
    scf.reduce
  }) {pg.kernel = "k0_matmul", pg.kind = "matmul", pg.nest = "matmul"} : (index, index, index, index, index, index) -> ()
  func.return
}

// -----

// ---- 17x9x13: no contiguous extent is a multiple of 4, so no 16-byte access touches A, B or C (the tiles in
// workgroup memory are still read 16 bytes at a time); cp-async copies one element (4 bytes) at a time.

// NAIVE-LABEL: func.func @mm_odd(
// NAIVE:         %[[GX:[0-9a-z_]+]] = arith.constant 2 : index
// NAIVE-NEXT:    %[[GY:[0-9a-z_]+]] = arith.constant 1 : index
// NAIVE-NEXT:    %[[GZ:[0-9a-z_]+]] = arith.constant 1 : index
// NAIVE-NEXT:    %[[T:[0-9a-z_]+]] = arith.constant 256 : index
// NAIVE:         pg.schedule = "naive"

// REG-LABEL: func.func @mm_odd(
// REG:           %[[AT:[0-9a-z_]+]] = gpu_ext.workgroup_alloc : memref<1x8x132xf32, 3 : i64>
// REG-NOT:       gpu_ext.vector_load %a
// REG-NOT:       gpu_ext.vector_load %b
// REG:           %[[BT:[0-9a-z_]+]] = gpu_ext.workgroup_alloc : memref<1x8x128xf32, 3 : i64>
// REG-NOT:       gpu_ext.vector_load %a
// REG-NOT:       gpu_ext.vector_load %b
// REG:             memref.load %a[{{.*}}] : memref<17x13xf32>
// REG-NOT:         gpu_ext.vector_load %a
// REG-NOT:         gpu_ext.vector_load %b
// REG:             memref.load %b[{{.*}}] : memref<13x9xf32>
// REG-NOT:         gpu_ext.vector_load %a
// REG-NOT:         gpu_ext.vector_load %b
// REG:             "gpu.barrier"() : () -> ()
// REG:             gpu_ext.vector_load %[[AT]]
// REG-NOT:         gpu_ext.vector_store({{.*}}), %c
// REG:             memref.store %{{.*}}, %c[{{.*}}] : memref<17x9xf32>
// REG-NOT:         gpu_ext.vector_store({{.*}}), %c
// REG:         pg.schedule = "regtile"

// WARP-LABEL: func.func @mm_odd(
// WARP:           gpu_ext.workgroup_alloc : memref<1x16x132xf32, 3 : i64>
// WARP-NOT:       gpu_ext.vector_load %a
// WARP-NOT:       gpu_ext.vector_load %b
// WARP:             memref.load %a[{{.*}}] : memref<17x13xf32>
// WARP-NOT:         gpu_ext.vector_load %a
// WARP-NOT:         gpu_ext.vector_load %b
// WARP:             memref.load %b[{{.*}}] : memref<13x9xf32>
// WARP-NOT:         gpu_ext.vector_load %a
// WARP-NOT:         gpu_ext.vector_load %b
// WARP-NOT:         gpu_ext.vector_store({{.*}}), %c
// WARP:             memref.store %{{.*}}, %c[{{.*}}] : memref<17x9xf32>
// WARP-NOT:         gpu_ext.vector_store({{.*}}), %c
// WARP:         pg.schedule = "warptile"

// CPA-LABEL: func.func @mm_odd(
// CPA:           %[[AT:[0-9a-z_]+]] = gpu_ext.workgroup_alloc : memref<2x16x132xf32, 3 : i64>
// CPA:           %[[BT:[0-9a-z_]+]] = gpu_ext.workgroup_alloc : memref<2x16x128xf32, 3 : i64>
// CPA-NOT:       gpu_ext.vector_load %a
// CPA-NOT:       memref.load %a
// CPA-COUNT-8:   gpu_ext.async_copy %a[{{.*}}], %[[AT]][{{.*}}], 1, %{{.*}} : memref<17x13xf32>, memref<2x16x132xf32, 3 : i64>
// CPA-COUNT-8:   gpu_ext.async_copy %b[{{.*}}], %[[BT]][{{.*}}], 1, %{{.*}} : memref<13x9xf32>, memref<2x16x128xf32, 3 : i64>
// CPA-NEXT:      gpu_ext.async_commit
// CPA-NEXT:      gpu_ext.async_wait pending 0
// CPA-NEXT:      "gpu.barrier"() : () -> ()
// CPA-NOT:       gpu_ext.vector_store({{.*}}), %c
// CPA:           memref.store %{{.*}}, %c[{{.*}}] : memref<17x9xf32>
// CPA-NOT:       gpu_ext.vector_store({{.*}}), %c
// CPA:         pg.schedule = "cp-async"

func.func @mm_odd(%a: memref<17x13xf32>, %b: memref<13x9xf32>, %c: memref<17x9xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %m = arith.constant 17 : index
  %n = arith.constant 9 : index
  %k = arith.constant 13 : index
  %zero = arith.constant 0.000000e+00 : f32
  "scf.parallel"(%c0, %c0, %m, %n, %c1, %c1) <{operandSegmentSizes = array<i32: 2, 2, 2, 0>}> ({
  ^bb0(%i: index, %j: index):
    %sum = scf.for %kk = %c0 to %k step %c1 iter_args(%acc = %zero) -> (f32) {
      %x = memref.load %a[%i, %kk] : memref<17x13xf32>
      %y = memref.load %b[%kk, %j] : memref<13x9xf32>
      %p = arith.mulf %x, %y : f32
      %s = arith.addf %acc, %p : f32
      scf.yield %s : f32
    }
    memref.store %sum, %c[%i, %j] : memref<17x9xf32>
    scf.reduce
  }) {pg.kernel = "k0_matmul", pg.kind = "matmul", pg.nest = "matmul"} : (index, index, index, index, index, index) -> ()
  func.return
}

// -----

// ---- batched (2 x 200x300x24) with a broadcast B (its load ignores the batch): the batch is the grid's z; block z
// picks the batch index of A and C.

// NAIVE-LABEL: func.func @mm_batched(
// NAIVE:         %[[GX:[0-9a-z_]+]] = arith.constant 38 : index
// NAIVE-NEXT:    %[[GY:[0-9a-z_]+]] = arith.constant 7 : index
// NAIVE-NEXT:    %[[GZ:[0-9a-z_]+]] = arith.constant 2 : index
// NAIVE-NEXT:    %[[T:[0-9a-z_]+]] = arith.constant 256 : index
// NAIVE-NEXT:    %[[ONE:[0-9a-z_]+]] = arith.constant 1 : index
// NAIVE-NEXT:    "gpu.launch"(%[[GX]], %[[GY]], %[[GZ]], %[[T]], %[[ONE]], %[[ONE]])
// NAIVE-NEXT:    ^bb0(%{{[0-9]+}}: index, %{{[0-9]+}}: index, %[[BZ:[0-9]+]]: index,
// NAIVE:           %[[BZ32:[0-9a-z_]+]] = arith.index_cast %[[BZ]] : index to i32
// NAIVE:           %[[BATCH:[0-9a-z_]+]] = arith.andi %[[BZ32]], %{{.*}} : i32
// NAIVE:             %[[BI:[0-9a-z_]+]] = arith.index_cast %{{.*}} : i32 to index
// NAIVE-NEXT:        %{{.*}} = arith.index_cast
// NAIVE-NEXT:        %[[KI:[0-9a-z_]+]] = arith.index_cast
// NAIVE-NEXT:        memref.load %a[%[[BI]], %{{.*}}, %[[KI]]] : memref<2x200x24xf32>
// NAIVE:             memref.load %b[%[[KI]], %{{.*}}] : memref<24x300xf32>
// NAIVE:           scf.if
// NAIVE-NEXT:        %[[BS:[0-9a-z_]+]] = arith.index_cast %[[BATCH]] : i32 to index
// NAIVE:             memref.store %{{.*}}, %c[%[[BS]], %{{.*}}, %{{.*}}] : memref<2x200x300xf32>
// NAIVE:         pg.schedule = "naive"

// REG-LABEL: func.func @mm_batched(
// REG:         %[[GX:[0-9a-z_]+]] = arith.constant 3 : index
// REG-NEXT:    %[[GY:[0-9a-z_]+]] = arith.constant 2 : index
// REG-NEXT:    %[[GZ:[0-9a-z_]+]] = arith.constant 2 : index
// REG-NEXT:    %[[T:[0-9a-z_]+]] = arith.constant 256 : index
// REG-NEXT:    %[[ONE:[0-9a-z_]+]] = arith.constant 1 : index
// REG-NEXT:    "gpu.launch"(%[[GX]], %[[GY]], %[[GZ]], %[[T]], %[[ONE]], %[[ONE]])
// REG-NEXT:    ^bb0(%{{[0-9]+}}: index, %{{[0-9]+}}: index, %[[BZ:[0-9]+]]: index,
// REG:           %[[BZ32:[0-9a-z_]+]] = arith.index_cast %[[BZ]] : index to i32
// REG:           %[[BATCH:[0-9a-z_]+]] = arith.andi %[[BZ32]], %{{.*}} : i32
// REG:             %[[BI:[0-9a-z_]+]] = arith.index_cast %[[BATCH]] : i32 to index
// REG:             gpu_ext.vector_load %a[%[[BI]], %{{.*}}, %{{.*}}] : memref<2x200x24xf32> -> f32, f32, f32, f32
// REG:             gpu_ext.vector_load %b[%{{[0-9]+}}, %{{[0-9]+}}] : memref<24x300xf32> -> f32, f32, f32, f32
// REG:           scf.if
// REG-NEXT:        %[[BS:[0-9a-z_]+]] = arith.index_cast %[[BATCH]] : i32 to index
// REG:             gpu_ext.vector_store({{.*}}), %c[%[[BS]], %{{.*}}, %{{.*}}] : memref<2x200x300xf32>
// REG:         pg.schedule = "regtile"

// CPA-LABEL: func.func @mm_batched(
// CPA:         %[[GX:[0-9a-z_]+]] = arith.constant 3 : index
// CPA-NEXT:    %[[GY:[0-9a-z_]+]] = arith.constant 2 : index
// CPA-NEXT:    %[[GZ:[0-9a-z_]+]] = arith.constant 2 : index
// CPA-NEXT:    %[[T:[0-9a-z_]+]] = arith.constant 256 : index
// CPA:           %[[BATCH:[0-9a-z_]+]] = arith.andi %{{.*}}, %{{.*}} : i32
// CPA:           %[[BI:[0-9a-z_]+]] = arith.index_cast %[[BATCH]] : i32 to index
// CPA:           gpu_ext.vector_load %a[%[[BI]], %{{.*}}, %{{.*}}] : memref<2x200x24xf32> -> f32, f32, f32, f32
// CPA:           gpu_ext.async_copy %b[%{{[0-9]+}}, %{{[0-9]+}}], {{.*}}, 4, %{{.*}} : memref<24x300xf32>, memref<2x16x128xf32, 3 : i64>
// CPA:           gpu_ext.vector_store({{.*}}), %c[%[[BI]], %{{.*}}, %{{.*}}] : memref<2x200x300xf32>
// CPA:         pg.schedule = "cp-async"

// AUTO-LABEL: func.func @mm_batched(
// AUTO-NOT:     gpu.launch
// AUTO:         }) {pg.kernel = "k0_matmul", pg.kind = "matmul", pg.nest = "matmul"} : (index, index, index, index, index, index, index, index, index) -> ()

func.func @mm_batched(%a: memref<2x200x24xf32>, %b: memref<24x300xf32>, %c: memref<2x200x300xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %m = arith.constant 200 : index
  %n = arith.constant 300 : index
  %k = arith.constant 24 : index
  %zero = arith.constant 0.000000e+00 : f32
  "scf.parallel"(%c0, %c0, %c0, %c2, %m, %n, %c1, %c1, %c1) <{operandSegmentSizes = array<i32: 3, 3, 3, 0>}> ({
  ^bb0(%bi: index, %i: index, %j: index):
    %sum = scf.for %kk = %c0 to %k step %c1 iter_args(%acc = %zero) -> (f32) {
      %x = memref.load %a[%bi, %i, %kk] : memref<2x200x24xf32>
      %y = memref.load %b[%kk, %j] : memref<24x300xf32>
      %p = arith.mulf %x, %y : f32
      %s = arith.addf %acc, %p : f32
      scf.yield %s : f32
    }
    memref.store %sum, %c[%bi, %i, %j] : memref<2x200x300xf32>
    scf.reduce
  }) {pg.kernel = "k0_matmul", pg.kind = "matmul", pg.nest = "matmul"} : (index, index, index, index, index, index, index, index, index) -> ()
  func.return
}

// -----

// ---- f64: a forced rung keeps its tiles but uses scalar accesses only (16-byte vectors are for f32); cp-async
// copies one 8-byte element at a time. auto leaves f64 to pg-to-gpu.

// SMEM-LABEL: func.func @mm_f64(
// SMEM:           gpu_ext.workgroup_alloc : memref<1x32x33xf64, 3 : i64>
// SMEM:           gpu_ext.workgroup_alloc : memref<1x32x32xf64, 3 : i64>
// SMEM:         pg.schedule = "smem"

// f64: half the outputs per thread along M (64x128 tiles, 32 accumulators: 64 registers) and, for cp-async,
// half the K tile (two stages of 8 fit in 48 KiB).
// REG-LABEL: func.func @mm_f64(
// REG:           %[[AT:[0-9a-z_]+]] = gpu_ext.workgroup_alloc : memref<1x8x65xf64, 3 : i64>
// REG-NOT:       gpu_ext.vector
// REG:           %[[BT:[0-9a-z_]+]] = gpu_ext.workgroup_alloc : memref<1x8x128xf64, 3 : i64>
// REG-NOT:       gpu_ext.vector
// REG:           scf.for {{.*}} -> ({{(f64, ){31}f64}}) {
// REG-NOT:         gpu_ext.vector
// REG:             memref.load %[[AT]]
// REG-NOT:         gpu_ext.vector
// REG:             memref.store %{{.*}}, %c[{{.*}}] : memref<200x300xf64>
// REG-NOT:         gpu_ext.vector
// REG:         pg.schedule = "regtile"

// WARP-LABEL: func.func @mm_f64(
// WARP:           gpu_ext.workgroup_alloc : memref<1x16x65xf64, 3 : i64>
// WARP-NOT:       gpu_ext.vector
// WARP:         pg.schedule = "warptile"

// CPA-LABEL: func.func @mm_f64(
// CPA:           %[[AT:[0-9a-z_]+]] = gpu_ext.workgroup_alloc : memref<2x8x65xf64, 3 : i64>
// CPA:           %[[BT:[0-9a-z_]+]] = gpu_ext.workgroup_alloc : memref<2x8x128xf64, 3 : i64>
// CPA-NOT:       gpu_ext.vector
// CPA:           gpu_ext.async_copy %a[{{.*}}], %[[AT]][{{.*}}], 1, %{{.*}} : memref<200x24xf64>, memref<2x8x65xf64, 3 : i64>
// CPA-NOT:       gpu_ext.vector
// CPA:           gpu_ext.async_copy %b[{{.*}}], %[[BT]][{{.*}}], 1, %{{.*}} : memref<24x300xf64>, memref<2x8x128xf64, 3 : i64>
// CPA-NOT:       gpu_ext.vector
// CPA:         pg.schedule = "cp-async", pg.tile = array<i32: 64, 128, 8>

// AUTO-LABEL: func.func @mm_f64(
// AUTO-NOT:     gpu.launch
// AUTO:         }) {pg.kernel = "k0_matmul", pg.kind = "matmul", pg.nest = "matmul"}

func.func @mm_f64(%a: memref<200x24xf64>, %b: memref<24x300xf64>, %c: memref<200x300xf64>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %m = arith.constant 200 : index
  %n = arith.constant 300 : index
  %k = arith.constant 24 : index
  %zero = arith.constant 0.000000e+00 : f64
  "scf.parallel"(%c0, %c0, %m, %n, %c1, %c1) <{operandSegmentSizes = array<i32: 2, 2, 2, 0>}> ({
  ^bb0(%i: index, %j: index):
    %sum = scf.for %kk = %c0 to %k step %c1 iter_args(%acc = %zero) -> (f64) {
      %x = memref.load %a[%i, %kk] : memref<200x24xf64>
      %y = memref.load %b[%kk, %j] : memref<24x300xf64>
      %p = arith.mulf %x, %y : f64
      %s = arith.addf %acc, %p : f64
      scf.yield %s : f64
    }
    memref.store %sum, %c[%i, %j] : memref<200x300xf64>
    scf.reduce
  }) {pg.kernel = "k0_matmul", pg.kind = "matmul", pg.nest = "matmul"} : (index, index, index, index, index, index) -> ()
  func.return
}

// -----

// ---- not matmul nests, under every schedule: a nest of a matmul kernel that the matmul kind did not mark
// (pg.nest = "matmul") as its nest (its K loop takes a maximum), and an elementwise nest. No nest is recognised by
// its shape.

// CHECK-LABEL: func.func @not_matmul(
// CHECK-NOT:     gpu.launch
// CHECK:         "scf.parallel"
// CHECK:             arith.maximumf
// CHECK:         }) {pg.kernel = "k0_maxmul", pg.kind = "matmul"}
// CHECK-NOT:     gpu.launch
// CHECK:         "scf.parallel"
// CHECK:         }) {pg.kernel = "k1_tanh", pg.kind = "elementwise"}
// CHECK-NOT:     gpu.launch
// CHECK:         func.return

func.func @not_matmul(%a: memref<20x24xf32>, %b: memref<24x12xf32>, %c: memref<20x12xf32>, %e: memref<20x12xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %m = arith.constant 20 : index
  %n = arith.constant 12 : index
  %k = arith.constant 24 : index
  %zero = arith.constant 0.000000e+00 : f32
  "scf.parallel"(%c0, %c0, %m, %n, %c1, %c1) <{operandSegmentSizes = array<i32: 2, 2, 2, 0>}> ({
  ^bb0(%i: index, %j: index):
    %sum = scf.for %kk = %c0 to %k step %c1 iter_args(%acc = %zero) -> (f32) {
      %x = memref.load %a[%i, %kk] : memref<20x24xf32>
      %y = memref.load %b[%kk, %j] : memref<24x12xf32>
      %p = arith.mulf %x, %y : f32
      %s = arith.maximumf %acc, %p : f32
      scf.yield %s : f32
    }
    memref.store %sum, %c[%i, %j] : memref<20x12xf32>
    scf.reduce
  }) {pg.kernel = "k0_maxmul", pg.kind = "matmul"} : (index, index, index, index, index, index) -> ()
  "scf.parallel"(%c0, %c0, %m, %n, %c1, %c1) <{operandSegmentSizes = array<i32: 2, 2, 2, 0>}> ({
  ^bb0(%i: index, %j: index):
    %x = memref.load %c[%i, %j] : memref<20x12xf32>
    %t = math.tanh %x : f32
    memref.store %t, %e[%i, %j] : memref<20x12xf32>
    scf.reduce
  }) {pg.kernel = "k1_tanh", pg.kind = "elementwise"} : (index, index, index, index, index, index) -> ()
  func.return
}

// -----

// ---- auto on big f32 nests (2**24 multiply-adds and more) takes cp-async: 1536x1536x8 fills 144 tiles of 128x128,
// at least one for each of the H200's 132 SMs; 512x512x64 would fill only 16, so it takes 64x64 tiles (128 threads,
// four times the blocks).

// AUTO-LABEL: func.func @auto_small_tile(
// AUTO:         %[[GX:[0-9a-z_]+]] = arith.constant 8 : index
// AUTO-NEXT:    %[[GY:[0-9a-z_]+]] = arith.constant 8 : index
// AUTO-NEXT:    %[[GZ:[0-9a-z_]+]] = arith.constant 1 : index
// AUTO-NEXT:    %[[T:[0-9a-z_]+]] = arith.constant 128 : index
// AUTO-NEXT:    %[[ONE:[0-9a-z_]+]] = arith.constant 1 : index
// AUTO-NEXT:    "gpu.launch"(%[[GX]], %[[GY]], %[[GZ]], %[[T]], %[[ONE]], %[[ONE]])
// AUTO:           gpu_ext.workgroup_alloc : memref<2x16x68xf32, 3 : i64>
// AUTO:           gpu_ext.workgroup_alloc : memref<2x16x64xf32, 3 : i64>
// AUTO:           gpu_ext.async_copy %b
// AUTO:           gpu_ext.async_commit
// AUTO:         pg.schedule = "cp-async", pg.tile = array<i32: 64, 64, 16>, gpu.known_block_size = array<i32: 128, 1, 1>}

func.func @auto_small_tile(%a: memref<512x64xf32>, %b: memref<64x512xf32>, %c: memref<512x512xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %m = arith.constant 512 : index
  %k = arith.constant 64 : index
  %zero = arith.constant 0.000000e+00 : f32
  "scf.parallel"(%c0, %c0, %m, %m, %c1, %c1) <{operandSegmentSizes = array<i32: 2, 2, 2, 0>}> ({
  ^bb0(%i: index, %j: index):
    %sum = scf.for %kk = %c0 to %k step %c1 iter_args(%acc = %zero) -> (f32) {
      %x = memref.load %a[%i, %kk] : memref<512x64xf32>
      %y = memref.load %b[%kk, %j] : memref<64x512xf32>
      %p = arith.mulf %x, %y : f32
      %s = arith.addf %acc, %p : f32
      scf.yield %s : f32
    }
    memref.store %sum, %c[%i, %j] : memref<512x512xf32>
    scf.reduce
  }) {pg.kernel = "k0_matmul", pg.kind = "matmul", pg.nest = "matmul"} : (index, index, index, index, index, index) -> ()
  func.return
}

// -----

// AUTO-LABEL: func.func @auto_cp_async(
// AUTO:         %[[GX:[0-9a-z_]+]] = arith.constant 12 : index
// AUTO-NEXT:    %[[GY:[0-9a-z_]+]] = arith.constant 12 : index
// AUTO-NEXT:    %[[GZ:[0-9a-z_]+]] = arith.constant 1 : index
// AUTO-NEXT:    %[[T:[0-9a-z_]+]] = arith.constant 256 : index
// AUTO-NEXT:    %[[ONE:[0-9a-z_]+]] = arith.constant 1 : index
// AUTO-NEXT:    "gpu.launch"(%[[GX]], %[[GY]], %[[GZ]], %[[T]], %[[ONE]], %[[ONE]])
// AUTO:           gpu_ext.workgroup_alloc : memref<2x16x132xf32, 3 : i64>
// AUTO:           gpu_ext.workgroup_alloc : memref<2x16x128xf32, 3 : i64>
// AUTO:           gpu_ext.async_copy %b
// AUTO:           gpu_ext.async_commit
// AUTO:         pg.schedule = "cp-async", pg.tile = array<i32: 128, 128, 16>, gpu.known_block_size = array<i32: 256, 1, 1>}

func.func @auto_cp_async(%a: memref<1536x8xf32>, %b: memref<8x1536xf32>, %c: memref<1536x1536xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %m = arith.constant 1536 : index
  %k = arith.constant 8 : index
  %zero = arith.constant 0.000000e+00 : f32
  "scf.parallel"(%c0, %c0, %m, %m, %c1, %c1) <{operandSegmentSizes = array<i32: 2, 2, 2, 0>}> ({
  ^bb0(%i: index, %j: index):
    %sum = scf.for %kk = %c0 to %k step %c1 iter_args(%acc = %zero) -> (f32) {
      %x = memref.load %a[%i, %kk] : memref<1536x8xf32>
      %y = memref.load %b[%kk, %j] : memref<8x1536xf32>
      %p = arith.mulf %x, %y : f32
      %s = arith.addf %acc, %p : f32
      scf.yield %s : f32
    }
    memref.store %sum, %c[%i, %j] : memref<1536x1536xf32>
    scf.reduce
  }) {pg.kernel = "k0_matmul", pg.kind = "matmul", pg.nest = "matmul"} : (index, index, index, index, index, index) -> ()
  func.return
}
