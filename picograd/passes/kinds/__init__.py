"""Kernel kinds with a lowering of their own, one module each (``attention``: the fused FlashAttention kernels)."""
