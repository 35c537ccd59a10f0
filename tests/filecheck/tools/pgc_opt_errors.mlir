// Errors are xDSL's diagnostic without a Python traceback, and a non-zero exit status. A verifier error names the
// failing op's location. --verify-diagnostics keeps xDSL 0.74's behaviour: print the error, exit 0.
// RUN: not pgc-opt %s 2>&1 | filecheck %s --check-prefix=VERIFY
// RUN: pgc-opt %s --verify-diagnostics | filecheck %s --check-prefix=DIAG
// RUN: echo "%%0 = pg.nope" | not pgc-opt 2>&1 | filecheck %s --check-prefix=PARSE
// RUN: not pgc-opt %s -p no-such-pass 2>&1 | filecheck %s --check-prefix=PASS
// RUN: not pgc-opt %s -p "cse{" 2>&1 | filecheck %s --check-prefix=SPEC
// RUN: not pgc-opt %t.does-not-exist.mlir 2>&1 | filecheck %s --check-prefix=NOFILE

func.func @f(%x: tensor<3xi64>) -> tensor<3xi64> {
  %y = pg.exp %x : tensor<3xi64> loc("model.py":12:3)
  func.return %y : tensor<3xi64>
}

// VERIFY:     {{\A}}model.py:12:3: error: pg.exp: expects a float tensor, got tensor<3xi64>{{$}}
// VERIFY-NOT: {{.}}

// DIAG:      pg.exp: expects a float tensor, got tensor<3xi64>
// DIAG:      %y = "pg.exp"(%x) : (tensor<3xi64>) -> tensor<3xi64>
// DIAG-NEXT: ^^^^^
// DIAG-NEXT: | Operation does not verify: pg.exp: expects a float tensor, got tensor<3xi64>

// PARSE-NOT: Traceback
// PARSE:     stdin:
// PARSE:     Operation pg.nope is not registered
// PARSE-NOT: Traceback

// PASS:     {{\A}}pgc-opt: error: Unrecognized passes: ['no-such-pass']{{$}}
// PASS-NOT: {{.}}

// SPEC-NOT: Traceback
// SPEC:     pgc-opt: error: Error parsing pass pipeline specification:
// SPEC:     Expected argument name here
// SPEC-NOT: Traceback

// NOFILE:     {{\A}}pgc-opt: error: [Errno 2] No such file or directory: '{{.*}}does-not-exist.mlir'{{$}}
// NOFILE-NOT: {{.}}
