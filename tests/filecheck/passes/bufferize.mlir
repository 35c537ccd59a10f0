// RUN: pgc-opt %s -p pg-bufferize --split-input-file --verify-diagnostics | filecheck %s
// RUN: pgc-opt %s -p pg-bufferize --split-input-file --verify-diagnostics --print-debuginfo | filecheck %s --check-prefix=LOC
// RUN: pgc-opt %s -p 'pg-bufferize{reuse=false}' --split-input-file --verify-diagnostics | filecheck %s --check-prefix=NOREUSE
// RUN: pgc-opt %s -p 'pg-bufferize{report=true alignment=16}' --split-input-file --verify-diagnostics 2>&1 >/dev/null | filecheck %s --check-prefix=REPORT
// Without --verify-diagnostics the first rejection is an error on stderr and a nonzero exit:
// RUN: not pgc-opt %s -p pg-bufferize --split-input-file 2>&1 | filecheck %s --check-prefix=EXIT

// ---- destination-passing style and the memory plan
// Inputs stay where the caller put them; the result is written into the output buffer the caller passes
// (pg.result = 0); the function returns nothing. Intermediates live in one arena: %h and %e share bytes 0..63 (their
// lifetimes k0-k1 and k3-k4 are disjoint), %t lives at 64. The reshape-only kernel k2 becomes a second view of
// %t's bytes, with no launch.

// CHECK-LABEL: func.func @chain(%x: memref<4x4xf32>, %w: memref<4x4xf32>, %result0: memref<4xf32> {pg.result = 0 : i64}) attributes {pg.peak_bytes = 128 : i64} {
// CHECK-NEXT:    %[[ARENA:.*]] = memref.alloc() {alignment = 64 : i64} : memref<128xi8>
// CHECK-NEXT:    %[[AT0:.*]] = arith.constant 0 : index
// CHECK-NEXT:    %[[AT64:.*]] = arith.constant 64 : index
// CHECK-NEXT:    %[[H:.*]] = memref.view %[[ARENA]][%[[AT0]]][] : memref<128xi8> to memref<4x4xf32>
// CHECK-NEXT:    kernel.launch @k0_matmul "matmul" ins(%x, %w : memref<4x4xf32>, memref<4x4xf32>) outs(%[[H]] : memref<4x4xf32>) {
// CHECK-NEXT:    ^bb0(%a: tensor<4x4xf32>, %b: tensor<4x4xf32>):
// CHECK-NEXT:      %m = pg.matmul %a, %b
// CHECK-NEXT:      kernel.yield %m : tensor<4x4xf32>
// CHECK-NEXT:    }
// CHECK-NEXT:    %[[T:.*]] = memref.view %[[ARENA]][%[[AT64]]][] : memref<128xi8> to memref<4x4xf32>
// CHECK-NEXT:    kernel.launch @k1_tanh "elementwise" ins(%[[H]] : memref<4x4xf32>) outs(%[[T]] : memref<4x4xf32>) {
// CHECK:         %[[R:.*]] = memref.view %[[ARENA]][%[[AT64]]][] : memref<128xi8> to memref<16xf32>
// CHECK-NEXT:    %[[E:.*]] = memref.view %[[ARENA]][%[[AT0]]][] : memref<128xi8> to memref<16xf32>
// CHECK-NEXT:    kernel.launch @k3_exp "elementwise" ins(%[[R]] : memref<16xf32>) outs(%[[E]] : memref<16xf32>) {
// CHECK:         kernel.launch @k4_sum "reduction" ins(%[[E]] : memref<16xf32>) outs(%result0 : memref<4xf32>) {
// CHECK:         }
// CHECK-NEXT:    memref.dealloc %[[ARENA]] : memref<128xi8>
// CHECK-NEXT:    func.return
// CHECK-NEXT:  }

// NOREUSE-LABEL: func.func @chain
// NOREUSE-SAME:    pg.peak_bytes = 192 : i64
// NOREUSE:         memref.alloc() {alignment = 64 : i64} : memref<192xi8>

// REPORT: pg-bufferize: @chain: peak 128 bytes for 4 intermediates of 5 kernels, 1 of them reshapes turned into views (without reuse 192, most live at once 128)

// Each created op carries the location of the kernel it serves; the arena the first kernel's, its dealloc the last.
// LOC-LABEL: func.func @chain
// LOC-NEXT:    memref.alloc() {{.*}} loc("model.py":3:8)
// LOC-NEXT:    arith.constant 0 : index loc("model.py":3:8)
// LOC-NEXT:    arith.constant 64 : index loc("model.py":4:8)
// LOC-NEXT:    memref.view {{.*}} loc("model.py":3:8)
// LOC-NEXT:    kernel.launch @k0_matmul
// LOC:         } loc("model.py":3:8)
// LOC-NEXT:    memref.view {{.*}} loc("model.py":4:8)
// LOC-NEXT:    kernel.launch @k1_tanh
// LOC:         } loc("model.py":4:8)
// LOC-NEXT:    memref.view {{.*}} loc("model.py":5:8)
// LOC-NEXT:    memref.view {{.*}} loc("model.py":6:8)
// LOC-NEXT:    kernel.launch @k3_exp
// LOC:         } loc("model.py":6:8)
// LOC-NEXT:    kernel.launch @k4_sum
// LOC:         } loc("model.py":7:8)
// LOC-NEXT:    memref.dealloc {{.*}} loc("model.py":7:8)
// LOC-NEXT:    func.return loc("model.py":8:4)
func.func @chain(%x: tensor<4x4xf32>, %w: tensor<4x4xf32>) -> tensor<4xf32> {
  %h = kernel.fused @k0_matmul "matmul" (%x, %w) : (tensor<4x4xf32>, tensor<4x4xf32>) -> (tensor<4x4xf32>) {
  ^bb0(%a: tensor<4x4xf32>, %b: tensor<4x4xf32>):
    %m = pg.matmul %a, %b : (tensor<4x4xf32>, tensor<4x4xf32>) -> tensor<4x4xf32> loc("model.py":3:8)
    kernel.yield %m : tensor<4x4xf32>
  } loc("model.py":3:8)
  %t = kernel.fused @k1_tanh "elementwise" (%h) : (tensor<4x4xf32>) -> (tensor<4x4xf32>) {
  ^bb0(%a: tensor<4x4xf32>):
    %y = pg.tanh %a : tensor<4x4xf32> loc("model.py":4:8)
    kernel.yield %y : tensor<4x4xf32>
  } loc("model.py":4:8)
  %r = kernel.fused @k2_reshape "movement" (%t) : (tensor<4x4xf32>) -> (tensor<16xf32>) {
  ^bb0(%a: tensor<4x4xf32>):
    %y = pg.reshape %a : tensor<4x4xf32> -> tensor<16xf32> loc("model.py":5:8)
    kernel.yield %y : tensor<16xf32>
  } loc("model.py":5:8)
  %e = kernel.fused @k3_exp "elementwise" (%r) : (tensor<16xf32>) -> (tensor<16xf32>) {
  ^bb0(%a: tensor<16xf32>):
    %y = pg.exp %a : tensor<16xf32> loc("model.py":6:8)
    kernel.yield %y : tensor<16xf32>
  } loc("model.py":6:8)
  %s = kernel.fused @k4_sum "reduction" (%e) : (tensor<16xf32>) -> (tensor<4xf32>) {
  ^bb0(%a: tensor<16xf32>):
    %y = pg.reshape %a : tensor<16xf32> -> tensor<4x4xf32> loc("model.py":7:8)
    %z = pg.sum %y dims = [1] : tensor<4x4xf32> -> tensor<4xf32> loc("model.py":7:8)
    kernel.yield %z : tensor<4xf32>
  } loc("model.py":7:8)
  func.return %s : tensor<4xf32> loc("model.py":8:4)
}

// -----

// ---- copies: a returned argument and a value returned twice are copied into their output buffers at the end;
// a kernel writes its first result buffer directly, and a reshape kernel whose output is returned stays a kernel.
// No intermediate, no arena.

// CHECK-LABEL: func.func @copies(%x: memref<3xf32>, %result0: memref<3xf32> {pg.result = 0 : i64}, %result1: memref<3xf32> {pg.result = 1 : i64}, %result2: memref<3xf32> {pg.result = 2 : i64}, %result3: memref<1x3xf32> {pg.result = 3 : i64}) attributes {pg.peak_bytes = 0 : i64} {
// CHECK-NEXT:    kernel.launch @k0_exp "elementwise" ins(%x : memref<3xf32>) outs(%result1 : memref<3xf32>) {
// CHECK:         kernel.launch @k1_reshape "movement" ins(%result1 : memref<3xf32>) outs(%result3 : memref<1x3xf32>) {
// CHECK:         }
// CHECK-NEXT:    "memref.copy"(%x, %result0) : (memref<3xf32>, memref<3xf32>) -> ()
// CHECK-NEXT:    "memref.copy"(%result1, %result2) : (memref<3xf32>, memref<3xf32>) -> ()
// CHECK-NEXT:    func.return
// CHECK-NEXT:  }

// LOC-LABEL: func.func @copies
// LOC:         "memref.copy"(%x, %result0) {{.*}} loc("model.py":12:2)
// LOC-NEXT:    "memref.copy"(%result1, %result2) {{.*}} loc("model.py":12:2)
// LOC-NEXT:    func.return loc("model.py":12:2)

// REPORT: pg-bufferize: @copies: peak 0 bytes for 0 intermediates of 2 kernels, 0 of them reshapes turned into views (without reuse 0, most live at once 0)
func.func @copies(%x: tensor<3xf32>) -> (tensor<3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<1x3xf32>) {
  %e = kernel.fused @k0_exp "elementwise" (%x) : (tensor<3xf32>) -> (tensor<3xf32>) {
  ^bb0(%a: tensor<3xf32>):
    %y = pg.exp %a : tensor<3xf32>
    kernel.yield %y : tensor<3xf32>
  } loc("model.py":10:2)
  %r = kernel.fused @k1_reshape "movement" (%e) : (tensor<3xf32>) -> (tensor<1x3xf32>) {
  ^bb0(%a: tensor<3xf32>):
    %y = pg.reshape %a : tensor<3xf32> -> tensor<1x3xf32>
    kernel.yield %y : tensor<1x3xf32>
  } loc("model.py":11:2)
  func.return %x, %e, %e, %r : tensor<3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<1x3xf32> loc("model.py":12:2)
}

// -----

// ---- a multi-output kernel: an output that is a result goes to its buffer, the other to the arena; an unused
// output still gets bytes (its kernel writes it). Lifetimes include the writing kernel, so a kernel never writes
// over its own inputs: %m (k0..k1) and %n (k1) do not share.

// CHECK-LABEL: func.func @multi(%x: memref<2x3xf32>, %result0: memref<2x3xf32> {pg.result = 0 : i64}) attributes {pg.peak_bytes = 128 : i64} {
// CHECK:         %[[M:.*]] = memref.view %{{.*}}[%[[A:.*]]][] : memref<128xi8> to memref<2x1xf32>
// CHECK-NEXT:    %[[D:.*]] = memref.view %{{.*}}[%[[B:.*]]][] : memref<128xi8> to memref<2x3xf32>
// CHECK-NEXT:    kernel.launch @k0_max "reduction" ins(%x : memref<2x3xf32>) outs(%[[M]], %[[D]] : memref<2x1xf32>, memref<2x3xf32>) {
// CHECK:         kernel.launch @k1_sub "elementwise" ins(%x, %[[M]] : memref<2x3xf32>, memref<2x1xf32>) outs(%result0 : memref<2x3xf32>) {

// With alignment=16, 2x1xf32 takes 16 bytes and 2x3xf32 32.
// REPORT: pg-bufferize: @multi: peak 48 bytes for 2 intermediates of 2 kernels, 0 of them reshapes turned into views (without reuse 48, most live at once 48)
func.func @multi(%x: tensor<2x3xf32>) -> tensor<2x3xf32> {
  %m, %dead = kernel.fused @k0_max "reduction" (%x) : (tensor<2x3xf32>) -> (tensor<2x1xf32>, tensor<2x3xf32>) {
  ^bb0(%a: tensor<2x3xf32>):
    %e = pg.exp %a : tensor<2x3xf32>
    %y = pg.max %e dims = [1] keepdim : tensor<2x3xf32> -> tensor<2x1xf32>
    kernel.yield %y, %e : tensor<2x1xf32>, tensor<2x3xf32>
  }
  %n = kernel.fused @k1_sub "elementwise" (%x, %m) : (tensor<2x3xf32>, tensor<2x1xf32>) -> (tensor<2x3xf32>) {
  ^bb0(%a: tensor<2x3xf32>, %b: tensor<2x1xf32>):
    %bb = pg.broadcast_to %b : tensor<2x1xf32> -> tensor<2x3xf32>
    %y = pg.sub %a, %bb : tensor<2x3xf32>
    kernel.yield %y : tensor<2x3xf32>
  }
  func.return %n : tensor<2x3xf32>
}

// -----

// ---- what the pass rejects

// CHECK: pg-bufferize: @outside: 'pg.exp' at model.py:20:4 is outside a kernel; only kernel.fused ops can be bufferized (run pg-fuse first)
// EXIT: pg-bufferize: @outside: 'pg.exp' at model.py:20:4 is outside a kernel
func.func @outside(%x: tensor<3xf32>) -> tensor<3xf32> {
  %y = pg.exp %x : tensor<3xf32> loc("model.py":20:4)
  func.return %y : tensor<3xf32>
}

// -----

// CHECK: pg-bufferize: @twice: argument 0 has type memref<3xf32>, not a tensor; the function is already bufferized
func.func @twice(%x: memref<3xf32>, %y: memref<3xf32> {pg.result = 0 : i64}) {
  func.return
}

// -----

// 16-bit floats are buffers of their own type (issue 14: the later stages compute them in f32)
// CHECK-LABEL: func.func @low(
// CHECK-SAME: memref<4x4xbf16>
// CHECK: kernel.launch @k0_matmul
// CHECK-SAME: memref<4x4xbf16>
func.func @low(%x: tensor<4x4xbf16>, %w: tensor<4x4xbf16>) -> tensor<4x4xbf16> {
  %h = kernel.fused @k0_matmul "matmul" (%x, %w) : (tensor<4x4xbf16>, tensor<4x4xbf16>) -> (tensor<4x4xbf16>) {
  ^bb0(%a: tensor<4x4xbf16>, %b: tensor<4x4xbf16>):
    %m = pg.matmul %a, %b : (tensor<4x4xbf16>, tensor<4x4xbf16>) -> tensor<4x4xbf16> loc("model.py":7:2)
    kernel.yield %m : tensor<4x4xbf16>
  }
  func.return %h : tensor<4x4xbf16>
}
