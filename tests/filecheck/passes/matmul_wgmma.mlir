// The Hopper tensor-core matmul schedules wgmma and wgmma-ws (picograd/passes/kinds/matmul_wgmma.py): a loop-stage
// bf16 matmul, A (200x64, K-major) times B stored as Bt (320x64, K-major: x @ W.T), f32 out, through
// pg-matmul-schedule (the PTX and ptxas's verdict for sm_90a: matmul_wgmma_ptx.py beside this file).
// RUN: pgc-opt %s -p 'pg-matmul-schedule{schedule=wgmma}' | filecheck %s --check-prefix=LAUNCH
// wgmma needs sm_90a: compiling for sm_90 is one error naming the schedule, the dtype and the target.
// RUN: not pgc-opt %s -p 'pg-matmul-schedule{schedule=wgmma},pg-to-gpu,pg-to-ptx' 2>&1 | filecheck %s --check-prefix=ERR

// The nest becomes a gpu.launch of 2 x 3 blocks of 256 threads (two consumer warpgroups, a 128x128 tile) whose body
// only names A, Bt and C; the problem is an attribute.
// LAUNCH:      %[[GX:.*]] = arith.constant 3 : index
// LAUNCH-NEXT: %[[GY:.*]] = arith.constant 2 : index
// LAUNCH-NEXT: %[[GZ:.*]] = arith.constant 1 : index
// LAUNCH-NEXT: %[[T:.*]] = arith.constant 256 : index
// LAUNCH:      "gpu.launch"(%[[GX]], %[[GY]], %[[GZ]], %[[T]],
// LAUNCH:        "memref.extract_aligned_pointer_as_index"(%a) : (memref<200x64xbf16>) -> index
// LAUNCH-NEXT:   "memref.extract_aligned_pointer_as_index"(%b) : (memref<320x64xbf16>) -> index
// LAUNCH-NEXT:   "memref.extract_aligned_pointer_as_index"(%result0) : (memref<200x320xf32>) -> index
// LAUNCH-NEXT:   "gpu.terminator"
// LAUNCH:      pg.schedule = "wgmma", pg.wgmma = {schedule = "wgmma", sizes = [200 : i64, 320 : i64, 64 : i64, 1 : i64], dtype = "bf16", out_dtype = "f32", majors = ["k", "k"]}

// ERR: pg-to-ptx: matmul schedule 'wgmma' (bf16) needs target sm_90a (wgmma.mma_async, setmaxnreg); compiling for sm_90

func.func @mm(%a: memref<200x64xbf16>, %b: memref<320x64xbf16>, %result0: memref<200x320xf32> {pg.result = 0 : i64}) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %m = arith.constant 200 : index
  %n = arith.constant 320 : index
  %k = arith.constant 64 : index
  %zero = arith.constant 0.0 : f32
  "scf.parallel"(%c0, %c0, %m, %n, %c1, %c1) <{operandSegmentSizes = array<i32: 2, 2, 2, 0>}> ({
  ^bb0(%i: index, %j: index):
    %sum = scf.for %kk = %c0 to %k step %c1 iter_args(%acc = %zero) -> (f32) {
      %x0 = memref.load %a[%i, %kk] : memref<200x64xbf16>
      %y0 = memref.load %b[%j, %kk] : memref<320x64xbf16>
      %x = arith.extf %x0 : bf16 to f32
      %y = arith.extf %y0 : bf16 to f32
      %p = arith.mulf %x, %y : f32
      %s = arith.addf %acc, %p : f32
      scf.yield %s : f32
    }
    memref.store %sum, %result0[%i, %j] : memref<200x320xf32>
    scf.reduce
  }) {pg.kernel = "k0_matmul", pg.kind = "matmul", pg.nest = "matmul"} : (index, index, index, index, index, index) -> ()
  func.return
}
