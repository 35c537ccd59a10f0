"""The compiler driver, above the passes: the stages and the passes that lead to each (``pipeline``), and the
compilation of a traced step for a device (``gpu_compile``: PTX text plus the launch plan the CUDA runtime runs)."""
