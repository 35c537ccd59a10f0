// pgc --emit=ptx on the digits examples (issue 12): the CNN's and the DDPM's whole compiled train steps (conv
// forward and vjps through pg-decompose-conv, BatchNorm/GroupNorm, SiLU, Adam; the DDPM's noise drawn in the step)
// are PTX that the assembler accepts without spills (--strict), with .loc lines into the example.
// RUN: pgc %S/../../../examples/cnn_digits.py --emit=ptx -o %t.cnn.ptx && %python -m picograd.target.ptxas %t.cnn.ptx --arch sm_90 --strict | filecheck %s --check-prefix=ASM
// RUN: pgc %S/../../../examples/ddpm_digits.py --emit=ptx -o %t.ddpm.ptx && %python -m picograd.target.ptxas %t.ddpm.ptx --arch sm_90 --strict | filecheck %s --check-prefix=ASM
// RUN: filecheck %s --check-prefix=PTX < %t.ddpm.ptx

// ASM: [{{ptxas|nvjitlink}}] sm_90: {{.*}}_matmul: {{[0-9]+}} registers, 0 spill bytes

// PTX: .target sm_90
// PTX: .file {{[0-9]+}} "{{.*}}ddpm_digits.py"
// PTX: .entry {{k[0-9]+}}_random
