"""Kernel kinds and schedules of the GPU lowering, one module each."""
