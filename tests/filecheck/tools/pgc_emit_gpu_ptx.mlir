// pgc --emit=gpu and --emit=ptx on the MLP example. The gpu stage: the host function launches one kernel per loop
// nest, in order, with constant grid and block sizes, passing whole buffers; the kernels live in one gpu.module; the
// output parses back with pgc-opt. The ptx stage is PTX text (for sm_90, with .loc lines into the example) that the
// assembler accepts.
// RUN: pgc %S/../../../examples/mlp_names.py --emit=gpu | pgc-opt | filecheck %s --check-prefix=GPU
// RUN: pgc %S/../../../examples/mlp_names.py --emit=ptx | filecheck %s --check-prefix=PTX
// RUN: pgc %S/../../../examples/mlp_names.py --emit=ptx -o %t.ptx && %python -m picograd.target.ptxas %t.ptx --arch sm_90 | filecheck %s --check-prefix=ASM
// RUN: pgc %S/../../../examples/mlp_names.py --emit=ptx --arch sm_90a | filecheck %s --check-prefix=SM90A
// RUN: pgc %S/../../../examples/mlp_names.py --emit=gpu --print-debuginfo | filecheck %s --check-prefix=LOC

// The index checks of the embedding and of cross_entropy's targets come first: their error flags (mutable globals
// holding the message), then the check kernel launched before the gather.
// GPU-LABEL: builtin.module attributes {gpu.container_module} {
// GPU-NEXT:    "memref.global"() <{sym_name = "__pg_index_error_1", type = memref<2xi64>, {{.*}} {pg.index_check = "target {} is out of range for dim 1 of size 27 (at {{.*}}mlp_names.py:{{[0-9]+}})"}
// GPU-NEXT:    "memref.global"() <{sym_name = "__pg_index_error_0", type = memref<2xi64>, {{.*}} {pg.index_check = "index {} is out of range for dim 0 of size 27 (at {{.*}}mlp_names.py:{{[0-9]+}})"}
// GPU-NEXT:    func.func @train_step(
// GPU:           %[[ARENA:.*]] = memref.alloc() {alignment = 64 : i64} : memref<{{[0-9]+}}xi8>
// GPU:           "gpu.launch_func"({{.*}}) <{kernel = @train_step_kernels::@k0_check_index,
// GPU-NEXT:      "gpu.launch_func"({{.*}}) <{kernel = @train_step_kernels::@k1_gather,
// GPU-NOT:       scf.parallel
// GPU:           memref.dealloc %[[ARENA]]
// GPU-NEXT:      func.return
// GPU-NEXT:    }
// GPU-NEXT:    "gpu.module"() <{sym_name = "train_step_kernels"}> ({
// GPU:           }) {sym_name = "k1_gather", gpu.known_block_size = array<i32: 256, 1, 1>, pg.schedule = "thread_per_point", pg.kind = "gather"}
// GPU:           math.tanh
// GPU:           gpu_ext.shuffle xor
// GPU:           pg.schedule = "block_per_row", pg.kind = "reduction"
// GPU:           "memref.atomic_rmw"
// GPU:           pg.schedule = "atomic", pg.kind = "scatter_add"

// PTX:      .version 8.0
// PTX-NEXT: .target sm_90
// PTX-NEXT: .address_size 64
// PTX:      .file 1 "{{.*}}mlp_names.py"
// PTX:      .visible .entry k1_gather(
// PTX-NEXT:   .param .u64 k1_gather_param_0,
// PTX:      .maxntid 256, 1, 1
// PTX:        ld.param.u64
// PTX-NEXT:   cvta.to.global.u64
// PTX:        .loc 1 {{[0-9]+}} 0
// PTX:      .visible .entry k4_tanh(
// PTX-NOT:  .approx
// PTX:        shfl.sync.bfly.b32
// PTX:        red.global.add.f32
// PTX:        ret;

// ASM: [{{ptxas|nvjitlink}}] sm_90: {{.*}}k1_gather: {{[0-9]+}} registers, 0 spill bytes

// SM90A: .target sm_90a

// The hidden layer's tanh keeps the model's line in its kernel.
// LOC:         math.tanh {{.*}} loc("{{.*}}mlp_names.py":{{[0-9]+}}:{{[0-9]+}})
