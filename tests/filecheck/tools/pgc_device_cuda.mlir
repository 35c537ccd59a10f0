// pgc --device cuda lowers the MLP example's train step for the GPU on a machine without one (issue 19 item 1):
// every stage prints what @pg.compile on cuda tensors runs (tests/test_cuda_frontend.py checks that the stages and
// the PTX equal what the CUDA backend compiles), and --emit=ptx is PTX that the assembler accepts for sm_90.
// --device cpu allows the stages the CPU executor runs and names the fix for the others.
// RUN: pgc %S/../../../examples/mlp_names.py --device cuda --emit=step | pgc-opt | filecheck %s --check-prefix=STEP
// RUN: pgc %S/../../../examples/mlp_names.py --device cuda --emit=loops | pgc-opt | filecheck %s --check-prefix=LOOPS
// RUN: pgc %S/../../../examples/mlp_names.py --device cuda --emit=gpu | pgc-opt | filecheck %s --check-prefix=GPU
// RUN: pgc %S/../../../examples/mlp_names.py --device cuda --emit=ptx -o %t.ptx && %python -m picograd.target.ptxas %t.ptx --arch sm_90 | filecheck %s --check-prefix=ASM
// RUN: filecheck %s --check-prefix=PTX < %t.ptx
// RUN: pgc %S/../../../examples/mlp_names.py --device cpu --emit=simplify | filecheck %s --check-prefix=CPU
// RUN: not pgc %S/../../../examples/mlp_names.py --device cpu --emit=ptx 2>&1 | filecheck %s --check-prefix=CPU-PTX

// STEP-LABEL: func.func @train_step
// STEP-NOT:     pg.grad
// STEP:         pg.scatter_add

// LOOPS-LABEL: func.func @train_step(%{{.*}}: memref<32x3xi64>
// LOOPS:         {pg.kernel = "k0_check_index", pg.kind = "elementwise", kernel.schedule = #kernel.schedule<{{[^>]*}}>}
// LOOPS:         {pg.kernel = "k1_gather", pg.kind = "gather", kernel.schedule = #kernel.schedule<{{[^>]*}}>}

// GPU:      func.func @train_step(
// GPU:        "gpu.launch_func"({{.*}}) <{kernel = @train_step_kernels::@k0_check_index,
// GPU:      "gpu.module"() <{sym_name = "train_step_kernels"}>

// ASM: [{{ptxas|nvjitlink}}] sm_90: {{.*}}k1_gather: {{[0-9]+}} registers, 0 spill bytes

// PTX:      .target sm_90
// PTX:      .visible .entry k1_gather(
// PTX:      red.global.add.f32

// CPU: func.func @train_step

// CPU-PTX: pgc: error: --device cpu --emit=ptx: the CPU executor runs the simplify stage; ptx is the CUDA lowering: use --device cuda (no GPU needed)
