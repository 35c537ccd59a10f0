// pgc-opt reads a file or stdin, writes stdout or -o, and runs xDSL's own passes next to picograd's.
// RUN: pgc-opt %s | pgc-opt | filecheck %s
// RUN: pgc-opt < %s | filecheck %s
// RUN: pgc-opt %s -o %t && filecheck %s --input-file %t
// RUN: pgc-opt %s -p cse,dce,canonicalize | filecheck %s --check-prefix=CLEAN
// RUN: pgc-opt %s --print-op-generic | filecheck %s --check-prefix=GENERIC
// RUN: pgc-opt --help | filecheck %s --check-prefix=HELP

func.func @f(%x: tensor<3xf32>) -> tensor<3xf32> {
  %a = pg.exp %x : tensor<3xf32>
  %b = pg.exp %x : tensor<3xf32>
  %dead = pg.log %x : tensor<3xf32>
  %c = pg.add %a, %b : tensor<3xf32>
  func.return %c : tensor<3xf32>
}

// CHECK:      builtin.module {
// CHECK-NEXT:   func.func @f(%x: tensor<3xf32>) -> tensor<3xf32> {
// CHECK-NEXT:     %a = pg.exp %x : tensor<3xf32>
// CHECK-NEXT:     %b = pg.exp %x : tensor<3xf32>
// CHECK-NEXT:     %dead = pg.log %x : tensor<3xf32>
// CHECK-NEXT:     %c = pg.add %a, %b : tensor<3xf32>
// CHECK-NEXT:     func.return %c : tensor<3xf32>
// CHECK-NEXT:   }
// CHECK-NEXT: }

// CLEAN:      func.func @f(%x: tensor<3xf32>) -> tensor<3xf32> {
// CLEAN-NEXT:   %a = pg.exp %x : tensor<3xf32>
// CLEAN-NEXT:   %c = pg.add %a, %a : tensor<3xf32>
// CLEAN-NEXT:   func.return %c : tensor<3xf32>
// CLEAN-NEXT: }

// GENERIC: %a = "pg.exp"(%x) : (tensor<3xf32>) -> tensor<3xf32>

// HELP: usage: pgc-opt
// HELP: Available passes are:
