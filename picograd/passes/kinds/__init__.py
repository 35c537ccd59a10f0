"""Kernel kinds and schedules with a lowering of their own, one module each (``attention``: the fused
FlashAttention kernels; ``matmul_mma_sync``, ``matmul_wgmma``: the tensor-core matmul schedules)."""
