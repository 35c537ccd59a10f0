"""Names of the discardable attributes that one stage writes and a later stage or a runtime reads (the calling
convention of bufferized functions). They live here, below the passes and the runtimes, so both can name them."""

RESULT_ATTR = "pg.result"
"""Argument attribute of a bufferized function marking the output buffer of result k: ``{pg.result = k : i64}``."""

PEAK_ATTR = "pg.peak_bytes"
"""Function attribute set by ``pg-bufferize``: the bytes of its arena of intermediates (``i64``)."""

# --- the kernel stages: which loop nests and GPU kernels form a kernel, and how each is scheduled ------------------

KERNEL_ATTR = "pg.kernel"
"""Attribute of each loop nest (``pg-to-loops``) and ``gpu.launch`` (``pg-matmul-schedule``): the ``sym_name`` of the
kernel it comes from (``"k3_matmul"``); ``pg-to-gpu`` names the outlined ``gpu.func`` after it."""

KIND_ATTR = "pg.kind"
"""Attribute of each loop nest, ``gpu.launch`` and outlined ``gpu.func``: the kernel's kind (``kernel.KINDS``)."""

NEST_ATTR = "pg.nest"
"""Attribute of the loop nest that a kernel kind's loop lowering emitted for the kind's main op (the nest a schedule
strategy other than ``thread_per_point`` applies to): the name of that kind in the registry
(``picograd.passes.kinds.KERNEL_KINDS``: ``"reduction"``, ``"matmul"``, ``"scatter_add"``). It declares the nest's
form (each kind module documents the form it emits and reads), so that no later pass has to recognise it from the
shape of the loops. Nests without it (pointwise nests, a scatter's zero fill) take ``thread_per_point``."""

SCHEDULE_ATTR = "kernel.schedule"
"""Attribute of each loop nest (``pg-to-loops`` copies it from the kernel): the ``#kernel.schedule`` that
``pg-schedule`` chose for the kernel, which the GPU lowering passes follow."""

STRATEGY_ATTR = "pg.schedule"
"""Attribute of each ``gpu.launch`` (``pg-matmul-schedule``) and ``gpu.func`` (``pg-to-gpu``): the name of the
strategy that made it (``"thread_per_point"``, ``"block_per_row"``, ``"atomic"`` or a matmul rung)."""

TILE_ATTR = "pg.tile"
"""Attribute of a matmul's ``gpu.launch`` and ``gpu.func``: its block tile ``array<i32: BM, BN, BK>`` (BK = 0
without shared-memory tiles)."""

GPU_MODULE_ATTR = "pg.gpu_module"
"""Attribute of each ``ptx.module`` (``pg-to-ptx``): the name of the ``gpu.module`` it was lowered from."""

SHARED_BYTES_ATTR = "pg.dynamic_shared"
"""Attribute of a ``ptx.func`` that uses dynamic shared memory (the wgmma matmuls, ``pg-to-ptx``): its bytes
(``i64``), which the CUDA launch passes (``picograd.driver.gpu_compile``)."""
