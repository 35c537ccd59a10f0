// pgc --emit=ptx on examples/names.py, one recurrent type at a time (PG_NAMES_TYPE picks the model the compiled
// train step is traced with): the whole unrolled step (16 time steps, AdamW) is PTX that the assembler accepts
// without spills (--strict), with .loc lines into the example.
// RUN: env PG_NAMES_TYPE=rnn pgc %S/../../../examples/names.py --emit=ptx -o %t.rnn.ptx && %python -m picograd.target.ptxas %t.rnn.ptx --arch sm_90 --strict | filecheck %s --check-prefix=ASM
// RUN: env PG_NAMES_TYPE=gru pgc %S/../../../examples/names.py --emit=ptx -o %t.gru.ptx && %python -m picograd.target.ptxas %t.gru.ptx --arch sm_90 --strict | filecheck %s --check-prefix=ASM
// RUN: env PG_NAMES_TYPE=lstm pgc %S/../../../examples/names.py --emit=ptx -o %t.lstm.ptx && %python -m picograd.target.ptxas %t.lstm.ptx --arch sm_90 --strict | filecheck %s --check-prefix=ASM
// RUN: filecheck %s --check-prefix=PTX < %t.lstm.ptx

// ASM: [{{ptxas|nvjitlink}}] sm_90: {{.*}}_matmul: {{[0-9]+}} registers, 0 spill bytes

// PTX: .target sm_90
// PTX: .file {{[0-9]+}} "{{.*}}names.py"
